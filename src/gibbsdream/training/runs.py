"""What a training run into a checkpoint folder does the same way for every family: holding the
folder, reading the settings a caller gave, comparing them with a checkpoint's on resume, and the
result handed back (:class:`Trained`).

Settings arrive as a dataclass (every field counts as given) or a mapping of the fields to set;
on resume only the given ones are compared with the checkpoint's (:func:`changes_on_resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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
