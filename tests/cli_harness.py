"""How the CLI tests run ``gibbsdream``: in a real subprocess, or in this process with what a
subprocess would have shown (stdout, stderr and warnings captured, ``SystemExit`` turned into an
exit code, any other exception into a "Traceback" on stderr, as the interpreter would)."""

import contextlib
import io
import os
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass

import torch

from gibbsdream.cli import main

ENV = {
    **os.environ,
    # Tiny models: more than one BLAS/OpenMP thread only adds overhead (10x slower on 2 cores).
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",  # --device auto resolves to the CPU, as in the in-process runs
    "PYTHONIOENCODING": "utf-8",
}


@dataclass
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str


def gibbsdream(*args) -> Result:
    """Run the CLI in a subprocess."""
    argv = [str(a) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "gibbsdream.cli", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=300,
    )
    return Result(argv, done.returncode, done.stdout, done.stderr)


def gibbsdream_here(*args) -> Result:
    """Run the CLI in this process, reporting what a subprocess would have shown."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("default")  # what python shows by default
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            err.write(traceback.format_exc())
            code = 1
    stderr = err.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return Result(argv, code, out.getvalue(), stderr)


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def assert_clean_error(result: Result) -> str:
    """Exit code 2, exactly one non-empty 'error: ...' line on stderr, nothing on stdout."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and lines[0][len("error:") :].strip(), result.stderr
    assert result.stdout == ""
    return lines[0]


@contextlib.contextmanager
def one_torch_thread():
    """As the subprocesses' OMP_NUM_THREADS=1: tiny models train and sample ~10x faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
