"""Exact draws from tempered categorical and Bernoulli distributions.

Temperature ``T`` turns logits ``z`` into ``softmax(z / T)`` (the distribution ``p^(1/T)``,
renormalised); ``T = 0`` is the argmax. Categorical draws use the inverse CDF with float64
uniforms and give what a float64 running sum would, so no small probability is silently
truncated (as float32 Gumbel noise would do, lowering the temperature). Bernoulli draws compare
a uniform of the probability's own precision with it (below).
"""

from __future__ import annotations

import torch

from ..errors import UsageError

_SMALL = 2**16  # below this many probabilities, sum the CDF in float64 directly

# Temperatures below this act as T = 0 (the argmax). Tempered logits z / T are float32: they
# overflow to infinity (and the softmax to NaN) once |z| / T passes 3.4e38, which for T >= 1e-30
# needs logits beyond 3e8, far past any model's. And at T = 1e-30 the tempered distribution is
# already the argmax for any logit gap above 1e-27 (exp(-gap / T) is 0 even in float64), so a
# smaller T could not be told from 0 anyway, save by exact ties (which the argmax breaks towards
# the first category). Samplers get their temperatures through effective_temperature, so the
# command line, the library and the web page all follow this one rule.
MIN_TEMPERATURE = 1e-30


def effective_temperature(temperature: float) -> float:
    """The temperature a draw uses: ``temperature``, or 0.0 (argmax) below :data:`MIN_TEMPERATURE`;
    NaN or a negative temperature is a UsageError."""
    if temperature >= MIN_TEMPERATURE:
        return float(temperature)
    if temperature >= 0:
        return 0.0
    raise UsageError(f"temperature must be a number >= 0 (0 means argmax), got {temperature}")


def sample_categorical(
    logits: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    dim: int = -1,
) -> torch.Tensor:
    """Draw one category along ``dim`` for every other index.

    Args:
        logits: unnormalised log-probabilities with the K categories along ``dim``.
        temperature: ``>= 0``; 0 takes the argmax.
        generator: source of randomness (on ``logits.device``).
        dim: the category axis.

    Returns:
        long tensor of category indices, ``logits``' shape without ``dim``.
    """
    temperature = effective_temperature(temperature)
    if temperature == 0:
        return logits.argmax(dim=dim)
    weights = tempered_weights(logits, temperature, dim).movedim(dim, -1)
    u = torch.rand((*weights.shape[:-1], 1), generator=generator, device=weights.device, dtype=torch.float64)
    return categorical_from_uniform(weights, u)


def tempered_weights(logits: torch.Tensor, temperature: float, dim: int = -1) -> torch.Tensor:
    """``exp((z - max z) / T)`` along ``dim``: the tempered probabilities up to their sum (T > 0).

    Subtracting the largest logit before dividing makes the largest tempered logit exactly 0 and
    the others at most 0, so no division can overflow to inf - inf = NaN however small T is. The
    weights are left unnormalised (:func:`categorical_from_uniform` scales its uniform by their
    total), which saves softmax's sum and division: at 256 categories each pass over the logits
    is a large part of a draw's cost.
    """
    weights = logits - logits.amax(dim=dim, keepdim=True)
    if temperature != 1:
        weights /= temperature
    return weights.exp_()


