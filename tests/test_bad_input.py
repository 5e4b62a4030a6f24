"""Bad input through the real command line: every case ends in exit code 2 and exactly one
``error: ...`` line on stderr, with no traceback, and writes nothing.

- Every numeric option of every command (found by walking the click commands, so a new option is
  covered without a new line here) is given ``nan``, ``inf``, ``-inf`` and ``1e400``.
- A table of other bad inputs: seeds, devices, numbers inside text options, sizes that cannot be
  allocated, outputs that cannot be written, hostile files (a decompression-bomb PNG, a captions
  pickle that expands past memory, a FIFO as a corpus).
- Outputs on a read-only file system and on a full one (small tmpfs mounts; skipped where this
  process may not mount), checking that nothing was left behind.
- Temperatures too small to divide by act as T = 0 (argmax) everywhere, and no logit becomes NaN.

Most commands run in this process (``gibbsdream_here``); those where a real process matters (an
address-space limit, a FIFO that could hang) run as subprocesses, in the background, with timeouts.
"""

import json
import math
import os
import pickle
import random
import resource
import shutil
import string
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cli_harness import ENV, Result, assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.cli import app
from gibbsdream.cli.params import DEVICE, SEED, CountOrFraction, Duration, Number, Whole, WholeList

run = gibbsdream_here

