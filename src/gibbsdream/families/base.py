"""The family record, the registry, and the result objects that generating and scoring return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import register_model_class
from ..errors import UsageError
from ..summary import summarize_records


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
