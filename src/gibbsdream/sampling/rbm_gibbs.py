"""Block Gibbs sampling of an energy model with temperature and simulated annealing.

All chains advance together: each step is one batched ``v -> h -> v`` sweep, and the free
energy of every chain is read off the hidden pre-activations that the sweep computes anyway.
"""

from __future__ import annotations

import torch

from .chain import Chain
from ..progress import progress_bar

FINALS = ("sample", "argmax")


@torch.no_grad()
def gibbs_energy_model(
    model,
    v: torch.Tensor,
    steps: int,
    temperatures: list[float],
    known: torch.Tensor | None = None,
    final: str = "sample",
    generator: torch.Generator | None = None,
    record_every: int | None = None,
    progress: bool = False,
    on_step=None,
) -> Chain:
    """Run ``steps`` block Gibbs sweeps from ``v``.

    Args:
        model: an RBM (``hidden_logits``, ``sample_hidden``, ``sample_visible``,
            ``free_energy_from_logits``).
        v: ``(N, V)`` starting states; where ``known`` is True they are clamped.
        temperatures: one temperature per step (0 = argmax).
        known: ``(N, V)`` bool or None.
        final: ``"argmax"`` makes the visible half of the last sweep deterministic.
        record_every: keep a frame of the states every this many steps (and the last).
        on_step: called as ``on_step(n, v, energy)`` with the states ``(N, V)`` after ``n``
            sweeps (not modified later; do not modify them) and their free energies ``(N,)``,
            for ``n = 0 .. steps``; an exception it raises stops the run.

    Returns:
        a :class:`Chain` whose ``energy`` is ``(steps + 1, N)``.
    """
    clamped = v.clone() if known is not None else None
    energy = torch.empty(steps + 1, v.shape[0], dtype=model.weight.dtype, device=v.device)
    frames, frame_steps = ([v.clone()], [0]) if record_every else (None, [])
    with progress_bar(steps, "sampling", enabled=progress) as advance:
        for step in range(steps):
            pre = model.hidden_logits(v)
            energy[step] = model.free_energy_from_logits(v, pre)
            if on_step is not None:  # here, where the energy of the state after `step` sweeps is known
                on_step(step, v, energy[step])
            temperature = temperatures[step]
            h = model.sample_hidden(pre, temperature, generator)
            visible_temperature = 0.0 if (final == "argmax" and step == steps - 1) else temperature
            v = model.sample_visible(h, visible_temperature, generator)
            if known is not None:
                v = torch.where(known, clamped, v)
            if record_every and ((step + 1) % record_every == 0 or step == steps - 1):
                frames.append(v.clone())
                frame_steps.append(step + 1)
            advance()
    energy[steps] = model.free_energy(v)
    if on_step is not None:
        on_step(steps, v, energy[steps])
    return Chain(
        samples=v,
        energy=energy,
        temperatures=list(temperatures),
        known=known,
        frames=torch.stack(frames) if frames else None,
        frame_steps=frame_steps,
    )
