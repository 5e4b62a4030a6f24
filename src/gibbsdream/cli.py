"""The ``gibbsdream`` command line.

Every command validates its input at the edge: bad input ends with a one-line ``error: ...``
on stderr and exit code 2, never a traceback, and never a half-written output file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shlex
import signal
import sys
import threading
from pathlib import Path

import click

from . import __version__
from .cli_fields import FLAGS, NOT_EXPOSED, in_flags
from .cli_params import option
from .errors import ConfigError, Terminated, UsageError
from .sampling.registry import sampler_names, samplers
from .sampling.schedules import ANNEAL_KINDS

INIT_NAMES = ("zeros", "biases", "uniform", "uniform_chars", "spaces", "padding", "train", "chunks", "silhouettes")
DEVICE_HELP = "auto (CUDA when present), cpu or cuda."
IMAGE_SAMPLERS = sampler_names("conditional")  # the samplers of conditional models, from the registry
IMAGE_SAMPLER_HELP = "; ".join(f"{s.name}: {s.summary}" for s in samplers("conditional")) + "."


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
    import dataclasses

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
    from .api import train
    from .training.runs import ResumeConflict

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
PRESENTATION_OPTIONS = {"sample": {"strings": ("output_format",), "images": ("gif", "trace")}}


def _options_by_family(field: str, presentation: dict | None = None) -> dict:
    """{family name: the command options only it takes}: its :class:`~gibbsdream.families.Family`
    ``field`` (``generate_options``, ``evaluate_options``; ``"outputs"``: none) and the
    ``presentation`` options of its kind of outputs (``{"strings": (...), "images": (...)}``)."""
    from .families import family_names, get_family

    families = [get_family(name) for name in family_names()]
    own = {f.name: getattr(f, field) if field != "outputs" else () for f in families}
    return {f.name: (*own[f.name], *(presentation or {}).get(f.outputs, ())) for f in families}


def _only_for(ctx, family: str, options: dict) -> None:
    """Refuse options given on the command line that belong to another model family
    (``options``: {family name: the options only it takes})."""
    from .families import get_family

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


# ---- train ---------------------------------------------------------------------------------


@train_app.command("rbm")
@option(
    "--data",
    required=True,
    help="Corpus: a UTF-8 text file with one string per line, or builtin:regions|countries|languages.",
)
@option(
    "--out", required=True, type=click.Path(path_type=Path), help="Checkpoint folder to write (created if missing)."
)
@option("--hidden", default=128, help="Number of hidden units.")
@option("--epochs", default=20, help="Total number of epochs (with --resume: the total to reach).")
@option("--batch-size", default=64, help="Strings per mini-batch.")
@option("--lr", "learning_rate", default=0.1, help="SGD learning rate.")
@option("--lr-decay", default=0.98, help="The learning rate is multiplied by this after every epoch.")
@option("--momentum", default=0.9, help="SGD momentum, in [0, 1).")
@option("--weight-cost", default=1e-3, help="L2 penalty on the weights; larger values help chains mix.")
@option("--cd-steps", default=1, help="Gibbs sweeps per update (the k of CD-k).")
@option(
    "--persistent/--no-persistent", default=False, help="Persistent CD: negative chains carry over between updates."
)
@option(
    "--max-length",
    type=int,
    default=None,
    help="Positions per string; longer lines are skipped.  [default: the longest line]",
)
@option("--case-fold/--keep-case", default=False, help="Fold case before learning the alphabet.")
@option("--pad-side", type=click.Choice(["right", "left"]), default="right", help="Where padding goes.")
@option("--min-char-count", default=1, help="Characters seen fewer times than this are rare.")
@option(
    "--rare",
    type=click.Choice(["skip", "replace", "keep"]),
    default="skip",
    help="Rare characters: skip their lines, replace them with '?', or keep them.",
)
@option("--validation-fraction", default=0.05, help="Share of lines held out for monitoring.")
@option("--monitor-every", default=1, help="Epochs between pseudo-likelihood / free-energy-gap checks (0: never).")
@option("--seed", default=0, help="Random seed (same seed, same device: same model).")
@option("--device", default="auto", help=DEVICE_HELP)
@option(
    "--engine",
    type=click.Choice(["auto", "torch", "numba"]),
    default="auto",
    help="How updates run: numba (a compiled loop on several CPU threads, for categorical models on the "
    "CPU; needs numba and a PyTorch built with MKL), torch (any device), or auto (numba where it can "
    "run). Same random numbers; results differ only by float rounding.",
)
@option("--resume", is_flag=True, help="Continue the run saved in --out up to --epochs.")
@option(
    "--apply-changes",
    is_flag=True,
    help="With --resume: continue with the learning-rate, momentum, weight-cost, "
    "CD-steps and monitoring options given, where they differ from the checkpoint's (refused otherwise).",
)
@option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
def train_rbm(
    data,
    out,
    hidden,
    epochs,
    batch_size,
    learning_rate,
    lr_decay,
    momentum,
    weight_cost,
    cd_steps,
    persistent,
    max_length,
    case_fold,
    pad_side,
    min_char_count,
    rare,
    validation_fraction,
    monitor_every,
    seed,
    device,
    engine,
    resume,
    quiet,
    apply_changes=False,
):
    """Train a restricted Boltzmann machine with categorical visible units on a corpus of strings."""
    from .families.rbm import CorpusOptions
    from .models.rbm import RBMConfig
    from .training import RBMTrainConfig

    ctx = click.get_current_context()
    # On resume the run keeps its epochs target unless --epochs says otherwise, as before: the
    # option's value (its default too) is the total to reach.
    settings = _library_settings(ctx, "train rbm", RBMConfig, RBMTrainConfig, CorpusOptions, always=("epochs",))

    def on_epoch(t):
        if not quiet:
            row = t.history[-1]
            parts = [f"epoch {row['epoch']:>3}", f"{row['seconds']:.1f}s"]
            if "train_pseudo_log_likelihood" in row:
                parts.append(f"pseudo-LL train {row['train_pseudo_log_likelihood']:.2f}")
            if "validation_pseudo_log_likelihood" in row:
                parts.append(f"val {row['validation_pseudo_log_likelihood']:.2f}")
                parts.append(f"free-energy gap {row['free_energy_gap']:+.2f}")
            if row.get("fantasy"):
                parts.append("e.g. " + ", ".join(repr(s) for s in row["fantasy"][:4]))
            _say("  ".join(parts))

    result = _train(ctx, "train rbm", "rbm", data, out, settings, resume, apply_changes, device, quiet, on_epoch)
    if not result.trained:
        _say(f"{out} already has {result.epochs} epochs; pass a larger --epochs to continue")
    elif not quiet:
        _say(f"saved {out} ({result.epochs} epochs); try: gibbsdream sample {out} --temperature 1.5:0.2")


# ---- sample ---------------------------------------------------------------------------------


def _check_string_sampling_memory(model, chains: int, steps: int, every: int | None) -> None:
    """Refuse, before sampling, chains whose tensors cannot fit in the memory free here."""
    from .resources import check_memory, product_text, rbm_sampling_bytes

    frames = 0 if every is None else steps // every + 2
    sizes = (chains, model.num_visible, model.num_categories, model.num_hidden)
    threads = os.cpu_count() or 1
    needed = rbm_sampling_bytes(*sizes, steps, frames, threads=threads)
    per_step = needed - rbm_sampling_bytes(*sizes, 0, 0, threads=threads)  # the trace and the frames
    what = product_text(("--chains", chains), (model.num_visible, "positions"), (model.num_categories, "categories"))
    remedy = (
        f"lower --steps{' or raise --every' if frames else ''} (the trace keeps every step of every chain)"
        if per_step > needed / 2
        else "lower --chains"
    )
    check_memory(needed, f"{what}, {model.num_hidden:,} hidden units, {steps:,} steps", remedy)


@app.command("sample")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option(
    "--chains", "--num-samples", "chains", default=20, help="Number of parallel chains (strings or images) to sample."
)
@option(
    "--steps",
    default=None,
    type=int,
    help="Gibbs sweeps (string models) or Gibbs steps (image models).  [default: 1000 / 200]",
)
@option("--temperature", "-t", default="1.0", help="Constant (1.0) or annealed start:end (1.5:0.2); 0 is argmax.")
@option(
    "--anneal",
    type=click.Choice(ANNEAL_KINDS),
    default="geometric",
    help="How an annealed temperature goes from start to end.",
)
@option("--init", type=click.Choice(INIT_NAMES), default="uniform", help="String models: where chains start.")
@option(
    "--final",
    type=click.Choice(["sample", "argmax"]),
    default="sample",
    help="String models: argmax takes the most likely character at the last sweep.",
)
@option("--prefix", default=None, help="String models: clamp the start of every string (right-padded models).")
@option("--suffix", default=None, help="String models: clamp the end of every string (left-padded models).")
@option(
    "--every",
    type=int,
    default=None,
    help="String models: also report each chain's state every this many steps. "
    "Image models: a GIF frame every this many steps.",
)
@option("--dedupe", is_flag=True, help="String models, with --every: drop a string already seen in the same chain.")
@option(
    "--engine",
    type=click.Choice(["auto", "torch", "numba"]),
    default="auto",
    help="String models: numba (a compiled loop on several CPU threads; categorical models on the CPU, "
    "not with --every), torch (any device), or auto (numba where it applies). Same random numbers; "
    "samples differ only where float rounding flips a draw.",
)
@option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    help="String models: text (aligned lines) or jsonl (one JSON object per sample).",
)
@option("--sampler", type=click.Choice(IMAGE_SAMPLERS), default="gibbs", help="Image models: " + IMAGE_SAMPLER_HELP)
@option(
    "--block",
    default="yao:0.9,0.1,0.7",
    help="Image models: fraction redrawn per Gibbs step, a number in (0, 1] or yao:alpha_max,alpha_min,eta.",
)
@option(
    "--gif", type=click.Path(path_type=Path), default=None, help="Image models: write an animated GIF of the chains."
)
@option(
    "--trace", type=click.Path(path_type=Path), default=None, help="Image models: write the per-step trace as JSON."
)
@option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="String models: a file for the samples (default stdout). Image models: the folder for the PNGs (required).",
)
@option(
    "--caption",
    default=None,
    help='Image models trained with --captions: generate what this caption says, e.g. "the digit seven".',
)
@option("--seed", default=0, help="Random seed.")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.pass_context
def sample_command(
    ctx,
    checkpoint,
    chains,
    steps,
    temperature,
    anneal,
    init,
    final,
    prefix,
    suffix,
    every,
    dedupe,
    engine,
    output_format,
    sampler,
    block,
    gif,
    trace,
    out,
    caption,
    seed,
    device,
    quiet,
):
    """Dream: run many chains with temperature or annealing (strings from an RBM, images from a NADE).

    \b
    Examples:
      gibbsdream sample runs/regions --chains 50 --temperature 1.5:0.2 --init silhouettes
      gibbsdream sample runs/digits --num-samples 16 --steps 300 --gif dream.gif --out samples/
    """

    from .api import family_of, generate, load
    from .files import atomic_write_text
    from .summary import summarize_records

    _positive("chains", chains)
    family = family_of(checkpoint)
    _only_for(ctx, family.name, _options_by_family("generate_options", PRESENTATION_OPTIONS["sample"]))
    if family.outputs == "images":
        from .cli_images import sample_images

        steps = _positive("steps", 200 if steps is None else steps)
        if every is not None:
            _positive("every", every)
        sample_images(
            load(checkpoint, device, family=family.name),
            num_samples=chains,
            sampler=sampler,
            steps=steps,
            temperature=temperature,
            anneal=anneal,
            block=block,
            seed=seed,
            gif=gif,
            every=every,
            trace=trace,
            out=out,
            quiet=quiet,
            caption=caption,
        )
        return
    steps = _positive("steps", 1000 if steps is None else steps)
    _check_output(out, "--out", folder=False)
    if every is not None:
        _positive("every", every)
    if dedupe and every is None:
        raise UsageError("--dedupe needs --every (it drops repeats among the states recorded along a chain)")
    if prefix is not None and suffix is not None:
        raise UsageError("give --prefix or --suffix, not both")
    ckpt = load(checkpoint, device, family=family.name)
    if hasattr(ckpt.model, "num_hidden"):  # the memory an RBM's chains take (other families: not pre-flighted)
        _check_string_sampling_memory(ckpt.model, chains, steps, every)
    dream = generate(
        ckpt,
        num_samples=chains,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        every=every,
        seed=seed,
        progress=not quiet,
        # the family's own options (an RBM takes them all; _only_for refused any given to a family without)
        **{
            name: value
            for name, value in dict(
                init=init, final=final, prefix=prefix, suffix=suffix, dedupe=dedupe, engine=engine
            ).items()
            if name in family.generate_options
        },
    )
    records = dream.records
    if output_format == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = "".join(
            f"{r['energy']:9.2f}  {r['text']}{'   (in training data)' if r['in_training_data'] else ''}\n"
            for r in records
        )
    if out is not None:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
    if not quiet:
        s = summarize_records(records)
        _say(
            f"{s['samples']} samples, T {dream.chain.settings['temperature']}, {steps} steps: "
            f"mean {dream.chain.trace_name} {s['mean_energy']:.2f} ({dream.chain.trace_kind.direction}), "
            f"unique {s['unique_share']:.0%}, already in training data {s['in_training_share']:.0%}"
        )


# ---- evaluate -------------------------------------------------------------------------------


@app.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option(
    "--data",
    default=None,
    help="String models (required): a UTF-8 file with one per line, or builtin:NAME. "
    "Image models: a folder or file of images, or heldout "
    "(the checkpoint's test split; naming the source it was trained on means the same).  "
    "[default for images: heldout]",
)
@option(
    "--method",
    type=click.Choice(["auto", "exact", "ais"]),
    default="auto",
    help="String models: log Z by exact enumeration when feasible (auto), or AIS.",
)
@option("--ais-runs", default=100, help="String models: parallel AIS runs.")
@option("--ais-betas", default=10000, help="String models: intermediate distributions in AIS.")
@option("--skip-invalid", is_flag=True, help="String models: skip lines the model cannot encode instead of stopping.")
@option("--orders", default=8, help="Image models: random orders per image (the NLL is their log-mean-exp ensemble).")
@option("--batch-size", default=1024, help="Image models: images x orders per network call.")
@option("--max-images", type=int, default=None, help="Image models: evaluate only the first this many images.")
@option(
    "--caption",
    default=None,
    help="Image models trained with --captions: evaluate every image with this caption, and without one.  "
    "[default for held-out images: each image's own first caption]",
)
@option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@option("--seed", default=0, help="Random seed (AIS, or the orders).")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def evaluate_command(
    ctx,
    checkpoint,
    data,
    method,
    ais_runs,
    ais_betas,
    skip_invalid,
    orders,
    batch_size,
    max_images,
    caption,
    as_json,
    seed,
    device,
    quiet,
):
    """Test likelihood: exact or AIS log Z for string RBMs; an order ensemble for image NADEs."""
    from .api import evaluate, family_of, load
    from .likelihood import resolve_method

    family = family_of(checkpoint)
    _only_for(ctx, family.name, _options_by_family("evaluate_options"))
    if family.outputs == "images":
        from .cli_images import evaluate_images

        evaluate_images(
            load(checkpoint, device, family=family.name),
            data=data,
            orders=_positive("orders", orders),
            batch_size=_positive("batch-size", batch_size),
            max_images=max_images,
            caption=caption,
            seed=seed,
            as_json=as_json,
            quiet=quiet,
        )
        return
    if data is None:
        raise UsageError(
            "evaluating a string model needs --data (a text file with one string per line, or builtin:NAME)"
        )
    _positive("ais-runs", ais_runs)
    _positive("ais-betas", ais_betas)
    ckpt = load(checkpoint, device, family=family.name)
    if resolve_method(ckpt.model, method) == "ais":
        from .resources import ais_bytes, check_memory, product_text

        model = ckpt.model
        check_memory(
            ais_bytes(ais_runs, ais_betas, model.num_visible, model.num_categories, model.num_hidden),
            product_text(
                ("--ais-runs", ais_runs), (model.num_visible, "positions"), (model.num_categories, "categories")
            )
            + f", {model.num_hidden:,} hidden units, "
            f"--ais-betas {ais_betas:,}",
            "lower --ais-runs or --ais-betas",
        )
    scores = evaluate(
        ckpt, data, method=method, ais_runs=ais_runs, ais_betas=ais_betas, skip_invalid=skip_invalid, seed=seed
    )
    scores.values["checkpoint"] = str(checkpoint)  # as the user spelled it
    click.echo(json.dumps(scores.values) if as_json else scores.text())


# ---- demo -----------------------------------------------------------------------------------


@app.command("demo")
@option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo-regions"),
    help="Where to keep the demo's checkpoint.",
)
@option("--epochs", default=60, help="Training epochs.")
@option("--chains", default=12, help="Chains per sampling setting.")
@option("--steps", default=1000, help="Gibbs sweeps per chain.")
@option("--seed", default=0, help="Random seed.")
def demo_command(out, epochs, chains, steps, seed):
    """Train a small RBM on built-in region names, then show plain and annealed samples side by side."""
    from .checkpoint import load_checkpoint

    if not (out / "config.json").exists():
        _say(f"training an RBM on builtin:regions ({epochs} epochs) into {out} ...")
        from .api import train

        train(
            "rbm",
            "builtin:regions",
            out,
            model={"num_hidden": 256},
            training={"epochs": epochs, "monitor_every": 0, "seed": seed},
            options={"max_length": 20, "case_fold": True, "min_char_count": 20},
        )
    else:
        _say(f"reusing the model in {out} (delete it to retrain)")

    from .sampling import sample
    from .summary import string_records, summarize_records, training_strings

    ckpt = load_checkpoint(out, family="rbm")
    corpus = training_strings(ckpt)
    columns = []
    for label, temperature in (("plain Gibbs, T = 1", "1.0"), ("annealed, T 1.5 -> 0.2", "1.5:0.2")):
        chain = sample(ckpt.model, num_chains=chains, steps=steps, temperature=temperature, init="uniform", seed=seed)
        records = string_records(chain, ckpt.codec, corpus)
        columns.append((label, records, summarize_records(records)))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{chains} chains x {steps} Gibbs sweeps from uniform noise (* = a real region name)")
    for label, _, s in columns:
        table.add_column(
            f"{label}\nmean free energy {s['mean_energy']:.1f}, unique {s['unique_share']:.0%}", no_wrap=True
        )
    for row in zip(*(records for _, records, _ in columns)):
        table.add_row(
            *(f"{r['text']}{' *' if r['in_training_data'] else ''}  [dim]{r['energy']:.1f}[/dim]" for r in row)
        )
    Console().print(table)


# ---- entry point ------------------------------------------------------------------------------

from . import (  # noqa: E402  (registers commands on app, defined above)
    cli_images,  # noqa: F401  (registers `train nade` and `inpaint`)
    cli_serve,  # noqa: F401  (registers `serve`)
    cli_sweep,  # noqa: F401  (registers `sweep`)
)

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
    """``"train rbm"``: the name :data:`gibbsdream.cli_fields.FLAGS` knows the command by."""
    return " ".join(_command_of(argv)[1])


def _out_of_memory_message(err: BaseException, argv: list[str] | None) -> str:
    """``error: ran out of memory ...; lower --chains ...``, naming the size options of the command run."""
    from .resources import human_bytes

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
        _say(f"error: {err.format_message()}{hint}")
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


if __name__ == "__main__":
    # `python -m gibbsdream.cli` runs this file as __main__, a second copy of the module: cli_images
    # registers `train nade` and `inpaint` on the package's gibbsdream.cli.app, so run that one.
    from gibbsdream.cli import main as package_main

    package_main()
