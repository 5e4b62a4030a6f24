"""Orderless NADE training losses over the unknown variables of masked examples.

With ``D`` variables of which ``k`` are known, Uria et al. (2014) weight the summed loss of the
``D - k`` unknown variables by ``D / (D - d + 1)``, where ``d = k + 1`` is the position in the
ordering of the next variable: that is ``D / (D - k)``. With ``k`` uniform on ``{0, ..., D-1}``
(the "orderless" mask distribution) the weighted cross-entropy is then an unbiased estimate of
the negative log-likelihood of the whole example, averaged over orderings: its training curve
reads in nats per example.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..sampling.conditional import row_sums

LOSSES = ("ce", "emd2")


def _per_variable_cross_entropy(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x)`` per variable: logits ``(B, *shape, K)``, x ``(B, *shape)`` -> ``(B, *shape)``."""
    return F.cross_entropy(logits.movedim(-1, 1), x, reduction="none")


def _per_variable_emd2(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared earth mover's distance between the predicted levels and the true one.

    Over ordered levels the EMD between two distributions is the L1 distance of their CDFs; the
    "emd2" loss squares it per level: ``sum_j (P(level <= j) - [x <= j])^2``. It charges a
    prediction by how *far* its mass sits from the truth, unlike cross-entropy.
    """
    cdf = torch.softmax(logits.float(), -1).cumsum(-1)
    levels = torch.arange(logits.shape[-1], device=logits.device)
    target_cdf = (levels >= x.unsqueeze(-1)).to(cdf.dtype)
    return (cdf - target_cdf).pow(2).sum(-1)


def _per_variable(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    return _per_variable_cross_entropy(logits, x) if kind == "ce" else _per_variable_emd2(logits, x)


def masked_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    known: torch.Tensor,
    kind: str = "ce",
    rescale: bool = True,
) -> torch.Tensor:
    """Per-example loss over the unknown variables.

    Args:
        logits: ``(B, *shape, K)``.
        x: ``(B, *shape)`` true levels.
        known: ``(B, *shape)`` bool; the loss covers the variables where it is False.
        kind: ``"ce"`` (cross-entropy) or ``"emd2"`` (squared earth mover's distance).
        rescale: weight the sum by ``D / (D - k)`` (Uria et al.); otherwise average over the
            unknown variables.

    Returns:
        ``(B,)``; examples with no unknown variable get 0.
    """
    per_variable = _per_variable(logits, x, kind)
    unknown = (~known).reshape(known.shape[0], -1)
    # where, not a product: a known variable's loss may be inf (0 * inf = nan) and must count for nothing
    total = torch.where(unknown, per_variable.reshape(unknown.shape), 0.0).sum(1)
    return _weighted(total, unknown, rescale)


def unknown_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    known: torch.Tensor,
    kind: str = "ce",
    rescale: bool = True,
) -> torch.Tensor:
    """:func:`masked_loss` from the logits of the unknown variables only.

    Args:
        logits: ``(R, K)``, one row per unknown variable in row-major order (as
            ``OrderlessNADE.logits_at(x, known, ~known)`` gives them).
        x, known, kind, rescale: as for :func:`masked_loss`.

    Returns:
        ``(B,)``, equal to :func:`masked_loss` of the full logits (up to rounding). At 256 levels
        most of a training step is the readout and the loss over all variables; this pays for the
        unknown ones only (about half of them under orderless masks).
    """
    unknown = (~known).reshape(known.shape[0], -1)
    target = x.reshape(unknown.shape)[unknown]  # (R,)
    per_variable = _per_variable(logits, target, kind)
    # Summed in float64: a float32 running sum of 12,288 terms would be off by about a nat.
    total = row_sums(per_variable.double(), unknown)
    return _weighted(total.to(per_variable.dtype), unknown, rescale)


def _weighted(total: torch.Tensor, unknown: torch.Tensor, rescale: bool) -> torch.Tensor:
    """Each example's summed loss ``total`` ``(B,)`` times ``D / (D - k)`` (``rescale``) or over ``D - k``."""
    num_unknown = unknown.sum(1).clamp(min=1).to(total.dtype)
    if rescale:
        return total * (unknown.shape[1] / num_unknown)
    return total / num_unknown
