"""Samplers for conditional models: ancestral (orderless NADE), blocked Gibbs (Yao et al.) and
confidence decoding (MaskGIT).

A *conditional model* is any object with ``num_categories`` and
``logits(x, known, context=None) -> (N, *shape, K)``: unnormalised log-probabilities of every
variable given the variables where ``known`` is True (what it returns for known variables is
ignored). Orderless NADE is one such model; so is a joint probability table (see the tests).
A model may also offer ``logits_at(x, known, where, context=None) -> (R, K)``, the logits of the
variables where ``where`` is True only (row-major), as a new tensor (the samplers overwrite it):
they then ask for no more than they draw.

States are ``x: (N, *shape)`` long tensors; ``known: (N, *shape)`` bool marks the clamped
variables, which no sampler ever changes.
"""

from __future__ import annotations

import torch

from ..progress import progress_bar
from .categorical import categorical_from_uniform, effective_temperature, inverse_cdf, tempered_weights
from .chain import LOG_PROBABILITY, Chain, record_frame
from .schedules import DEFAULT_BLOCK_SELECT


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _logits(model, x, given, context) -> torch.Tensor:
    """The model's logits for every variable given ``given``: ``(N, *shape, K)`` as the model lays
    them out (a convnet's are channels-last, K innermost: flattening them would copy them all)."""
    return model.logits(x, given, context)


def logits_at(model, x, given, rows, context=None) -> torch.Tensor:
    """A conditional model's logits of the variables where ``rows`` is True, given ``given``:
    ``(R, K)`` in row-major order (as ``flat[rows.view_as(flat)]``). A model with ``logits_at``
    computes only those (Orderless NADE reads out only their pixels); for any other, all of them
    are computed and those picked."""
    rows = rows.view(given.shape)
    if hasattr(model, "logits_at"):
        return model.logits_at(x, given, rows, context)
    return _logits(model, x, given, context)[rows]


def _draw(chosen, rows, temperature, generator):
    """One draw for each selected variable: ``(draws, log_probs)``, both ``(R,)``.

    ``chosen``: ``(R, K)`` logits of the R variables where ``rows`` (``(N, *shape)`` or ``(N, D)``
    bool) is True, in row-major order (as :func:`logits_at` gives them; overwritten), so a step
    that redraws a tenth of an image draws and scores a tenth of its variables. ``log_probs`` are
    under the untempered conditionals (the model's own).
    """
    chosen = chosen.float()
    temperature = effective_temperature(temperature)
    if temperature == 0:
        draws = chosen.argmax(-1)
    else:
        # One uniform for every variable, used or not, in the order of the flattened states: the
        # same random numbers as a draw of every variable, so a seed gives the samples it gave
        # before only the block was drawn (a float64 uniform per variable costs little).
        every = torch.rand((*rows.shape, 1), generator=generator, device=rows.device, dtype=torch.float64)
        u = every[rows]
    if temperature == 1:
        # The weights exp(z - max z) are the untempered probabilities up to their total, which the
        # draw sums anyway: the log-probability is then log(weight) - log(total), with no second
        # pass. They are made in place (``chosen`` is this draw's own copy): at 256 levels a fresh
        # tensor's first touch costs as much as the arithmetic. A drawn weight is never 0.
        weights = chosen.sub_(chosen.amax(-1, keepdim=True)).exp_()
        draws, total = inverse_cdf(weights, u)
        return draws, (weights.gather(-1, draws.unsqueeze(-1)).log() - total.to(weights.dtype).log()).squeeze(-1)
    if temperature != 0:
        draws = categorical_from_uniform(tempered_weights(chosen, temperature), u)
    log_norm = torch.logsumexp(chosen, -1, keepdim=True)
    return draws, (chosen.gather(-1, draws.unsqueeze(-1)) - log_norm).squeeze(-1)


