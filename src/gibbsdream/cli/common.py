"""What every command shares: the ``app`` group, the checks at the edge, and ``main``.

Every command validates its input at the edge: bad input ends with a one-line ``error: ...``
on stderr and exit code 2, never a traceback, and never a half-written output file. The commands
live in the sibling modules (``commands``, ``images``, ``sweep``, ``serve``), which register
themselves on :data:`app` when the package is imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import secrets
import shlex
import signal
import sys
import threading
from pathlib import Path

import click

from .. import __version__
from ..api import train
from ..errors import ConfigError, Terminated, UsageError
from ..families import family_names, get_family
from ..resources import human_bytes
from ..sampling.registry import sampler_names, samplers
from ..sampling.schedules import (
    BLOCK_SELECTIONS,
    DEFAULT_BLOCK_SELECT,
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_MASK_SCHEDULE,
    MASK_SCHEDULES,
    mask_schedule,
)
from ..training.runs import ResumeConflict
from .fields import FLAGS, NOT_EXPOSED, in_flags
from .params import option

INIT_NAMES = ("zeros", "biases", "uniform", "uniform_chars", "spaces", "padding", "train", "chunks", "silhouettes")
DEVICE_HELP = "auto (CUDA when present), cpu or cuda."
IMAGE_SAMPLERS = sampler_names("conditional")  # the samplers of conditional models, from the registry
STRING_SAMPLERS = sampler_names("energy")  # and of energy models (RBMs)
IMAGE_SAMPLER_HELP = "; ".join(f"{s.name}: {s.summary}" for s in samplers("conditional")) + "."


def image_sampler_options(command):
    """The options of the confidence sampler and of the Gibbs samplers' block choice, for every
    command that samples images (beside --sampler and --block)."""
    command = option(
        "--choice-temperature",
        type=float,
        default=DEFAULT_CHOICE_TEMPERATURE,
        help="--sampler confidence: scale of the noise on the confidences at the first step (annealed to 0; "
        "0 keeps the most confident draws).",
    )(command)
    command = option(
        "--block-select",
        type=click.Choice(BLOCK_SELECTIONS),
        default=DEFAULT_BLOCK_SELECT,
        help="Gibbs samplers: redraw a uniformly random block, or the least confident variables likeliest "
        "(weights 1/p of the probability each value was drawn with; ReMDM-style).",
    )(command)
    return option(
        "--mask-schedule",
        default=DEFAULT_MASK_SCHEDULE,
        help=f"--sampler confidence: share still masked after each step, one of {', '.join(MASK_SCHEDULES)}.",
    )(command)


def say_diagnostics(chain) -> None:
    """``--diagnostics``: one line of convergence figures on stderr, and a ``warning:`` line when the
    chains have not mixed."""
    from ..sampling.diagnostics import diagnostics_text  # start-up time: loads ArviZ's helpers only when asked

    figures = chain.diagnostics()
    _say(diagnostics_text(figures))
    if figures["warning"]:
        _say(f"warning: {figures['warning']}")


def check_confidence_options(schedule: str, choice_temperature: float) -> None:
    """Refuse a bad mask schedule or choice temperature before any work (UsageError)."""
    mask_schedule(schedule)
    if not (choice_temperature >= 0 and choice_temperature != float("inf")):
        raise UsageError(f"--choice-temperature must be a finite number >= 0, got {choice_temperature}")


def _say(message: str) -> None:
    click.echo(message, err=True)


def _check_output(path: Path | None, flag: str, *, folder: bool) -> None:
    """Refuse, before any work, an output path that cannot be written: an existing file where a folder
    is meant, an existing folder where a file is meant, a file where a parent folder must be made, or
    a folder that refuses a new file (no permission, a read-only or full file system), found by
    writing and removing a small probe file in the nearest folder that exists."""
    if path is None:
        return
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, but a folder is needed here; pass a folder (created if missing)")
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; pass a file name")
    nearest = path if folder and path.is_dir() else None
    for parent in path.parents:
        if nearest is not None:
            break
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
            nearest = parent
    try:
        _probe_writable(nearest or Path("."))
    except OSError as err:
        raise UsageError(f"cannot write {flag} {path}: {err.strerror or err}; {_os_error_remedy(err)}") from None


PROBE_BYTES = 4096  # one block: enough to meet a full disk, which an empty file would not


def _probe_writable(folder: Path) -> None:
    """Create, fill, sync and remove a small hidden file in ``folder``, or raise the OSError that stops it."""
    probe = folder / f".gibbsdream-probe-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, bytes(PROBE_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


_REMEDIES = {
    errno.ENOSPC: "free some space there, or write somewhere else",
    errno.EDQUOT: "your disk quota is used up; free some space, or write somewhere else",
    errno.EROFS: "write somewhere else, or remount it writable",
    errno.EACCES: "you may not write there; choose another place, or change the folder's permissions",
    errno.EPERM: "you may not write there; choose another place, or change the folder's permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "that is a folder; give a file name",
    errno.ENOENT: "a folder on the way does not exist; check the path",
    errno.EFBIG: "the file is too large for that file system; write somewhere else",
    errno.ENAMETOOLONG: "use a shorter name",
    errno.EMFILE: "too many files are open; close some programs and try again",
    errno.ENFILE: "too many files are open; close some programs and try again",
    errno.EIO: "the disk reported an error; check it, or write somewhere else",
}
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _os_error_remedy(err: OSError) -> str:
    return _REMEDIES.get(err.errno, "check the path and its folder, then try again")


def _os_error_message(err: OSError) -> str:
    """``error: cannot write PATH: reason; what to do`` for an OSError that escaped a command."""
    path = err.filename if err.filename is not None else err.filename2
    reason = err.strerror or str(err) or type(err).__name__
    verb = "write" if err.errno in _WRITE_ERRORS or isinstance(err, PermissionError) else "use"
    where = f"cannot {verb} {os.fsdecode(path)}" if path is not None else "a file operation failed"
    return f"{where}: {reason}; {_os_error_remedy(err)}"


@contextlib.contextmanager
def _all_or_nothing():
    """Write a command's output files together: all of them, or none.

    Yields ``stage(path) -> temporary path``: write ``path``'s content there (any writer will do,
    atomic or not). When the block ends without an error every staged file is renamed onto its
    path (renames need no disk space); when it fails, the staged files and the folders made for
    them are removed, so a full disk half-way leaves nothing behind, and nothing is replaced.
    """
    staged: list[tuple[Path, Path]] = []
    made: list[Path] = []

    def stage(path: Path) -> Path:
        path = Path(path)
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        made.extend(missing)
        temporary = path.parent / f".{path.stem}-{secrets.token_hex(4)}.partial{path.suffix}"
        staged.append((temporary, path))
        return temporary

    try:
        yield stage
        for temporary, path in staged:
            os.replace(temporary, path)
    except BaseException as err:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):  # the deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: something else may have put files there meanwhile
        if isinstance(err, OSError) and err.filename is None and staged:
            # A failed write() names no file; name the one being written.
            raise OSError(err.errno, err.strerror, str(staged[-1][1])) from None
        raise


_invocation: dict = {"argv": [], "out": None}  # this command's arguments, and the checkpoint it writes


def _interrupted_message() -> str:
    out = _invocation["out"]
    if out is None:
        return ""
    if not (out / "config.json").exists():
        return f"; nothing was saved in {out} yet"
    argv = list(_invocation["argv"])
    if "--resume" not in argv:
        argv.append("--resume")
    return f"; {out} holds the last saved state: continue with `gibbsdream {shlex.join(argv)}`"


def _stop_on_sigterm(signum, frame):
    raise Terminated()


def _flag_param(ctx, command: str, name: str):
    """The click option of ``command`` that sets the library's field or argument ``name``."""
    flag = FLAGS[command][name]
    return next(p for p in ctx.command.params if flag in p.opts or flag in p.secondary_opts)


