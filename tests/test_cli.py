"""The command line: exit codes, stderr, output files, and what each command writes.

Each CLI process spends about two seconds importing torch, so running every check in its own
subprocess would take minutes. Instead: the one tiny RBM is trained in a subprocess, once per
module; a representative set of commands (one per kind of failure, and one sampling run) runs
as real subprocesses, in parallel; and the full matrix runs in this process through
``gibbsdream.cli.main(argv)`` (stdout, stderr and warnings captured, ``SystemExit`` turned into
an exit code, any other exception into a "Traceback" on stderr, as the interpreter would).
"""

import hashlib
import json
import math
import os
import random
import re
import shutil
import string
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from cli_harness import Result, assert_clean_error, assert_ok, gibbsdream, gibbsdream_here
from gibbsdream.checkpoint import checkpoint_file

WORKERS = max(2, min(4, (os.cpu_count() or 2) + 1))
CHAINS, STEPS = 6, 30


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = random.Random(1234)
    lines = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8))) for _ in range(300)]
    path = work / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model(work, corpus) -> Path:
    out = work / "model"
    # --monitor-every 1: the default when these tests were written (now "auto", which never checks a
    # corpus this small); test_the_engine_is_saved_and_can_be_changed_on_resume compares the checks.
    train = ("train", "rbm", "--data", corpus, "--out", out, "--hidden", 16, "--epochs", 2, "--monitor-every", 1)
    assert_ok(gibbsdream(*train, "--quiet"))
    return out


class Cases:
    """Paths and helpers for building the command lines of ``runs``."""

    def __init__(self, folder: Path, corpus: Path, model: Path):
        self.dir, self.corpus, self.model = folder, corpus, model
        folder.mkdir()

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.dir / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def copy(self, name: str) -> Path:
        """A private copy of the trained checkpoint, to damage or extend."""
        return Path(shutil.copytree(self.model, self.dir / name))

    def out(self, name: str) -> Path:
        """A fresh --out folder for a train command (that is expected to fail)."""
        return self.dir / f"out-{name}"

    def train(self, *args):
        return ["train", "rbm", "--hidden", 16, "--epochs", 2, "--quiet", *args]


