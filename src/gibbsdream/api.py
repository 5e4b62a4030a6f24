"""The Python front door: what the commands do, as functions the CLI, the web page and scripts call.

So far it has :func:`load`; training, generating, inpainting and evaluating still live in the
command bodies and move here next.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint, checkpoint_family, load_checkpoint
from .errors import UsageError

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
    from .devices import resolve_device

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
