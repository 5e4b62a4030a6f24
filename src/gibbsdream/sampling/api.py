"""``gibbsdream.sample``: one entry point for every model family and sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, UsageError
from ..randomness import check_seed, make_generator
from .init import initial_states
from .rbm_gibbs import FINALS, compiled_sampler_fits, gibbs_compiled, gibbs_energy_model
from .registry import TRACE_KINDS, Request, Sampler, get_sampler, protocol_of, register
from .replica_exchange import DEFAULT_REPLICAS, cold_temperature, replica_exchange
from .schedules import (
    BLOCK_SELECTIONS,
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_SELECT,
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_MASK_SCHEDULE,
    block_schedule,
    mask_schedule,
    schedule_values,
    temperature_schedule,
    temperature_values,
)

SAMPLING_ENGINES = ("auto", "torch", "numba")


def check_count(name: str, value, least: int = 1) -> int:
    """``value`` if it is a whole number >= ``least``, else a ConfigError naming the setting ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}", name)
    return value


def sample(
    model,
    num_chains: int | None = None,
    steps: int = 1000,
    temperature=1.0,
    *,
    anneal: str = "geometric",
    x: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every: int | None = None,
    progress: bool = False,
    sampler: str | None = None,
    context=None,
    on_step=None,
    **options,
):
    """Draw samples from ``model`` by running many chains in parallel.

    The model's protocol (:func:`~gibbsdream.sampling.registry.protocol_of`) and ``sampler`` pick
    a registered sampler (:mod:`gibbsdream.sampling.registry`); ``options`` are that sampler's
    own options, and an option it does not take is a UsageError that lists the ones it does.

    For an energy model (:class:`gibbsdream.RBM`), sampler ``"gibbs"`` is block Gibbs sampling of
    the tempered joint ``p_T(v, h) ∝ exp(-E(v, h) / T)``, with ``T`` constant or annealed.

    Args (every sampler):
        model: the model to sample from.
        steps: number of Gibbs sweeps ``S``.
        temperature: a number, a text form (``"1.5:0.2"``, ``"linear:1,0.1"``) or a schedule.
        anneal: how ``"a:b"`` temperatures go from a to b: ``geometric`` (default), ``linear``
            or ``cosine``.
        x: ``(N, V)`` or ``(V,)`` states whose ``known`` positions are clamped; without
            ``known``, the chains simply start at ``x`` (``init`` is then not used).
        known: ``(N, V)`` or ``(V,)`` bool, True = clamped (never resampled).
        seed, generator: randomness (same seed, same device -> same samples).
        record_every: keep frames of the chain every this many steps.
        progress: show a progress bar (on a terminal).
        sampler: the sampler's name: ``"gibbs"`` (the default) for energy models; for conditional
            models ``"gibbs"`` (Yao et al.'s blocked Gibbs, independent redraws; the default),
            ``"ancestral-gibbs"`` (blocks redrawn one variable at a time) or ``"ancestral"``
            (orderless-NADE ancestral sampling).
        context: conditional models only: passed to the model's ``logits`` (e.g. a caption).
        on_step: called as ``on_step(n, states, trace)`` with the states after step ``n``
            (``n = 0``: where the chains start) and their row ``(N,)`` of the trace, for live
            views; to stop a run early, raise an exception from it. It must not modify
            ``states`` and must not draw from ``generator``.

    Options of the energy ``gibbs`` sampler (:class:`EnergyGibbsOptions`):
        num_chains: number of parallel chains ``N`` (default: ``len(x)`` if given, else 100).
        init: where chains start: a name from ``gibbsdream.sampling.init.INITS`` or a
            ``(N, V)`` tensor of states.
        final: ``"sample"``, or ``"argmax"`` for a deterministic visible half of the last sweep.
        engine: ``"numba"`` runs the sweeps as one compiled loop on several CPU threads
            (categorical RBMs on the CPU, without ``record_every`` or ``on_step``), ``"torch"`` as
            PyTorch operations (anywhere), ``"auto"`` (default) the first where it applies. Both
            draw the same random numbers; their samples differ only where float rounding flips a
            draw, about once in tens of millions.
        data: ``(M, V)`` training states, for the ``train`` and ``silhouettes`` inits.
        codec: the string codec, for the ``spaces`` and ``chunks`` inits.

    Options of the conditional ``gibbs`` and ``ancestral-gibbs`` samplers (:class:`BlockOptions`):
        block: a fraction in (0, 1] or a block schedule such as ``"yao:0.9,0.1,0.7"`` (the default,
            :data:`gibbsdream.sampling.schedules.DEFAULT_BLOCK`).
        block_select: ``"random"`` (a uniformly random block, Yao et al.) or ``"confidence"``
            (the least confident variables first, ReMDM-style: drawn without replacement with
            weights 1/p, p the probability each variable's value had when it was drawn).

    Options of the conditional ``mh`` sampler (:class:`MHOptions`):
        block: the share of the free variables each proposal redraws (as for ``gibbs``).

    Options of the conditional ``confidence`` sampler (:class:`ConfidenceOptions`):
        mask_schedule: MaskGIT's share still masked after a fraction r of the steps: ``"cosine"``
            (default), ``"arccos"``, ``"linear"`` or ``"pow:P"``.
        choice_temperature: scale of the Gumbel noise on the confidences at the first step,
            annealed linearly to 0 (default 4.5, MaskGIT's; 0 keeps the most confident draws).

    Options of the conditional ``ancestral`` sampler (:class:`AncestralOptions`):
        per_call: variables drawn per model call (1 = exact).
        order: ``"random"`` (orderless NADE) or ``"greedy"`` (lowest entropy first).

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
    protocol = protocol_of(model)
    chosen = get_sampler(protocol, "gibbs" if sampler is None else sampler)
    if num_chains is not None:
        options["num_chains"] = num_chains
    if context is not None and protocol != "conditional":
        options["context"] = context  # refused below, with the options that do apply
    options = chosen.make_options(options)
    if protocol == "conditional":
        x, known = _conditional_states(model, x, known)
    schedule = temperature_schedule(temperature, anneal)
    if generator is None:
        generator = make_generator(seed, _device(model, x))
    request = Request(
        steps=steps,
        temperature=schedule,
        x=x,
        known=known,
        generator=generator,
        record_every=record_every,
        progress=progress,
        on_step=on_step,
        context=context,
    )
    chain = chosen.run(model, request, options)
    if chain.trace_kind is None:  # a sampler registered from outside may not say; its protocol decides
        chain.trace_kind = TRACE_KINDS[protocol]
    return chain


def _device(model, x):
    """Where ``model`` keeps its parameters (where ``x`` is, for a model without any)."""
    for parameter in getattr(model, "parameters", lambda: iter(()))():
        return parameter.device
    return torch.as_tensor(x).device if x is not None else torch.device("cpu")


# ---- energy models: block Gibbs ------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyGibbsOptions:
    """The options of block Gibbs sampling of an energy model (see :func:`sample`)."""

    num_chains: int | None = None
    init: Any = "uniform"
    final: str = "sample"
    engine: str = "auto"
    data: torch.Tensor | None = None
    codec: Any = None


def _energy_start(model, request: Request, options):
    """The starting states of an energy model's chains from the request and the options' ``init``,
    ``num_chains``, ``data`` and ``codec``: ``(v (N, V), known (N, V) or None, N)``."""
    generator, x, known, init = request.generator, request.x, request.known, options.init
    num_chains = options.num_chains
    device = model.weight.device
    if x is not None:
        x = torch.as_tensor(x, device=device).long()
        x = x.unsqueeze(0) if x.dim() == 1 else x
        if x.dim() != 2 or x.shape[1] != model.num_visible:
            raise UsageError(
                f"x has shape {tuple(x.shape)}; expected (N, {model.num_visible}) or ({model.num_visible},)"
            )
    if num_chains is None:
        num_chains = x.shape[0] if x is not None and x.shape[0] > 1 else 100
    check_count("num_chains", num_chains)
    if isinstance(init, str):
        v = initial_states(init, num_chains, model, data=options.data, codec=options.codec, generator=generator)
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
            raise UsageError(
                f"known has shape {tuple(known.shape)}; "
                f"expected ({num_chains}, {model.num_visible}) or ({model.num_visible},)"
            )
        known = known.expand(num_chains, -1)
        v = torch.where(known, x.expand(num_chains, -1), v)
    elif x is not None:
        v = x.expand(num_chains, -1).clone()
    return v, known, num_chains


def energy_gibbs(model, request: Request, options: EnergyGibbsOptions):
    """Block Gibbs sampling of an energy model: the ``gibbs`` sampler of energy models."""
    steps = check_count("steps", request.steps)
    final, init, engine = options.final, options.init, options.engine
    if final not in FINALS:
        raise UsageError(f"final must be one of {', '.join(FINALS)}, got {final!r}")
    record_every, on_step, generator = request.record_every, request.on_step, request.generator
    if record_every is not None:
        check_count("record_every", record_every)
    temperatures = temperature_values(request.temperature, steps)
    v, known, num_chains = _energy_start(model, request, options)

    if engine not in SAMPLING_ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(SAMPLING_ENGINES)}, got {engine!r}", "engine")
    compiled = engine != "torch" and record_every is None and on_step is None and compiled_sampler_fits(model)
    if engine == "numba" and not compiled:
        raise ConfigError(
            "the numba sampling engine runs categorical RBMs on the CPU without frames (every) or on_step, "
            'where numba and a PyTorch with MKL are installed; use engine="torch" (or "auto")',
            "engine",
            "every",
        )
    if compiled:
        chain = gibbs_compiled(
            model, v, steps, temperatures, known=known, final=final, generator=generator, progress=request.progress
        )
    else:
        chain = gibbs_energy_model(
            model,
            v,
            steps,
            temperatures,
            known=known,
            final=final,
            generator=generator,
            record_every=record_every,
            progress=request.progress,
            on_step=on_step,
        )
    chain.settings = {
        "temperature": str(request.temperature),
        "init": init if isinstance(init, str) else "given",
        "steps": steps,
        "final": final,
        "chains": num_chains,
    }
    return chain


@dataclass(frozen=True)
class ReplicaExchangeOptions:
    """The options of replica exchange for an energy model (see :func:`sample`)."""

    num_chains: int | None = None
    init: Any = "uniform"
    data: torch.Tensor | None = None
    codec: Any = None
    replicas: int = DEFAULT_REPLICAS
    hot: float | None = None
    target_swap_rate: float = 0.3
    burn_in: float = 0.25


def replica_exchange_sampling(model, request: Request, options: ReplicaExchangeOptions):
    """Replica exchange of an energy model: the ``replica-exchange`` sampler of energy models."""
    steps = check_count("steps", request.steps)
    replicas = check_count("replicas", options.replicas, least=2)
    cold = cold_temperature(request.temperature, steps)
    hot = 10 * cold if options.hot is None else options.hot
    if not (isinstance(hot, (int, float)) and math.isfinite(hot) and hot > cold):
        raise UsageError(f"hot must be a temperature above {cold:g}, got {hot!r}")
    target, burn = options.target_swap_rate, options.burn_in
    if not (isinstance(target, (int, float)) and 0 < target < 1):
        raise UsageError(f"target_swap_rate must lie in (0, 1), got {target!r}")
    if not (isinstance(burn, (int, float)) and 0 <= burn < 1):
        raise UsageError(f"burn_in must be a share of the steps in [0, 1), got {burn!r}")
    if request.record_every is not None:
        check_count("record_every", request.record_every)
    v, known, num_chains = _energy_start(model, request, options)
    chain = replica_exchange(
        model,
        v,
        steps,
        cold,
        replicas,
        float(hot),
        float(target),
        math.floor(burn * steps),
        known=known,
        generator=request.generator,
        record_every=request.record_every,
        progress=request.progress,
        on_step=request.on_step,
    )
    chain.settings = {
        "sampler": "replica-exchange",
        "temperature": str(request.temperature),
        "init": options.init if isinstance(options.init, str) else "given",
        "steps": steps,
        "chains": num_chains,
        "replicas": replicas,
        "burn_in_steps": math.floor(burn * steps),
        **chain.settings,
    }
    return chain


# ---- conditional models: blocked Gibbs and ancestral sampling ------------------------------------


ANCESTRAL_ORDERS = ("random", "greedy")


def _conditional_states(model, x, known):
    """``x`` and ``known`` as long and bool tensors on the model's device; both are required."""
    if x is None or known is None:
        raise UsageError("sampling a conditional model needs x= (N, *shape) states and known= (N, *shape) bools")
    device = _device(model, x)
    x, known = torch.as_tensor(x, device=device).long(), torch.as_tensor(known, device=device).bool()
    if x.shape != known.shape:
        raise UsageError(f"x has shape {tuple(x.shape)} but known has {tuple(known.shape)}; they must match")
    return x, known


