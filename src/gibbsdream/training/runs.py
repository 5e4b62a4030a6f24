"""What a training run into a checkpoint folder does the same way for every family: holding the
folder, reading the settings a caller gave, comparing them with a checkpoint's on resume, and the
result handed back (:class:`Trained`, with a :class:`TrainingSummary` of where the time went and
whether the model was still improving when the run ended).

Settings arrive as a dataclass (every field counts as given) or a mapping of the fields to set;
on resume only the given ones are compared with the checkpoint's (:func:`changes_on_resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import _read_config
from ..errors import ConfigError
from ..files import writer_lock


class ResumeConflict(ConfigError):
    """A setting given to a resumed run differs from the checkpoint's. ``fixed``: it shapes the
    model, the data or its split and cannot change; otherwise it changes with ``apply_changes``."""

    def __init__(self, name: str, new, old, fixed: bool):
        self.new, self.old, self.fixed = new, old, fixed
        if fixed:
            why = f"a resumed run keeps its model, data and split: leave {name} out, or train into another folder"
        else:
            why = f"pass apply_changes=True to continue with the new value, or leave {name} out"
        super().__init__(f"{name}={new!r} differs from the checkpoint's {name}={old!r}; {why}", name)


def given_fields(settings, allowed, what: str) -> dict:
    """``settings`` (None, a dataclass or a mapping) as {field: value}; a name outside ``allowed``
    (the fields a caller may set) is a ConfigError naming it."""
    if settings is None:
        return {}
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    elif isinstance(settings, Mapping):
        values = dict(settings)
    else:
        raise ConfigError(f"{what} must be a dataclass or a mapping of settings, got {type(settings).__name__}", what)
    unknown = [name for name in values if name not in allowed]
    if unknown:
        raise ConfigError(
            f"{what} has no setting {unknown[0]!r} that a caller sets; those are: {', '.join(allowed)}", unknown[0]
        )
    return values


def changes_on_resume(saved: dict, given: dict, fixed, apply: bool) -> dict:
    """The settings in ``given`` whose values differ from the checkpoint's (``saved``: name -> the value
    it was trained with; names missing there cannot be checked), in ``saved``'s order. One in
    ``fixed`` is a :class:`ResumeConflict`; so is any other unless ``apply``.

    Returns {name: (old, new)} of the changes to apply."""
    changes = {}
    for name, old in saved.items():
        if name not in given:
            continue
        new = given[name]
        if json.dumps(new, default=list) == json.dumps(old, default=list):
            continue
        if name in fixed or not apply:
            raise ResumeConflict(name, new, old, fixed=name in fixed)
        changes[name] = (old, new)
    return changes


def corpus_source(data: str) -> str:
    """How a ``data`` value is saved in a checkpoint: a file or folder by its absolute path, so that a
    resume from another working directory names the same one."""
    return data if data.startswith("builtin:") else os.path.abspath(data)


@contextlib.contextmanager
def checkpoint_held(out: Path, resume: bool):
    """Hold the writer lock of the checkpoint folder ``out`` (created if missing) for the block: a second
    run writing it is refused. A resume first checks there is a checkpoint to continue. Under torchrun
    only rank 0 writes, so only rank 0 locks."""
    if resume:
        if out.is_dir() and not (out / "config.json").exists() and any(out.iterdir()):
            raise ConfigError(
                f"nothing was saved in {out} yet (the run writing it stopped before its first save); "
                "run it again without resume",
                "resume",
            )
        _read_config(out)  # a missing or foreign folder is refused before the lock makes it
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with writer_lock(out):
        yield


def fresh_run(out: Path, apply_changes: bool) -> None:
    """Refuse to start a new run over a checkpoint, and ``apply_changes`` without a resume."""
    if (out / "config.json").exists():
        raise ConfigError(
            f"{out} already holds a checkpoint; pass resume=True to continue it, or choose another folder", "resume"
        )
    if apply_changes:
        raise ConfigError("apply_changes goes with resume", "apply_changes", "resume")


def check_epochs(epochs) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}", "epochs")
    return epochs


@dataclass
class Timings:
    """Where a training session's time went, in seconds of wall-clock time (this process).

    Attributes:
        training: the epochs' updates (forward, backward and optimizer steps; the RBM's CD steps).
        monitoring: checking the model between epochs: the RBM's pseudo-log-likelihood, free-energy
            gap and fantasy particles; the NADE validation loss.
        saving: writing checkpoints.
        checks: how many such checks ran.
    """

    training: float = 0.0
    monitoring: float = 0.0
    saving: float = 0.0
    checks: int = 0


# A loss is "still falling" at the end of a run when its last value is the best of the last
# IMPROVING_WINDOW checks and lies more than IMPROVING_GAIN (relative) below the first of them: 0.1%
# over five epochs is ten times what ReduceLROnPlateau counts as an improvement (1e-4 per epoch).
IMPROVING_WINDOW = 5
IMPROVING_GAIN = 1e-3


def still_improving(losses, window: int = IMPROVING_WINDOW, min_gain: float = IMPROVING_GAIN) -> bool:
    """Whether a loss (lower is better; one value per check, in order) was still falling at the end.

    True when there are at least two finite values among the last ``window``, the last of them is
    their minimum, and it lies more than ``min_gain`` times the first's magnitude below the first.
    """
    recent = [float(v) for v in list(losses)[-window:]]
    if len(recent) < 2 or not all(math.isfinite(v) for v in recent):
        return False
    first, last = recent[0], recent[-1]
    return last <= min(recent) and first - last > min_gain * abs(first)


@dataclass
class TrainingSummary:
    """What one call of :func:`gibbsdream.train` did, for a front end to report.

    Attributes:
        seconds: wall-clock time of the whole call (reading the data and building the model included).
        timings: where the time of the epochs went (:class:`Timings`); the rest of ``seconds`` is
            reading the data, building or loading the model and compiling.
        first_epoch: epochs done when the call began (0 for a fresh run).
        epochs: epochs done when it ended (a NADE run stopped by ``max_time`` may also be part-way
            through the next one).
        target_epochs: the ``epochs`` setting the run trained towards.
        stopped_by_time: ``max_time`` ended the run (NADE).
        monitoring: how the model was checked, family-specific: ``every`` (epochs between checks,
            0 for none), ``auto`` (the schedule was chosen by the trainer) and what each check scored
            (``strings`` / ``validation_strings`` for RBMs, ``images`` for NADE).
        measure: the history entry judged for ``still_improving`` (e.g. ``"validation_loss"``), or None.
        higher_is_better: whether ``measure`` improves upwards (a log-likelihood) or downwards (a loss).
        last_checked: the last epoch whose history row has ``measure``, or None.
        still_improving: ``measure`` was still improving at ``last_checked`` (see :func:`still_improving`):
            more epochs would likely help.
    """

    seconds: float
    timings: Timings
    first_epoch: int
    epochs: int
    target_epochs: int
    stopped_by_time: bool = False
    monitoring: dict = field(default_factory=dict)
    measure: str | None = None
    higher_is_better: bool = False
    last_checked: int | None = None
    still_improving: bool = False


def summarize(
    history: list,
    measures: tuple[str, ...],
    higher_is_better: bool,
    **fields,
) -> TrainingSummary:
    """A :class:`TrainingSummary` (``fields``: its other attributes) judged on the first of ``measures``
    that the history has (the rows that have it, in order)."""
    summary = TrainingSummary(**fields, higher_is_better=higher_is_better)
    for measure in measures:
        rows = [row for row in history if isinstance(row.get(measure), (int, float))]
        if rows:
            sign = -1.0 if higher_is_better else 1.0
            summary.measure, summary.last_checked = measure, rows[-1].get("epoch")
            summary.still_improving = still_improving([sign * row[measure] for row in rows])
            break
    return summary


@dataclass
class Trained:
    """What :func:`gibbsdream.train` hands back.

    Attributes:
        checkpoint_path: the checkpoint folder (``out``).
        epochs: epochs the model has now been trained for, over every session.
        history: one dict per epoch (the rows of ``history.jsonl``).
        model: the trained model (on the training device, in train mode).
        codec: the codec that decodes its samples.
        trainer: the family's trainer (its optimizer state, ``stopped_by_time`` and ``elapsed`` for NADE).
        trained: False when a resume found the epochs already done and trained nothing.
        changes: the settings a resume changed, {name: (old, new)}.
        writer: whether this process wrote the checkpoint (under torchrun only rank 0 does).
        summary: what this call did: its time and where it went, the epochs reached, how the model
            was checked and whether it was still improving (:class:`TrainingSummary`).
    """

    checkpoint_path: Path
    epochs: int
    history: list
    model: object
    codec: object
    trainer: object
    trained: bool = True
    changes: dict = field(default_factory=dict)
    writer: bool = True
    summary: TrainingSummary | None = None