def _library_settings(ctx, command: str, *sources, always=()) -> list[dict]:
    """The values of ``command``'s options given on the command line, as the library's settings: one
    ``{field: value}`` per dataclass in ``sources``. The library fills in the rest from the same
    defaults the options show (tests/test_cli_fields.py). ``always``: fields passed even at their default."""

    result = []
    for source in sources:
        values = {}
        for name in (f.name for f in dataclasses.fields(source)):
            if name not in FLAGS[command] or f"{source.__name__}.{name}" in NOT_EXPOSED[command]:
                continue
            param = _flag_param(ctx, command, name)
            if name in always or ctx.get_parameter_source(param.name) != click.core.ParameterSource.DEFAULT:
                values[name] = ctx.params[param.name]
        result.append(values)
    return result


def _resume_conflict(ctx, command: str, conflict) -> UsageError:
    """A :class:`~gibbsdream.training.runs.ResumeConflict` as the command line says it, with its flags."""
    param = _flag_param(ctx, command, conflict.field)
    given = _spelled(param, conflict.new)
    flag = given if param.is_flag else param.opts[0]  # a flag is dropped as given (--no-residual)
    shown = f"{given} differs from the checkpoint's {_spelled(param, conflict.old)}"
    undo = f"pass {_spelled(param, conflict.old)}" if param.required else f"drop {flag}"
    if conflict.fixed:
        return UsageError(
            f"{shown}, and a resumed run keeps its model, data and split; {undo}, or train into a new --out"
        )
    return UsageError(f"{shown}; pass --apply-changes to continue with the new value, or {undo}")