def _truncated(cases: Cases, name: str) -> Path:
    folder = cases.copy(name)
    weights = checkpoint_file(folder, "model")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _flipped(cases: Cases, name: str) -> Path:
    folder = cases.copy(name)
    weights = checkpoint_file(folder, "model")
    payload = bytearray(weights.read_bytes())
    payload[len(payload) // 2] ^= 0xFF  # same size, one weight changed
    weights.write_bytes(bytes(payload))
    return folder


def _edited_config(cases: Cases, name: str, edit) -> Path:
    folder = cases.copy(name)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    edit(config)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _edited_config_text(cases: Cases, name: str, text: str) -> Path:
    folder = cases.copy(name)
    (folder / "config.json").write_text(text, encoding="utf-8")
    return folder


def _without_config(cases: Cases, name: str) -> Path:
    folder = cases.copy(name)  # the tensor files are there, config.json is not
    (folder / "config.json").unlink()
    return folder


def _trainer_state_from_a_gpu(cases: Cases, name: str) -> Path:
    """A checkpoint as if trained on a GPU: its RNG state is a CUDA generator's (16 bytes)."""
    from safetensors.torch import load_file, save

    folder = cases.copy(name)
    tensors = load_file(checkpoint_file(folder, "trainer"))
    tensors["generator_state"] = torch.zeros(16, dtype=torch.uint8)
    payload = save(tensors)
    checkpoint_file(folder, "trainer").write_bytes(payload)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["files"]["trainer"].update(sha256=hashlib.sha256(payload).hexdigest(), bytes=len(payload))
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _existing_output(cases: Cases) -> Path:
    return cases.file("existing.txt", "keep me\n")


# Each bad input: how to build its command line. Every one must fail cleanly (exit 2, one line).
BAD_INPUT = {
    "missing corpus file": lambda c: c.train("--data", c.dir / "nope.txt", "--out", c.out("missing")),
    "empty corpus": lambda c: c.train("--data", c.file("empty.txt", ""), "--out", c.out("empty")),
    "corpus of empty lines": lambda c: c.train("--data", c.file("blank.txt", "\n\n\r\n\n"), "--out", c.out("blank")),
    "corpus not UTF-8": lambda c: c.train(
        "--data", c.file("latin1.txt", "abc\ncafé\n".encode("latin-1")), "--out", c.out("latin1")
    ),
    "--hidden 0": lambda c: c.train("--data", c.corpus, "--out", c.out("hidden"), "--hidden", 0),
    "--epochs -1": lambda c: c.train("--data", c.corpus, "--out", c.out("epochs"), "--epochs", -1),
    "--engine fortran": lambda c: c.train("--data", c.corpus, "--out", c.out("engine"), "--engine", "fortran"),
    "sample --engine numba with --every": lambda c: ["sample", c.model, "--engine", "numba", "--every", 5],
    "--steps 0": lambda c: ["sample", c.model, "--steps", 0],
    "--replicas without replica exchange": lambda c: ["sample", c.model, "--replicas", 4],
    "--sampler confidence for strings": lambda c: ["sample", c.model, "--sampler", "confidence"],
    "replica exchange, annealed": lambda c: ["sample", c.model, "--sampler", "replica-exchange", "-t", "1:0.5"],
    "--chains 0": lambda c: ["sample", c.model, "--chains", 0],
    "--temperature -1": lambda c: ["sample", c.model, "--temperature", -1],
    "--temperature abc": lambda c: ["sample", c.model, "--temperature", "abc"],
    "geometric annealing to 0": lambda c: ["sample", c.model, "--temperature", "1:0", "--anneal", "geometric"],
    "checkpoint folder missing": lambda c: ["sample", c.dir / "no-such-checkpoint"],
    "folder without config.json": lambda c: ["sample", _without_config(c, "noconf")],
    "config.json not JSON": lambda c: ["sample", _edited_config_text(c, "notjson", "{not json")],
    "config.json from something else": lambda c: ["sample", _edited_config_text(c, "foreign", '{"foo": 1}')],
    "truncated weights: sample": lambda c: ["sample", _truncated(c, "trunc-sample"), "--steps", 5],
    "truncated weights: evaluate": lambda c: ["evaluate", _truncated(c, "trunc-eval"), "--data", c.corpus],
    "truncated weights: resume": lambda c: c.train(
        "--data", c.corpus, "--out", _truncated(c, "trunc-resume"), "--resume", "--epochs", 3
    ),
    "changed weights: sample": lambda c: ["sample", _flipped(c, "flipped"), "--steps", 5],
    "evaluate data outside the alphabet": lambda c: [
        "evaluate",
        c.model,
        "--data",
        c.file("alien.txt", "abc\nxyz\nABC!\n\nhello\n"),
        "--json",
    ],
    "--prefix longer than max length": lambda c: ["sample", c.model, "--prefix", "abcdefghijklmnop"],
    "--order with --format jsonl": lambda c: ["sample", c.model, "--order", "count", "--format", "jsonl"],
    "train into an existing checkpoint": lambda c: c.train("--data", c.corpus, "--out", c.copy("existing-ckpt")),
    "bad --temperature with an existing --out": lambda c: [
        "sample",
        c.model,
        "--temperature",
        "abc",
        "--out",
        _existing_output(c),
    ],
}

# Hand-edited checkpoints that once crashed the CLI instead of failing cleanly.
CRASHING = {
    "config.json without a codec": lambda c: [
        "sample",
        _edited_config(c, "nocodec", lambda d: d.update(codec=None)),
        "--steps",
        5,
    ],
    "config.json without a model entry": lambda c: [
        "sample",
        _edited_config(c, "nomodel", lambda d: d.pop("model")),
        "--steps",
        5,
    ],
    "resume on the CPU a run trained on a GPU": lambda c: c.train(
        "--data", c.corpus, "--out", _trainer_state_from_a_gpu(c, "gpu-trained"), "--resume", "--epochs", 3
    ),
}


# The bad inputs that also run as real subprocesses: one of each kind of failure.
IN_SUBPROCESS = (
    "missing corpus file",
    "--hidden 0",
    "--temperature abc",
    "checkpoint folder missing",
    "config.json from something else",
    "truncated weights: evaluate",
    "bad --temperature with an existing --out",
)


@pytest.fixture(scope="module")
def runs(work, corpus, model, single_thread) -> dict:
    """Run every command and return ``{name: Result}`` (subprocess results as ``("subprocess", name)``).

    The subprocesses start first and run in parallel threads while the in-process commands run.
    """
    here, sub = Cases(work / "here", corpus, model), Cases(work / "subprocess", corpus, model)
    sample = ["sample", model, "--chains", CHAINS, "--steps", STEPS, "--seed", 3, "--quiet"]
    subprocess_jobs = {
        "sample text": sample,
        **{("subprocess", name): BAD_INPUT[name](sub) for name in IN_SUBPROCESS},
    }
    jobs = {
        "sample text again": [*sample, "--device", "cpu"],
        "sample with the torch engine": [*sample, "--engine", "torch"],
        "sample out": [*sample, "--device", "cpu", "--out", here.dir / "samples" / "out.txt"],
        "sample out, not quiet": [*sample[:-1], "--out", here.dir / "samples" / "loud.txt"],
        "train, not quiet": ["train", "rbm", "--data", corpus, "--out", here.dir / "loud", "--epochs", 1],
        "sample prefix jsonl": [*sample, "--format", "jsonl", "--prefix", "ab"],
        "sample chain order": [*sample, "--order", "chain"],
        "sample diagnostics": [*sample, "--diagnostics"],
        "sample replica exchange": [*sample, "--sampler", "replica-exchange", "--replicas", 3, "-t", 0.5],
        "sample count order": [*sample, "--order", "count"],
        "sample jsonl": [*sample, "--format", "jsonl"],
        "sample every dedupe": [
            "sample",
            model,
            "--chains",
            4,
            "--steps",
            60,
            "--every",
            10,
            "--dedupe",
            "--format",
            "jsonl",
            "--quiet",
        ],
        "evaluate exact": ["evaluate", model, "--data", corpus, "--method", "exact", "--json"],
        "evaluate skip invalid": [
            "evaluate",
            model,
            "--data",
            here.file("mixed.txt", "abc\nxyz\nABC!\n\nhello\n"),
            "--skip-invalid",
            "--json",
        ],
        "resume": here.train("--data", corpus, "--out", here.copy("resume"), "--resume", "--epochs", 3),
        "resume with the torch engine": here.train(
            "--data", corpus, "--out", here.copy("resume-torch"), "--resume", "--epochs", 3, "--engine", "torch"
        ),
        **{name: build(here) for name, build in BAD_INPUT.items()},
        **{name: build(here) for name, build in CRASHING.items()},
    }
    for argv in jobs.values():  # the CPU here too, whether or not this machine has a GPU
        if "--device" not in argv:
            argv += ["--device", "cpu"]
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(gibbsdream, *argv) for name, argv in subprocess_jobs.items()}
        results = {name: gibbsdream_here(*argv) for name, argv in jobs.items()}
        results.update({name: future.result() for name, future in futures.items()})
    results["here"], results["subprocess"] = here, sub
    return results


