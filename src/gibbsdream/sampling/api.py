"""``gibbsdream.sample``: one entry point for every model family and sampler."""

from __future__ import annotations

import torch

from ..errors import UsageError, check_seed
from .init import initial_states
from .rbm_gibbs import FINALS, compiled_sampler_fits, gibbs_compiled, gibbs_energy_model
from .schedules import block_schedule, schedule_values, temperature_schedule, temperature_values

SAMPLING_ENGINES = ("auto", "torch", "numba")


def make_generator(seed: int | None, device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (a fresh random seed when None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
        return generator
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):
        value = None
    # Up to what a PyTorch seed holds (64 bits), not check_seed's MAX_SEED: the trainers derive
    # their other generators from seed + small offsets.
    if value is None or value != seed or not 0 <= value < 2**64:
        raise UsageError(f"a seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    generator.manual_seed(value)
    return generator


def check_count(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


def sample(
    model,
    num_chains: int | None = None,
    steps: int = 1000,
    temperature=1.0,
    *,
    anneal: str = "geometric",
    init="uniform",
    x: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    final: str = "sample",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    data: torch.Tensor | None = None,
    codec=None,
    record_every: int | None = None,
    progress: bool = False,
    sampler: str | None = None,
    block="yao:0.9,0.1,0.7",
    context=None,
    per_call: int = 1,
    order: str = "random",
    on_step=None,
    engine: str = "auto",
):
    """Draw samples from ``model`` by running many chains in parallel.

    For an energy model (:class:`gibbsdream.RBM`) this is block Gibbs sampling of the tempered
    joint ``p_T(v, h) ∝ exp(-E(v, h) / T)``, with ``T`` constant or annealed.

    Args:
        model: the model to sample from.
        num_chains: number of parallel chains ``N`` (default: ``len(x)`` if given, else 100).
        steps: number of Gibbs sweeps ``S``.
        temperature: a number, a text form (``"1.5:0.2"``, ``"linear:1,0.1"``) or a schedule.
        anneal: how ``"a:b"`` temperatures go from a to b: ``geometric`` (default), ``linear``
            or ``cosine``.
        init: where chains start: a name from ``gibbsdream.sampling.init.INITS`` or a
            ``(N, V)`` tensor of states.
        x: ``(N, V)`` or ``(V,)`` states whose ``known`` positions are clamped; without
            ``known``, the chains simply start at ``x`` (``init`` is then not used).
        known: ``(N, V)`` or ``(V,)`` bool, True = clamped (never resampled).
        final: ``"sample"``, or ``"argmax"`` for a deterministic visible half of the last sweep.
        seed, generator: randomness (same seed, same device -> same samples).
        data: ``(M, V)`` training states, for the ``train`` and ``silhouettes`` inits.
        codec: the string codec, for the ``spaces`` and ``chunks`` inits.
        record_every: keep frames of the chain every this many steps.
        progress: show a progress bar (on a terminal).
        sampler: for conditional models: ``"gibbs"`` (Yao et al.'s blocked Gibbs, independent
            redraws; the default), ``"ancestral-gibbs"`` (blocks redrawn one variable at a time)
            or ``"ancestral"`` (orderless-NADE ancestral sampling).
        block: for the Gibbs samplers: a fraction in (0, 1] or a block schedule such as
            ``"yao:0.9,0.1,0.7"``.
        context: passed to a conditional model's ``logits`` (e.g. a caption).
        per_call: for ``sampler="ancestral"``: variables drawn per model call (1 = exact).
        order: for ``sampler="ancestral"``: ``"random"`` (orderless NADE) or ``"greedy"``
            (lowest entropy first).
        on_step: called as ``on_step(n, states, trace)`` with the states after step ``n``
            (``n = 0``: where the chains start) and their row ``(N,)`` of the trace, for live
            views; to stop a run early, raise an exception from it. It must not modify
            ``states`` and must not draw from ``generator``.
        engine: for energy models: ``"numba"`` runs the sweeps as one compiled loop on several
            CPU threads (categorical RBMs on the CPU, without ``record_every`` or ``on_step``),
            ``"torch"`` as PyTorch operations (anywhere), ``"auto"`` (default) the first where it
            applies. Both draw the same random numbers; their samples differ only where float
            rounding flips a draw, about once in tens of millions.

    For a conditional model (``num_categories`` and ``logits(x, known, context)``), ``x`` and
    ``known`` are ``(N, *shape)`` and required; ``energy`` is then the per-step mean
    log-probability of the variables redrawn.

    Returns:
        :class:`gibbsdream.sampling.Chain` with ``samples`` ``(N, V)`` (energy models) or
        ``(N, *shape)`` (conditional models) and ``energy (S + 1, N)``; for ``sampler="ancestral"``
        ``steps`` is ignored and S is the number of model calls.
    """
    if seed is not None:
        check_seed(seed)
    if not hasattr(model, "sample_hidden"):
        if not hasattr(model, "logits"):
            raise UsageError(
                f"sample() does not know how to sample a {type(model).__name__}; it needs an energy model "
                "(gibbsdream.RBM) or a conditional model with num_categories and logits(x, known, context)"
            )
        return sample_conditional(
            model, x, known, steps=steps, temperature=temperature, anneal=anneal, sampler=sampler or "gibbs",
            block=block, seed=seed, generator=generator, context=context, record_every=record_every,
            progress=progress, per_call=per_call, order=order, on_step=on_step,
        )
    steps = check_count("steps", steps)
    if final not in FINALS:
        raise UsageError(f"final must be one of {', '.join(FINALS)}, got {final!r}")
    if record_every is not None:
        check_count("record_every", record_every)
    schedule = temperature_schedule(temperature, anneal)
    temperatures = temperature_values(schedule, steps)
    device = model.weight.device
    if generator is None:
        generator = make_generator(seed, device)

    if x is not None:
        x = torch.as_tensor(x, device=device).long()
        x = x.unsqueeze(0) if x.dim() == 1 else x
        if x.dim() != 2 or x.shape[1] != model.num_visible:
            raise UsageError(f"x has shape {tuple(x.shape)}; expected (N, {model.num_visible}) or ({model.num_visible},)")
    if num_chains is None:
        num_chains = x.shape[0] if x is not None and x.shape[0] > 1 else 100
    check_count("num_chains", num_chains)
    if isinstance(init, str):
        v = initial_states(init, num_chains, model, data=data, codec=codec, generator=generator)
    else:
        v = torch.as_tensor(init, device=device).long()
        if v.shape != (num_chains, model.num_visible):
            raise UsageError(f"init states have shape {tuple(v.shape)}, expected {(num_chains, model.num_visible)}")
    if v.min() < 0 or v.max() >= model.num_categories:
        raise UsageError(f"states must be category indices in [0, {model.num_categories})")
    if known is not None:
        if x is None:
            raise UsageError("known= needs x= (the values of the clamped positions)")
        known = torch.as_tensor(known, device=device).bool()
        known = known.unsqueeze(0) if known.dim() == 1 else known
        if known.dim() != 2 or known.shape[1] != model.num_visible or known.shape[0] not in (1, num_chains):
            raise UsageError(f"known has shape {tuple(known.shape)}; expected ({num_chains}, {model.num_visible}) or ({model.num_visible},)")
        known = known.expand(num_chains, -1)
        v = torch.where(known, x.expand(num_chains, -1), v)
    elif x is not None:
        v = x.expand(num_chains, -1).clone()

    if engine not in SAMPLING_ENGINES:
        raise UsageError(f"engine must be one of {', '.join(SAMPLING_ENGINES)}, got {engine!r}")
    compiled = engine != "torch" and record_every is None and on_step is None and compiled_sampler_fits(model)
    if engine == "numba" and not compiled:
        raise UsageError("the numba sampling engine runs categorical RBMs on the CPU without frames (--every, "
                         "record_every) or on_step, where numba and a PyTorch with MKL are installed; "
                         "use the torch engine (--engine torch, engine='torch') or auto")
    if compiled:
        chain = gibbs_compiled(model, v, steps, temperatures, known=known, final=final, generator=generator,
                               progress=progress)
    else:
        chain = gibbs_energy_model(
            model, v, steps, temperatures, known=known, final=final, generator=generator,
            record_every=record_every, progress=progress, on_step=on_step,
        )
    chain.settings = {
        "temperature": str(schedule),
        "init": init if isinstance(init, str) else "given",
        "steps": steps,
        "final": final,
        "chains": num_chains,
    }
    return chain


CONDITIONAL_SAMPLERS = ("gibbs", "ancestral-gibbs", "ancestral")


ANCESTRAL_ORDERS = ("random", "greedy")


def sample_conditional(
    model, x, known, *, steps, temperature, anneal, sampler, block, seed, generator, context, record_every, progress,
    per_call=1, order="random", on_step=None,
):
    """The conditional-model half of :func:`sample` (see there)."""
    from .conditional import ancestral, blocked_gibbs

    if sampler not in CONDITIONAL_SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; choose one of {', '.join(CONDITIONAL_SAMPLERS)}")
    if x is None or known is None:
        raise UsageError("sampling a conditional model needs x= (N, *shape) states and known= (N, *shape) bools")
    device = next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.as_tensor(x).device)
    x, known = torch.as_tensor(x, device=device).long(), torch.as_tensor(known, device=device).bool()
    if x.shape != known.shape:
        raise UsageError(f"x has shape {tuple(x.shape)} but known has {tuple(known.shape)}; they must match")
    if generator is None:
        generator = make_generator(seed, device)
    temperature_spec = temperature_schedule(temperature, anneal)
    if sampler == "ancestral":
        per_call = check_count("per_call", per_call)
        if order not in ANCESTRAL_ORDERS:
            raise UsageError(f"unknown ancestral order {order!r}; choose one of {', '.join(ANCESTRAL_ORDERS)}")
        free = int((~known).reshape(known.shape[0], -1).sum(1).max())
        calls = max(-(-free // per_call), 1)
        chain = ancestral(model, x, known, temperature_values(temperature_spec, calls), generator, per_call=per_call,
                          order=order, context=context, record_every=record_every, on_step=on_step)
        steps = calls
    else:
        steps = check_count("steps", steps)
        fractions = schedule_values(block_schedule(block), steps)
        chain = blocked_gibbs(
            model, x, known, steps, temperature_values(temperature_spec, steps), fractions, generator,
            resample="independent" if sampler == "gibbs" else "ancestral", context=context,
            record_every=record_every, progress=progress, on_step=on_step,
        )
    chain.settings = {"sampler": sampler, "temperature": str(temperature_spec), "steps": steps,
                      "block": str(block_schedule(block)), "chains": x.shape[0]}
    if sampler == "ancestral":
        chain.settings.update(per_call=per_call, order=order)
    return chain
