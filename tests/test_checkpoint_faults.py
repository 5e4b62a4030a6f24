"""Fault injection: a save killed after each of its file operations in turn, or at a random instant,
or stopped by a full disk, a signal or a second writer, never loses the last good checkpoint, and
``--resume`` then ends bit-for-bit where an uninterrupted run ends.

The kills use the checkpoint module's test hook: with ``GIBBSDREAM_FAULT_AFTER=N`` the process
sends itself SIGKILL (or ``GIBBSDREAM_FAULT_SIGNAL``) after the N-th file operation of its writes
(each temporary file written, fsynced, renamed; each leftover removed). Every run is a real
``gibbsdream`` subprocess. The default run tries every third operation; ``-m slow`` tries all.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_harness import ENV, assert_clean_error
from gibbsdream.checkpoint import checkpoint_file, load_checkpoint
from gibbsdream.errors import UsageError

RBM_TRAIN = ["train", "rbm", "--hidden", 8, "--persistent", "--quiet", "--engine", "torch"]
RBM_EPOCHS = 3
NADE_TRAIN = [
    "train",
    "nade",
    "--data",
    "builtin:digits",
    "--levels",
    4,
    "--width",
    8,
    "--depth",
    1,
    "--batch-size",
    256,
    "--test-size",
    1500,
    "--quiet",
    "--device",
    "cpu",
]
NADE_EPOCHS = 2


def cli(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gibbsdream.cli", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**ENV, **(env or {})},
        # As in a terminal: a test run started in the background of a script inherits SIGINT
        # ignored (POSIX shells do that to background jobs), and so would every command here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def killed_at(point: int, signal_name: str = "KILL") -> dict:
    return {"GIBBSDREAM_FAULT_AFTER": str(point), "GIBBSDREAM_FAULT_SIGNAL": signal_name}


def tensors(folder: Path, name: str) -> dict:
    return load_file(checkpoint_file(folder, name))


def same_checkpoint(a: Path, b: Path) -> bool:
    """Bit-for-bit the same weights, training state and history (but for wall-clock times)."""
    for name in ("model", "trainer"):
        x, y = tensors(a, name), tensors(b, name)
        if x.keys() != y.keys() or any(not torch.equal(x[k], y[k]) for k in x):
            return False
    clocks = ("seconds", "elapsed")
    rows = [[{k: v for k, v in row.items() if k not in clocks} for row in load_checkpoint(f).history] for f in (a, b)]
    return rows[0] == rows[1]


def _config_epoch(folder: Path) -> int | None:
    """The epoch config.json names, read without loading (None while there is none, or mid-rename)."""
    try:
        return json.loads((folder / "config.json").read_text())["trainer"]["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def saved_epoch(folder: Path) -> int | None:
    """The epoch of the checkpoint in ``folder`` (loaded in full), or None where none was committed."""
    if not (folder / "config.json").exists():
        return None
    return load_checkpoint(folder).config["trainer"]["epoch"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = random.Random(99)
    path = work / "corpus.txt"
    path.write_text(
        "\n".join("".join(rng.choice(string.ascii_lowercase[:8]) for _ in range(rng.randint(3, 6))) for _ in range(200))
        + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def rbm_straight(work, corpus) -> Path:
    out = work / "rbm-straight"
    done = cli(*RBM_TRAIN, "--data", corpus, "--epochs", RBM_EPOCHS, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def _kill_and_resume(
    work: Path, name: str, train: list, epochs: int, straight: Path, point: int, signal_name: str = "KILL"
) -> tuple[int, int | None]:
    """Train with a fault at ``point``; check the folder; resume (or start again) to ``epochs``;
    compare with ``straight``. Returns (exit code of the faulted run, epoch found after it)."""
    out = work / f"{name}-{signal_name}-{point}"
    faulted = cli(*train, "--epochs", epochs, "--out", out, env=killed_at(point, signal_name))
    epoch = saved_epoch(out)  # loads every file: raises if the kill left a broken checkpoint
    again = ["--resume"] if epoch is not None else []
    if faulted.returncode != 0:
        finished = cli(*train, "--epochs", epochs, "--out", out, *again)
        assert finished.returncode == 0, finished.stderr
    assert same_checkpoint(out, straight), f"fault after operation {point}: resumed run differs"
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock")
    assert leftovers == [], leftovers  # the resumed run's saves removed what the killed one left
    shutil.rmtree(out)
    return faulted.returncode, epoch


def _points(stride: int) -> list[int]:
    return list(range(1, 200, stride))


def _sweep_points(work, name, train, epochs, straight, stride):
    """Fault after operation 1, 1 + stride, ... until a run no longer reaches its fault point."""
    seen = []
    for point in _points(stride):
        code, epoch = _kill_and_resume(work, name, train, epochs, straight, point)
        seen.append((point, code, epoch))
        if code == 0:  # the whole run has fewer operations than this: every save was tried
            break
    else:
        pytest.fail("the fault point was never passed")
    codes = [code for _, code, _ in seen]
    assert codes[:-1] == [-signal.SIGKILL] * (len(codes) - 1)
    epochs_found = [epoch for _, _, epoch in seen]
    assert epochs_found == sorted(epochs_found, key=lambda e: -1 if e is None else e)  # never goes back
    report(
        name,
        f"{len(seen) - 1} kills (after operations {', '.join(str(p) for p, _, _ in seen[:-1])} of "
        f"{epochs} saves), all loadable and resumed bit-for-bit",
    )
    return seen


def report(name: str, text: str) -> None:
    """A line for docs/reliability.md's figures (shown with ``pytest -s``)."""
    print(f"\nFAULTS {name}: {text}")


