"""Golden outputs of the command line: ``train rbm`` (both engines), ``sample``, ``evaluate``,
``train nade``, ``inpaint`` and ``sweep``, run with fixed seeds on tiny data, give what the code
before the "one library under every front end" refactor (issue 15) gave, recorded in
``tests/golden/``.

What is compared:

* strings, integer counts, integer tensors and pixels exactly (pixels as the SHA-256 of the decoded
  arrays, GIF frames converted to RGB, so a change of encoder that keeps the picture passes);
* floats with ``pytest.approx(rel=1e-5, abs=1e-6)``;
* an output may gain fields (or a folder files) it did not have; every recorded one must still be
  there, with its value (``test_the_comparison`` shows each rule);
* the saved weights through a digest per tensor (shape, dtype, sum, sum of squares, a weighted sum,
  largest magnitude, first 8 values) under the same tolerance: float rounding passes (every weight
  moved by about one float32 ulp), a change of what is computed does not (every weight scaled by
  1 + 1e-4); both shown in ``test_train_rbm_torch_engine``.

Left out, because they vary from run to run or name this run's folders: seconds, elapsed times,
the command line, the library version and the checkpoint hash a sweep records; the temporary
folder's path is replaced by ``<work>``. A sweep's page (it shows times) and its matplotlib plots
(their bytes depend on matplotlib and its fonts, which the fingerprint below does not cover) are
checked for presence only; what they show is in the sweep's JSON files, which are compared.

Float results differ between CPUs (PyTorch, its BLAS and numba pick SIMD kernels by CPU), so
``tests/golden/machine.json`` holds a fingerprint of the machine that recorded the goldens: library
versions, PyTorch's CPU capability and the SHA-256 of a few seeded float computations. Where the
running machine's fingerprint differs, every test here skips, naming what differs; on the recording
machine any change of output fails.

Regenerate with::

    GIBBSDREAM_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden_cli.py

which rewrites every file in ``tests/golden/`` and then skips each test. That is legitimate only on
code whose outputs are the reference: before a behaviour-preserving refactor (for issue 15, the
commit before it, 86a3c67), or on another machine from that same commit to record goldens for it.
Regenerating with the refactored code would make this test prove nothing.

A deliberate change of what a command presents re-records only the entries it changes, once the
sampled values are shown to be the same (each commit says how): ``sample_rbm``'s ``text`` (each
distinct string once, with its count; ``text_chain_order`` keeps the old form and equals the old
recording) and ``torch_every_prefix`` (``--every`` records leave out step 0, the chain's start: the
old records without those), ``sweep_nade``'s GIFs (the true image as a first picture; the chains'
pictures equal the old GIFs) and ``inpaint_nade``'s comparison pictures (new files).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cli_harness import assert_ok, gibbsdream_here, one_torch_thread
from gibbsdream.checkpoint import checkpoint_file

run = gibbsdream_here

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("GIBBSDREAM_REGENERATE_GOLDEN") == "1"
REL, ABS = 1e-5, 1e-6
# Fields whose values differ between two runs of the same command, or that name the run.
VOLATILE = frozenset({"seconds", "elapsed", "created", "command", "library_version", "checkpoint_sha256"})
# A sweep's page (it shows times) and plots (their bytes depend on matplotlib and fonts): presence only.
PRESENCE_ONLY = frozenset({"index.html", "trace.png", "energy-diversity.png"})
# The empty file a writer holds an flock on (gibbsdream.files.LOCK_NAME, spelt out so that this test
# depends on nothing but the commands): how a folder is guarded, not what the command made.
IGNORED = frozenset({".lock"})
FIRST_VALUES = 8
LEVELS = 4
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)  # the 8-bit values of the 4 levels

# An RBM small enough for exact evaluation (5 positions, 7 categories, 8 hidden units), trained with
# PCD-2 for a few epochs; and a NADE a little trained on the built-in 8x8 digits in 4 levels.
# --monitor-every 1 was the default when these goldens were recorded (now "auto", which checks a corpus
# this small never: one check costs more than a tenth of its training); given, the checks are recorded.
TRAIN_RBM = (
    "--hidden 8 --epochs 3 --batch-size 20 --cd-steps 2 --persistent --seed 1 --validation-fraction 0.1"
    " --monitor-every 1"
)
TRAIN_NADE = f"--data builtin:digits --levels {LEVELS} --width 8 --depth 2 --epochs 2 --batch-size 256 --seed 0"
QUIET_CPU = "--quiet --device cpu"


# ---- comparing ------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mismatches(expected, observed, where: str = "") -> list[str]:
    """Every place where ``observed`` differs from ``expected`` (nested dicts and lists of JSON values):
    floats within ``REL``/``ABS``, everything else exactly; a dict may hold keys ``expected`` lacks."""
    if isinstance(expected, dict) and isinstance(observed, dict):
        # A field or file the command did not write before is allowed (issue 15 adds some, e.g. what
        # quantity a trace holds); every recorded one must still be there, with its value.
        missing = [key for key in expected if key not in observed]
        found = [f"{where or '.'}: recorded keys missing now: {missing}"] if missing else []
        for key in (key for key in expected if key in observed):  # in the recorded order, run after run
            found += mismatches(expected[key], observed[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(observed, list):
        if len(expected) != len(observed):
            return [f"{where}: {len(expected)} items recorded, {len(observed)} now"]
        return [m for i, (e, o) in enumerate(zip(expected, observed)) for m in mismatches(e, o, f"{where}[{i}]")]
    if isinstance(expected, float) or isinstance(observed, float):
        if (
            _is_number(expected)
            and _is_number(observed)
            and observed == pytest.approx(expected, rel=REL, abs=ABS, nan_ok=True)
        ):
            return []
        return [f"{where}: recorded {expected!r}, now {observed!r}"]
    if type(expected) is not type(observed) or expected != observed:
        return [f"{where}: recorded {expected!r}, now {observed!r}"]
    return []


def assert_matches(expected, observed) -> None:
    found = mismatches(expected, observed)
    assert not found, f"{len(found)} difference(s) from the golden:\n" + "\n".join(found[:30])


def test_the_comparison():
    recorded = {"text": "abc", "count": 3, "energy": -1.25, "pixels": [0, 85], "nested": {"x": 0.5}}
    assert mismatches(recorded, recorded) == []
    assert mismatches(recorded, {**recorded, "energy": -1.25 * (1 + 5e-6)}) == []  # within rel=1e-5
    assert mismatches(recorded, {**recorded, "new_field": 1}) == []  # a new field is allowed
    wrong = [
        ({**recorded, "text": "abd"}, ".text"),
        ({**recorded, "count": 4}, ".count"),
        ({**recorded, "count": True}, ".count"),  # a bool is not the number it equals
        ({**recorded, "energy": -1.25 * (1 + 2e-5)}, ".energy"),
        ({**recorded, "energy": "-1.25"}, ".energy"),
        ({**recorded, "pixels": [0, 85, 170]}, ".pixels"),
        ({**recorded, "pixels": [0, 86]}, ".pixels[1]"),
        ({**recorded, "nested": {"x": 0.6}}, ".nested.x"),
        ({k: v for k, v in recorded.items() if k != "nested"}, "['nested']"),
    ]
    for observed, where in wrong:
        found = mismatches(recorded, observed)
        assert len(found) == 1 and where in found[0], (observed, found)
    assert mismatches({"x": 0.0}, {"x": 5e-7}) == [] and mismatches({"x": 0.0}, {"x": 2e-6}) != []  # abs=1e-6


def golden(name: str, observed) -> dict:
    """The recorded outputs ``tests/golden/NAME.json``; in a regeneration run, write ``observed``
    there instead and skip the rest of the test."""
    path = GOLDEN / f"{name}.json"
    if REGENERATE:
        _write_json(path, observed)
        pytest.skip(f"regenerated {path.name}")
    if not path.exists():
        pytest.fail(f"{path} is missing; see this module's docstring for how (and when) to record it")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---- the machine ---------------------------------------------------------------------------------


def _sha256(tensor: torch.Tensor | np.ndarray) -> str:
    array = tensor.numpy() if isinstance(tensor, torch.Tensor) else tensor
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def machine_fingerprint() -> dict:
    """What decides the float results here: versions, PyTorch's SIMD path, and the exact bits of a
    matrix product (BLAS), a log-softmax (vectorised exp/log), a convolution (the NADE's kernels) and
    a numba-compiled exp/log loop (the RBM's default engine), all seeded and on one thread as the
    commands run in these tests."""
    with one_torch_thread():
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(257, 129, generator=gen), torch.randn(129, 65, generator=gen)
        logits = 5 * torch.randn(64, 33, generator=gen)
        images, kernels = torch.randn(4, 3, 11, 11, generator=gen), torch.randn(5, 3, 3, 3, generator=gen)
        fingerprint = {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "matmul_sha256": _sha256(a @ b),
            "log_softmax_sha256": _sha256(torch.log_softmax(logits, -1)),
            "conv2d_sha256": _sha256(torch.nn.functional.conv2d(images, kernels, padding=2, dilation=2)),
        }
    try:
        import numba  # an optional dependency: without it the default engine is the torch one
    except ImportError:
        fingerprint["numba"] = None
    else:
        probe = numba.njit(lambda x: np.log1p(np.exp(x)) + np.exp(-x) * np.log(x * x + 1.0))
        fingerprint["numba"] = numba.__version__
        fingerprint["numba_sha256"] = _sha256(probe(np.linspace(-8, 8, 1001, dtype=np.float32)))
    return fingerprint


@pytest.fixture(scope="module")
def same_machine():
    """Skip every test here on a machine whose floats may differ from the recording machine's."""
    here = machine_fingerprint()
    path = GOLDEN / "machine.json"
    if REGENERATE:
        _write_json(path, here)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; see this module's docstring for how (and when) to record it")
    recorded = json.loads(path.read_text(encoding="utf-8"))
    differs = [
        f"{key}: recorded {recorded.get(key)!r}, here {here.get(key)!r}"
        for key in sorted(recorded.keys() | here.keys())
        if recorded.get(key) != here.get(key)
    ]
    if differs:
        pytest.skip(
            "the goldens were recorded on a machine whose float results may differ from this one's ("
            + "; ".join(differs)
            + "); record them here from the pre-refactor commit to use them"
        )


# ---- what the commands wrote, as JSON values -----------------------------------------------------


def scrub(value, work: Path):
    """``value`` without the ``VOLATILE`` fields, the work folder's path written ``<work>``."""
    if isinstance(value, dict):
        return {k: scrub(v, work) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v, work) for v in value]
    if isinstance(value, str):
        return value.replace(str(work), "<work>")
    return value


def tensor_digest(tensors: dict[str, torch.Tensor]) -> dict:
    """Per tensor: shape, dtype, sum, sum of squares, a weighted sum (weights 1..101 in a scrambled
    cycle, so that moving values around shows), largest magnitude and the first values; integer
    tensors give integers (compared exactly), float tensors float64 sums (compared with tolerance)."""
    digest = {}
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu()
        flat = tensor.reshape(-1)
        weights = 1 + (torch.arange(flat.numel(), dtype=torch.int64) * 7919) % 101
        values = flat.double() if tensor.is_floating_point() else flat.long()
        digest[name] = {
            "shape": list(tensor.shape),
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "sum": values.sum().item(),
            "sum_squares": (values * values).sum().item(),
            "weighted_sum": (values * weights.to(values.dtype)).sum().item(),
            "max_abs": values.abs().max().item() if values.numel() else 0,
            "first": values[:FIRST_VALUES].tolist(),
        }
    return digest


def saved_tensors(folder: Path, part: str) -> dict[str, torch.Tensor]:
    return load_file(checkpoint_file(folder, part))


def history(folder: Path, work: Path) -> list[dict]:
    lines = (folder / "history.jsonl").read_text(encoding="utf-8").splitlines()
    return [scrub(json.loads(line), work) for line in lines if line]


def picture(path: Path) -> dict:
    """A PNG or GIF as its decoded pixels: every frame, GIFs in RGB (their palette is the encoder's choice)."""
    with Image.open(path) as image:
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            decoded = image.convert("RGB") if image.format == "GIF" else image
            frames.append(np.asarray(decoded))
        mode = decoded.mode
    pixels = np.stack(frames)
    return {
        "mode": mode,
        "frames": len(frames),
        "shape": list(frames[0].shape),
        "pixels_sha256": _sha256(pixels),
        "mean": float(pixels.mean()),
    }


def file_output(path: Path, work: Path):
    if path.name in PRESENCE_ONLY:
        return "present"
    if path.suffix in (".png", ".gif"):
        return picture(path)
    if path.suffix == ".json":
        return scrub(json.loads(path.read_text(encoding="utf-8")), work)
    raise AssertionError(f"no rule for comparing {path}")  # a new kind of output: decide how to record it


def folder_outputs(folder: Path, work: Path) -> dict:
    """Every file under ``folder`` (by relative path) as a JSON value."""
    return {
        path.relative_to(folder).as_posix(): file_output(path, work)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in IGNORED
    }


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def command(*parts) -> list[str]:
    """A command line: strings are split at spaces (no value here holds one), paths and numbers kept whole."""
    return [word for part in parts for word in (part.split() if isinstance(part, str) else [str(part)])]


def ok(*parts) -> str:
    """Run the command in this process; its stdout, once it has succeeded."""
    result = run(*command(*parts))
    assert_ok(result)
    return result.stdout


# ---- fixtures: the trained models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def work(same_machine, tmp_path_factory) -> Path:
    """Every test that runs a command needs this folder, so they all skip where the machine differs."""
    return tmp_path_factory.mktemp("golden")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = random.Random(2024)
    lines = ["".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5))) for _ in range(120)]
    path = work / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rbm_torch(work, corpus) -> Path:
    out = work / "rbm-torch"
    ok("train rbm --data", corpus, "--out", out, TRAIN_RBM, QUIET_CPU, "--engine torch")
    return out