def categorical_from_uniform(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the first k with ``u * total < cdf[k]``, as a float64 CDF would give.

    Args:
        probs: ``(..., K)`` non-negative weights (float32 or float64).
        u: ``(..., 1)`` float64 uniforms in [0, 1).

    Returns:
        ``(...)`` long indices.
    """
    return inverse_cdf(probs, u)[0]


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`categorical_from_uniform`'s draws, and the weights' totals ``(..., 1)`` it summed
    on the way (so a caller that needs the normaliser, as a log-probability does, need not make
    another pass over the weights).

    The CDF is summed in the weights' own precision, which is fast; a float32 running sum can be
    off by a few units in the last place, so rows whose ``u`` lands that close to a boundary of
    the chosen interval are redone with a float64 CDF. Those rows are rare (about
    ``4 K 2^-24`` of them), and the result equals the float64 inverse CDF for every row.
    """
    K = probs.shape[-1]
    if probs.dtype == torch.float64 or probs.numel() <= _SMALL:
        # Small batches: per-operation overhead dominates, so one float64 pass is cheapest.
        cdf = probs.cumsum(-1, dtype=torch.float64)
        return _cdf_index(cdf, u), cdf[..., -1:]
    G = _group_size(K)
    if G == 1:
        cdf = probs.cumsum(-1)
        total = cdf[..., -1:]
        threshold = (u * total).to(cdf.dtype)
        index = _cdf_index(cdf, threshold, scaled=True)
        base = torch.zeros_like(total)
    else:
        # Two levels: the CDF of the K / G group totals, then the running sum of the one group the
        # threshold falls in. A row's running sum over K is a sequential loop (about 4 ns a
        # category on this machine); group totals are a vectorised reduction, and the two short
        # running sums cost little: the draw of 256 levels takes about a third of the time.
        groups = probs.view(*probs.shape[:-1], K // G, G)
        group_cdf = groups.sum(-1).cumsum(-1)  # (..., K / G)
        total = group_cdf[..., -1:]
        threshold = (u * total).to(group_cdf.dtype)
        group = _cdf_index(group_cdf, threshold, scaled=True).unsqueeze(-1)  # (..., 1)
        base = torch.where(group > 0, group_cdf.gather(-1, (group - 1).clamp(min=0)), torch.zeros_like(total))
        within = groups.gather(-2, group.unsqueeze(-1).expand(*group.shape, G)).squeeze(-2)  # (..., G)
        cdf = base + within.cumsum(-1)  # the running sum inside the group, from where the group starts
        index = _cdf_index(cdf, threshold, scaled=True)
    # Interval [lo, hi) of the chosen category in the float32 CDF (``index`` indexes ``cdf``).
    hi = cdf.gather(-1, index.unsqueeze(-1))
    lo = torch.where(index.unsqueeze(-1) > 0, cdf.gather(-1, (index - 1).clamp(min=0).unsqueeze(-1)), base)
    if G > 1:
        index = group.squeeze(-1) * G + index
    # Float32 sums of at most K terms are within K eps * total of the float64 ones (and the two
    # levels' sums within 2 sqrt(K) eps * total), so a draw outside the slack is the float64 draw.
    slack = 4 * K * torch.finfo(probs.dtype).eps * total
    doubtful = ((threshold - lo) < slack) | ((hi - threshold) < slack)
    rows = doubtful.squeeze(-1).nonzero(as_tuple=True)
    if rows[0].numel():
        index[rows] = _cdf_index(probs[rows].double().cumsum(-1), u[rows])
    return index, total


def _group_size(K: int) -> int:
    """The groups of :func:`inverse_cdf`'s two-level sum: the largest divisor of ``K`` at most
    ``sqrt(K)`` once K reaches 64 (16 for 256 levels), else 1 (one plain running sum)."""
    if K < 64:
        return 1
    return max(g for g in range(1, int(K**0.5) + 1) if K % g == 0)


def _cdf_index(cdf: torch.Tensor, u: torch.Tensor, scaled: bool = False) -> torch.Tensor:
    """Number of CDF entries at or below ``u * total`` (``u`` itself when ``scaled``), capped at K - 1."""
    threshold = u if scaled else u * cdf[..., -1:]
    index = torch.searchsorted(cdf.contiguous(), threshold.contiguous(), right=True).squeeze(-1)
    return index.clamp_(max=cdf.shape[-1] - 1)


def sample_bernoulli(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw 0/1 for every entry of ``logits`` (log-odds), tempered; returns ``logits``' dtype."""
    temperature = effective_temperature(temperature)
    if temperature == 0:
        return (logits > 0).to(logits.dtype)
    return bernoulli_from_probs(torch.sigmoid(logits / temperature if temperature != 1 else logits), generator)


def bernoulli_from_probs(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw 0/1 with the given probabilities; returns ``probs``' dtype.

    The uniforms have the probabilities' own dtype: a float32 uniform lies on the grid
    ``k / 2**24``, so a 1 is drawn with probability ``ceil(p * 2**24) / 2**24``, within
    ``2**-24`` (6e-8) of ``p`` and never for ``p = 0``, the spacing of float32 numbers just below 1.
    It makes the hidden draws of an RBM sweep about a third cheaper: at many chains they are
    mostly random-number generation, and a float64 uniform takes two 32-bit draws.
    """
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    return torch.lt(u, probs, out=torch.empty_like(u))  # straight to 0.0 / 1.0: no bool tensor to convert