def _training_events(ctx, command: str, quiet: bool):
    """``on_event`` for gibbsdream.train: what the command says about the run before it trains."""

    def on_event(name: str, info) -> None:
        if name == "changes":
            _say(
                "note: continuing with "
                + ", ".join(
                    f"{_spelled(_flag_param(ctx, command, n), new)} (was {_spelled(_flag_param(ctx, command, n), old)})"
                    for n, (old, new) in info.items()
                )
            )
        elif name == "reseeded":
            _say("note: the checkpoint was saved on another kind of device; its sampling RNG was re-seeded")
        elif name == "corpus" and not quiet:
            codec = info["codec"]
            _say(
                f"corpus {info['data']}: {info['report'].summary()}; "
                f"alphabet of {len(codec.alphabet)} characters, {codec.max_length} positions"
            )
        elif name == "captions_ignored":
            _say(f"note: {info['path']} holds captions, which this run ignores; pass --captions to train on them")
        elif name == "images" and not quiet:
            splits, vocabulary = info["splits"], info["vocabulary"]
            _say(
                f"{info['data']}: {len(info['dataset'].states)} images, {info['codec'].describe()}; "
                f"train {splits['train']}, validation {splits['validation']}, test {splits['test']}"
                + (f"; captions with {len(vocabulary.words)} words" if vocabulary else "")
            )

    return on_event


def _train(ctx, command: str, family: str, data, out, settings: list, resume, apply_changes, device, quiet, on_epoch):
    """Run gibbsdream.train for a `train` command: its errors in the command's flags, and an
    interrupted run told how to continue."""

    _check_output(out, "--out", folder=True)
    _invocation["out"] = out
    model, training, options = settings
    try:
        return train(
            family,
            data,
            out,
            model=model,
            training=training,
            options=options,
            resume=resume,
            apply_changes=apply_changes,
            device=device,
            progress=not quiet,
            on_epoch=on_epoch,
            on_event=_training_events(ctx, command, quiet),
        )
    except ResumeConflict as conflict:
        raise _resume_conflict(ctx, command, conflict) from None


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


MEASURE_NAMES = {
    "validation_loss": "validation loss",
    "validation_pseudo_log_likelihood": "validation pseudo-log-likelihood",
    "train_pseudo_log_likelihood": "training pseudo-log-likelihood",
}