@pytest.fixture(scope="module")
def rbm_default(work, corpus) -> Path:
    # The default engine: numba where it can run (deterministic here: one thread for 8 hidden units).
    # Its weights differ from the torch engine's by float rounding only (at most 3e-7 absolute, within
    # this file's tolerance), so this golden checks the command's outputs, not which engine ran.
    out = work / "rbm-default"
    ok("train rbm --data", corpus, "--out", out, TRAIN_RBM, QUIET_CPU)
    return out


@pytest.fixture(scope="module")
def nade(work) -> Path:
    out = work / "nade"
    ok("train nade", TRAIN_NADE, QUIET_CPU, "--out", out)
    return out


@pytest.fixture(scope="module")
def digit_png(work) -> Path:
    """One 8x8 grayscale image in the 4 levels' exact values (inpaint reads it from a file)."""
    rng = np.random.default_rng(11)
    path = work / "digit.png"
    Image.fromarray(EXACT[rng.integers(0, LEVELS, (8, 8))]).save(path)
    return path


# ---- string models ------------------------------------------------------------------------------


def trained_outputs(folder: Path, work: Path, model: dict[str, torch.Tensor] | None = None) -> dict:
    model = saved_tensors(folder, "model") if model is None else model
    return {
        "model": tensor_digest(model),
        "data": tensor_digest(saved_tensors(folder, "data")),
        "history": history(folder, work),
    }


