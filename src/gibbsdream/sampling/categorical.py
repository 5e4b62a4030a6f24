"""Exact draws from tempered categorical and Bernoulli distributions.

Temperature ``T`` turns logits ``z`` into ``softmax(z / T)`` (the distribution ``p^(1/T)``,
renormalised); ``T = 0`` is the argmax. Draws use the inverse CDF with float64 uniforms and a
float64 running sum, so no probability is silently truncated (as float32 Gumbel noise would).
"""

from __future__ import annotations

import torch


def sample_categorical(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one category per row.

    Args:
        logits: ``(..., K)`` unnormalised log-probabilities.
        temperature: ``>= 0``; 0 takes the argmax.
        generator: source of randomness (on ``logits.device``).

    Returns:
        ``(...)`` long tensor of category indices.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature if temperature != 1 else logits, dim=-1)
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=torch.float64)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1)
    return index.clamp_(max=logits.shape[-1] - 1)


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
