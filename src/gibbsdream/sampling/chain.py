"""The result of running a sampler."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Chain:
    """Samples from ``N`` parallel chains, with their per-step trace and optional frames.

    Attributes:
        samples: ``(N, *shape)`` long, the final state of every chain.
        energy: ``(S + 1, N)`` float: for energy models the free energy (at T = 1) of every chain
            before the first step and after each step; for conditional models the mean
            log-probability of the variables drawn at each step (Gibbs: row 0 is the initial fill;
            ancestral: row 0 is NaN, nothing was drawn yet).
        temperatures: ``S`` temperatures used, one per step.
        known: ``(N, *shape)`` bool, the clamped variables (None when nothing was clamped).
        frames: ``(F, N, *shape)`` states recorded every ``record_every`` steps (None if not asked).
        frame_steps: the step after which each frame was taken (0 = the initial state).
        settings: the sampling settings, in their text forms, for reports.
    """

    samples: torch.Tensor
    energy: torch.Tensor
    temperatures: list[float]
    known: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    frame_steps: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def trace(self) -> torch.Tensor:
        """Alias of :attr:`energy`, the per-step, per-chain trace."""
        return self.energy

    @property
    def final_energy(self) -> torch.Tensor:
        """``(N,)`` the trace's last row."""
        return self.energy[-1]

    @property
    def num_chains(self) -> int:
        return self.samples.shape[0]
