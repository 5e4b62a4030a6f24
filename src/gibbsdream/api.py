"""The Python front door: what the commands do, as functions the CLI, the web page and scripts call.

    import gibbsdream
    gibbsdream.train("rbm", "names.txt", "runs/names", model={"num_hidden": 256})
    names = gibbsdream.load("runs/names")                       # a checkpoint, ready to use
    dream = gibbsdream.generate(names, num_samples=20, temperature="1.5:0.2")
    print(dream.outputs)                                        # the strings
    filled = gibbsdream.inpaint("runs/digits", images, "centre", steps=300)
    print(gibbsdream.evaluate(names, "held-out.txt").values["mean_log_likelihood"])
    gibbsdream.export_split("runs/names", "valid", "held-out.txt")   # the strings held out from training

Each function looks the checkpoint's family up in :mod:`gibbsdream.families` and runs that
family's code; the options a family does not take are refused in one line that lists those it does.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from .checkpoint import Checkpoint, checkpoint_family, load_checkpoint
from .devices import resolve_device
from .errors import ConfigError, UsageError
from .families import Evaluation, Exported, Generated, family_names, get_family
from .families.base import check_split
from .training.runs import Trained


def load(path, device="auto", family: str | None = None) -> Checkpoint:
    """Load a checkpoint folder, ready to sample from or score.

    Args:
        path: the ``--out`` folder of ``gibbsdream train`` (or its ``config.json``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, or a ``torch.device``.
        family: a family name (``"rbm"``, ``"nade"``) to refuse the others; None takes any.

    Returns:
        A :class:`~gibbsdream.checkpoint.Checkpoint` whose model is on ``device`` in eval mode,
        with the codec that decodes its samples (checked to be there) and, for string models,
        ``data["train"]`` and ``data["validation"]`` (``(N, V)``, empty when the checkpoint kept none).

    Raises:
        UsageError: the folder is missing, foreign, damaged, of another family, or holds a model
            without the codec its samples need.
    """
    path = Path(path)
    held = family or checkpoint_family(path)
    if held not in family_names():
        raise UsageError(f"{path} holds a {held!r} model, which this gibbsdream cannot use; upgrade gibbsdream")
    checkpoint = load_checkpoint(path, device=resolve_device(device), family=held)
    get_family(held).prepare(checkpoint)
    checkpoint.model.eval()
    return checkpoint


def family_of(path):
    """The :class:`~gibbsdream.families.Family` of a checkpoint folder, read from its config.json
    (UsageError for a folder that is not a checkpoint, or one of a family this gibbsdream lacks)."""
    from . import checkpoint  # looked up at call time: tests inject deep failures into checkpoint_family

    name = checkpoint.checkpoint_family(path)
    if name not in family_names():
        raise UsageError(
            f"{path} holds an unknown model family {name!r}; upgrade gibbsdream (or restore its config.json)"
        )
    return get_family(name)


def _loaded(checkpoint, device) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load(checkpoint, device)


def _refuse_others(family, options: dict, accepted: tuple[str, ...], common: tuple[str, ...], what: str) -> None:
    wrong = sorted(set(options) - set(accepted) - set(common))
    if wrong:
        raise ConfigError(
            f"{what} of {family.title} takes no {', '.join(wrong)}; it takes {', '.join([*common, *accepted])}",
            *wrong,
        )


GENERATE_COMMON = ("num_samples", "steps", "temperature", "anneal", "every", "seed", "progress", "on_step")
EVALUATE_COMMON = ("seed", "progress")


def generate(checkpoint, *, device="auto", **options) -> Generated:
    """Generate from a checkpoint (a folder or a loaded :class:`Checkpoint`).

    Options every family takes: ``num_samples``, ``steps``, ``temperature`` (a number or
    ``"start:end"``), ``anneal``, ``every`` (keep frames), ``seed``, ``progress``, ``on_step`` (``on_step(n, states,
    trace)`` after every step). String models
    (RBM) also take ``init``, ``final``, ``prefix``, ``suffix``, ``dedupe``, ``engine``; image
    models (NADE) ``sampler``, ``block``, ``caption``. See each family's ``generate``.

    Returns:
        :class:`~gibbsdream.families.Generated`: the chain, the decoded ``outputs`` (strings or
        ``(N, H, W, C)`` uint8 pixels) and, for strings, one record per sample.
    """
    checkpoint = _loaded(checkpoint, device)
    family = get_family(checkpoint.family)
    _refuse_others(family, options, family.generate_options, GENERATE_COMMON, "generating")
    return family.generate(checkpoint, **options)


def inpaint(checkpoint, images, mask="centre", *, device="auto", **options) -> Generated:
    """Fill the holes of ``images`` ``(N, C, H, W)`` (known pixels never change).

    ``mask`` is a spec (``centre``, ``box:x,y,w,h``, ``random:P``, a mask image) or a bool tensor
    (True = known). Options: ``samples`` (completions per image), ``sampler``, ``steps``,
    ``temperature``, ``anneal``, ``block``, ``caption``, ``every``, ``seed``, ``progress``.
    """
    checkpoint = _loaded(checkpoint, device)
    family = get_family(checkpoint.family)
    if family.inpaint is None:
        raise UsageError(f"{family.title} cannot inpaint; fill holes with a conditional (image) model")
    takes = tuple(inspect.signature(family.inpaint).parameters)[3:]  # after checkpoint, images, mask
    _refuse_others(family, options, takes, (), "inpainting")
    return family.inpaint(checkpoint, images, mask, **options)


def evaluate(checkpoint, data=None, *, device="auto", **options) -> Evaluation:
    """Score a checkpoint on ``data``: test log-likelihood (strings: exact or AIS log Z; images:
    an ensemble of orders). See each family's ``evaluate`` for its options and figures.

    Returns:
        :class:`~gibbsdream.families.Evaluation` (``values``: the figures, JSON-ready; ``text()``).
    """
    checkpoint = _loaded(checkpoint, device)
    family = get_family(checkpoint.family)
    _refuse_others(family, options, family.evaluate_options, EVALUATE_COMMON, "evaluating")
    return family.evaluate(checkpoint, data, **options)


def export_split(checkpoint, split: str, out, *, overwrite: bool = False, progress: bool = False) -> Exported:
    """Write a data split a checkpoint keeps as the data files its family reads: strings as a UTF-8
    text file, one a line (as the training corpus looked to the model); images as a folder of PNG
    files, with ``captions.json`` for a captioned model (as ``train(..., captions)`` reads it).
    What is written can be given back to :func:`evaluate` (and, for images, to :func:`inpaint` and
    :func:`train`): ``evaluate(checkpoint, out)`` gives the figures of ``evaluate(checkpoint, "heldout")``.

    Args:
        checkpoint: a checkpoint folder or a loaded :class:`Checkpoint` (loaded on the CPU).
        split: ``"train"``, ``"valid"`` or ``"test"`` (string models keep no test split).
        out: the file (strings) or folder (images) to write; written whole or not at all.
        overwrite: replace an ``out`` that exists and is not empty (refused otherwise; a folder is
            replaced only when it holds what an export writes).
        progress: show a progress bar.

    Returns:
        :class:`~gibbsdream.families.Exported`: the path, the split and how many items were written.
    """
    check_split(split)  # before the checkpoint is read
    family = get_family(checkpoint.family) if isinstance(checkpoint, Checkpoint) else family_of(checkpoint)
    if family.export_split is None:
        raise UsageError(f"{family.title} keeps no data splits to export")
    checkpoint = _loaded(checkpoint, "cpu")
    return family.export_split(checkpoint, split, Path(out), overwrite=overwrite, progress=progress)


def train(
    family: str,
    data: str | None,
    out,
    *,
    model=None,
    training=None,
    options=None,
    resume: bool = False,
    apply_changes: bool = False,
    device="auto",
    progress: bool = False,
    on_epoch=None,
    on_event=None,
) -> Trained:
    """Train a model into a resumable checkpoint folder, saving after every epoch.

    Args:
        family: ``"rbm"`` (strings) or ``"nade"`` (images).
        data: the corpus: for ``"rbm"`` a UTF-8 text file with one string per line or
            ``builtin:regions|countries|languages|words``; for ``"nade"`` a folder of images or
            ``builtin:digits|shapes|emoji``. On resume it may be None (the checkpoint keeps its data);
            given, it must name the data the run started with.
        out: the checkpoint folder (created if missing; locked against a second writer).
        model: the model's shape: a :class:`~gibbsdream.models.rbm.RBMConfig` /
            :class:`~gibbsdream.models.nade.NADEConfig`, or a mapping of the fields to set (the
            others keep their defaults). The fields the data decides (``num_visible``, ``channels``,
            ``num_categories``, ``caption_vocab_size``) come from the data.
        training: the trainer's settings: a :class:`~gibbsdream.training.RBMTrainConfig` /
            :class:`~gibbsdream.training.NADETrainConfig`, or a mapping of the fields to set.
        options: how the data is read: a :class:`gibbsdream.families.rbm.CorpusOptions` /
            :class:`gibbsdream.families.nade.ImageOptions`, or a mapping of its fields.
        resume: continue the run saved in ``out``. ``training["epochs"]`` is then the total to
            reach, and (NADE) ``training["max_time"]`` the training time to add. Every other
            setting given (every field of a dataclass, the keys of a mapping) is compared with the
            checkpoint's: one that shapes the model, the data or its split must agree, and the
            others (learning rates and the like) change only with ``apply_changes``.
        apply_changes: with ``resume``, continue with the changed settings instead of refusing them.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        progress: show progress bars.
        on_epoch: called with the trainer after every save (the last history row is the new epoch's).
        on_event: ``on_event(name, info)`` for what a front end may report; see the family's ``train``.

    Returns:
        A :class:`~gibbsdream.training.runs.Trained`: the checkpoint folder, epochs, history,
        model, codec and trainer; ``trained`` is False when a resume found its epochs done;
        ``summary`` (:class:`~gibbsdream.training.runs.TrainingSummary`) says where this call's time
        went (updates, monitoring, saving), the epochs it reached, how it checked the model, and
        whether the model was still improving at the end (``still_improving``).

    Raises:
        UsageError: bad data or checkpoint; a :class:`~gibbsdream.errors.ConfigError` names the
            setting at fault (a :class:`~gibbsdream.training.runs.ResumeConflict` for a resume).
    """
    trainable = [name for name in family_names() if get_family(name).train is not None]
    if family not in trainable:
        raise ConfigError(f"family must be one of {', '.join(trainable)}, got {family!r}", "family")
    record = get_family(family)
    return record.train(
        data,
        out,
        model=model,
        training=training,
        **{record.train_options: options},
        resume=resume,
        apply_changes=apply_changes,
        device=device,
        progress=progress,
        on_epoch=on_epoch,
        on_event=on_event,
    )
