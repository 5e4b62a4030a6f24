"""The sampler registry: every sampler is registered once, with its name, the model protocol it
needs, a dataclass of its own options and the function that runs it.

:func:`gibbsdream.sample` dispatches through it, and the front ends read their choices from it
(the command line's ``--sampler``, the web page's list, the sweep's ``sampler`` grid values).

Two model protocols:

* ``"energy"``: an energy model with block-Gibbs conditionals (``sample_hidden``, ...), e.g.
  :class:`gibbsdream.RBM`;
* ``"conditional"``: ``num_categories`` and ``logits(x, known, context=None) -> (N, *shape, K)``,
  e.g. :class:`gibbsdream.OrderlessNADE`.

A sampler's ``run(model, request, options)`` returns a :class:`~gibbsdream.sampling.Chain`;
``request`` is a :class:`Request` (what every sampler is given) and ``options`` an instance of
the sampler's ``options`` dataclass. The built-in samplers are registered by
:mod:`gibbsdream.sampling.api`, which the package imports first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .chain import FREE_ENERGY, LOG_PROBABILITY, TraceKind

PROTOCOLS = {
    "energy": "energy models (gibbsdream.RBM)",
    "conditional": "conditional models (num_categories and logits(x, known, context))",
}
TRACE_KINDS = {"energy": FREE_ENERGY, "conditional": LOG_PROBABILITY}
"""What a chain's trace holds for each protocol: the quantity is the protocol's, whatever the sampler."""


@dataclass(frozen=True)
class Request:
    """What :func:`gibbsdream.sample` gives every sampler besides its own options.

    ``temperature`` is a schedule ``(step, total_steps) -> T``; ``steps`` and ``record_every`` are
    as given (each sampler checks what it uses); ``x`` and ``known`` are as given for energy
    models and ``(N, *shape)`` tensors on the model's device for conditional ones.
    """

    steps: Any
    temperature: Callable
    x: Any
    known: Any
    generator: Any
    record_every: int | None = None
    progress: bool = False
    on_step: Callable | None = None
    context: Any = None


@dataclass(frozen=True)
class Sampler:
    """One sampler: ``run(model, request, options)`` for models of ``protocol``, where
    ``options`` is an instance of the ``options`` dataclass (its fields and defaults)."""

    name: str
    protocol: str
    options: type
    run: Callable
    summary: str = ""

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown model protocol {self.protocol!r}; one of {', '.join(PROTOCOLS)}")
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"the options of sampler {self.name!r} must be a dataclass")

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def describe(self) -> str:
        return f"the {self.name!r} sampler of {PROTOCOLS[self.protocol]}"

    def make_options(self, given: dict):
        """The options instance from the options ``given``; a UsageError names one it does not take."""
        for name in given:
            if name not in self.option_names:
                takes = (
                    f"its options are {', '.join(self.option_names)}" if self.option_names else "it takes no options"
                )
                raise UsageError(f"{name} does not apply to {self.describe()}; {takes}")
        return self.options(**given)


_SAMPLERS: dict[tuple[str, str], Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    """Add ``sampler``; a second sampler of the same protocol and name is an error."""
    key = (sampler.protocol, sampler.name)
    if key in _SAMPLERS:
        raise ValueError(f"{_SAMPLERS[key].describe()} is already registered")
    _SAMPLERS[key] = sampler
    return sampler


def unregister(protocol: str, name: str) -> None:
    """Remove a sampler (e.g. one a test registered)."""
    _SAMPLERS.pop((protocol, name), None)


def samplers(protocol: str | None = None) -> tuple[Sampler, ...]:
    """The registered samplers (of ``protocol``), in the order they were registered."""
    return tuple(s for s in _SAMPLERS.values() if protocol is None or s.protocol == protocol)


def sampler_names(protocol: str) -> tuple[str, ...]:
    """The names of the samplers of ``protocol``: the front ends' choices."""
    return tuple(s.name for s in samplers(protocol))


def get_sampler(protocol: str, name: str) -> Sampler:
    """The sampler ``name`` of ``protocol``; a UsageError lists the ones there are."""
    try:
        return _SAMPLERS[(protocol, name)]
    except (KeyError, TypeError):
        raise UsageError(
            f"unknown sampler {name!r} for {PROTOCOLS[protocol]}; choose one of {', '.join(sampler_names(protocol))}"
        ) from None


def protocol_of(model) -> str:
    """``"energy"`` or ``"conditional"``: which protocol ``model`` follows; a UsageError for neither."""
    if hasattr(model, "sample_hidden"):
        return "energy"
    if hasattr(model, "logits"):
        return "conditional"
    raise UsageError(
        f"sample() does not know how to sample a {type(model).__name__}; it needs an energy model "
        "(gibbsdream.RBM) or a conditional model with num_categories and logits(x, known, context)"
    )


def trace_kind_of(model) -> TraceKind:
    """What the trace of a chain sampled from ``model`` holds, and which way is better."""
    return TRACE_KINDS[protocol_of(model)]


def applicable(protocol: str, name: str, **candidates) -> dict:
    """Of ``candidates``, the options that sampler ``name`` takes: for a front end whose form
    carries every field (the web page's block schedule stays in the form when ancestral is chosen)."""
    takes = get_sampler(protocol, name).option_names
    return {key: value for key, value in candidates.items() if key in takes}
