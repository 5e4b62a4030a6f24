"""``gibbsdream.load``: the front door's loader, which the CLI and the web page share."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import gibbsdream
from cli_harness import assert_ok, gibbsdream_here
from gibbsdream.checkpoint import save_checkpoint
from gibbsdream.summary import training_strings


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def rbm(work) -> Path:
    rng = random.Random(8)
    corpus = work / "corpus.txt"
    corpus.write_text(
        "\n".join("".join(rng.choice("abcd") for _ in range(rng.randint(2, 5))) for _ in range(80)) + "\n"
    )
    assert_ok(
        gibbsdream_here(
            "train",
            "rbm",
            "--data",
            corpus,
            "--out",
            work / "rbm",
            "--hidden",
            4,
            "--epochs",
            1,
            "--quiet",
            "--engine",
            "torch",
        )
    )
    return work / "rbm"


@pytest.fixture(scope="module")
def nade(work) -> Path:
    assert_ok(
        gibbsdream_here(
            "train",
            "nade",
            "--data",
            "builtin:digits",
            "--levels",
            4,
            "--width",
            4,
            "--depth",
            1,
            "--epochs",
            1,
            "--batch-size",
            512,
            "--quiet",
            "--device",
            "cpu",
            "--out",
            work / "nade",
        )
    )
    return work / "nade"


def test_load_finds_the_family_and_readies_the_model(rbm, nade):
    strings = gibbsdream.load(rbm, device="cpu")
    assert strings.family == "rbm" and isinstance(strings.codec, gibbsdream.StringCodec)
    assert set(strings.data) >= {"train", "validation"} and not strings.model.training
    images = gibbsdream.load(nade / "config.json")  # the folder or its config.json; device auto
    assert images.family == "nade" and isinstance(images.codec, gibbsdream.ImageCodec)
    assert not images.model.training and next(images.model.parameters()).device.type in ("cpu", "cuda")


def test_load_refuses_the_other_family_and_models_without_a_codec(rbm, nade, work):
    with pytest.raises(gibbsdream.UsageError, match="needs an RBM"):
        gibbsdream.load(nade, family="rbm")
    with pytest.raises(gibbsdream.UsageError, match="needs an Orderless NADE"):
        gibbsdream.load(rbm, family="nade")
    bare = work / "bare"
    save_checkpoint(bare, gibbsdream.RBM(3, 2, 4))  # a library save without a codec
    with pytest.raises(gibbsdream.UsageError, match="no string codec"):
        gibbsdream.load(bare)


def test_string_models_always_have_their_data_parts(work):
    folder = work / "no-data"
    codec = gibbsdream.StringCodec(alphabet="ab", max_length=3)
    save_checkpoint(folder, gibbsdream.RBM(3, 2, codec.num_categories), codec=codec)
    loaded = gibbsdream.load(folder, device="cpu")
    assert loaded.data["train"].shape == (0, 3) and loaded.data["train"].dtype == torch.long


def test_loading_stays_off_torchs_python_reference_ops(work):
    """A checkpoint's model is sized on the meta device before its weights are read; done with
    values (arange, normal_ on meta) that imports sympy and torch._dynamo, over a second at every
    start-up and a Ctrl+C hazard (an interrupted import leaves PyTorch half-imported)."""
    import subprocess
    import sys

    from gibbsdream.data.captions import CaptionVocabulary

    vocabulary = CaptionVocabulary(["red", "blue"])
    captioned = gibbsdream.OrderlessNADE(
        channels=3,
        num_categories=8,
        width=4,
        depth=1,
        caption_layers=2,
        caption_vocab_size=vocabulary.size,
        caption_bidirectional=True,
    )
    captioned.caption_vocabulary = vocabulary
    for name, model in (("rbm-meta", gibbsdream.RBM(4, 3, 5)), ("nade-meta", captioned)):
        save_checkpoint(work / name, model)
    code = (
        "import sys, gibbsdream.checkpoint as c\n"
        f"for name in ('rbm-meta', 'nade-meta'): c.load_checkpoint({str(work)!r} + '/' + name)\n"
        "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_samples_along_a_chain_leave_out_its_starting_state(rbm):
    """With ``every``, the records are the states after step 0: the start (here training strings,
    with --init train) is what the chain began from, not something the model generated. The chain's
    frames keep it, for animations."""
    ckpt = gibbsdream.load(rbm, device="cpu")
    dream = gibbsdream.generate(ckpt, num_samples=3, steps=10, every=5, init="train", seed=1, engine="torch")
    chain = dream.chain
    assert chain.frame_steps == [0, 5, 10] and chain.frames.shape[:2] == (3, 3)
    assert [(r["chain"], r["step"]) for r in dream.records] == [(c, s) for c in range(3) for s in (5, 10)]
    decoded = [ckpt.codec.decode(frame) for frame in chain.frames]  # (F, N) texts
    assert [r["text"] for r in dream.records] == [decoded[f][c] for c in range(3) for f in (1, 2)]
    assert all(text in training_strings(ckpt) for text in decoded[0])  # what was left out
    deduped = gibbsdream.generate(
        ckpt, num_samples=3, steps=10, every=5, init="train", seed=1, engine="torch", dedupe=True
    ).records
    for c in range(3):  # dedupe compares samples with samples only
        ours = [r["text"] for r in deduped if r["chain"] == c]
        assert ours == list(dict.fromkeys(decoded[f][c] for f in (1, 2)))