def test_train_rbm_torch_engine(rbm_torch, work):
    observed = trained_outputs(rbm_torch, work)
    expected = golden("train_rbm_torch", observed)
    assert_matches(expected, observed)
    # The digest's tolerance lets float rounding through (every weight off by a relative 1e-7, about
    # one float32 ulp) and stops a real change (every weight off by a relative 1e-4).
    model = saved_tensors(rbm_torch, "model")
    rng = torch.Generator().manual_seed(0)

    def jittered(relative: float) -> dict:
        return {k: v * (1 + relative * torch.randn(v.shape, generator=rng).sign()) for k, v in model.items()}

    assert_matches(expected, trained_outputs(rbm_torch, work, jittered(1e-7)))
    scaled = trained_outputs(rbm_torch, work, {k: v * (1 + 1e-4) for k, v in model.items()})
    assert any(m.startswith(".model.weight.") for m in mismatches(expected, scaled))


def test_train_rbm_default_engine(rbm_default, work):
    observed = trained_outputs(rbm_default, work)
    assert_matches(golden("train_rbm_default", observed), observed)


def _sample_rbm(rbm: Path, seed: int) -> dict:
    settings = f"--chains 5 --steps 20 --temperature 1.5:0.2 --seed {seed} {QUIET_CPU}"
    every = "--chains 4 --steps 12 --temperature 2:0.5 --anneal linear --init train --every 4 --dedupe --prefix a"
    return {
        "jsonl": jsonl(ok("sample", rbm, settings, "--format jsonl")),
        "text": ok("sample", rbm, settings).splitlines(),
        "text_chain_order": ok("sample", rbm, settings, "--order chain").splitlines(),  # the text before --order
        "torch_every_prefix": jsonl(
            ok("sample", rbm, every, f"--final argmax --engine torch --format jsonl --seed {seed}", QUIET_CPU)
        ),
    }


