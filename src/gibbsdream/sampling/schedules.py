"""Schedules: how hot, and how much to resample, at step n of N.

A schedule is a small callable object, ``value = schedule(step, total_steps)`` with
``0 <= step < total_steps``. Every schedule has a short text form, shared by the command line,
the Python API and the reports, and ``str(schedule)`` gives it back:

=========================  =====================================================================
text                       schedule
=========================  =====================================================================
``1.0``                    constant temperature 1.0
``1.5:0.2``                anneal from 1.5 to 0.2 (the kind is given separately, geometric
                           by default, as in the RBM seed)
``geometric:1.5,0.2``      the same, with the kind spelled out (also ``linear:``, ``cosine:``)
``0.3``                    (block) resample a constant 30% of the unknown variables
``yao:0.9,0.1,0.7``        Yao et al.'s truncated linear block schedule
                           ``alpha_n = max(alpha_min, alpha_max - (n/N)(alpha_max - alpha_min)/eta)``
``cosine-block:1.0,0.05``  MaskGIT-style cosine decay of the block fraction
``cosine`` / ``pow:2``     (mask) MaskGIT's share still masked after a fraction r of the steps
=========================  =====================================================================

Annealed temperatures reach their end value on the last step: the fraction of the way is
``n / (N - 1)``. The Yao schedule keeps its published form, ``n / N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError

ANNEAL_KINDS = ("geometric", "linear", "cosine")
# The block schedule of conditional models' blocked Gibbs samplers wherever none is given (the
# library, the command line and the web page): Yao et al.'s share of the free variables redrawn per step.
DEFAULT_BLOCK = "yao:0.9,0.1,0.7"
# How the blocked Gibbs samplers choose the variables a step redraws (the block_select option).
BLOCK_SELECTIONS = ("random", "confidence")
DEFAULT_BLOCK_SELECT = "random"  # Yao et al.'s uniformly random block


def _progress(step: int, total_steps: int) -> float:
    """Fraction of the way through an annealing run: 0 at the first step, 1 at the last."""
    return step / (total_steps - 1) if total_steps > 1 else 1.0


def _fmt(x: float) -> str:
    """Short text for a number that parses back to exactly the same float."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


@dataclass(frozen=True)
class Constant:
    """The same value at every step."""

    value: float

    def __call__(self, step: int, total_steps: int) -> float:
        return self.value

    def __str__(self) -> str:
        return _fmt(self.value)


@dataclass(frozen=True)
class Linear:
    """Straight line from ``start`` (first step) to ``end`` (last step)."""

    start: float
    end: float

    def __call__(self, step: int, total_steps: int) -> float:
        return self.start + (self.end - self.start) * _progress(step, total_steps)

    def __str__(self) -> str:
        return f"linear:{_fmt(self.start)},{_fmt(self.end)}"


