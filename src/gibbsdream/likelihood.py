"""Likelihoods: for RBMs exact and AIS log-partition functions and the pseudo-log-likelihood;
for conditional models (Orderless NADE) the chain rule over an ensemble of random orders.

``log p(v) = -F(v) - log Z``. ``log Z`` is exact by enumerating whichever layer has fewer
states (``2^H`` hidden or ``K^V`` visible), and otherwise estimated by annealed importance
sampling (Salakhutdinov & Murray, 2008) from a base RBM with the same visible biases and no
weights, whose ``log Z`` is known in closed form.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from .errors import UsageError
from .progress import progress_bar
from .randomness import make_generator
from .sampling.categorical import sample_bernoulli, sample_categorical
from .sampling.conditional import inverse_permutation, logits_at, ranks_of, row_sums

MAX_ENUMERATION = 2**22
METHODS = ("auto", "exact", "ais")


def _all_states(num_units: int, num_categories: int, device) -> torch.Tensor:
    """Every state of ``num_units`` variables with ``num_categories`` values: ``(K^n, n)`` long."""
    grids = torch.meshgrid(*[torch.arange(num_categories, device=device)] * num_units, indexing="ij")
    return torch.stack(grids, dim=-1).view(-1, num_units)


def _visible_log_sum(model, visible_logits: torch.Tensor) -> torch.Tensor:
    """``log sum_v exp(logits . v)`` factorised over positions: ``(B, V, K)`` or ``(B, V)`` -> ``(B,)``."""
    if model.categorical:
        return torch.logsumexp(visible_logits, dim=-1).sum(-1)
    return F.softplus(visible_logits).sum(-1)


def exact_log_partition(model, chunk: int = 4096, progress: bool = False) -> float:
    """``log Z`` by enumeration of the smaller layer, ``chunk`` states at a time (a progress bar
    counts the chunks). Raises UsageError when both layers are too large."""
    V, H, K = model.num_visible, model.num_hidden, model.num_categories
    hidden_states, visible_states = 2**H, K**V
    if min(hidden_states, visible_states) > MAX_ENUMERATION:
        raise UsageError(
            f"exact log Z needs 2^{H} hidden or {K}^{V} visible states enumerated, too many; use method='ais'"
        )
    terms = []
    with torch.no_grad():
        model64 = _float64_copy(model)
        device = model64.weight.device
        enumerate_hidden = hidden_states <= visible_states
        chunks = (_all_states(H, 2, device).double() if enumerate_hidden else _all_states(V, K, device)).split(chunk)
        layer = f"2^{H} hidden" if enumerate_hidden else f"{K}^{V} visible"
        with progress_bar(len(chunks), f"exact log Z ({layer} states)", enabled=progress) as advance:
            for states in chunks:
                if enumerate_hidden:
                    visible = _visible_log_sum(model64, model64.visible_logits(states))
                    terms.append(states @ model64.hidden_bias + visible)
                else:
                    terms.append(-model64.free_energy(states))
                advance()
    return torch.logsumexp(torch.cat(terms), dim=0).item()


def _float64_copy(model):
    return copy.deepcopy(model).double()


def ais_log_partition(
    model,
    num_runs: int = 100,
    num_betas: int = 10000,
    seed: int | None = 0,
    base_visible_bias: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[float, float]:
    """Annealed importance sampling estimate of ``log Z`` with its standard error.

    Intermediate distributions ``p_b(v) ∝ exp((1 - b) a.v + b b_B.v) prod_j (1 + exp(b (c_j + W_j.v)))``
    go from the base (``b = 0``: visible biases ``a``, no weights) to the model (``b = 1``).
    ``num_runs`` chains run in parallel; the standard error of ``log Z`` comes from the spread
    of the importance weights (delta method). The runs move together, one Gibbs sweep per
    intermediate distribution, so a progress bar counts the ``num_betas`` steps of all the runs.

    Returns:
        ``(log_Z, stderr)``.
    """
    if num_runs < 2 or num_betas < 2:
        raise UsageError("AIS needs num_runs >= 2 and num_betas >= 2")
    with torch.no_grad():
        m = _float64_copy(model)
        device = m.weight.device
        generator = make_generator(seed, device)
        base = (m.visible_bias if base_visible_bias is None else base_visible_bias.to(m.weight)).clone()
        betas = _beta_schedule(num_betas).to(device)
        if m.categorical:
            log_z_base = torch.logsumexp(base, -1).sum() + m.num_hidden * math.log(2)
            v = sample_categorical(base.expand(num_runs, *base.shape), 1.0, generator)
        else:
            log_z_base = F.softplus(base).sum() + m.num_hidden * math.log(2)
            v = sample_bernoulli(base.expand(num_runs, *base.shape), 1.0, generator).long()
        delta_bias = (m.visible_bias - base).reshape(-1)

        log_w = torch.zeros(num_runs, dtype=torch.float64, device=device)
        steps = list(zip(betas[:-1].tolist(), betas[1:].tolist()))
        description = f"AIS log Z ({num_runs:,} runs x {len(betas):,} betas)"
        with progress_bar(len(steps), description, enabled=progress) as advance:
            for prev_beta, beta in steps:
                pre = m.hidden_logits(v)
                # log p*_beta(v) - log p*_prev(v): the visible terms differ only by (beta - prev) (b - a).v
                log_w += (beta - prev_beta) * (m.one_hot(v) @ delta_bias)
                log_w += F.softplus(beta * pre).sum(-1) - F.softplus(prev_beta * pre).sum(-1)
                # One Gibbs sweep that leaves p_beta invariant.
                h = sample_bernoulli(beta * pre, 1.0, generator)
                logits = torch.addmm(m.visible_bias.view(-1), h, m.flat_weight()).view(num_runs, *base.shape)
                logits = (1 - beta) * base + beta * logits
                if m.categorical:
                    v = sample_categorical(logits, 1.0, generator)
                else:
                    v = sample_bernoulli(logits, 1.0, generator).long()
                advance()
        log_mean_w = torch.logsumexp(log_w, 0) - math.log(num_runs)
        weights = torch.exp(log_w - log_w.max())
        stderr = (weights.std() / (weights.mean() * math.sqrt(num_runs))).item()
    return (log_z_base + log_mean_w).item(), stderr


def _beta_schedule(num_betas: int) -> torch.Tensor:
    """Inverse temperatures 0 -> 1, denser near 1 (Salakhutdinov & Murray's 5% / 40% / 55% split)."""
    n1, n2 = max(2, num_betas // 20), max(2, num_betas * 2 // 5)
    n3 = max(2, num_betas - n1 - n2)
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.9, 1.0, n3, dtype=torch.float64),
        ]
    )