def _put(flat: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``flat`` ``(N, D)`` with ``values`` ``(R,)`` written where ``rows`` ``(N, D)`` is True (a copy)."""
    out = flat.clone()
    out[rows] = values.to(out.dtype)
    return out


def row_sums(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per example, the sum of ``values`` ``(R,)`` (one per True of ``rows`` ``(N, D)``, row-major,
    as :func:`logits_at` orders them): ``(N,)`` in ``values``' dtype."""
    owner = rows.nonzero(as_tuple=True)[0]
    return torch.zeros(rows.shape[0], dtype=values.dtype, device=values.device).index_add_(0, owner, values)


def _random_ranks(free: torch.Tensor, generator) -> torch.Tensor:
    """A uniformly random order of each row's free variables: ``rank (N, D)``, free ones first."""
    scores = torch.rand(free.shape, generator=generator, device=free.device)
    scores = torch.where(free, scores, torch.full_like(scores, 2.0))  # clamped variables go last
    return ranks_of(scores)


def _least_confident_first(free: torch.Tensor, log_p: torch.Tensor, generator) -> torch.Tensor:
    """A random order of each row's free variables drawn without replacement with weights
    ``1 / p`` (Gumbel top-k on ``-log p``), ``log_p`` ``(N, D)`` the log-probability each variable's
    value had when it was drawn: ``rank (N, D)``, free ones first, the least confident likeliest first."""
    key = log_p.double() - _gumbel(free.shape, generator, free.device)
    return ranks_of(torch.where(free, key, torch.full_like(key, float("inf"))))


def ranks_of(scores: torch.Tensor) -> torch.Tensor:
    """Each entry's place along the last axis when sorted: ``scores.argsort(-1).argsort(-1)``, with
    the second sort (of a permutation) done as its inverse, a scatter, at a fraction of the cost."""
    return inverse_permutation(scores.argsort(-1))


def inverse_permutation(order: torch.Tensor) -> torch.Tensor:
    """``order.argsort(-1)`` for permutations ``order`` along the last axis."""
    places = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, places)


def _chain(samples, trace, temperatures, known, frames, frame_steps, acceptance=None) -> Chain:
    """The :class:`Chain` a conditional sampler returns (its trace: log-probabilities)."""
    return Chain(
        samples=samples,
        trace=trace,
        trace_kind=LOG_PROBABILITY,
        temperatures=list(temperatures),
        known=known,
        frames=torch.stack(frames) if frames else None,
        frame_steps=frame_steps,
        acceptance=acceptance,
    )


