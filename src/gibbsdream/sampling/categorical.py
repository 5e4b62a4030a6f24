"""Exact draws from tempered categorical and Bernoulli distributions.

Temperature ``T`` turns logits ``z`` into ``softmax(z / T)`` (the distribution ``p^(1/T)``,
renormalised); ``T = 0`` is the argmax. Draws use the inverse CDF with float64 uniforms and a
float64 running sum, so no probability is silently truncated (as float32 Gumbel noise would).
"""

from __future__ import annotations

import torch


def sample_categorical(
    logits: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    dim: int = -1,
) -> torch.Tensor:
    """Draw one category along ``dim`` for every other index.

    Args:
        logits: unnormalised log-probabilities with the K categories along ``dim``
            (e.g. ``(..., K)``; a middle ``dim`` with a long contiguous inner axis is fastest).
        temperature: ``>= 0``; 0 takes the argmax.
        generator: source of randomness (on ``logits.device``).
        dim: the category axis.

    Returns:
        long tensor of category indices, ``logits``' shape without ``dim``.
    """
    if temperature == 0:
        return logits.argmax(dim=dim)
    probs = torch.softmax(logits / temperature if temperature != 1 else logits, dim=dim)
    cdf = probs.cumsum(dim=dim, dtype=torch.float64)
    total = cdf.narrow(dim, logits.shape[dim] - 1, 1)
    u = torch.rand(total.shape, generator=generator, device=cdf.device, dtype=torch.float64).mul_(total)
    # The drawn category is the number of CDF entries at or below u.
    index = (cdf <= u).sum(dim=dim)
    return index.clamp_(max=logits.shape[dim] - 1)


def sample_bernoulli(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw 0/1 for every entry of ``logits`` (log-odds), tempered; returns ``logits``' dtype."""
    if temperature == 0:
        return (logits > 0).to(logits.dtype)
    return bernoulli_from_probs(torch.sigmoid(logits / temperature if temperature != 1 else logits), generator)


def bernoulli_from_probs(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw 0/1 with the given probabilities (float64 uniforms); returns ``probs``' dtype."""
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=torch.float64)
    return (u < probs).to(probs.dtype)
