"""The kinds of value the command line reads, each checked once, as it is parsed.

Every numeric option of every command goes through :func:`option`, which gives an option whose
type (or default) is a float the :class:`Number` type and one that is an int the :class:`Whole`
type, so a new option is covered without anyone remembering to: NaN, infinities and numbers too
large for a float (``1e400``) or a 64-bit integer never reach the library. ``--seed`` and
``--device`` get :data:`SEED` and :data:`DEVICE` the same way. A bad value is a click usage
error, which :func:`gibbsdream.cli.main` prints as one ``error:`` line with exit code 2.
"""

from __future__ import annotations

import math
import re

import click
import torch

from ..errors import UsageError
from ..randomness import MAX_SEED
from ..training.nade import parse_duration

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Number(click.ParamType):
    """A finite float."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number; give a finite one", param, ctx)
        if math.isinf(number):
            self.fail(
                f"{value!r} is infinite or beyond the range of a float (about ±1.8e308); give a finite number",
                param,
                ctx,
            )
        return number


class Whole(click.ParamType):
    """A whole number in ``[low, high]`` (by default, what a 64-bit integer holds: PyTorch sizes and
    seeds are 64-bit, and a larger number fails deep inside it)."""

    name = "integer"

    def __init__(self, low: int = INT64_MIN, high: int = INT64_MAX, high_text: str | None = None):
        self.low, self.high = low, high
        self.low_text = "-2**63" if low == INT64_MIN else str(low)
        self.high_text = high_text or ("2**63 - 1" if high == INT64_MAX else str(high))

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip().replace("_", ""), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if not self.low <= number <= self.high:
            self.fail(
                f"{value} is out of range: give a whole number from {self.low_text} to {self.high_text}", param, ctx
            )
        return number


SEED = Whole(0, MAX_SEED, "2**63 - 1")  # why 2**63 - 1: see MAX_SEED


class WholeOrAuto(Whole):
    """``auto`` (kept as the text ``"auto"``) or a whole number in ``[low, high]``."""

    name = "auto|integer"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, str):
            try:
                int(value.strip().replace("_", ""), 10)
            except ValueError:
                self.fail(f"{value!r} is neither auto nor a whole number", param, ctx)
        return super().convert(value, param, ctx)


class Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine."""

    name = "device"
    FORMS = "auto, cpu, cuda or cuda:N"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text in ("auto", "cpu"):
            return text
        match = re.fullmatch(r"cuda(?::(\d+))?", text)
        if match:
            if not torch.cuda.is_available():
                self.fail(f"{value!r} asks for a CUDA GPU, but none is available here; use cpu or auto", param, ctx)
            count = torch.cuda.device_count()
            if match.group(1) is not None and int(match.group(1)) >= count:
                self.fail(
                    f"there is no GPU {value!r}: this machine has {count} (cuda:0 to cuda:{count - 1})", param, ctx
                )
            return text
        if text == "mps":
            if not torch.backends.mps.is_available():
                self.fail("'mps' asks for Apple's GPU, which is not available here; use cpu or auto", param, ctx)
            return text
        self.fail(f"unknown device {value!r}; use {self.FORMS}", param, ctx)


DEVICE = Device()


def option(*decls, **attrs):
    """``click.option`` with defaults shown, and the checked types above for numbers, seeds and devices."""
    attrs.setdefault("show_default", True)
    if "--seed" in decls:
        attrs["type"] = SEED
    elif "--device" in decls:
        attrs["type"] = DEVICE
    elif not attrs.get("is_flag") and not attrs.get("count"):
        kind = attrs.get("type")
        if kind is None and attrs.get("default") is not None:
            kind = type(attrs["default"])
        if kind in (int, click.INT):
            attrs["type"] = Whole()
        elif kind in (float, click.FLOAT):
            attrs["type"] = Number()
    return click.option(*decls, **attrs)


class Duration(click.ParamType):
    """A duration such as ``90s``, ``8m``, ``1h30m`` (kept as text; finite and positive)."""

    name = "duration"

    def convert(self, value, param, ctx):

        try:
            seconds = parse_duration(value)
        except UsageError as err:
            self.fail(str(err), param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is too long to count; write e.g. 90s, 8m, 1h30m or 2.5h", param, ctx)
        return str(value)


class CountOrFraction(click.ParamType):
    """A count (a whole number >= 0) or a fraction in [0, 1) (written with a decimal point)."""

    name = "count|fraction"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = repr(value)
        else:
            text = str(value).strip()
        try:
            number = float(text) if "." in text else int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a count (e.g. 300) nor a fraction below 1 (e.g. 0.1)", param, ctx)
        if isinstance(number, float) and not 0 <= number < 1:
            self.fail(f"{value!r}: a fraction must lie in [0, 1); give a count without a decimal point", param, ctx)
        if isinstance(number, int) and not 0 <= number <= INT64_MAX:
            self.fail(
                f"{value!r}: a count must be >= 0 and at most {INT64_MAX} (or give a fraction below 1, e.g. 0.1)",
                param,
                ctx,
            )
        return number


class WholeList(click.ParamType):
    """Comma-separated whole numbers, each in ``[low, high]``, as a tuple (e.g. ``--dilations 1,2,4``)."""

    name = "list"

    def __init__(self, low: int, high: int, why: str = ""):
        self.low, self.high, self.why = low, high, why

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(int(part.strip(), 10) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not whole numbers separated by commas, e.g. 1,2,4", param, ctx)
        for number in numbers:
            if not self.low <= number <= self.high:
                self.fail(
                    f"{number} is out of range: each must be from {self.low} to {self.high}{self.why}", param, ctx
                )
        return numbers