SIDE, LEVELS = 6, 4
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)
LIMIT = 4 * 2**30  # the address-space limit of the memory cases: well above an idle CLI (about 1 GB)
HUGE = 10**12  # chains, runs or orders that no machine can hold


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gibbsdream_limited(*args, memory: int | None = None, timeout: float = 120) -> Result:
    """The CLI in a subprocess, optionally under an address-space limit; a hang fails the test
    (``subprocess.TimeoutExpired``) instead of blocking the run."""
    argv = [str(a) for a in args]

    def limit():
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    done = subprocess.run(
        [sys.executable, "-m", "gibbsdream.cli", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=timeout,
        preexec_fn=limit,
        check=False,
    )
    return Result(argv, done.returncode, done.stdout, done.stderr)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = random.Random(3)
    path = work / "corpus.txt"
    path.write_text("\n".join("".join(rng.choice("abcd") for _ in range(4)) for _ in range(40)) + "\n")
    return path


@pytest.fixture(scope="module")
def rbm(work, corpus) -> Path:
    out = work / "rbm"
    assert_ok(
        run("train", "rbm", "--data", corpus, "--hidden", 4, "--epochs", 1, "--out", out, "--quiet", "--device", "cpu")
    )
    return out


@pytest.fixture(scope="module")
def images(work) -> Path:
    rng = np.random.default_rng(5)
    folder = work / "images"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(EXACT[rng.integers(0, LEVELS, (SIDE, SIDE))]).save(folder / f"im{i:02d}.png")
    return folder


TRAIN_NADE = ["--levels", LEVELS, "--width", 8, "--depth", 1, "--epochs", 1, "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def nade(work, images) -> Path:
    out = work / "nade"
    assert_ok(run("train", "nade", "--data", images, *TRAIN_NADE, "--test-size", 2, "--out", out))
    return out


@pytest.fixture(scope="module")
def bombs(work) -> dict:
    """All-black PNGs of 20000 x 20000 pixels (past 2x Pillow's limit: it raises) and 10000 x 10000
    (between 1x and 2x: it only warns, then decodes 100 million pixels); tens of kB on disk each."""
    paths = {}
    for name, side in (("error", 20000), ("warning", 10000)):
        paths[name] = work / f"bomb-{name}.png"
        Image.new("1", (side, side)).save(paths[name])
    assert paths["error"].stat().st_size < 100_000
    return paths


def expanding_captions_pickle(folder: Path, names: list[str]) -> Path:
    """A captions pickle of plain data (dicts, lists, strings only), a few kB on disk, whose shared
    references expand to about 10**17 characters: one 10,000-character caption, a list of it 100
    times, lists of that list 100 times, ... and every image id maps to the outermost one; plus one
    flat table that repeats a shared list of a shared caption for every id."""
    caption = "a " * 5_000
    nested = [caption] * 100
    for _ in range(6):
        nested = [nested] * 100
    shared = [caption] * 1_000
    table = {Path(name).stem: shared for name in names}
    table["nested"] = nested
    path = folder / "captions.pkl"
    path.write_bytes(pickle.dumps(table, protocol=4))
    assert path.stat().st_size < 50_000
    return path


@pytest.fixture(scope="module")
def fifo(work) -> Path:
    path = work / "corpus.fifo"
    os.mkfifo(path)
    image_fifo = work / "fifo.png"
    os.mkfifo(image_fifo)
    return path


@pytest.fixture(scope="module", autouse=True)
def subprocess_runs(work, rbm, nade, fifo, images):
    """The cases that need a real process, started in the background as soon as the models exist."""
    from gibbsdream.checkpoint import load_checkpoint
    from gibbsdream.resources import rbm_sampling_bytes

    model = load_checkpoint(rbm).model
    per_chain = rbm_sampling_bytes(
        1, model.num_visible, model.num_categories, model.num_hidden, 3, threads=os.cpu_count() or 1
    )
    chains = int(1.5 * LIMIT / per_chain)  # fits this machine, not the limit
    long_line = work / "long-line.txt"
    letters = string.ascii_lowercase
    long_line.write_text(
        "\n".join(
            ["".join(random.Random(i).choices(letters, k=6)) for i in range(50)]
            + ["".join(random.Random(0).choices(letters, k=1_000_000))]
        )
        + "\n"
    )
    jobs = {
        "chains under a memory limit": (
            {"memory": LIMIT},
            ["sample", rbm, "--chains", chains, "--steps", 3, "--quiet", "--device", "cpu"],
        ),
        "a 1,000,000-character line under a memory limit": (
            {"memory": LIMIT},
            ["train", "rbm", "--data", long_line, "--out", work / "long-line-model", "--quiet", "--device", "cpu"],
        ),
        "a network too wide to allocate": (
            {"memory": LIMIT},
            ["train", "nade", "--data", images, *TRAIN_NADE, "--width", 40_000, "--out", work / "too-wide"],
        ),
        "a FIFO as corpus (train)": (
            {"timeout": 60},
            ["train", "rbm", "--data", fifo, "--out", work / "fifo-model", "--quiet", "--device", "cpu"],
        ),
        "a FIFO as corpus (evaluate)": ({"timeout": 60}, ["evaluate", rbm, "--data", fifo, "--device", "cpu"]),
        "a FIFO as --image": (
            {"timeout": 60},
            ["inpaint", nade, "--image", work / "fifo.png", "--out", work / "fifo-out.png", "--device", "cpu"],
        ),
    }
    pool = ThreadPoolExecutor(2)
    futures = {name: pool.submit(gibbsdream_limited, *argv, **options) for name, (options, argv) in jobs.items()}
    yield {**futures, "chains": chains}
    pool.shutdown(wait=True)


# ---- every numeric option ------------------------------------------------------------------------


def _commands(group=app, path=()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


NUMERIC_TYPES = (Number, Whole, Duration, CountOrFraction, WholeList)
NOT_FINITE = ("nan", "inf", "-inf", "1e400")
NUMERIC_CASES = [
    (path, param.opts[0], value)
    for path, command in _commands()
    for param in command.params
    if isinstance(param, click.Option) and isinstance(param.type, NUMERIC_TYPES)
    # and a whole number past 64 bits, for the options that read whole numbers
    for value in NOT_FINITE + ((str(10**30),) if isinstance(param.type, (Whole, WholeList, CountOrFraction)) else ())
]
NUMERIC_OPTIONS = sorted({(path, flag) for path, flag, _ in NUMERIC_CASES})


def test_every_numeric_option_has_a_checked_type():
    """No option reads a plain click int or float (which take nan, inf and any size); every --seed
    and --device is checked as one; and the walk below finds the options (about 60 of them)."""
    for path, command in _commands():
        for param in command.params:
            where = f"{' '.join(path)} {param.opts[0] if param.opts else param.name}"
            assert not isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)), where
            if param.name == "seed":
                assert param.type is SEED, where
            if param.name == "device":
                assert param.type is DEVICE, where
    assert len(NUMERIC_OPTIONS) > 50
    assert {"--chains", "--weight-cost", "--grad-clip", "--seed", "--orders", "--ais-runs", "--port"} <= {
        flag for _, flag in NUMERIC_OPTIONS
    }


def _placeholder_argv(path, flag, value, folder: Path) -> list:
    """``gibbsdream PATH FLAG VALUE`` with every required argument and option filled by a path in
    ``folder`` that holds nothing usable: the bad value must be refused while parsing, before any of
    them is looked at (the message names the flag, which no later failure would). ``--out`` of a
    command that does not require it points at a folder with a broken config.json, so that even
    `demo` would fail at once instead of training."""
    command = app
    for name in path:
        command = command.commands[name]
    argv = [*path, flag, value]
    for param in command.params:
        if isinstance(param, click.Argument):
            argv.append(folder / "no-checkpoint")
        elif param.required and flag not in param.opts:
            argv += [param.opts[0], folder / "missing"]
    if (
        flag != "--out"
        and "--out" in {o for p in command.params for o in getattr(p, "opts", ())}
        and "--out" not in argv
    ):
        argv += ["--out", folder / "broken"]
    return argv


@pytest.mark.parametrize(
    "path, flag, value", NUMERIC_CASES, ids=[f"{' '.join(p)} {f} {v}" for p, f, v in NUMERIC_CASES]
)
def test_numeric_option_refuses_what_is_not_a_finite_number(tmp_path, path, flag, value):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    before = snapshot(tmp_path)
    message = assert_clean_error(run(*_placeholder_argv(path, flag, value, tmp_path)))
    assert flag in message, message
    assert snapshot(tmp_path) == before


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "NaN", "-nan", "inf", "+inf", "-Infinity", "1e400", "-1e309", "1e308"]),
    )
)
def test_number_takes_exactly_the_finite_floats(text):
    finite = math.isfinite(float(text))
    try:
        value = Number().convert(text, None, None)
    except click.BadParameter:
        assert not finite
    else:
        assert finite and value == float(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_whole_takes_exactly_the_64_bit_integers(number):
    try:
        value = Whole().convert(str(number), None, None)
    except click.BadParameter:
        assert not -(2**63) <= number < 2**63
    else:
        assert value == number and -(2**63) <= number < 2**63


# ---- a table of other bad inputs -------------------------------------------------------------------


class Case:
    """A private folder for one case: its inputs and (never written) outputs live here."""

    def __init__(self, folder: Path, rbm: Path, nade: Path, corpus: Path, images: Path, bombs: dict):
        self.dir, self.rbm, self.nade, self.corpus, self.images, self.bombs = folder, rbm, nade, corpus, images, bombs
        folder.mkdir(parents=True)

    def file(self, name: str, text: str = "keep me\n") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def sample(self, *args):
        return ["sample", self.rbm, "--steps", 3, "--chains", 2, "--quiet", *args]

    def sample_images(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "samples"]
        return ["sample", self.nade, "--steps", 2, "--chains", 2, "--quiet", *out, *args]

    def inpaint(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "out.png"]
        image = [] if "--image" in args else ["--image", self.images / "im00.png"]
        return ["inpaint", self.nade, *image, "--steps", 2, "--quiet", *out, *args]

    def train(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "model"]
        return ["train", "rbm", "--data", self.corpus, "--hidden", 4, "--epochs", 1, "--quiet", *out, *args]

    def train_nade(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "model"]
        data = [] if "--data" in args else ["--data", self.images]
        return ["train", "nade", *data, *TRAIN_NADE, *out, *args]

    def sweep(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "sweep"]
        return ["sweep", self.rbm, *self._steps(args), "--chains", 2, "--quiet", *out, *args]

    def sweep_images(self, *args):
        out = [] if "--out" in args else ["--out", self.dir / "sweep"]
        return ["sweep", self.nade, *self._steps(args), "--problems", 1, "--quiet", *out, *args]

    @staticmethod
    def _steps(args) -> list:
        """Two steps, unless the case sets the steps itself (a second steps grid is refused first)."""
        return [] if any(str(a).startswith("steps=") for a in args) else ["--grid", "steps=2"]

    def under_a_file(self, *parts) -> Path:
        """A path whose parent folder would have to be made inside a regular file."""
        return self.file("regular-file").joinpath(*parts)

    def captions_folder(self) -> Path:
        folder = self.dir / "captioned"
        shutil.copytree(self.images, folder)
        expanding_captions_pickle(folder, [p.name for p in sorted(self.images.iterdir())])
        return folder


NO_CUDA = not torch.cuda.is_available()
# name: (build the command line, a fragment the one-line message must contain)
BAD_INPUT = {
    # seeds: torch takes 64 bits, the trainers add offsets to the seed
    "sample --seed 2**64": (lambda c: c.sample("--seed", 2**64), "--seed"),
    "sample --seed 2**63": (lambda c: c.sample("--seed", 2**63), "2**63 - 1"),
    "sample --seed -1": (lambda c: c.sample("--seed", -1), "--seed"),
    "train rbm --seed 2**64": (lambda c: c.train("--seed", 2**64), "--seed"),
    "train nade --seed -1": (lambda c: c.train_nade("--seed", -1), "--seed"),
    "inpaint --seed 2**64": (lambda c: c.inpaint("--seed", 2**64), "--seed"),
    "evaluate --seed 2**64": (lambda c: ["evaluate", c.rbm, "--data", c.corpus, "--seed", 2**64], "--seed"),
    "sweep --seed -1": (lambda c: c.sweep("--seed", -1), "--seed"),
    # devices
    "sample --device tpu": (lambda c: c.sample("--device", "tpu"), "--device"),
    "train rbm --device tpu": (lambda c: c.train("--device", "tpu"), "--device"),
    "train nade --device cuda:x": (lambda c: c.train_nade("--device", "cuda:x"), "--device"),
    "evaluate --device gpu": (lambda c: ["evaluate", c.rbm, "--data", c.corpus, "--device", "gpu"], "--device"),
    "serve --device tpu": (lambda c: ["serve", c.rbm, "--device", "tpu"], "--device"),
    "sample --device cuda:99": (lambda c: c.sample("--device", "cuda:99"), "cuda:99"),
    **(
        {"sample --device cuda (no CUDA here)": (lambda c: c.sample("--device", "cuda"), "none is available")}
        if NO_CUDA
        else {}
    ),
    # numbers inside text options
    "sample --temperature nan": (lambda c: c.sample("--temperature", "nan"), "temperature"),
    "sample --temperature inf": (lambda c: c.sample("--temperature", "inf"), "temperature"),
    "sample --temperature -inf": (lambda c: c.sample("--temperature", "-inf"), "temperature"),
    "sample --temperature 1e400": (lambda c: c.sample("--temperature", "1e400"), "temperature"),
    "sample --temperature 1:nan": (lambda c: c.sample("--temperature", "1:nan"), "temperature"),
    "sample images --temperature nan": (lambda c: c.sample_images("--temperature", "nan"), "temperature"),
    "inpaint --temperature 1e400": (lambda c: c.inpaint("--temperature", "1e400"), "temperature"),
    "inpaint --block nan": (lambda c: c.inpaint("--block", "nan"), "block"),
    "inpaint --block yao:inf,0.1,0.7": (lambda c: c.inpaint("--block", "yao:inf,0.1,0.7"), "yao"),
    "inpaint --mask centre:nan": (lambda c: c.inpaint("--mask", "centre:nan"), "centre"),
    "inpaint --mask random:inf": (lambda c: c.inpaint("--mask", "random:inf"), "random"),
    "train nade --masks bernoulli:nan": (lambda c: c.train_nade("--masks", "bernoulli:nan"), "bernoulli"),
    "train nade --dilations 1e400": (lambda c: c.train_nade("--dilations", "1e400"), "--dilations"),
    "train nade --dilations 10**30": (lambda c: c.train_nade("--dilations", 10**30), "--dilations"),
    "train nade --test-size 1.5e400": (lambda c: c.train_nade("--test-size", "1.5e400"), "--test-size"),
    "train nade --max-time 10**400 s": (lambda c: c.train_nade("--max-time", "1" + "0" * 400), "--max-time"),
    "sweep --grid temperature=nan": (lambda c: c.sweep("--grid", "temperature=nan"), "temperature"),
    "sweep --grid steps=1e400": (lambda c: c.sweep("--grid", "steps=1e400"), "steps"),
    "sweep --grid block=inf": (lambda c: c.sweep_images("--grid", "block=inf"), "block"),
    # sizes no machine can hold: refused before anything is allocated (see HUGE_CASES)
    "sample --chains 10**12": (lambda c: c.sample("--chains", HUGE), "lower --chains"),
    "sample --steps 10**15": (lambda c: c.sample("--steps", 10**15), "lower --steps"),
    "sample images --chains 10**12": (lambda c: c.sample_images("--chains", HUGE), "lower --chains"),
    "inpaint --samples 10**12": (lambda c: c.inpaint("--samples", HUGE, "--out", c.dir / "many"), "--samples"),
    "evaluate --ais-runs 10**12": (
        lambda c: ["evaluate", c.rbm, "--data", c.corpus, "--method", "ais", "--ais-runs", HUGE],
        "lower --ais-runs",
    ),
    "evaluate --ais-betas 10**15": (
        lambda c: ["evaluate", c.rbm, "--data", c.corpus, "--method", "ais", "--ais-betas", 10**15],
        "--ais-betas",
    ),
    "evaluate images --orders 10**12": (lambda c: ["evaluate", c.nade, "--orders", HUGE], "lower --orders"),
    "sweep --chains 10**12": (lambda c: c.sweep("--chains", HUGE), "lower --chains"),
    "sweep images --samples 10**12": (lambda c: c.sweep_images("--samples", HUGE), "--samples"),
    "sweep --grid steps=10**30": (lambda c: c.sweep("--grid", f"steps={10**30}"), "steps"),
    # outputs whose folder would have to be made inside a regular file
    "train rbm --out under a file": (lambda c: c.train("--out", c.under_a_file("sub", "model")), "is a file"),
    "train nade --out under a file": (lambda c: c.train_nade("--out", c.under_a_file("model")), "is a file"),
    "sample --out under a file": (lambda c: c.sample("--out", c.under_a_file("sub", "out.txt")), "is a file"),
    "sample images --out under a file": (lambda c: c.sample_images("--out", c.under_a_file("out")), "is a file"),
    "sample images --gif under a file": (lambda c: c.sample_images("--gif", c.under_a_file("x.gif")), "is a file"),
    "sample images --trace under a file": (lambda c: c.sample_images("--trace", c.under_a_file("x.json")), "is a file"),
    "inpaint --out under a file": (lambda c: c.inpaint("--out", c.under_a_file("sub", "out.png")), "is a file"),
    "inpaint --gif under a file": (lambda c: c.inpaint("--gif", c.under_a_file("x.gif")), "is a file"),
    "sweep --out under a file": (lambda c: c.sweep("--out", c.under_a_file("sweep")), "is a file"),
    # hostile files
    "a decompression bomb as --mask": (lambda c: c.inpaint("--mask", c.bombs["error"]), "decompression bomb"),
    "a 1x-2x decompression bomb as --mask": (lambda c: c.inpaint("--mask", c.bombs["warning"]), "decompression bomb"),
    "a decompression bomb as --image": (lambda c: c.inpaint("--image", c.bombs["error"]), "too many pixels"),
    "a 1x-2x decompression bomb as --image": (lambda c: c.inpaint("--image", c.bombs["warning"]), "too many pixels"),
    "a captions pickle that expands past memory": (
        lambda c: c.train_nade("--data", c.captions_folder(), "--captions"),
        "expands to more than",
    ),
}


@pytest.fixture(scope="module")
def bad_runs(work, rbm, nade, corpus, images, bombs) -> dict:
    """Every case of BAD_INPUT in its own folder: ``{name: (Result, files before, files after)}``;
    ``"shared"``: the shared models and inputs before and after all of them."""

    def shared():
        return {"rbm": snapshot(rbm), "nade": snapshot(nade), "images": snapshot(images), "corpus": corpus.read_bytes()}

    shared_before = shared()
    results = {}
    for index, (name, (build, _)) in enumerate(BAD_INPUT.items()):
        case = Case(work / "bad" / f"case{index:02d}", rbm, nade, corpus, images, bombs)
        argv = build(case)
        before = snapshot(case.dir)
        results[name] = (run(*argv), before, snapshot(case.dir))
    results["shared"] = (shared_before, shared())
    return results


# The cases a memory pre-flight must refuse, by its estimate, before allocating: a case that got
# as far as running out of memory would fit its fragment too, after taking all the machine has.
HUGE_CASES = [name for name in BAD_INPUT if "10**12" in name or "10**15" in name]


@pytest.mark.parametrize("case", HUGE_CASES)
def test_sizes_no_machine_can_hold_are_refused_by_the_estimate(bad_runs, case):
    result, _, _ = bad_runs[case]
    assert "of memory free" in assert_clean_error(result)


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_cleanly(bad_runs, case):
    result, before, after = bad_runs[case]
    message = assert_clean_error(result)
    assert BAD_INPUT[case][1] in message, message
    assert after == before, "a failed command wrote or changed files"


def test_bad_input_leaves_the_shared_inputs_alone(bad_runs):
    before, after = bad_runs["shared"]
    assert after == before


def test_a_nan_weight_cost_writes_no_checkpoint(tmp_path, corpus):
    """It once trained to NaN weights and wrote bare NaN into history.jsonl (not JSON)."""
    for value in ("nan", "inf"):
        assert "--weight-cost" in assert_clean_error(
            run("train", "rbm", "--data", corpus, "--out", tmp_path / value, "--weight-cost", value, "--quiet")
        )
        assert not (tmp_path / value).exists()


# ---- real processes: memory limits and FIFOs ------------------------------------------------------


def test_chains_beyond_an_address_space_limit_are_refused_up_front(subprocess_runs):
    """--chains that this machine could hold but a 4 GiB address space cannot: the estimate is checked
    against what the limit leaves, so the command stops before allocating, with the numbers."""
    message = assert_clean_error(subprocess_runs["chains under a memory limit"].result())
    assert "this asks for about" in message and f"--chains {subprocess_runs['chains']:,}" in message, message
    assert "lower --chains" in message


def test_a_corpus_line_of_a_million_characters_is_refused_up_front(subprocess_runs, work):
    message = assert_clean_error(subprocess_runs["a 1,000,000-character line under a memory limit"].result())
    assert "1,000,000 positions" in message and "--max-length" in message, message
    assert not (work / "long-line-model").exists()


def test_an_allocation_that_fails_anyway_is_one_line(subprocess_runs, work):
    """No estimate covers everything: PyTorch's allocator failing deep inside is the last resort."""
    message = assert_clean_error(subprocess_runs["a network too wide to allocate"].result())
    assert "ran out of memory" in message and "--width" in message, message
    assert not (work / "too-wide" / "config.json").exists()


@pytest.mark.parametrize("name", ["a FIFO as corpus (train)", "a FIFO as corpus (evaluate)", "a FIFO as --image"])
def test_a_fifo_is_refused_not_waited_on(subprocess_runs, name):
    message = assert_clean_error(subprocess_runs[name].result())  # a hang raises TimeoutExpired here
    assert "not a regular file" in message, message


# ---- what main() makes of failures deep inside a command ------------------------------------------


def _failing(error):
    def fail(*args, **kwargs):
        raise error

    return fail


DEEP_FAILURES = {
    "MemoryError": (MemoryError(), "ran out of memory"),
    "CPU allocator": (
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 12345678901 bytes. Error code 12 (Cannot allocate "
            "memory)"
        ),
        "12.3 GB",
    ),
    "CUDA allocator": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "20.00 GiB"),
    "no space left": (
        OSError(28, "No space left on device", "/data/out.png"),
        "cannot write /data/out.png: No space left on device; free some space",
    ),
    "permission denied": (
        PermissionError(13, "Permission denied", "/data/out"),
        "cannot write /data/out: Permission denied",
    ),
    "read-only file system": (OSError(30, "Read-only file system", "/mnt/ro/x"), "cannot write /mnt/ro/x"),
    "an OSError without a file name": (OSError(5, "Input/output error"), "Input/output error"),
}