def _training_summary(summary, checks: str, detail: str | None = None) -> str:
    """One line: the epochs a `train` command reached and where its time went (``checks``: what the
    monitoring time is called, e.g. "monitoring", "validation"; ``detail``: what it did)."""
    times = summary.timings
    rest = max(0.0, summary.seconds - times.training - times.monitoring - times.saving)
    first, last = summary.first_epoch + 1, summary.epochs
    done = f"epoch {last}" if first == last else f"epochs {first}-{last}" if first < last else "no whole epoch"
    stop = ", stopped by --max-time" if summary.stopped_by_time else ""
    return (
        f"trained {done} of {summary.target_epochs} in {_seconds(summary.seconds)}{stop}: "
        f"updates {_seconds(times.training)}, {checks} {_seconds(times.monitoring)}"
        f"{f' ({detail})' if detail else ''}, "
        f"saving {_seconds(times.saving)}, reading data and setting up {_seconds(rest)}"
    )


def _still_improving_note(summary, max_time: str | None) -> str | None:
    """The note that a run stopped while its measure still improved, with how to go on; None otherwise."""
    if not summary.still_improving:
        return None
    name = MEASURE_NAMES.get(summary.measure, summary.measure.replace("_", " "))
    trend = "rising" if summary.higher_is_better else "falling"
    more = f"--max-time {max_time}" if summary.stopped_by_time and max_time else f"--epochs {2 * summary.epochs}"
    return f"note: the {name} was still {trend} at epoch {summary.last_checked}; train longer with --resume {more}"


def _spelled(param, value) -> str:
    """How ``value`` of ``param`` is written on a command line: ``--lr 0.05``, ``--no-rescale``."""
    if param.is_flag and isinstance(value, bool):
        if value:
            return param.opts[0]
        return param.secondary_opts[0] if param.secondary_opts else f"no {param.opts[0]}"
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"{param.opts[0]} {value}"


# Options of a command that are about presenting one kind of output, not about the family's own code.
PRESENTATION_OPTIONS = {"sample": {"strings": ("output_format", "order"), "images": ("gif", "trace")}}


def _options_by_family(field: str, presentation: dict | None = None) -> dict:
    """{family name: the command options only it takes}: its :class:`~gibbsdream.families.Family`
    ``field`` (``generate_options``, ``evaluate_options``; ``"outputs"``: none) and the
    ``presentation`` options of its kind of outputs (``{"strings": (...), "images": (...)}``)."""

    families = [get_family(name) for name in family_names()]
    own = {f.name: getattr(f, field) if field != "outputs" else () for f in families}
    return {f.name: (*own[f.name], *(presentation or {}).get(f.outputs, ())) for f in families}


def _only_for(ctx, family: str, options: dict) -> None:
    """Refuse options given on the command line that belong to another model family
    (``options``: {family name: the options only it takes})."""

    for other, names in options.items():
        for name in names:
            if name in options.get(family, ()):
                continue
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                flag = next(p.opts[0] for p in ctx.command.params if p.name == name)
                raise UsageError(
                    f"{flag} applies to {get_family(other).label} models only; this checkpoint holds a {family} model"
                )


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"--{name} must be >= 1, got {value}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gibbsdream")
def app():
    """Train discrete generative models and steer how they generate.

    \b
    Quick start:
      gibbsdream demo
      gibbsdream train rbm --data builtin:regions --case-fold --out runs/regions
      gibbsdream sample runs/regions --temperature 1.5:0.2 --init silhouettes
    """


@app.group("train")
def train_app():
    """Train a model (see `gibbsdream train rbm --help`)."""


# What PyTorch and Python say when an allocation fails (CPU allocator, CUDA caching allocator, glibc).
_OUT_OF_MEMORY = re.compile(
    r"DefaultCPUAllocator|can't allocate memory|not enough memory|out of memory|Cannot allocate memory"
    r"|Storage size calculation overflowed|tried to allocate",
    re.IGNORECASE,
)
# The options that make a command's tensors big, in the order to suggest lowering them.
SIZE_OPTIONS = (
    "--chains",
    "--samples",
    "--problems",
    "--orders",
    "--batch-size",
    "--ais-runs",
    "--hidden",
    "--width",
    "--depth",
    "--max-length",
    "--steps",
    "--max-images",
    "--workers",
)


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(err, RuntimeError) and bool(_OUT_OF_MEMORY.search(str(err)))