# ---- train ---------------------------------------------------------------------------------------------


def test_train_writes_a_checkpoint(model):
    for name in ("model", "data", "trainer"):
        assert checkpoint_file(model, name).is_file(), name
    for name in ("config.json", "history.jsonl"):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["family"] == "rbm" and config["trainer"]["epoch"] == 2
    assert config["codec"]["max_length"] == 8 and set(config["codec"]["alphabet"]) <= set(string.ascii_lowercase)
    assert config["corpus"]["kept"] == 300
    history = [json.loads(line) for line in (model / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2]


def test_resume_continues_to_the_new_total(runs, model):
    assert_ok(runs["resume"])
    folder = runs["here"].dir / "resume"
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    before = [json.loads(line) for line in (model / "history.jsonl").read_text().splitlines()]
    assert history[:2] == before
    assert json.loads((folder / "config.json").read_text())["trainer"]["epoch"] == 3


def test_the_engine_is_saved_and_can_be_changed_on_resume(runs, model):
    assert json.loads((model / "config.json").read_text())["training"]["engine"] == "auto"
    result = runs["resume with the torch engine"]
    assert_ok(result)
    folder = runs["here"].dir / "resume-torch"
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["engine"] == "torch" and config["trainer"]["epoch"] == 3
    # the same random numbers in the same order: the third epoch's fantasy strings match the numba run's
    numba_run = [json.loads(line) for line in (runs["here"].dir / "resume" / "history.jsonl").read_text().splitlines()]
    torch_run = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert torch_run[2]["fantasy"] == numba_run[2]["fantasy"]


# ---- sample ---------------------------------------------------------------------------------------------

# "  12×  abc   -3.21   (in training data)": a count, a distinct string, its free energy.
TEXT_LINE = re.compile(r"^ +(\d+)×  ([a-z]*) +(-?\d+\.\d\d)( {3}\(in training data\))?$")
# The chain order's line, as sample has always written it: "    -3.21  abc   (in training data)".
CHAIN_LINE = re.compile(r"^ *(-?\d+\.\d\d)  ([a-z]*)( {3}\(in training data\))?$")


def _lines(result: Result, pattern: re.Pattern) -> list[re.Match]:
    assert_ok(result)
    lines = result.stdout.splitlines()
    matches = [pattern.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches) if not m]
    return matches