@pytest.mark.parametrize("name", list(DEEP_FAILURES))
def test_main_turns_deep_failures_into_one_line(monkeypatch, rbm, name):
    error, fragment = DEEP_FAILURES[name]
    monkeypatch.setattr("gibbsdream.checkpoint.checkpoint_family", _failing(error))
    message = assert_clean_error(run("sample", rbm, "--chains", 2, "--steps", 2, "--quiet"))
    assert fragment in message, message
    if "memory" in fragment or "GB" in fragment or "GiB" in fragment:
        assert "lower --chains" in message, message


def test_other_runtime_errors_still_show_their_traceback(monkeypatch, rbm):
    """A bug is not bad input: main() maps only what a user's input can cause."""
    monkeypatch.setattr("gibbsdream.checkpoint.checkpoint_family", _failing(RuntimeError("a bug")))
    result = run("sample", rbm, "--quiet")
    assert result.returncode == 1 and "Traceback" in result.stderr


# ---- read-only and full file systems ---------------------------------------------------------------


@pytest.fixture
def mount(tmp_path):
    """``mount(options) -> folder``: a small tmpfs at a new folder, unmounted afterwards; skips the
    test where this process may not mount (not root, or no CAP_SYS_ADMIN)."""
    mounted = []

    def make(options: str) -> Path:
        folder = tmp_path / f"mnt-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()})")
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def read_only_cases(c: Case, ro: Path) -> dict:
    return {
        "train rbm --out": c.train("--out", ro / "model"),
        "train nade --out": c.train_nade("--out", ro / "model"),
        "sample --out": c.sample("--out", ro / "out.txt"),
        "sample images --out": c.sample_images("--out", ro / "samples"),
        "sample images --gif": c.sample_images("--gif", ro / "chain.gif"),
        "sample images --trace": c.sample_images("--trace", ro / "trace.json"),
        "inpaint --out": c.inpaint("--out", ro / "out.png"),
        "inpaint --gif": c.inpaint("--gif", ro / "chain.gif"),
        "sweep --out": c.sweep("--out", ro / "sweep"),
    }


