"""Block Gibbs sampling of an energy model with temperature and simulated annealing.

All chains advance together: each step is one batched ``v -> h -> v`` sweep, and the free
energy of every chain is read off the hidden pre-activations that the sweep computes anyway.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .. import kernels
from ..kernels.threads import default_threads, new_meeting, parts_for, run_workers
from ..progress import progress_bar
from .chain import FREE_ENERGY, Chain, record_frame

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
            record_frame(frames, frame_steps, v, step, steps, record_every)
            advance()
    energy[steps] = model.free_energy(v)
    if on_step is not None:
        on_step(steps, v, energy[steps])
    return Chain(
        samples=v,
        trace=energy,
        trace_kind=FREE_ENERGY,
        temperatures=list(temperatures),
        known=known,
        frames=torch.stack(frames) if frames else None,
        frame_steps=frame_steps,
    )


SWEEPS_PER_CHUNK = 8  # the compiled sampler draws random numbers for this many sweeps at a time


def compiled_sampler_fits(model) -> bool:
    """Whether :func:`gibbs_compiled` can run ``model`` here: where the training loop could (a
    categorical RBM on the CPU, numba and a PyTorch with MKL installed)."""
    return bool(kernels.fits_rbm_loops(model)) and not isinstance(kernels.rbm_loops(), ImportError)


@torch.no_grad()
def gibbs_compiled(
    model,
    v: torch.Tensor,
    steps: int,
    temperatures: list[float],
    known: torch.Tensor | None = None,
    final: str = "sample",
    generator: torch.Generator | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> Chain:
    """:func:`gibbs_energy_model` without frames or ``on_step``, for a categorical RBM on the CPU,
    as one compiled loop on several threads (:func:`gibbsdream.kernels.rbm.sample_worker`).

    It draws the same random numbers in the same order from ``generator`` and follows the same
    rules, so it returns the same chains but for float rounding: its ``exp`` and its sums of the
    logits differ from PyTorch's in the last bits, which flips a draw about once in tens of
    millions. ``threads`` defaults to :func:`gibbsdream.kernels.default_threads`.
    """
    loops = kernels.rbm_loops()
    num_chains, num_visible = v.shape
    num_hidden, num_categories = model.num_hidden, model.num_categories
    rows = num_visible * num_categories
    threads = threads or default_threads(num_hidden)
    states = v.clone().contiguous()
    if known is not None:
        known_flags, clamped = known.to(torch.uint8).contiguous().numpy(), v.contiguous().numpy()
    else:
        known_flags, clamped = np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.int64)
    hidden_temperatures = np.asarray(temperatures, np.float64)
    visible_temperatures = hidden_temperatures.copy()
    if final == "argmax":
        visible_temperatures[-1] = 0.0
    per_chunk = min(SWEEPS_PER_CHUNK, steps)
    dtype = model.weight.dtype
    hidden_uniforms = torch.empty(per_chunk, num_chains, num_hidden, dtype=dtype)
    visible_uniforms = torch.empty(per_chunk, num_chains, num_visible, dtype=torch.float64)

    def feed(start, stop):  # in sample_hidden's and sample_visible's order; nothing at T = 0
        for step in range(start, stop):
            if hidden_temperatures[step] != 0:
                hidden_uniforms[step - start].uniform_(generator=generator)
            if visible_temperatures[step] != 0:
                visible_uniforms[step - start].uniform_(generator=generator)

    energy = torch.empty(steps + 1, num_chains, dtype=dtype)
    parameters = loops.Parameters(
        model.flat_weight_t().detach().numpy(),
        model.visible_bias.detach().reshape(-1).numpy(),
        model.hidden_bias.detach().numpy(),
    )
    float_type = parameters.weight_t.dtype
    run = loops.SampleRun(
        states=states.numpy(),
        known=known_flags,
        clamped=clamped,
        num_categories=num_categories,
        temperatures=hidden_temperatures,
        visible_temperatures=visible_temperatures,
    )
    uniforms = loops.Uniforms(hidden_uniforms.numpy(), visible_uniforms.numpy())
    energies = loops.Energy(energy.numpy(), np.zeros((threads, num_chains)))
    meeting = new_meeting(threads, num_chains, rows, float_type)
    parts = parts_for(threads, num_hidden)
    arguments = [
        (
            run,
            uniforms,
            parameters,
            energies,
            meeting,
            loops.sample_workspace(part, num_chains, rows, num_categories, float_type),
        )
        for part in parts
    ]  # made once: worker 0 is called chunk after chunk

    with (
        progress_bar(steps, "sampling", enabled=progress) as advance,
        ThreadPoolExecutor(max_workers=max(1, threads - 1), thread_name_prefix="gibbsdream-sample") as pool,
    ):
        run_workers(
            loops.sample_worker,
            parts,
            steps,
            per_chunk,
            feed,
            arguments,
            loops.check_sample_arguments,
            meeting.counters,
            pool,
            advance,
        )
    return Chain(
        samples=states,
        trace=energy,
        trace_kind=FREE_ENERGY,
        temperatures=list(temperatures),
        known=known,
        frames=None,
        frame_steps=[],
    )
