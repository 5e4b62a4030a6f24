"""The Python front door: what the commands do, as functions the CLI, the web page and scripts call.

So far it has :func:`load` and :func:`train`; generating, inpainting and evaluating still live in
the command bodies and move here next.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint, checkpoint_family, load_checkpoint
from .errors import ConfigError, UsageError
from .families import nade as nade_family
from .families import rbm as rbm_family
from .training.runs import Trained

FAMILIES = ("rbm", "nade")


def load(path, device="auto", family: str | None = None) -> Checkpoint:
    """Load a checkpoint folder, ready to sample from or score.

    Args:
        path: the ``--out`` folder of ``gibbsdream train`` (or its ``config.json``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, or a ``torch.device``.
        family: ``"rbm"`` (strings) or ``"nade"`` (images) to refuse the other; None takes either.

    Returns:
        A :class:`~gibbsdream.checkpoint.Checkpoint` whose model is on ``device`` in eval mode,
        with the codec that decodes its samples (a string or image codec, checked to be there) and,
        for string models, ``data["train"]`` and ``data["validation"]`` (``(N, V)``, empty when the
        checkpoint kept none).

    Raises:
        UsageError: the folder is missing, foreign, damaged, of the other family, or holds a model
            without the codec its samples need.
    """
    from .training import resolve_device

    path = Path(path)
    held = family or checkpoint_family(path)
    if held not in FAMILIES:
        raise UsageError(f"{path} holds a {held!r} model, which this gibbsdream cannot use; upgrade gibbsdream")
    checkpoint = load_checkpoint(path, device=resolve_device(device), family=held)
    if held == "rbm":
        if checkpoint.codec is None:
            raise UsageError(
                f"checkpoint {path} has no string codec, so its samples cannot be decoded; retrain it "
                "with `gibbsdream train rbm`"
            )
        import torch

        for part in ("train", "validation"):
            checkpoint.data.setdefault(part, torch.zeros(0, checkpoint.model.num_visible, dtype=torch.long))
    elif checkpoint.codec is None or getattr(checkpoint.codec, "height", None) is None:
        raise UsageError(f"checkpoint {path} has no image codec; retrain it with `gibbsdream train nade`")
    checkpoint.model.eval()
    return checkpoint


# family -> (its train function, the keyword its data options travel under)
TRAINERS = {"rbm": (rbm_family.train, "corpus"), "nade": (nade_family.train, "images")}


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
            ``builtin:regions|countries|languages``; for ``"nade"`` a folder of images or
            ``builtin:digits|shapes``. On resume it may be None (the checkpoint keeps its data);
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
        model, codec and trainer; ``trained`` is False when a resume found its epochs done.

    Raises:
        UsageError: bad data or checkpoint; a :class:`~gibbsdream.errors.ConfigError` names the
            setting at fault (a :class:`~gibbsdream.training.runs.ResumeConflict` for a resume).
    """
    if family not in TRAINERS:
        raise ConfigError(f"family must be one of {', '.join(TRAINERS)}, got {family!r}", "family")
    function, options_name = TRAINERS[family]
    return function(
        data,
        out,
        model=model,
        training=training,
        **{options_name: options},
        resume=resume,
        apply_changes=apply_changes,
        device=device,
        progress=progress,
        on_epoch=on_epoch,
        on_event=on_event,
    )