def test_outputs_on_a_read_only_file_system_are_refused_before_any_work(mount, tmp_path, rbm, nade, corpus, images):
    """Root may write anywhere but on a read-only mount. The --gif case once failed after the PNGs
    of --out were written; now every output is probed first, and nothing is written anywhere."""
    ro = mount("ro,size=64k")
    case = Case(tmp_path / "case", rbm, nade, corpus, images, {})
    for name, argv in read_only_cases(case, ro).items():
        before = snapshot(case.dir)
        message = assert_clean_error(run(*argv))
        assert "cannot write" in message and "Read-only file system" in message, f"{name}: {message}"
        assert snapshot(case.dir) == before, name
        assert not any(ro.iterdir()), name


def _fill(folder: Path, leave: int) -> None:
    """Fill a tmpfs until ``leave`` bytes are free (tmpfs counts whole 4 kB pages)."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    (folder / "filler").write_bytes(bytes(free - leave))
    stats = os.statvfs(folder)
    assert stats.f_bavail * stats.f_frsize == leave


def test_a_full_disk_is_refused_before_any_work(mount, tmp_path, rbm, nade, corpus, images):
    full = mount("size=256k")
    _fill(full, 0)
    case = Case(tmp_path / "case", rbm, nade, corpus, images, {})
    for argv in (
        case.sample_images("--out", full / "samples"),
        case.train("--out", full / "model"),
        case.inpaint("--out", full / "out.png"),
    ):
        message = assert_clean_error(run(*argv))
        assert "No space left on device" in message and "free some space" in message, message
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", ["sample", "inpaint"])
def test_a_disk_that_fills_half_way_keeps_nothing(mount, tmp_path, rbm, nade, corpus, images, command):
    """Room for the probe and the first few files, not for all 40: the images written so far, the
    grid and the folders made for them are removed, and the message names the file that failed."""
    full = mount("size=256k")
    _fill(full, 3 * 4096)
    case = Case(tmp_path / "case", rbm, nade, corpus, images, {})
    if command == "sample":
        argv = case.sample_images("--out", full / "deep" / "samples", "--chains", 40, "--trace", full / "t.json")
    else:
        argv = case.inpaint("--out", full / "deep" / "filled", "--samples", 40, "--gif", full / "chain.gif")
    message = assert_clean_error(run(*argv))
    assert "cannot write" in message and "No space left on device" in message, message
    assert str(full / "deep") in message
    assert sorted(p.name for p in full.rglob("*")) == ["filler"]


# ---- tiny temperatures: T = 0, never NaN --------------------------------------------------------------


TINY = ("1e-300", "5e-324", "1e-45", "1e-31")


@pytest.mark.parametrize("engine", ["torch", "numba"])
@pytest.mark.parametrize("tiny", TINY)
def test_a_tiny_temperature_samples_strings_as_zero_does(rbm, engine, tiny):
    if engine == "numba":
        pytest.importorskip("numba")
    common = [
        "sample",
        rbm,
        "--chains",
        5,
        "--steps",
        4,
        "--format",
        "jsonl",
        "--quiet",
        "--engine",
        engine,
        "--device",
        "cpu",
    ]
    zero, small = run(*common, "--temperature", 0), run(*common, "--temperature", tiny)
    assert_ok(zero), assert_ok(small)
    assert small.stdout == zero.stdout
    rows = [json.loads(line) for line in small.stdout.splitlines()]
    assert rows and all(r["text"] and math.isfinite(r["energy"]) for r in rows)  # it once gave empty strings


def test_annealing_down_to_a_tiny_temperature_stays_finite(rbm):
    result = run(
        "sample",
        rbm,
        "--chains",
        5,
        "--steps",
        6,
        "--temperature",
        "1.5:1e-300",
        "--format",
        "jsonl",
        "--quiet",
        "--engine",
        "torch",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert all(math.isfinite(json.loads(line)["energy"]) for line in result.stdout.splitlines())


@pytest.mark.parametrize("tiny", TINY)
def test_a_tiny_temperature_fills_images_as_zero_does(tmp_path, nade, tiny):
    def once(name, temperature):
        out = tmp_path / name
        assert_ok(
            run(
                "sample",
                nade,
                "--chains",
                3,
                "--steps",
                3,
                "--sampler",
                "ancestral",
                "--temperature",
                temperature,
                "--out",
                out,
                "--trace",
                out / "trace.json",
                "--quiet",
                "--device",
                "cpu",
            )
        )
        return snapshot(out)

    zero, small = once("zero", "0"), once("tiny", tiny)
    assert {k: v for k, v in small.items() if k.endswith(".png")} == {
        k: v for k, v in zero.items() if k.endswith(".png")
    }
    trace = json.loads(small["trace.json"])["mean_log_prob"]
    assert all(v is not None for row in trace for v in row[1:])  # null is how the trace writes NaN


def test_tempered_draws_never_see_nan_logits():
    """Below MIN_TEMPERATURE a draw is the argmax; just above it, logits are shifted so that the
    largest is 0 before dividing, so even logits of 1e30 stay finite. The naive softmax(z / T) (the
    old code) gives NaN for both, which is what is checked against."""
    from gibbsdream.sampling.categorical import MIN_TEMPERATURE, sample_bernoulli, sample_categorical

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, 7, generator=generator)
    argmax = logits.argmax(-1)
    for scale in (1.0, 1e8, 1e30):
        for temperature in (1e-300, 5e-324, MIN_TEMPERATURE / 2, MIN_TEMPERATURE, 2 * MIN_TEMPERATURE, 1e-20):
            z = logits * scale
            naive = torch.softmax(z / temperature, -1)
            if scale == 1e30 or temperature < 1e-38:
                assert naive.isnan().any()  # the wrong variant fails here
            assert torch.equal(sample_categorical(z, temperature, generator), argmax)
            assert torch.equal(sample_bernoulli(z, temperature, generator), (z > 0).to(z.dtype))
    for bad in (float("nan"), -1e-300):
        with pytest.raises(ValueError, match="temperature"):
            sample_categorical(logits, bad, generator)


def test_temperature_values_apply_the_rule_once():
    from gibbsdream.errors import UsageError
    from gibbsdream.sampling.categorical import MIN_TEMPERATURE
    from gibbsdream.sampling.schedules import temperature_schedule, temperature_values

    assert temperature_values(temperature_schedule("1e-300"), 3) == [0.0, 0.0, 0.0]
    assert temperature_values(temperature_schedule(MIN_TEMPERATURE), 1) == [MIN_TEMPERATURE]
    values = temperature_values(temperature_schedule("1:1e-300", "geometric"), 5)
    assert values[0] == 1.0 and values[-1] == 0.0 and all(v == 0 or v >= MIN_TEMPERATURE for v in values)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(UsageError, match="temperature"):
            temperature_values(lambda step, total, bad=bad: bad, 2)


def test_the_library_samples_tiny_temperatures_as_zero(rbm, nade):
    from gibbsdream import sample
    from gibbsdream.checkpoint import load_checkpoint

    model = load_checkpoint(rbm).model
    for engine in ("torch", "numba"):
        zero = sample(model, num_chains=4, steps=3, temperature=0, seed=1, engine=engine)
        tiny = sample(model, num_chains=4, steps=3, temperature=1e-300, seed=1, engine=engine)
        assert torch.equal(zero.samples, tiny.samples) and tiny.energy.isfinite().all()
    image_model = load_checkpoint(nade).model.eval()
    x = torch.zeros(3, 1, SIDE, SIDE, dtype=torch.long)
    known = torch.zeros_like(x, dtype=torch.bool)
    for sampler in ("gibbs", "ancestral"):
        zero = sample(image_model, x=x, known=known, steps=3, temperature=0, seed=2, sampler=sampler)
        tiny = sample(image_model, x=x, known=known, steps=3, temperature=1e-300, seed=2, sampler=sampler)
        assert torch.equal(zero.samples, tiny.samples) and not tiny.energy[1:].isnan().any()


# ---- the library says the same in Python terms -------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("weight_cost", float("nan")),
        ("learning_rate", float("inf")),
        ("momentum", float("nan")),
        ("validation_fraction", float("-inf")),
    ],
)
def test_rbm_config_refuses_non_finite_numbers(field, value):
    from gibbsdream.errors import UsageError
    from gibbsdream.training import RBMTrainConfig

    with pytest.raises(UsageError, match=f"RBMTrainConfig.{field} must be a finite number"):
        RBMTrainConfig(**{field: value}).check()


@pytest.mark.parametrize(
    "field, value",
    [
        ("grad_clip", float("nan")),
        ("weight_decay", float("nan")),
        ("max_time", float("inf")),
        ("caption_dropout", float("nan")),
    ],
)
def test_nade_config_refuses_non_finite_numbers(field, value):
    from gibbsdream.errors import UsageError
    from gibbsdream.training import NADETrainConfig

    with pytest.raises(UsageError, match=f"NADETrainConfig.{field} must be a finite number"):
        NADETrainConfig(**{field: value}).check()


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 1.5, "3"])
def test_seeds_are_checked_in_python_terms(seed):
    from gibbsdream.errors import UsageError
    from gibbsdream.training import RBMTrainConfig

    with pytest.raises(UsageError, match="seed must be a whole number"):
        RBMTrainConfig(seed=seed).check()


def test_the_captions_pickle_reader_bounds_the_expansion(tmp_path):
    from gibbsdream.data.captions import read_captions_pickle
    from gibbsdream.errors import UsageError

    path = expanding_captions_pickle(tmp_path, [f"im{i}.png" for i in range(30)])
    with pytest.raises(UsageError, match="expands to more than"):
        read_captions_pickle(path)
    looped = []
    looped.append(looped)  # a list that contains itself: infinite once expanded
    (tmp_path / "loop.pkl").write_bytes(pickle.dumps({"im0": looped}))
    with pytest.raises(UsageError, match="expands to more than"):
        read_captions_pickle(tmp_path / "loop.pkl")
    (tmp_path / "fine.pkl").write_bytes(pickle.dumps({"im0": ["a red square", "a square"], "im1": "a circle"}))
    assert read_captions_pickle(tmp_path / "fine.pkl") == {"im0": ["a red square", "a square"], "im1": ["a circle"]}