@torch.no_grad()
def ancestral(
    model,
    x: torch.Tensor,
    known: torch.Tensor,
    temperatures: list[float] | None = None,
    generator: torch.Generator | None = None,
    per_call: int = 1,
    order: str = "random",
    context=None,
    record_every: int | None = None,
    on_step=None,
    drawn_log_probs: torch.Tensor | None = None,
) -> Chain:
    """Fill the unknown variables one group at a time, each given everything known so far.

    Visits the unknown variables of each chain in a random order (``order="random"``, the
    orderless NADE procedure) or lowest-entropy first (``"greedy"``), sampling ``per_call``
    variables per model call. Step ``n`` uses ``temperatures[n]`` (default 1).

    ``on_step(n, states, trace)``, when given, is called with ``n = 0`` (the starting states)
    and after each step ``n``: ``states`` ``(N, *shape)`` (not modified later; do not modify it)
    and ``trace`` ``(N,)``, row ``n`` of the returned trace. An exception it raises stops the run.
    ``drawn_log_probs`` ``(N, D)``, when given, receives each drawn variable's log-probability.

    Returns:
        a :class:`Chain`; ``energy[n]`` is the mean log-probability of the variables drawn at step n.
    """
    N = x.shape[0]
    flat_x, given = _flat(x).clone(), _flat(known).clone()
    free_count = (~given).sum(1)
    steps = int(-(-free_count.max().item() // per_call)) if free_count.max() > 0 else 0
    temperatures = temperatures or [1.0] * steps
    ranks = _random_ranks(~given, generator) if order == "random" else None
    trace = torch.full((steps + 1, N), float("nan"), device=x.device)
    frames, frame_steps = ([x.clone()], [0]) if record_every else (None, [])
    if on_step is not None:
        on_step(0, flat_x.view_as(x), trace[0])
    for step in range(steps):
        if order == "greedy":  # the entropies of every free variable are needed to choose
            logits = _logits(model, flat_x.view_as(x), given.view_as(known), context)
            log_p = torch.log_softmax(logits.float(), -1)
            entropy = _flat(-(log_p.exp() * log_p).sum(-1))
            ranks = ranks_of(torch.where(given, torch.full_like(entropy, float("inf")), entropy))
            chosen = (ranks < per_call) & ~given
            logits = logits[chosen.view(logits.shape[:-1])]
        else:
            chosen = (ranks >= step * per_call) & (ranks < (step + 1) * per_call) & ~given
            logits = logits_at(model, flat_x.view_as(x), given.view_as(known), chosen, context)
        draws, log_probs = _draw(logits, chosen, temperatures[step], generator)
        flat_x = _put(flat_x, chosen, draws)
        given = given | chosen
        if drawn_log_probs is not None:
            drawn_log_probs[chosen] = log_probs.to(drawn_log_probs.dtype)
        counts = chosen.sum(1)
        trace[step + 1] = torch.where(counts > 0, row_sums(log_probs, chosen) / counts.clamp(min=1), trace[step + 1])
        record_frame(frames, frame_steps, flat_x.view_as(x), step, steps, record_every)
        if on_step is not None:
            on_step(step + 1, flat_x.view_as(x), trace[step + 1])
    return _chain(flat_x.view_as(x), trace, temperatures, known, frames, frame_steps)


@torch.no_grad()
def blocked_gibbs(
    model,
    x: torch.Tensor,
    known: torch.Tensor,
    steps: int,
    temperatures: list[float],
    block_fractions: list[float],
    generator: torch.Generator | None = None,
    resample: str = "independent",
    context=None,
    record_every: int | None = None,
    progress: bool = False,
    on_step=None,
    select: str = DEFAULT_BLOCK_SELECT,
) -> Chain:
    """Blocked Gibbs sampling (Yao et al. 2014) from a fill of the unknown variables.

    The chain starts from one independent draw of every unknown variable given the known ones.
    At step ``n`` a random fraction ``block_fractions[n]`` of each chain's unknown variables (at
    least one) is hidden and redrawn given all the others: all at once and independently
    (``resample="independent"``, Yao et al.), or one at a time in a random order
    (``"ancestral"``). With a block of one variable this is exact single-site Gibbs sampling.

    ``select="random"`` draws the block uniformly (Yao et al.); ``"confidence"`` draws it without
    replacement with weights ``1 / p``, p the probability each variable's value had when it was
    last drawn (ReMDM-style remasking of the least confident). The choice then depends on the
    state, so the chain is no longer an exact Gibbs sampler of the conditionals' joint.

    ``on_step(n, states, trace)`` is called as in :func:`ancestral`: with ``n = 0`` after the
    initial fill, then after every step.

    Returns:
        a :class:`Chain`; ``energy[n]`` is the mean log-probability of the variables redrawn at
        step n (row 0: of the initial fill).
    """
    N = x.shape[0]
    flat_known = _flat(known)
    free = ~flat_known
    free_count = free.sum(1)
    first = temperatures[0] if temperatures else 1.0
    draws, log_probs = _draw(logits_at(model, x, known, free, context), free, first, generator)
    flat_x = _put(_flat(x), free, draws)
    confidence = None  # the log-probability of each variable's value when it was drawn
    if select == "confidence":
        confidence = torch.zeros(free.shape, dtype=torch.float32, device=x.device)
        confidence[free] = log_probs.float()
    trace = torch.empty(steps + 1, N, device=x.device)
    trace[0] = row_sums(log_probs, free) / free_count.clamp(min=1)
    frames, frame_steps = ([flat_x.view_as(x).clone()], [0]) if record_every else (None, [])
    if on_step is not None:
        on_step(0, flat_x.view_as(x), trace[0])
    with progress_bar(steps, "sampling", enabled=progress) as advance:
        for step in range(steps):
            size = (block_fractions[step] * free_count).round().long().clamp(min=1)
            ranks = (
                _random_ranks(free, generator)
                if confidence is None
                else _least_confident_first(free, confidence, generator)
            )
            block = (ranks < size.unsqueeze(1)) & free
            if resample == "independent":
                logits = logits_at(model, flat_x.view_as(x), (~block).view_as(known), block, context)
                draws, log_probs = _draw(logits, block, temperatures[step], generator)
                flat_x = _put(flat_x, block, draws)
                trace[step + 1] = row_sums(log_probs, block) / block.sum(1)
                if confidence is not None:
                    confidence[block] = log_probs.float()
            else:
                inner = ancestral(
                    model,
                    flat_x.view_as(x),
                    (~block).view_as(known),
                    [temperatures[step]] * int(size.max()),
                    generator,
                    context=context,
                    drawn_log_probs=confidence,
                )
                flat_x = _flat(inner.samples)
                trace[step + 1] = inner.trace[1:].nanmean(0)
            record_frame(frames, frame_steps, flat_x.view_as(x), step, steps, record_every)
            if on_step is not None:
                on_step(step + 1, flat_x.view_as(x), trace[step + 1])
            advance()
    return _chain(flat_x.view_as(x), trace, temperatures, known, frames, frame_steps)


def still_masked(unknown: torch.Tensor, remaining: torch.Tensor, gamma: float, last: bool) -> torch.Tensor:
    """How many of each chain's variables stay masked after a decoding step (MaskGIT's rule):
    ``floor(unknown * gamma)``, kept within [1, remaining - 1] so that every step but the last
    decodes at least one and leaves at least one; the last step decodes all. ``(N,)`` long."""
    if last:
        return torch.zeros_like(remaining)
    masked = torch.floor(unknown.double() * gamma).long()
    return torch.maximum(torch.ones_like(masked), torch.minimum(remaining - 1, masked)).where(remaining > 0, 0)


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp_(min=1e-300)))