def _command_of(argv: list[str] | None) -> tuple[click.Command, list[str]]:
    """The command that ``argv`` runs (the app itself when none), and its path of names."""
    words = list(sys.argv[1:] if argv is None else argv)
    command, path = app, []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    return command, path


def _command_name(argv: list[str] | None) -> str:
    """``"train rbm"``: the name :data:`gibbsdream.cli.fields.FLAGS` knows the command by."""
    return " ".join(_command_of(argv)[1])


def _out_of_memory_message(err: BaseException, argv: list[str] | None) -> str:
    """``error: ran out of memory ...; lower --chains ...``, naming the size options of the command run."""

    match = re.search(r"allocate (\d+) bytes", str(err)) or re.search(r"allocate ([\d.]+) ([KMGT]i?B)", str(err))
    if match and match.lastindex == 1:
        size = f" (one allocation of {human_bytes(int(match.group(1)))})"
    elif match:
        size = f" (one allocation of {match.group(1)} {match.group(2)})"
    else:
        size = ""
    command = _command_of(argv)[0]
    flags = [p.opts[0] for p in command.params if isinstance(p, click.Option)] if command is not app else []
    sizes = [f for f in SIZE_OPTIONS if f in flags]
    what = f"lower {', '.join(sizes[:4])}" if sizes else "ask for less"
    return f"ran out of memory{size}; {what}, or run where more memory is free"


def _stopped(interrupt) -> None:
    """Exit after Ctrl+C (130) or SIGTERM (143), saying how to continue a training run."""
    terminated = isinstance(interrupt, Terminated)
    _say(("terminated" if terminated else "interrupted") + _interrupted_message())
    sys.exit(143 if terminated else 130)


def _interrupt_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt this exception was raised while handling, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input gives one line on stderr and exit code 2.

    So do the failures a user's input can cause deep inside a command: an OSError (a folder that
    cannot be written, a full disk) and running out of memory are one line too, as a last resort
    behind the checks each command makes before it starts. Ctrl+C and SIGTERM end with 130 / 143
    and, for a training run, the command that continues it.
    """
    _invocation.update(argv=list(sys.argv[1:] if argv is None else argv), out=None)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)  # like Ctrl+C: saves finish, exit 143
    try:
        result = app.main(args=argv, prog_name="gibbsdream", standalone_mode=False)
    except UsageError as err:
        interrupt = _interrupt_behind(err)
        if interrupt is not None:  # a check that failed because Ctrl+C cut it short
            _stopped(interrupt)
        message = in_flags(err, _command_name(argv)) if isinstance(err, ConfigError) else str(err)
        _say(f"error: {message}")
        sys.exit(2)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as err:  # a group called without a command
        _say(err.ctx.get_help() if err.ctx else str(err))
        sys.exit(2)
    except click.UsageError as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx else ""
        # One line: click lists the choices of a missing argument one per line.
        _say(f"error: {' '.join(err.format_message().split())}{hint}")
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:  # click's form of a KeyboardInterrupt (or Terminated) in a command
        _stopped(err.__cause__)
    except KeyboardInterrupt as err:
        _stopped(err)
    except Exception as err:
        interrupt = _interrupt_behind(err)
        if interrupt is not None:  # Ctrl+C cut an import short, which then fails in its own way
            _stopped(interrupt)
        if isinstance(err, BrokenPipeError):
            sys.exit(0)
        if isinstance(err, OSError):
            _say(f"error: {_os_error_message(err)}")
            sys.exit(2)
        if isinstance(err, (MemoryError, RuntimeError)) and _is_out_of_memory(err):
            _say(f"error: {_out_of_memory_message(err, argv)}")
            sys.exit(2)
        raise
    sys.exit(result if isinstance(result, int) else 0)