def is_enumerable(model) -> bool:
    """Whether :func:`exact_log_partition` can enumerate one of the model's layers."""
    return min(2**model.num_hidden, model.num_categories**model.num_visible) <= MAX_ENUMERATION


def resolve_method(model, method: str = "auto") -> str:
    """``"exact"`` or ``"ais"``: what ``log_partition(model, method)`` will do."""
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return "exact" if method == "exact" or (method == "auto" and is_enumerable(model)) else "ais"


def log_partition(model, method: str = "auto", progress: bool = False, **ais_options) -> tuple[float, float]:
    """``(log Z, stderr)``: exact by enumeration (stderr 0) or AIS; ``"auto"`` picks exact when feasible.

    ``ais_options`` (``num_runs``, ``num_betas``, ``seed``) go to :func:`ais_log_partition`;
    ``progress`` shows a bar over the enumeration's chunks or AIS's intermediate distributions.
    """
    if resolve_method(model, method) == "exact":
        return exact_log_partition(model, progress=progress), 0.0
    return ais_log_partition(model, progress=progress, **ais_options)


def log_likelihood(model, v: torch.Tensor, log_z: float) -> torch.Tensor:
    """``(B, V)`` -> ``(B,)``: ``log p(v) = -F(v) - log Z`` in nats."""
    with torch.no_grad():
        return -model.free_energy(v) - log_z