def test_sample_rbm(rbm_torch):
    observed = _sample_rbm(rbm_torch, seed=3)
    expected = golden("sample_rbm", observed)
    assert_matches(expected, observed)
    other = _sample_rbm(rbm_torch, seed=4)  # another seed: other samples
    assert any(m.startswith(".jsonl[") and ".text:" in m for m in mismatches(expected, other))


def test_evaluate_rbm(rbm_torch, corpus, work):
    evaluate = ("evaluate", rbm_torch, "--data", corpus, "--json", QUIET_CPU)
    observed = {
        "exact": json.loads(ok(*evaluate, "--method exact")),
        "ais": json.loads(ok(*evaluate, "--method ais --ais-runs 20 --ais-betas 200 --seed 1")),
    }
    observed = scrub(observed, work)
    assert_matches(golden("evaluate_rbm", observed), observed)


def test_sweep_rbm(rbm_torch, work):
    out = work / "sweep-rbm"
    ok("sweep", rbm_torch, "--grid temperature=1,1.5:0.2 --grid steps=10 --chains 4 --seed 2 --out", out, QUIET_CPU)
    observed = folder_outputs(out, work)
    assert_matches(golden("sweep_rbm", observed), observed)


# ---- image models -------------------------------------------------------------------------------


def test_train_nade(nade, work):
    observed = trained_outputs(nade, work)
    assert_matches(golden("train_nade", observed), observed)


