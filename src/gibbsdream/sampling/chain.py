"""The result of running a sampler, and what its per-step trace measures."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TraceKind:
    """What a :class:`Chain`'s trace holds: its ``name`` (for labels) and which way is better.

    ``higher_is_better`` is the direction of model probability: an RBM's free energy is lower for
    more probable states (p(v) is proportional to exp(-F(v))); a conditional model's
    log-probability is higher for them.
    """

    name: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        """``"higher is better"`` or ``"lower is better"``, for labels."""
        return "higher is better" if self.higher_is_better else "lower is better"

    def best(self, values):
        """The best of ``values`` (an iterable of numbers) in this direction."""
        return max(values) if self.higher_is_better else min(values)

    def sort_key(self, value: float) -> float:
        """A key that sorts best first: ``sorted(xs, key=lambda x: kind.sort_key(x.value))``."""
        return -value if self.higher_is_better else value

    def to_json(self) -> dict:
        return {"name": self.name, "higher_is_better": self.higher_is_better}

    @classmethod
    def from_json(cls, record: dict) -> TraceKind:
        return cls(str(record["name"]), bool(record["higher_is_better"]))


FREE_ENERGY = TraceKind("free energy", higher_is_better=False)
"""Energy models: the free energy F(v) at T = 1 of every chain (lower = more probable)."""
LOG_PROBABILITY = TraceKind("log-probability", higher_is_better=True)
"""Conditional models: the mean log-probability of the variables drawn at a step."""

_UNSET = object()


@dataclass(init=False)
class Chain:
    """Samples from ``N`` parallel chains, with their per-step trace and optional frames.

    Attributes:
        samples: ``(N, *shape)`` long, the final state of every chain.
        trace: ``(S + 1, N)`` float, one row before the first step and one after each step; what
            it holds is ``trace_kind``: for energy models (:data:`FREE_ENERGY`) the free energy (at
            T = 1) of every chain; for conditional models (:data:`LOG_PROBABILITY`) the mean
            log-probability of the variables drawn at each step (Gibbs: row 0 is the initial fill;
            ancestral: row 0 is NaN, nothing was drawn yet).
        temperatures: ``S`` temperatures used, one per step.
        known: ``(N, *shape)`` bool, the clamped variables (None when nothing was clamped).
        frames: ``(F, N, *shape)`` states recorded every ``record_every`` steps (None if not asked).
        frame_steps: the step after which each frame was taken (0 = the initial state).
        settings: the sampling settings, in their text forms, for reports.
        trace_kind: the :class:`TraceKind` of ``trace``; None only from a sampler that did not say,
            and :func:`gibbsdream.sample` then sets it from the model's protocol.
        acceptance: ``(S, N)`` float, 1 where a chain's proposal was accepted at a step (samplers
            with an accept/reject step, e.g. ``mh``), else None.
    """

    samples: torch.Tensor
    trace: torch.Tensor
    temperatures: list[float]
    known: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    frame_steps: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    trace_kind: TraceKind | None = None
    acceptance: torch.Tensor | None = None

    def __init__(
        self,
        samples: torch.Tensor,
        trace: torch.Tensor = _UNSET,
        temperatures: list[float] = _UNSET,
        known: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_steps: list[int] | None = None,
        settings: dict | None = None,
        trace_kind: TraceKind | None = None,
        *,
        energy: torch.Tensor = _UNSET,
        acceptance: torch.Tensor | None = None,
    ):
        # ``energy=`` is the trace's old name, still accepted so samplers written against it keep working.
        if (trace is _UNSET) == (energy is _UNSET):
            raise TypeError("Chain() takes the trace once, as trace= (energy= is its deprecated name)")
        if temperatures is _UNSET:
            raise TypeError("Chain() missing required argument: 'temperatures'")
        self.samples = samples
        self.trace = energy if trace is _UNSET else trace
        self.temperatures = temperatures
        self.known = known
        self.frames = frames
        self.frame_steps = [] if frame_steps is None else frame_steps
        self.settings = {} if settings is None else settings
        self.trace_kind = trace_kind
        self.acceptance = acceptance

    def diagnostics(self, burn_in: float = 0.5) -> dict:
        """Have the chains mixed? R-hat, effective sample sizes, autocorrelation time and acceptance
        rate of the trace after ``burn_in`` (a share of the steps); see
        :func:`gibbsdream.sampling.diagnostics.chain_diagnostics`. A replica-exchange run adds
        ``swap_rates``, each neighbouring pair's after the ladder's burn-in (else None)."""
        from .diagnostics import chain_diagnostics

        figures = chain_diagnostics(self.trace, burn_in, self.acceptance)
        figures["swap_rates"] = self.settings.get("swap_rates")
        return figures

    @property
    def energy(self) -> torch.Tensor:
        """Deprecated name of :attr:`trace` (it is free energy only for energy models)."""
        return self.trace

    @property
    def trace_name(self) -> str | None:
        """``"free energy"`` or ``"log-probability"``: what :attr:`trace` holds."""
        return None if self.trace_kind is None else self.trace_kind.name

    @property
    def higher_is_better(self) -> bool | None:
        """Whether a higher :attr:`trace` value means a more probable state."""
        return None if self.trace_kind is None else self.trace_kind.higher_is_better

    @property
    def final_trace(self) -> torch.Tensor:
        """``(N,)`` the trace's last row."""
        return self.trace[-1]

    # Old name of final_trace, from when the trace was called energy.
    final_energy = final_trace

    @property
    def num_chains(self) -> int:
        return self.samples.shape[0]


def record_frame(frames: list, frame_steps: list, states: torch.Tensor, step: int, steps: int, every) -> None:
    """Keep a copy of ``states`` after step ``step`` (0-based, of ``steps``) every ``every`` steps
    and after the last: how every sampler records the frames of its :class:`Chain`."""
    if every and ((step + 1) % every == 0 or step == steps - 1):
        frames.append(states.clone())
        frame_steps.append(step + 1)