def pseudo_log_likelihood(model, v: torch.Tensor, chunk_elements: int = 2**24) -> torch.Tensor:
    """Exact pseudo-log-likelihood ``sum_i log p(v_i | v_-i)`` of each row: ``(B, V)`` -> ``(B,)``.

    Every position's full conditional is computed (all K values, not one random flip), from the
    free energies of the ``V * K`` single-position variants of each state.
    """
    V, K, H = model.num_visible, model.num_categories, model.num_hidden
    W = model.weight.detach().view(H, V, K) if model.categorical else _bernoulli_as_two(model)
    b = (
        model.visible_bias.detach().view(V, K)
        if model.categorical
        else torch.stack([torch.zeros_like(model.visible_bias), model.visible_bias.detach()], -1)
    )
    rows_per_chunk = max(1, chunk_elements // (V * K * H))
    out = []
    with torch.no_grad():
        for part in v.split(rows_per_chunk):
            pre = model.hidden_logits(part)  # (B, H)
            current = W.permute(1, 2, 0)[torch.arange(V, device=v.device), part]  # (B, V, H)
            variants = pre[:, None, None, :] - current[:, :, None, :] + W.permute(1, 2, 0)[None]  # (B, V, K, H)
            neg_free = b[None] + F.softplus(variants).sum(-1)  # (B, V, K), up to terms constant in v_i
            log_cond = neg_free.log_softmax(-1).gather(2, part.unsqueeze(-1)).squeeze(-1)
            out.append(log_cond.sum(-1))
    return torch.cat(out)


def _bernoulli_as_two(model) -> torch.Tensor:
    """Bernoulli weights ``(H, V)`` as two-category weights ``(H, V, 2)`` with category 0 at zero."""
    w = model.weight.detach()
    return torch.stack([torch.zeros_like(w), w], -1)


# ---- conditional models (Orderless NADE) ------------------------------------------------------


@torch.no_grad()
def order_log_likelihoods(
    model,
    x: torch.Tensor,
    num_orders: int = 8,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    context=None,
    progress: bool = False,
) -> torch.Tensor:
    """``log p_o(x)`` by the chain rule in ``num_orders`` random orders ``o`` per example.

    For each order the variables are revealed one at a time and ``log p(x_{o_d} | x_{o_<d})``
    is summed, so every order costs ``D`` model calls (batched over examples and orders).

    Args:
        model: a conditional model (``logits(x, known, context) -> (B, *shape, K)``).
        x: ``(N, *shape)`` long.
        context: passed to ``model.logits``; a tensor with one row per example is repeated for
            every order, anything else is passed as it is.

    Returns:
        ``(N, num_orders)`` log-likelihoods in nats; combine them with :func:`ensemble_log_likelihood`.
    """
    N = x.shape[0]
    shape = x.shape[1:]
    D = math.prod(shape)
    repeated = x.repeat_interleave(num_orders, 0)  # (N * M, *shape): example-major
    if isinstance(context, torch.Tensor) and context.shape[0] == N:
        context = context.repeat_interleave(num_orders, 0)  # one context row per repeated example
    total = torch.zeros(repeated.shape[0], dtype=torch.float64, device=x.device)
    chunks = list(range(0, repeated.shape[0], batch_size))
    with progress_bar(len(chunks) * D, "likelihood", enabled=progress) as advance:
        for start in chunks:
            xs = repeated[start : start + batch_size]
            rows = torch.arange(xs.shape[0], device=x.device)
            order = torch.rand(xs.shape[0], D, generator=generator, device=x.device).argsort(-1)  # (n, D) variables
            ranks = inverse_permutation(order)  # when each variable is revealed
            flat = xs.reshape(xs.shape[0], D)
            ctx = context[start : start + batch_size] if isinstance(context, torch.Tensor) else context
            for step in range(D):
                known = (ranks < step).view_as(xs)
                position = order[:, step]  # the variable revealed at this step
                # Only that variable's K logits are needed (and read out, by a model with logits_at).
                asked = torch.zeros_like(flat, dtype=torch.bool)
                asked[rows, position] = True
                logits = logits_at(model, xs, known, asked, ctx).float()  # (n, K): one per row, in row order
                log_p = torch.log_softmax(logits, -1)[rows, flat[rows, position]]
                total[start : start + batch_size] += log_p.double()
                advance()
    return total.view(N, num_orders)


@torch.no_grad()
def mask_log_likelihoods(
    model,
    x: torch.Tensor,
    num_masks: int = 32,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    context=None,
    progress: bool = False,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unbiased estimates of ``E_o[log p_o(x)]``, the chain-rule log-likelihood averaged over all
    orders ``o``, from ``num_masks`` random masks per example: one model call per mask, not ``D``.

    Why it works: in a uniformly random order the variables revealed before step ``d`` are a
    uniformly random set ``S`` of ``d - 1`` variables and the one revealed at step ``d`` is uniform
    over the other ``D - d + 1``, so ``E_o[log p_o(x)] = sum_d E_S[mean_{j not in S} log p(x_j | x_S)]``.
    One mask (``d`` uniform in ``1..D``, ``S`` uniform of size ``d - 1``) then gives the unbiased
    estimate ``D / (D - d + 1) * sum_{j not in S} log p(x_j | x_S)`` -- the training loss of
    orderless masks, on this example. The masks of one example take ``d`` stratified over
    ``1..D`` (mask ``m`` draws ``d - 1 = floor((m + u) D / M)``, ``u`` uniform), which keeps each
    ``d`` equally likely and makes the mean over masks much less noisy than independent draws.

    By Jensen's inequality ``E_o[log p_o(x)] <= log E_o[p_o(x)]``, so the NLL it estimates is an
    upper bound on the NLL of the ensemble of all orders (:func:`order_log_likelihoods`'s
    single-order values estimate the same quantity at ``D`` calls per order).

    Args:
        model: a conditional model (``logits(x, known, context) -> (B, *shape, K)``).
        x: ``(N, *shape)`` long.
        num_masks: M, masks per example.
        batch_size: examples x masks per model call.
        context: as for :func:`order_log_likelihoods`.
        known: ``(N, *shape)`` bool or None. Given, the estimates are of a hole's likelihood,
            ``E_o[log p_o(x_hole | x_known)]`` over the orders of the hole's variables: the same
            estimator with ``D`` the hole's size and the known variables given in every mask (how
            likely a fill of the hole is, at one call per mask however large the hole).

    Returns:
        ``(N, M)`` float64 estimates in nats; the mean over a row estimates that example's
        ``E_o[log p_o(x)]``.
    """
    N, shape = x.shape[0], x.shape[1:]
    M, size = num_masks, math.prod(shape)
    given = torch.zeros(N, size, dtype=torch.bool, device=x.device) if known is None else known.reshape(N, size)
    D = (size - given.sum(1)).double()  # (N,): the variables scored, per example
    if bool((D == 0).any()):
        raise ValueError("an example has no unknown variable to score")
    offsets = torch.rand(N, M, generator=generator, device=x.device, dtype=torch.float64)
    strata = torch.arange(M, device=x.device, dtype=torch.float64)
    # d - 1 per (example, mask), stratified over 0 .. D - 1
    revealed = ((strata + offsets) * D[:, None] / M).floor().clamp_(max=D[:, None] - 1).long().reshape(-1)
    repeated = x.repeat_interleave(M, 0)  # (N * M, *shape): example-major, as revealed
    given, D = given.repeat_interleave(M, 0), D.repeat_interleave(M, 0)
    if isinstance(context, torch.Tensor) and context.shape[0] == N:
        context = context.repeat_interleave(M, 0)
    total = torch.empty(N * M, dtype=torch.float64, device=x.device)
    chunks = list(range(0, N * M, batch_size))
    with progress_bar(len(chunks), "likelihood", enabled=progress) as advance:
        for start in chunks:
            xs = repeated[start : start + batch_size]
            n, known_count = xs.shape[0], revealed[start : start + batch_size]
            flat, fixed = xs.reshape(n, size), given[start : start + n]
            # the given variables rank after every other, so the first d - 1 are a uniformly
            # random set of the variables scored
            scores = torch.rand(n, size, generator=generator, device=x.device).masked_fill_(fixed, 2.0)
            shown = fixed | (ranks_of(scores) < known_count[:, None])
            ctx = context[start : start + batch_size] if isinstance(context, torch.Tensor) else context
            unknown = ~shown
            logits = logits_at(model, xs, shown.view_as(xs), unknown, ctx).float()  # (R, K), the unknown only
            log_p = torch.log_softmax(logits, -1).gather(-1, flat[unknown].unsqueeze(-1)).squeeze(-1)  # (R,)
            unknown_sum = row_sums(log_p.double(), unknown)
            d = D[start : start + n]
            total[start : start + n] = unknown_sum * d / (d - known_count)
            advance()
    return total.view(N, M)


def ensemble_log_likelihood(order_values: torch.Tensor) -> torch.Tensor:
    """Log-mean-exp over orders, ``(N, M) -> (N,)``.

    This is ``log`` of the ensemble ``mean_o p_o(x)`` over the sampled orders (Uria et al.'s
    order-ensemble likelihood). It is never below the mean of the single-order values; as an
    estimate of ``log E_o p_o(x)`` over all orders it is biased low, less so as M grows."""
    return torch.logsumexp(order_values, dim=1) - math.log(order_values.shape[1])