@pytest.mark.parametrize(
    "stride", [pytest.param(9, id="every-ninth"), pytest.param(1, id="every", marks=pytest.mark.slow)]
)
def test_rbm_training_killed_after_each_file_operation(work, corpus, rbm_straight, stride):
    seen = _sweep_points(work, "rbm", [*RBM_TRAIN, "--data", corpus], RBM_EPOCHS, rbm_straight, stride)
    assert len(seen) >= 30 // stride  # three saves of several operations each were interrupted
    found = {epoch for _, _, epoch in seen}
    assert None in found and len(found) >= 3
    if stride == 1:
        assert found == {None, 1, 2, 3}


@pytest.fixture(scope="module")
def nade_straight(work) -> Path:
    out = work / "nade-straight"
    done = cli(*NADE_TRAIN, "--epochs", NADE_EPOCHS, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize(
    "stride", [pytest.param(13, id="every-13th"), pytest.param(1, id="every", marks=pytest.mark.slow)]
)
def test_nade_training_killed_after_each_file_operation(work, nade_straight, stride):
    seen = _sweep_points(work, "nade", NADE_TRAIN, NADE_EPOCHS, nade_straight, stride)
    found = {epoch for _, _, epoch in seen}
    assert None in found and len(found) >= 2
    if stride == 1:
        assert found == {None, 1, 2}


@pytest.mark.parametrize(
    "stride", [pytest.param(7, id="every-seventh"), pytest.param(1, id="every", marks=pytest.mark.slow)]
)
def test_nade_timed_save_killed_after_each_file_operation(work, nade_straight, stride):
    """A --max-time stop saves mid-epoch; killing that save at each operation keeps the previous
    checkpoint (the end of epoch 1), and resuming still reaches the unbroken run's weights."""
    base = work / "nade-timed-base"
    if not base.exists():
        assert cli(*NADE_TRAIN, "--epochs", 1, "--out", base).returncode == 0
    for point in range(1, 200, stride):
        out = work / f"nade-timed-{point}"
        shutil.copytree(base, out)
        faulted = cli(
            *NADE_TRAIN, "--epochs", NADE_EPOCHS, "--max-time", "0.001s", "--out", out, "--resume", env=killed_at(point)
        )
        config = load_checkpoint(out).config["trainer"]
        if faulted.returncode == 0:
            assert (config["epoch"], config["batch"]) != (1, 0) or config["elapsed"] > 0  # the timed save landed
            shutil.rmtree(out)
            break
        assert faulted.returncode == -signal.SIGKILL
        assert config["epoch"] == 1
        assert cli(*NADE_TRAIN, "--epochs", NADE_EPOCHS, "--out", out, "--resume").returncode == 0
        assert same_checkpoint(out, nade_straight)
        shutil.rmtree(out)
    assert point > 5  # the timed save's operations were interrupted in turn
    report(
        "nade-timed",
        f"{len(range(1, point, stride))} kills inside the --max-time save, all loadable and resumed bit-for-bit",
    )


@pytest.mark.parametrize("kills", [pytest.param(2, id="2"), pytest.param(15, id="15", marks=pytest.mark.slow)])
def test_training_killed_at_random_instants(work, corpus, rbm_straight, kills):
    """SIGKILL at random instants (not at the hook's points) of a run that saves every epoch."""
    rng = random.Random(2024)
    # --monitor-every 1 (the default when this was tuned): a check every epoch keeps epochs ~40 ms long
    long_run = [*RBM_TRAIN, "--data", corpus, "--hidden", 64, "--monitor-every", 1]
    epochs = 30 * kills  # each kill lands within a second (~25 epochs) of the run's first save
    straight = work / f"rbm-long-straight-{epochs}"
    if not straight.exists():
        assert cli(*long_run, "--epochs", epochs, "--out", straight).returncode == 0
    out = work / f"rbm-random-{kills}"
    found = []
    for _ in range(kills):
        again = ["--resume"] if (out / "config.json").exists() else []
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gibbsdream.cli",
                *map(str, long_run),
                "--epochs",
                str(epochs),
                "--out",
                str(out),
                *again,
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = saved_epoch(out)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline and _config_epoch(out) == before:
            time.sleep(0.01)  # until this run has saved (imports take a second or more)
        time.sleep(rng.uniform(0.0, 1.0))  # then an epoch every ~40 ms
        process.kill()
        process.wait()
        found.append(saved_epoch(out))  # loads in full
    assert (
        cli(*long_run, "--epochs", epochs, "--out", out, *(["--resume"] if found[-1] is not None else [])).returncode
        == 0
    )
    assert same_checkpoint(out, straight)
    assert any(epoch is not None and 0 < epoch < epochs for epoch in found), found  # some kills landed mid-run
    assert len(set(found)) > kills // 2, found  # most runs got further than the one before
    report("random", f"{kills} kills at random instants (checkpoints found at epochs {found}), resumed bit-for-bit")


def test_ctrl_c_and_sigterm_during_a_save_finish_it_and_say_how_to_resume(work, corpus, rbm_straight):
    # inside the first save: after the model file's fsync (Ctrl+C); after the trainer file's rename (SIGTERM)
    for signal_name, code, point in (("INT", 130, 2), ("TERM", 143, 9)):
        out = work / f"rbm-signal-{signal_name}-{point}"
        done = cli(
            *RBM_TRAIN, "--data", corpus, "--epochs", RBM_EPOCHS, "--out", out, env=killed_at(point, signal_name)
        )
        assert done.returncode == code, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "--resume" in lines[0] and str(out) in lines[0]
        assert saved_epoch(out) == 1  # the save under way when the signal came was finished
        assert cli(*RBM_TRAIN, "--data", corpus, "--epochs", RBM_EPOCHS, "--out", out, "--resume").returncode == 0
        assert same_checkpoint(out, rbm_straight)


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(work, corpus):
    out = work / "rbm-two-writers"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gibbsdream.cli",
            *map(str, RBM_TRAIN),
            "--data",
            str(corpus),
            "--hidden",
            "64",
            "--epochs",
            "100000",
            "--out",
            str(out),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.json").exists():  # the first run has saved an epoch
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        for extra in ([], ["--resume"]):
            second = cli(*RBM_TRAIN, "--data", corpus, "--epochs", 3, "--out", out, *extra)
            line = assert_clean_error(second)
            assert f"PID {first.pid}" in line, line
        sampled = cli("sample", out, "--chains", 2, "--steps", 5, "--quiet")  # readers need no lock
        assert sampled.returncode == 0, sampled.stderr
    finally:
        first.kill()
        first.wait()
    assert (out / ".lock").read_text().strip() == str(first.pid)  # left behind by the killed run
    epoch = saved_epoch(out)
    taken_over = cli(*RBM_TRAIN, "--data", corpus, "--hidden", 64, "--epochs", epoch + 1, "--out", out, "--resume")
    assert taken_over.returncode == 0, taken_over.stderr
    assert saved_epoch(out) == epoch + 1


def test_two_fresh_runs_into_one_folder_one_is_refused(work, corpus):
    out = work / "rbm-race"
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gibbsdream.cli",
                *map(str, RBM_TRAIN),
                "--data",
                str(corpus),
                "--epochs",
                "2",
                "--out",
                str(out),
            ],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = sorted((run.wait(timeout=120), run.stderr.read()) for run in runs)
    assert outcomes[0][0] == 0
    assert outcomes[1][0] == 2 and outcomes[1][1].startswith("error: ")
    assert "being written by" in outcomes[1][1] or "already holds a checkpoint" in outcomes[1][1]