def test_sample_by_replica_exchange(runs):
    result = runs["sample replica exchange"]
    assert_ok(result)
    assert len(result.stdout.splitlines()) >= 1 and result.stdout != runs["sample text again"].stdout


def test_sample_diagnostics_say_whether_the_chains_mixed(runs):
    result = runs["sample diagnostics"]
    assert_ok(result)
    assert result.stdout == runs["sample text again"].stdout  # the samples are the same
    line = re.search(
        r"diagnostics of the trace, last 50% of the steps \((\d+) steps x (\d+) chains\): R-hat ([\d.]+)", result.stderr
    )
    assert line and int(line[2]) == CHAINS and float(line[3]) > 0.9, result.stderr


def test_sample_text_lists_each_string_once_likeliest_first(runs):
    result = runs["sample text"]  # a real subprocess
    assert result.stderr == ""  # --quiet
    lines = _lines(result, TEXT_LINE)
    texts, energies = [m[2] for m in lines], [float(m[3]) for m in lines]
    assert len(set(texts)) == len(texts) and sum(int(m[1]) for m in lines) == CHAINS
    assert energies == sorted(energies)  # free energy: lower is likelier
    # The same samples as the JSON records, one per sample: each string as often as its count says.
    records = _records(runs["sample jsonl"])
    assert sorted((m[2], int(m[1])) for m in lines) == sorted(
        (t, [r["text"] for r in records].count(t)) for t in {r["text"] for r in records}
    )
    for m in lines:
        mine = [r for r in records if r["text"] == m[2]]
        assert float(m[3]) == pytest.approx(min(r["energy"] for r in mine), abs=0.006)
        assert (m[4] is not None) is mine[0]["in_training_data"]