def _inpaint_heldout(nade: Path, out: Path, seed: int, work: Path) -> dict:
    settings = f"--image heldout:2 --mask centre --steps 8 --samples 2 --temperature 1.5:0.5 --every 2 --seed {seed}"
    ok("inpaint", nade, settings, "--trace", out / "trace.json", "--gif", out / "chains.gif", "--out", out, QUIET_CPU)
    return folder_outputs(out, work)


def test_inpaint_nade(nade, digit_png, work):
    out = work / "inpaint-file"
    from_file = ("--image", digit_png, "--mask random:0.4 --sampler ancestral --temperature 0.8 --seed 6")
    ok("inpaint", nade, *from_file, "--trace", out / "trace.json", "--out", out / "out.png", QUIET_CPU)
    observed = {
        "heldout_gibbs": _inpaint_heldout(nade, work / "inpaint-heldout", 5, work),
        "file_ancestral": folder_outputs(out, work),
    }
    expected = golden("inpaint_nade", observed)
    assert_matches(expected, observed)
    other = _inpaint_heldout(nade, work / "inpaint-other", 6, work)  # another seed: other pixels
    assert any(".png.pixels_sha256:" in m for m in mismatches(expected["heldout_gibbs"], other))


def test_sample_nade(nade, work):
    gibbs, blocks = work / "sample-nade-gibbs", work / "sample-nade-ancestral-gibbs"
    with_gif = ("--num-samples 3 --steps 6 --seed 2 --every 3 --gif", gibbs / "chains.gif")
    ok("sample", nade, *with_gif, "--trace", gibbs / "trace.json", "--out", gibbs, QUIET_CPU)
    blocked = "--num-samples 2 --steps 5 --sampler ancestral-gibbs --block 0.5 --temperature 0.8 --seed 3"
    ok("sample", nade, blocked, "--trace", blocks / "trace.json", "--out", blocks, QUIET_CPU)
    observed = {"gibbs": folder_outputs(gibbs, work), "ancestral_gibbs": folder_outputs(blocks, work)}
    assert_matches(golden("sample_nade", observed), observed)


def test_evaluate_nade(nade, work):
    stdout = ok("evaluate", nade, "--orders 3 --max-images 6 --batch-size 64 --seed 1 --json", QUIET_CPU)
    observed = scrub(json.loads(stdout), work)
    assert_matches(golden("evaluate_nade", observed), observed)


def test_sweep_nade(nade, work):
    out = work / "sweep-nade"
    ok("sweep", nade, "--grid temperature=1,0.5 --grid steps=4 --problems 2 --samples 2 --seed 2 --out", out, QUIET_CPU)
    observed = folder_outputs(out, work)
    assert_matches(golden("sweep_nade", observed), observed)
