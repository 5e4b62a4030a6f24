"""The shared helpers at the bottom of the library: one home each for seeds, generators and devices."""

import subprocess
import sys

import pytest
import torch

import gibbsdream.sampling.api
import gibbsdream.training
from gibbsdream.devices import resolve_device
from gibbsdream.errors import UsageError
from gibbsdream.randomness import MAX_SEED, check_seed, make_generator


def test_the_old_homes_hand_out_the_same_functions():
    assert gibbsdream.sampling.api.make_generator is make_generator  # scripts import it from there
    assert gibbsdream.training.resolve_device is resolve_device


def test_a_seed_gives_the_same_draws_and_bad_seeds_are_refused():
    a, b = make_generator(7, "cpu"), make_generator(7, "cpu")
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert not torch.equal(
        torch.rand(5, generator=make_generator(8, "cpu")), torch.rand(5, generator=make_generator(7, "cpu"))
    )
    assert check_seed(MAX_SEED) == MAX_SEED
    for bad in (-1, MAX_SEED + 1, 1.5, True):
        with pytest.raises(UsageError, match="seed"):
            check_seed(bad)
    with pytest.raises(UsageError, match="2\\*\\*64"):
        make_generator(2**64, "cpu")


def test_auto_is_cuda_only_where_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_seeds_are_checked_without_loading_pytorch():
    """The command line reads MAX_SEED while it starts, before PyTorch is loaded."""
    code = "import sys, gibbsdream.randomness as r; r.check_seed(3); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