@torch.no_grad()
def confidence_decoding(
    model,
    x: torch.Tensor,
    known: torch.Tensor,
    steps: int,
    temperatures: list[float],
    schedule,
    choice_temperature: float,
    generator: torch.Generator | None = None,
    context=None,
    record_every: int | None = None,
    progress: bool = False,
    on_step=None,
) -> Chain:
    """MaskGIT's decoding (Chang et al. 2022): each step draws every masked variable, keeps the
    most confident draws and masks the rest again.

    At step ``n`` (of ``steps``) every still-masked variable is drawn from its conditional given
    the known and the decoded ones (at ``temperatures[n]``). Its confidence is the log-probability
    of its draw under the model plus Gumbel noise scaled by the choice temperature, which anneals
    linearly to 0: ``choice_temperature * (1 - (n + 1) / steps)``. The
    :func:`still_masked` least confident ones of each chain are masked again, their share of the
    initially unknown variables given by the mask schedule ``schedule(r)`` at ``r = (n + 1) / steps``;
    the others are decoded for good. Known variables never move, nor do decoded ones.

    Keeping one variable per step (a linear schedule over as many steps as unknown variables) with
    a choice temperature so high that the noise decides which is random-order ancestral sampling.

    Returns:
        a :class:`Chain`; ``energy[n]`` is the mean log-probability of the variables decoded at
        step n (NaN where a chain decoded none).
    """
    N = x.shape[0]
    flat_x, given = _flat(x).clone(), _flat(known).clone()
    unknown = (~given).sum(1)
    trace = torch.full((steps + 1, N), float("nan"), device=x.device)
    frames, frame_steps = ([x.clone()], [0]) if record_every else (None, [])
    if on_step is not None:
        on_step(0, flat_x.view_as(x), trace[0])
    with progress_bar(steps, "decoding", enabled=progress) as advance:
        for step in range(steps):
            masked = ~given
            remaining = masked.sum(1)
            if remaining.any():
                logits = logits_at(model, flat_x.view_as(x), given.view_as(known), masked, context)
                draws, log_probs = _draw(logits, masked, temperatures[step], generator)
                ratio = (step + 1) / steps
                stay = still_masked(unknown, remaining, schedule(ratio), step == steps - 1)
                noise = _gumbel(masked.shape, generator, x.device)[masked]
                score = torch.full(masked.shape, float("inf"), dtype=torch.float64, device=x.device)
                score[masked] = log_probs.double() + choice_temperature * (1 - ratio) * noise
                keep = masked & (ranks_of(score) >= stay.unsqueeze(1))  # the least confident stay masked
                kept = keep[masked]  # (R,): which of the draws are kept, in the draws' order
                flat_x = _put(flat_x, keep, draws[kept])  # a new tensor: on_step's states stay as they were
                given = given | keep
                counts = keep.sum(1)
                sums = row_sums(torch.where(kept, log_probs, torch.zeros_like(log_probs)), masked)
                trace[step + 1] = torch.where(counts > 0, sums / counts.clamp(min=1), trace[step + 1])
            record_frame(frames, frame_steps, flat_x.view_as(x), step, steps, record_every)
            if on_step is not None:
                on_step(step + 1, flat_x.view_as(x), trace[step + 1])
            advance()
    return _chain(flat_x.view_as(x), trace, temperatures, known, frames, frame_steps)