def test_readers_never_see_a_half_saved_checkpoint(work, corpus):
    """Loading again and again while a run saves every few milliseconds: every load succeeds."""
    out = work / "rbm-read-while-writing"
    assert cli(*RBM_TRAIN, "--data", corpus, "--epochs", 1, "--monitor-every", 0, "--out", out).returncode == 0
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gibbsdream.cli",
            *map(str, RBM_TRAIN),
            "--data",
            str(corpus),
            "--epochs",
            "400",
            "--monitor-every",
            "0",
            "--out",
            str(out),
            "--resume",
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    epochs, failures = [], []
    try:
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline and len(set(epochs)) < 40:
            try:
                epochs.append(load_checkpoint(out).config["trainer"]["epoch"])
            except UsageError as err:
                failures.append(str(err))
    finally:
        writer.kill()
        writer.wait()
    assert failures == []
    assert len(set(epochs)) > 5, epochs  # the loads really overlapped many saves


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or os.geteuid() != 0:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )


def test_a_full_disk_keeps_the_old_checkpoint_and_ends_in_one_line(work, corpus):
    disk = work / "small-disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount)")
    try:
        out = disk / "run"
        train = [*RBM_TRAIN, "--data", corpus, "--hidden", 32]
        assert cli(*train, "--epochs", 1, "--out", out).returncode == 0
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        # Full: refused before training, by the check that --out can be written.
        line = assert_clean_error(cli(*train, "--epochs", 2, "--out", out, "--resume"))
        assert "No space left" in line and str(out) in line, line
        # 8 kB free: the check passes, and the save after the first epoch meets the full disk.
        os.truncate(filler, filler.stat().st_size - 8192)
        done = cli(*train, "--epochs", 2, "--out", out, "--resume")
        line = assert_clean_error(done)
        assert "intact" in line and str(out) in line, line
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before  # nothing left behind
        assert saved_epoch(out) == 1
        filler.unlink()
        assert cli(*train, "--epochs", 2, "--out", out, "--resume").returncode == 0
        assert saved_epoch(out) == 2
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.parametrize(
    "stride", [pytest.param(17, id="every-17th"), pytest.param(1, id="every", marks=pytest.mark.slow)]
)
def test_sweep_killed_after_each_file_operation_resumes_to_the_same_report(work, corpus, rbm_straight, stride):
    sweep = ["sweep", rbm_straight, "--grid", "temperature=1,0.5", "--grid", "steps=5", "--chains", 4, "--quiet"]
    straight = work / "sweep-straight"
    if not straight.exists():
        assert cli(*sweep, "--out", straight).returncode == 0

    def results(folder):
        rows = json.loads((folder / "results.json").read_text())
        return json.dumps(rows, sort_keys=True, default=str).replace(str(folder), "OUT")

    for point in range(1, 400, stride):
        out = work / f"sweep-{stride}-{point}"
        faulted = cli(*sweep, "--out", out, env=killed_at(point))
        if faulted.returncode == 0:
            break
        assert faulted.returncode == -signal.SIGKILL
        assert cli(*sweep, "--out", out).returncode == 0
        assert _without_times(results(out)) == _without_times(results(straight))
    assert point > 3
    report("sweep", f"{len(range(1, point, stride))} kills, each rerun to the same results")