@dataclass(frozen=True)
class BlockOptions:
    """The options of the blocked Gibbs samplers of conditional models (see :func:`sample`)."""

    block: Any = DEFAULT_BLOCK
    block_select: str = DEFAULT_BLOCK_SELECT


@dataclass(frozen=True)
class AncestralOptions:
    """The options of ancestral sampling of conditional models (see :func:`sample`)."""

    per_call: int = 1
    order: str = "random"


def _blocked_gibbs(resample: str, name: str):
    def run(model, request: Request, options: BlockOptions):
        # start-up time: the CLI imports sampling.api at start-up; conditional loads on first use
        from .conditional import blocked_gibbs

        steps = check_count("steps", request.steps)
        block = block_schedule(options.block)
        if options.block_select not in BLOCK_SELECTIONS:
            raise UsageError(
                f"unknown block_select {options.block_select!r}; choose one of {', '.join(BLOCK_SELECTIONS)}"
            )
        chain = blocked_gibbs(
            model,
            request.x,
            request.known,
            steps,
            temperature_values(request.temperature, steps),
            schedule_values(block, steps),
            request.generator,
            resample=resample,
            select=options.block_select,
            context=request.context,
            record_every=request.record_every,
            progress=request.progress,
            on_step=request.on_step,
        )
        chain.settings = {
            "sampler": name,
            "temperature": str(request.temperature),
            "steps": steps,
            "block": str(block),
            "chains": request.x.shape[0],
        }
        if options.block_select != DEFAULT_BLOCK_SELECT:
            chain.settings["block_select"] = options.block_select
        return chain

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    return run


