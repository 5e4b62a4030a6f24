"""The family record, the registry, and the result objects that generating and scoring return."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import register_model_class
from ..data.captions import CAPTIONS_FILE
from ..errors import ConfigError, UsageError
from ..summary import summarize_records

# The data splits a checkpoint may keep, as the front ends name them -> the checkpoint's data key.
SPLITS = {"train": "train", "valid": "validation", "test": "test"}


@dataclass
class Generated:
    """What generating (or inpainting) returns.

    Attributes:
        chain: the :class:`~gibbsdream.Chain` (final states ``(N, *shape)``, the per-step trace,
            frames when asked for).
        outputs: the decoded samples: a list of strings (string families) or a ``(N, H, W, C)``
            uint8 array (image families).
        records: one dict per sample for string families (``chain``, ``step``, ``text``,
            ``energy``, ``in_training_data``); empty for images.
        seconds: wall time of the sampling itself.
        extra: family-specific facts a front end may show (for inpainting: ``names``, ``known``).
    """

    chain: Any
    outputs: Any
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """For string families: ``samples``, ``mean_energy``, ``unique_share`` and
        ``in_training_share`` over the records (NaN when there are none)."""
        return summarize_records(self.records)


@dataclass
class Evaluation:
    """What scoring a model on data returns: the figures (``values``, JSON-ready) and a text form."""

    values: dict
    lines: list[str]

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Exported:
    """What exporting a data split wrote.

    Attributes:
        path: the text file (strings) or the folder (images) written.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        count: strings or images written.
        outputs: ``"strings"`` or ``"images"``.
        captioned: images written with captions (in the folder's ``captions.json``).
    """

    path: Path
    split: str
    count: int
    outputs: str
    captioned: int = 0


def check_split(split: str) -> str:
    """``split`` (``"train"``, ``"valid"``, ``"test"``) -> the key of the checkpoint's data that holds it."""
    if not isinstance(split, str) or split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", "split")
    return SPLITS[split]


def check_export_target(out: Path, overwrite: bool, *, folder: bool) -> None:
    """Refuse to write an export over data: an existing file that is not empty, or a folder that is
    not, unless ``overwrite``; even then a folder is replaced only when it holds what an export
    writes (picture files and ``captions.json``), never other files of the user's."""
    out = Path(out)
    if not folder:
        if out.is_dir():
            raise UsageError(f"{out} is a folder; give a file name for the strings")
        if out.exists() and not out.is_file():  # a device or a pipe: renaming over it would replace it
            raise UsageError(f"{out} is not a regular file; give the name of a file to write")
        if out.exists() and out.stat().st_size > 0 and not overwrite:
            raise ConfigError(
                f"{out} already exists; pass overwrite=True to replace it, or write elsewhere", "overwrite"
            )
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the images (created if missing)")
    entries = list(os.scandir(out)) if out.is_dir() else []
    if not entries:
        return
    if not overwrite:
        raise ConfigError(
            f"{out} already exists and is not empty; pass overwrite=True to replace it, or write elsewhere",
            "overwrite",
        )
    foreign = [e.name for e in entries if not (e.is_file(follow_symlinks=False) and _written_by_export(e.name))]
    if foreign:
        raise UsageError(
            f"{out} holds {foreign[0]!r}, which an export does not write, so it is not replaced; write elsewhere"
        )


def _written_by_export(name: str) -> bool:
    return name == CAPTIONS_FILE or name.lower().endswith(".png")


@dataclass(frozen=True)
class Family:
    """What the front ends know about one model family.

    Attributes:
        name: the name checkpoints record (``config.json`` ``"family"``), e.g. ``"rbm"``.
        title: how messages name a model of it, e.g. ``"an RBM (string) model"``.
        label: how messages name its kind of models, e.g. ``"string (RBM)"``.
        outputs: ``"strings"`` or ``"images"``: how its samples are presented and written.
        prepare: ``prepare(checkpoint)`` readies a loaded checkpoint (refuses one without the codec
            its samples need, fills in optional parts); raises UsageError.
        generate: ``generate(checkpoint, **options) -> Generated``.
        evaluate: ``evaluate(checkpoint, data, **options) -> Evaluation``.
        generate_options: the keyword options ``generate`` takes (the CLI refuses the others).
        evaluate_options: the keyword options ``evaluate`` takes.
        inpaint: ``inpaint(checkpoint, images, mask, **options) -> Generated``, None when the family
            cannot fill holes.
        sweep_defaults: the settings a sweep grid may vary, with their defaults (those of generating).
        train: ``train(data, out, *, model, training, <train_options>=..., resume, apply_changes,
            device, progress, on_epoch, on_event) -> Trained``; None for a family that is not trained here.
        train_options: the keyword under which ``train`` takes how its data is read.
        model_class: for a family beyond the built-in two, the model class its checkpoints hold
            (``model_class(**config["model"])``), registered with the checkpoint loader.
        export_split: ``export_split(checkpoint, split, out, *, overwrite, progress) -> Exported``
            writes a data split the checkpoint keeps (``split`` a key of :data:`SPLITS`) as the
            data files the family reads (:func:`check_export_target` says what may be replaced);
            None for a family that keeps none.
    """

    name: str
    title: str
    label: str
    outputs: str
    prepare: Callable
    generate: Callable
    evaluate: Callable
    generate_options: tuple[str, ...]
    evaluate_options: tuple[str, ...]
    inpaint: Callable | None = None
    sweep_defaults: dict = field(default_factory=dict)
    train: Callable | None = None
    train_options: str = "options"
    model_class: type | None = None
    export_split: Callable | None = None


_FAMILIES: dict[str, Family] = {}
BUILT_IN = ("rbm", "nade")  # the families of this package, in the order messages list them


def register(family: Family) -> Family:
    """Make ``family`` known to the API, the CLI, sweeps and the web page (a later one replaces an
    earlier one of the same name: a test or plug-in may stand in for a built-in)."""
    if family.outputs not in ("strings", "images"):
        raise ValueError(f"Family.outputs must be 'strings' or 'images', got {family.outputs!r}")
    if family.model_class is not None:
        register_model_class(family.name, family.model_class, family.title)
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The family a checkpoint names; UsageError for one this gibbsdream does not know."""
    _builtins()
    if name not in _FAMILIES:
        raise UsageError(f"a {name!r} model is of a family this gibbsdream does not know; upgrade gibbsdream")
    return _FAMILIES[name]


def family_names() -> list[str]:
    """The registered families: the built-in ones first, in a fixed order, then the others."""
    _builtins()
    return sorted(_FAMILIES, key=lambda name: BUILT_IN.index(name) if name in BUILT_IN else len(BUILT_IN))


def _builtins() -> None:
    # The built-in families register themselves when their modules are imported; importing them
    # here (not at package import) keeps `import gibbsdream.families.base` free of PyTorch models.
    import importlib

    for name in BUILT_IN:
        importlib.import_module(f"{__package__}.{name}")