@torch.no_grad()
def order_log_probability(model, x, known, ranks, context=None, max_rows: int = 4096) -> torch.Tensor:
    """``log p_sigma(x_free | x_known)`` by the chain rule in the order ``ranks`` gives: ``(N,)``.

    ``x`` ``(N, *shape)``; ``known`` the clamped variables; ``ranks`` ``(N, D)``, each free
    variable's place in the order (0 first; clamped ones rank after every free one). Costs one
    network row per free variable: the rows of all positions are batched, ``max_rows`` at a time.
    """
    N = x.shape[0]
    flat_x, given = _flat(x), _flat(known)
    free_count = (~given).sum(1)
    positions = int(free_count.max()) if N else 0
    total = torch.zeros(N, dtype=torch.float64, device=x.device)
    per_call = max(1, max_rows // max(N, 1))
    for start in range(0, positions, per_call):
        ks = torch.arange(start, min(start + per_call, positions), device=x.device)  # (k,)
        before = ranks.unsqueeze(0) < ks.view(-1, 1, 1)  # (k, N, D): what precedes position k
        target = (ranks.unsqueeze(0) == ks.view(-1, 1, 1)) & ~given  # (k, N, D)
        rows_known = (given.unsqueeze(0) | before).reshape(-1, given.shape[1])
        rows_x = flat_x.repeat(len(ks), 1)
        rows_context = None if context is None else context.repeat(len(ks), *([1] * (context.dim() - 1)))
        where = target.reshape(-1, given.shape[1])
        logits = logits_at(model, rows_x.view(-1, *x.shape[1:]), rows_known.view(-1, *x.shape[1:]), where, rows_context)
        log_p = torch.log_softmax(logits.double(), -1).gather(-1, rows_x[where].unsqueeze(-1)).squeeze(-1)
        total += row_sums(log_p, where).view(len(ks), N).sum(0)
    return total


def _tempered_log_probs(logits: torch.Tensor, values: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / T)[values]`` per row: ``(R,)`` float64."""
    return torch.log_softmax(logits.double() / temperature, -1).gather(-1, values.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def metropolis_hastings(
    model,
    x: torch.Tensor,
    known: torch.Tensor,
    steps: int,
    temperatures: list[float],
    block_fractions: list[float],
    generator: torch.Generator | None = None,
    context=None,
    record_every: int | None = None,
    progress: bool = False,
    on_step=None,
) -> Chain:
    """Metropolis-Hastings whose target is ``p_sigma(x_free | x_known)^(1/T)``: the joint that the
    model defines by the chain rule in one fixed random order sigma (one for every chain, drawn
    from ``generator``), tempered exactly.

    A conditional model need not be coherent (Orderless NADE is not): each order defines its own
    joint, and tempering each conditional (as the Gibbs samplers do) tempers none of them. Here a
    step proposes to redraw a random block of ``block_fractions[n]`` of the free variables from
    their tempered conditionals given the rest, ``q(x'_B | x_rest) = prod softmax(z / T)[x'_i]``,
    and accepts with probability ``min(1, [p(x')^(1/T) q(x_B | x_rest)] / [p(x)^(1/T) q(x'_B | x_rest)])``.
    Each step costs one network row per chain for the proposal and one per free variable for
    ``p_sigma(x')``: practical where the variables are few (digits, strings, short music).

    Returns:
        a :class:`Chain` whose trace row n is ``log p_sigma(x) / free variables`` after step n
        (row 0: the initial fill), with ``acceptance`` ``(S, N)`` (1 where a chain moved).
    """
    if any(t <= 0 for t in temperatures):
        raise ValueError("Metropolis-Hastings needs temperatures > 0 (T = 0 is no distribution to sample)")
    N = x.shape[0]
    flat_known = _flat(known)
    free = ~flat_known
    free_count = free.sum(1)
    sigma = torch.randperm(free.shape[1], generator=generator, device="cpu").to(x.device)
    # each chain's order: the free variables in sigma's order, then the clamped ones
    place = torch.where(free, inverse_permutation(sigma).expand_as(free), free.shape[1] + sigma.new_zeros(()))
    ranks = ranks_of(place.double())
    draws, _ = _draw(logits_at(model, x, known, free, context), free, temperatures[0], generator)
    flat_x = _put(_flat(x), free, draws)
    current = order_log_probability(model, flat_x.view_as(x), known, ranks, context)
    trace = torch.empty(steps + 1, N, device=x.device)
    trace[0] = (current / free_count.clamp(min=1)).float()
    acceptance = torch.zeros(steps, N, device=x.device)
    frames, frame_steps = ([flat_x.view_as(x).clone()], [0]) if record_every else (None, [])
    if on_step is not None:
        on_step(0, flat_x.view_as(x), trace[0])
    with progress_bar(steps, "sampling", enabled=progress) as advance:
        for step in range(steps):
            T = temperatures[step]
            size = (block_fractions[step] * free_count).round().long().clamp(min=1)
            block = (_random_ranks(free, generator) < size.unsqueeze(1)) & free
            logits = logits_at(model, flat_x.view_as(x), (~block).view_as(known), block, context)
            old = flat_x[block]
            proposal, _ = _draw(logits.clone(), block, T, generator)
            forward = row_sums(_tempered_log_probs(logits, proposal, T), block)
            backward = row_sums(_tempered_log_probs(logits, old, T), block)
            candidate = _put(flat_x, block, proposal)
            proposed = order_log_probability(model, candidate.view_as(x), known, ranks, context)
            log_ratio = (proposed - current) / T + backward - forward
            u = torch.rand(N, generator=generator, device=x.device, dtype=torch.float64)
            accept = (u.log() < log_ratio) & (free_count > 0)
            flat_x = torch.where(accept.unsqueeze(1), candidate, flat_x)
            current = torch.where(accept, proposed, current)
            acceptance[step] = accept.float()
            trace[step + 1] = (current / free_count.clamp(min=1)).float()
            record_frame(frames, frame_steps, flat_x.view_as(x), step, steps, record_every)
            if on_step is not None:
                on_step(step + 1, flat_x.view_as(x), trace[step + 1])
            advance()
    return _chain(flat_x.view_as(x), trace, temperatures, known, frames, frame_steps, acceptance=acceptance)