def test_sample_text_in_count_and_chain_order(runs):
    by_energy = [(m[1], m[2], m[3]) for m in _lines(runs["sample text"], TEXT_LINE)]
    by_count = [(m[1], m[2], m[3]) for m in _lines(runs["sample count order"], TEXT_LINE)]
    assert sorted(by_count) == sorted(by_energy)
    assert [int(c) for c, _, _ in by_count] == sorted((int(c) for c, _, _ in by_count), reverse=True)
    chain = _lines(runs["sample chain order"], CHAIN_LINE)  # one line per sample, in chain order
    assert [m[2] for m in chain] == [r["text"] for r in _records(runs["sample jsonl"])]
    assert sorted(m[2] for m in chain) == sorted(t for c, t, _ in by_energy for _ in range(int(c)))


def test_same_seed_gives_the_same_samples(runs):
    assert_ok(runs["sample text again"])
    assert runs["sample text again"].stdout == runs["sample text"].stdout


def test_both_sampling_engines_give_the_same_strings(runs):
    ours = _lines(runs["sample text"], TEXT_LINE)
    reference = _lines(runs["sample with the torch engine"], TEXT_LINE)
    assert sorted((m[1], m[2]) for m in ours) == sorted((m[1], m[2]) for m in reference)  # the same strings
    energy = {m[2]: float(m[3]) for m in reference}
    assert [float(m[3]) for m in ours] == pytest.approx([energy[m[2]] for m in ours], abs=0.011)  # to the digits


def test_sample_out_file(runs):
    result = runs["sample out"]
    assert_ok(result)
    assert result.stdout == ""
    written = (runs["here"].dir / "samples" / "out.txt").read_text(encoding="utf-8")
    assert written == runs["sample text"].stdout  # same seed, same samples, now in the file


def test_commands_name_what_they_wrote(runs):
    here = runs["here"].dir
    result = runs["sample out, not quiet"]
    assert_ok(result)
    assert result.stderr.splitlines()[-1] == f"wrote {here / 'samples' / 'loud.txt'}"
    assert re.search(r"^yield \d+: new distinct strings .* per 1,000 chain-sweeps", result.stderr, re.M), result.stderr
    result = runs["train, not quiet"]
    assert_ok(result)
    assert result.stderr.splitlines()[-1].startswith(f"wrote {here / 'loud'} (a checkpoint, 1 epochs); try: ")


def _records(result: Result) -> list[dict]:
    assert_ok(result)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sample_jsonl_with_prefix(runs, corpus):
    records = _records(runs["sample prefix jsonl"])
    assert len(records) == CHAINS
    training = set(corpus.read_text().splitlines())
    for r in records:
        assert set(r) == {"text", "energy", "in_training_data", "chain", "step"}
        assert isinstance(r["text"], str) and r["text"].startswith("ab"), r
        assert isinstance(r["energy"], (int, float)) and math.isfinite(r["energy"])
        assert r["in_training_data"] is (r["text"] in training)
        assert r["step"] == STEPS
    assert sorted(r["chain"] for r in records) == list(range(CHAINS))


def test_sample_every_with_dedupe(runs):
    records = _records(runs["sample every dedupe"])
    by_chain = {}
    for r in records:
        assert set(r) == {"text", "energy", "in_training_data", "chain", "step"}
        by_chain.setdefault(r["chain"], []).append(r)
    assert sorted(by_chain) == [0, 1, 2, 3]
    for rows in by_chain.values():
        texts = [r["text"] for r in rows]
        assert len(texts) == len(set(texts)), texts  # no repeats within a chain
        steps = [r["step"] for r in rows]
        assert steps == sorted(steps) and set(steps) <= set(range(10, 61, 10))  # never step 0, the start
        assert steps[0] == 10  # the first sample is always new


# ---- evaluate -----------------------------------------------------------------------------------------