@dataclass(frozen=True)
class ConfidenceOptions:
    """The options of confidence decoding of conditional models (see :func:`sample`)."""

    mask_schedule: Any = DEFAULT_MASK_SCHEDULE
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE


def confidence_sampling(model, request: Request, options: ConfidenceOptions):
    """MaskGIT's confidence decoding: the ``confidence`` sampler of conditional models."""
    # start-up time: the CLI imports sampling.api at start-up; conditional loads on first use
    from .conditional import confidence_decoding

    steps = check_count("steps", request.steps)
    schedule = mask_schedule(options.mask_schedule)
    tau = options.choice_temperature
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
        raise UsageError(f"choice_temperature must be a finite number >= 0, got {tau!r}")
    chain = confidence_decoding(
        model,
        request.x,
        request.known,
        steps,
        temperature_values(request.temperature, steps),
        schedule,
        float(tau),
        request.generator,
        context=request.context,
        record_every=request.record_every,
        progress=request.progress,
        on_step=request.on_step,
    )
    chain.settings = {
        "sampler": "confidence",
        "temperature": str(request.temperature),
        "steps": steps,
        "mask_schedule": str(schedule),
        "choice_temperature": float(tau),
        "chains": request.x.shape[0],
    }
    return chain


@dataclass(frozen=True)
class MHOptions:
    """The options of Metropolis-Hastings of conditional models (see :func:`sample`)."""

    block: Any = DEFAULT_BLOCK