def _without_times(text: str) -> object:
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "elapsed", "created", "command")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(text))


def test_resume_after_a_kill_before_the_first_save_says_to_start_again(work, corpus):
    out = work / "rbm-killed-in-first-save"
    assert (
        cli(*RBM_TRAIN, "--data", corpus, "--epochs", 2, "--out", out, env=killed_at(3)).returncode == -signal.SIGKILL
    )
    assert not (out / "config.json").exists()
    line = assert_clean_error(cli(*RBM_TRAIN, "--data", corpus, "--epochs", 2, "--out", out, "--resume"))
    assert "nothing was saved" in line and "without --resume" in line
    assert cli(*RBM_TRAIN, "--data", corpus, "--epochs", 2, "--out", out).returncode == 0


def test_ctrl_c_at_any_moment_is_one_line_and_130(work, rbm_straight):
    """Ctrl+C while PyTorch is being imported (which half-imported fails in odd ways), while the
    checkpoint loads, or while chains run: always "interrupted", exit 130, no traceback."""
    outcomes = []
    for delay in (0.1, 0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.2):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gibbsdream",
                "sample",
                str(rbm_straight),
                "--chains",
                "50",
                "--steps",
                "200000",
                "--engine",
                "torch",
                "--quiet",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        outcomes.append((delay, process.returncode, err.strip()))
    assert all(code == 130 and err == "interrupted" for _, code, err in outcomes), "\n".join(map(repr, outcomes))