def test_evaluate_exact_json(runs):
    result = runs["evaluate exact"]
    assert_ok(result)
    report = json.loads(result.stdout)
    assert {"mean_log_likelihood", "log_z", "log_z_method"} <= set(report)
    assert report["log_z_method"] == "exact" and report["log_z_stderr"] == 0.0
    assert report["strings"] == 300 and report["skipped"] == 0
    assert math.isfinite(report["log_z"])
    assert math.isfinite(report["mean_log_likelihood"]) and report["mean_log_likelihood"] < 0


def test_evaluate_skip_invalid(runs):
    message = assert_clean_error(runs["evaluate data outside the alphabet"])
    assert "--skip-invalid" in message
    result = runs["evaluate skip invalid"]
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["strings"] == 3 and report["skipped"] == 2  # 'ABC!' and the empty line
    assert math.isfinite(report["mean_log_likelihood"])


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_cleanly(runs, case):
    assert_clean_error(runs[case])


@pytest.mark.parametrize("case", IN_SUBPROCESS)
def test_bad_input_fails_cleanly_in_a_subprocess(runs, case):
    message = assert_clean_error(runs[("subprocess", case)])
    assert message == assert_clean_error(runs[case]).replace(str(runs["here"].dir), str(runs["subprocess"].dir))


def _out_folder(result: Result) -> Path:
    return Path(result.args[result.args.index("--out") + 1])


@pytest.mark.parametrize(
    "case",
    [
        "missing corpus file",
        "empty corpus",
        "corpus of empty lines",
        "corpus not UTF-8",
        "--hidden 0",
        "--epochs -1",
        ("subprocess", "missing corpus file"),
        ("subprocess", "--hidden 0"),
    ],
)
def test_failed_train_leaves_no_output_folder(runs, case):
    assert_clean_error(runs[case])
    assert not _out_folder(runs[case]).exists()


def test_failed_train_keeps_the_existing_checkpoint(runs, model):
    assert_clean_error(runs["train into an existing checkpoint"])
    folder = runs["here"].dir / "existing-ckpt"
    for name in ("config.json", checkpoint_file(model, "model").name, "history.jsonl"):
        assert (folder / name).read_bytes() == (model / name).read_bytes()


@pytest.mark.parametrize("where", ["here", "subprocess"])
def test_failed_sample_does_not_clobber_out(runs, where):
    case = "bad --temperature with an existing --out"
    assert_clean_error(runs[case] if where == "here" else runs[("subprocess", case)])
    assert (runs[where].dir / "existing.txt").read_text() == "keep me\n"


@pytest.mark.parametrize(
    "case",
    [
        "config.json without a codec",
        "config.json without a model entry",
    ],
)
def test_hand_edited_checkpoint_fails_cleanly(runs, case):
    assert_clean_error(runs[case])


def test_resume_on_another_kind_of_device_reseeds_with_a_note(runs):
    result = runs["resume on the CPU a run trained on a GPU"]
    assert_ok(result)
    assert "note: the checkpoint was saved on another kind of device" in result.stderr


def test_resuming_a_checkpoint_not_written_by_train_fails_cleanly(tmp_path, corpus):
    from gibbsdream import RBM, StringCodec
    from gibbsdream.checkpoint import save_checkpoint

    codec = StringCodec(alphabet="abc", max_length=4)
    save_checkpoint(tmp_path / "bare", RBM(4, 3, codec.num_categories), codec=codec)
    message = assert_clean_error(
        gibbsdream_here("train", "rbm", "--data", corpus, "--out", tmp_path / "bare", "--resume")
    )
    assert "cannot be resumed" in message


def test_demo_trains_and_shows_plain_and_annealed_samples(tmp_path, single_thread):
    result = gibbsdream_here("demo", "--out", tmp_path / "demo", "--epochs", 1, "--chains", 2, "--steps", 5)
    assert_ok(result)
    assert (tmp_path / "demo" / "config.json").is_file()
    assert f"wrote {tmp_path / 'demo'} (the demo's checkpoint)" in result.stderr
    assert "1.5" in result.stdout and result.stdout.count("\n") >= 4