def mh_sampling(model, request: Request, options: MHOptions):
    """Exact tempering of one order's joint: the ``mh`` sampler of conditional models."""
    # start-up time: the CLI imports sampling.api at start-up; conditional loads on first use
    from .conditional import metropolis_hastings

    steps = check_count("steps", request.steps)
    block = block_schedule(options.block)
    temperatures = temperature_values(request.temperature, steps)
    if min(temperatures) <= 0:
        raise UsageError("the mh sampler needs temperatures > 0 (0, the argmax, is no distribution to sample)")
    chain = metropolis_hastings(
        model,
        request.x,
        request.known,
        steps,
        temperatures,
        schedule_values(block, steps),
        request.generator,
        context=request.context,
        record_every=request.record_every,
        progress=request.progress,
        on_step=request.on_step,
    )
    free = int((~request.known).reshape(request.known.shape[0], -1).sum(1).max())
    chain.settings = {
        "sampler": "mh",
        "temperature": str(request.temperature),
        "steps": steps,
        "block": str(block),
        "chains": request.x.shape[0],
        "acceptance_rate": float(chain.acceptance.mean()) if steps else None,
        "network_rows_per_step": 1 + free,  # the proposal, and the order's chain rule over the free variables
    }
    return chain


def ancestral_sampling(model, request: Request, options: AncestralOptions):
    """Orderless-NADE ancestral sampling: the ``ancestral`` sampler of conditional models."""
    # start-up time: the CLI imports sampling.api at start-up; conditional loads on first use
    from .conditional import ancestral

    per_call, order, known = check_count("per_call", options.per_call), options.order, request.known
    if order not in ANCESTRAL_ORDERS:
        raise UsageError(f"unknown ancestral order {order!r}; choose one of {', '.join(ANCESTRAL_ORDERS)}")
    free = int((~known).reshape(known.shape[0], -1).sum(1).max())
    calls = max(-(-free // per_call), 1)
    chain = ancestral(
        model,
        request.x,
        known,
        temperature_values(request.temperature, calls),
        request.generator,
        per_call=per_call,
        order=order,
        context=request.context,
        record_every=request.record_every,
        on_step=request.on_step,
    )
    chain.settings = {
        "sampler": "ancestral",
        "temperature": str(request.temperature),
        "steps": calls,
        "chains": request.x.shape[0],
        "per_call": per_call,
        "order": order,
    }
    return chain


register(
    Sampler(
        "gibbs", "energy", EnergyGibbsOptions, energy_gibbs, "block Gibbs sweeps v -> h -> v of many parallel chains"
    )
)
register(
    Sampler(
        "replica-exchange",
        "energy",
        ReplicaExchangeOptions,
        replica_exchange_sampling,
        "R replicas per chain on an adaptive temperature ladder, neighbours swapped by the exact Metropolis rule",
    )
)
register(
    Sampler(
        "gibbs",
        "conditional",
        BlockOptions,
        _blocked_gibbs("independent", "gibbs"),
        "Yao et al.'s blocked Gibbs: each step redraws a block of variables independently",
    )
)
register(
    Sampler(
        "ancestral-gibbs",
        "conditional",
        BlockOptions,
        _blocked_gibbs("ancestral", "ancestral-gibbs"),
        "blocked Gibbs whose blocks are redrawn one variable at a time",
    )
)
register(
    Sampler(
        "ancestral",
        "conditional",
        AncestralOptions,
        ancestral_sampling,
        "orderless-NADE ancestral sampling: one pass in a random order",
    )
)
register(
    Sampler(
        "mh",
        "conditional",
        MHOptions,
        mh_sampling,
        "Metropolis-Hastings on one order's joint, tempered exactly (p^(1/T)); costs a network row per variable",
    )
)
register(
    Sampler(
        "confidence",
        "conditional",
        ConfidenceOptions,
        confidence_sampling,
        "MaskGIT's decoding: each step keeps the most confident draws and masks the rest again",
    )
)