@dataclass(frozen=True)
class Geometric:
    """Constant ratio per step from ``start`` to ``end``; both must be positive."""

    start: float
    end: float

    def __post_init__(self):
        if self.start <= 0 or self.end <= 0:
            raise UsageError(
                f"geometric annealing needs positive temperatures, got {_fmt(self.start)} -> "
                f"{_fmt(self.end)}; end at a small positive value (e.g. 0.01) and add an argmax "
                "final step, or use linear annealing"
            )

    def __call__(self, step: int, total_steps: int) -> float:
        return self.start * (self.end / self.start) ** _progress(step, total_steps)

    def __str__(self) -> str:
        return f"geometric:{_fmt(self.start)},{_fmt(self.end)}"


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from ``start`` to ``end``: slow at both ends, fast in the middle."""

    start: float
    end: float

    def __call__(self, step: int, total_steps: int) -> float:
        weight = 0.5 * (1 + math.cos(math.pi * _progress(step, total_steps)))
        return self.end + (self.start - self.end) * weight

    def __str__(self) -> str:
        return f"cosine:{_fmt(self.start)},{_fmt(self.end)}"


@dataclass(frozen=True)
class Yao:
    """Yao et al. (2014) block schedule: fraction of unknown variables resampled at step n of N."""

    alpha_max: float = 0.9
    alpha_min: float = 0.1
    eta: float = 0.7

    def __post_init__(self):
        if not (0 < self.alpha_min <= self.alpha_max <= 1):
            raise UsageError(
                f"yao block schedule needs 0 < alpha_min <= alpha_max <= 1, got "
                f"alpha_max={_fmt(self.alpha_max)}, alpha_min={_fmt(self.alpha_min)}"
            )
        if self.eta <= 0:
            raise UsageError(f"yao block schedule needs eta > 0, got {_fmt(self.eta)}")

    def __call__(self, step: int, total_steps: int) -> float:
        slope = (self.alpha_max - self.alpha_min) / self.eta
        return max(self.alpha_min, self.alpha_max - (step / total_steps) * slope)

    def __str__(self) -> str:
        return f"yao:{_fmt(self.alpha_max)},{_fmt(self.alpha_min)},{_fmt(self.eta)}"


@dataclass(frozen=True)
class CosineBlock:
    """MaskGIT-style block fraction ``end + (start - end) * cos(pi/2 * n/N)``."""

    start: float = 1.0
    end: float = 0.05

    def __post_init__(self):
        if not (0 < self.end <= 1 and 0 < self.start <= 1):
            raise UsageError(f"cosine-block fractions must lie in (0, 1], got {_fmt(self.start)},{_fmt(self.end)}")

    def __call__(self, step: int, total_steps: int) -> float:
        return self.end + (self.start - self.end) * math.cos(0.5 * math.pi * step / total_steps)

    def __str__(self) -> str:
        return f"cosine-block:{_fmt(self.start)},{_fmt(self.end)}"


_ANNEALERS = {"geometric": Geometric, "linear": Linear, "cosine": Cosine}


def _numbers(text: str, what: str, count: int | None = None) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r}: expected comma-separated numbers") from None
    if any(math.isnan(v) or math.isinf(v) for v in values):
        raise UsageError(f"{what} {text!r} must be finite numbers")
    if count is not None and len(values) != count:
        raise UsageError(f"{what} {text!r} needs exactly {count} numbers, got {len(values)}")
    return values


def temperature_schedule(spec, anneal: str = "geometric"):
    """Turn a number, a text form or a schedule into a temperature schedule.

    ``spec`` may be a number (constant), ``"T"``, ``"T_start:T_end"`` (annealed with ``anneal``),
    ``"linear:a,b"`` / ``"geometric:a,b"`` / ``"cosine:a,b"``, or any callable
    ``(step, total_steps) -> float``. Temperatures must be >= 0 (0 means argmax).
    """
    if callable(spec) and not isinstance(spec, (int, float, str)):
        return spec
    if anneal not in _ANNEALERS:
        raise UsageError(f"unknown annealing kind {anneal!r}; choose one of {', '.join(ANNEAL_KINDS)}")
    if isinstance(spec, (int, float)):
        schedule = Constant(float(spec))
    else:
        text = str(spec).strip()
        kind, sep, rest = text.partition(":")
        if sep and kind in _ANNEALERS:
            start, end = _numbers(rest, f"{kind} temperature schedule", 2)
            schedule = _ANNEALERS[kind](start, end)
        elif sep:
            (start,), (end,) = _numbers(kind, "temperature", 1), _numbers(rest, "temperature", 1)
            schedule = _ANNEALERS[anneal](start, end)
        else:
            (value,) = _numbers(text, "temperature", 1)
            schedule = Constant(value)
    values = (schedule.value,) if isinstance(schedule, Constant) else (schedule.start, schedule.end)
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"temperature {spec!r} must be a finite number")
    if min(values) < 0:
        raise UsageError(
            f"temperature {spec!r} is negative; temperatures must be >= 0 (0 means argmax, 1 is "
            "the model's own distribution)"
        )
    return schedule


def block_schedule(spec):
    """Turn a number, a text form or a schedule into a block-fraction schedule.

    ``spec`` may be a fraction in (0, 1], ``"yao:alpha_max,alpha_min,eta"`` (missing numbers take
    the defaults 0.9, 0.1, 0.7), ``"yao"``, ``"cosine-block:start,end"`` or a callable.
    """
    if callable(spec) and not isinstance(spec, (int, float, str)):
        return spec
    if isinstance(spec, (int, float)):
        fraction = float(spec)
        if not math.isfinite(fraction):
            raise UsageError(f"block fraction {spec!r} must be a finite number in (0, 1]")
    else:
        text = str(spec).strip()
        kind, sep, rest = text.partition(":")
        if kind == "yao":
            values = _numbers(rest, "yao block schedule") if rest else []
            if len(values) > 3:
                raise UsageError(f"yao block schedule {text!r} takes at most 3 numbers: alpha_max,alpha_min,eta")
            return Yao(*values)
        if kind == "cosine-block":
            return CosineBlock(*(_numbers(rest, "cosine-block schedule", 2) if rest else []))
        if sep:
            raise UsageError(
                f"unknown block schedule {text!r}; use a fraction like 0.3, yao:0.9,0.1,0.7 or cosine-block:1,0.05"
            )
        (fraction,) = _numbers(text, "block fraction", 1)
    if not 0 < fraction <= 1:
        raise UsageError(f"block fraction {fraction:g} is outside (0, 1]; use e.g. 0.3 or a yao:... schedule")
    return Constant(fraction)


# ---- mask schedules (confidence decoding) --------------------------------------------------------

# MaskGIT's mask schedules gamma(r) (Chang et al. 2022): the share of the initially unknown
# variables still masked after a fraction r of the decoding steps; gamma(0) = 1, gamma(1) = 0.
MASK_SCHEDULES = ("cosine", "arccos", "linear", "pow:P")
DEFAULT_MASK_SCHEDULE = "cosine"  # MaskGIT's choice
# MaskGIT's choice temperature (their ImageNet configuration): the scale of the Gumbel noise on the
# confidences at the first step, annealed linearly to 0.
DEFAULT_CHOICE_TEMPERATURE = 4.5


@dataclass(frozen=True)
class MaskSchedule:
    """``gamma(r)`` for ``r`` in [0, 1]: ``cosine`` cos(pi r / 2), ``arccos`` arccos(r) / (pi / 2),
    ``linear`` 1 - r, ``pow`` 1 - r^power (MaskGIT's "square" is ``pow:2``, "cubic" ``pow:3``)."""

    kind: str = DEFAULT_MASK_SCHEDULE
    power: float = 1.0

    def __call__(self, r: float) -> float:
        if self.kind == "cosine":
            return math.cos(math.pi / 2 * r)
        if self.kind == "arccos":
            return math.acos(min(max(r, 0.0), 1.0)) / (math.pi / 2)
        if self.kind == "linear":
            return 1.0 - r
        return 1.0 - r**self.power

    def __str__(self) -> str:
        return f"pow:{_fmt(self.power)}" if self.kind == "pow" else self.kind


def mask_schedule(spec) -> MaskSchedule:
    """``"cosine"``, ``"arccos"``, ``"linear"`` or ``"pow:P"`` (P > 0) -> a :class:`MaskSchedule`."""
    if isinstance(spec, MaskSchedule):
        return spec
    text = str(spec).strip()
    kind, sep, rest = text.partition(":")
    if kind == "pow" and sep:
        (power,) = _numbers(rest, "pow mask schedule", 1)
        if power <= 0:
            raise UsageError(f"mask schedule {text!r} needs a power > 0, e.g. pow:2")
        return MaskSchedule("pow", power)
    if kind in ("cosine", "arccos", "linear") and not sep:
        return MaskSchedule(kind)
    raise UsageError(f"unknown mask schedule {text!r}; choose one of {', '.join(MASK_SCHEDULES)} (e.g. pow:2)")


def schedule_values(schedule, total_steps: int) -> list[float]:
    """The schedule's value at every step, ``[schedule(0, N), ..., schedule(N-1, N)]``."""
    return [float(schedule(step, total_steps)) for step in range(total_steps)]


def temperature_values(schedule, total_steps: int) -> list[float]:
    """The temperature of every step as the samplers use it: a value below
    :data:`~gibbsdream.sampling.categorical.MIN_TEMPERATURE` is 0 (the argmax), since dividing
    logits by it would overflow; a value that is NaN, infinite or negative (a schedule of one's
    own can give one) is a UsageError."""
    # start-up time: the CLI imports schedules at start-up; categorical loads on first use
    from .categorical import effective_temperature

    values = schedule_values(schedule, total_steps)
    for step, value in enumerate(values):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(
                f"the temperature schedule {schedule} gives {value} at step {step} of {total_steps}; "
                "temperatures must be finite numbers >= 0 (0 means argmax)"
            )
    return [effective_temperature(value) for value in values]
