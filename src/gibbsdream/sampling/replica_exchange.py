"""Replica exchange (parallel tempering) for energy models: exact low-temperature samples from
chains that do not get stuck.

Each sample is the coldest of ``R`` replicas on a temperature ladder ``T = T_0 < T_1 < ... <
T_{R-1}``. A step is one block Gibbs sweep of every replica at its own temperature, then a
proposal to swap the states of neighbouring replicas (even pairs on even steps, odd pairs on odd
ones), accepted with the exact Metropolis probability

    min(1, exp(F_i(v_i) + F_j(v_j) - F_i(v_j) - F_j(v_i)))

where ``F_T(v)`` is the free energy at temperature T (``p_T(v) ∝ exp(-F_T(v))``). Hot replicas
cross between modes; swaps carry their states down. During the burn-in the gaps between the
log-temperatures adapt (a Robbins-Monro step on each pair's swap rate towards ``target``, the
hottest temperature capped at ``hot``: where the cap binds, the gaps settle where every pair swaps
at the same rate); after it the ladder is fixed, so the cold replica is an exact MCMC sampler of ``p_T``.
"""

from __future__ import annotations

import math

import torch

from ..errors import UsageError
from ..progress import progress_bar
from .chain import FREE_ENERGY, Chain, record_frame
from .schedules import temperature_values

DEFAULT_REPLICAS = 8  # replicas per chain wherever none are asked for


def cold_temperature(schedule, steps: int) -> float:
    """The one temperature replica exchange samples: ``schedule`` (a temperature schedule) must be
    constant and above 0 over the ``steps``; a UsageError otherwise (the front ends ask before a job)."""
    temperatures = temperature_values(schedule, steps)
    if len(set(temperatures)) != 1 or temperatures[0] <= 0:
        raise UsageError(
            "replica exchange samples one temperature > 0 (its ladder does the annealing); give a constant "
            f"temperature above 0 such as 0.5, got {schedule}"
        )
    return temperatures[0]


def _sweep(model, v: torch.Tensor, temperature: float, generator, known, clamped) -> torch.Tensor:
    h = model.sample_hidden(model.hidden_logits(v), temperature, generator)
    v = model.sample_visible(h, temperature, generator)
    return v if known is None else torch.where(known, clamped, v)


@torch.no_grad()
def replica_exchange(
    model,
    v: torch.Tensor,
    steps: int,
    temperature: float,
    replicas: int,
    hot: float,
    target: float = 0.3,
    burn_in: int = 0,
    known: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    record_every: int | None = None,
    progress: bool = False,
    on_step=None,
) -> Chain:
    """Run ``steps`` replica-exchange steps from ``v`` ``(N, V)`` (every replica starts there).

    Args:
        temperature: the temperature sampled (the coldest replica's), > 0.
        replicas: ``R`` >= 2 replicas per chain.
        hot: the highest temperature of the ladder, where it starts (geometric from
            ``temperature`` to ``hot``); the burn-in may lower it, never raise it.
        target: the swap rate each neighbouring pair's gap adapts towards in the burn-in.
        burn_in: steps during which the ladder adapts (the first ones).

    Returns:
        a :class:`Chain` of the coldest replicas: ``trace`` their free energy at T = 1 (as the
        ``gibbs`` sampler's), ``settings["ladder"]`` the final temperatures and
        ``settings["swap_rates"]`` each pair's swap rate after the burn-in.
    """
    R, N = replicas, v.shape[0]
    clamped = v.clone() if known is not None else None
    states = [v.clone() for _ in range(R)]
    # the ladder as log-temperature gaps above the cold end; the cold end never moves
    span = math.log(hot / temperature)
    log_gaps = torch.full((R - 1,), span / (R - 1), dtype=torch.float64)

    def ladder() -> list[float]:
        return [temperature * math.exp(g) for g in [0.0, *torch.cumsum(log_gaps, 0).tolist()]]

    temps = ladder()
    trace = torch.empty(steps + 1, N, dtype=model.weight.dtype, device=v.device)
    trace[0] = model.free_energy(states[0])
    swaps_tried = torch.zeros(R - 1, dtype=torch.float64)
    swaps_made = torch.zeros(R - 1, dtype=torch.float64)
    frames, frame_steps = ([v.clone()], [0]) if record_every else (None, [])
    if on_step is not None:
        on_step(0, states[0], trace[0])
    with progress_bar(steps, "sampling", enabled=progress) as advance:
        for step in range(steps):
            states = [_sweep(model, s, t, generator, known, clamped) for s, t in zip(states, temps)]
            rates = torch.full((R - 1,), float("nan"), dtype=torch.float64)
            for i in range(step % 2, R - 1, 2):
                j = i + 1
                a, b = states[i], states[j]
                log_ratio = (
                    model.free_energy(a, temps[i])
                    + model.free_energy(b, temps[j])
                    - model.free_energy(b, temps[i])
                    - model.free_energy(a, temps[j])
                )
                u = torch.rand(N, generator=generator, device=v.device, dtype=torch.float64)
                swap = (u.log() < log_ratio.double()).unsqueeze(1)
                states[i], states[j] = torch.where(swap, b, a), torch.where(swap, a, b)
                rates[i] = swap.double().mean()
                if step >= burn_in:
                    swaps_tried[i] += N
                    swaps_made[i] += swap.sum()
            if step < burn_in:  # Robbins-Monro: widen a gap whose pair swaps too often, narrow it otherwise
                gain = 5.0 / (1 + step / 20) ** 0.6  # large first moves, then ever smaller (Robbins-Monro)
                tried = ~torch.isnan(rates)
                log_gaps[tried] *= torch.exp(gain * (rates[tried] - target))
                if log_gaps.sum() > span:  # never above `hot`: there the gaps share the span, swapping alike
                    log_gaps *= span / log_gaps.sum()
                temps = ladder()
            trace[step + 1] = model.free_energy(states[0])
            record_frame(frames, frame_steps, states[0], step, steps, record_every)
            if on_step is not None:
                on_step(step + 1, states[0], trace[step + 1])
            advance()
    chain = Chain(
        samples=states[0],
        trace=trace,
        trace_kind=FREE_ENERGY,
        temperatures=[temperature] * steps,
        known=known,
        frames=torch.stack(frames) if frames else None,
        frame_steps=frame_steps,
    )
    chain.settings = {
        "ladder": [round(t, 6) for t in temps],
        "swap_rates": [float(m / t) if t else None for m, t in zip(swaps_made, swaps_tried)],
    }
    return chain
