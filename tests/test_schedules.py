"""Temperature and block-fraction schedules: their text forms, values and bad input."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gibbsdream import UsageError
from gibbsdream.sampling.schedules import (
    Constant,
    Cosine,
    CosineBlock,
    Geometric,
    Linear,
    Yao,
    block_schedule,
    schedule_values,
    temperature_schedule,
)

# ---- every text form of the module docstring ----------------------------------------------------


@pytest.mark.parametrize(
    "spec, anneal, expected",
    [
        ("1.0", "geometric", Constant(1.0)),
        ("1", "geometric", Constant(1.0)),
        ("0", "geometric", Constant(0.0)),  # 0 means argmax
        (" 2.5 ", "geometric", Constant(2.5)),
        (1.0, "geometric", Constant(1.0)),
        (2, "geometric", Constant(2.0)),
        ("1.5:0.2", "geometric", Geometric(1.5, 0.2)),
        ("1.5:0.2", "linear", Linear(1.5, 0.2)),
        ("1.5:0.2", "cosine", Cosine(1.5, 0.2)),
        ("1.5:0", "linear", Linear(1.5, 0.0)),
        ("geometric:1.5,0.2", "geometric", Geometric(1.5, 0.2)),
        ("geometric:1.5,0.2", "linear", Geometric(1.5, 0.2)),  # the spelled-out kind wins
        ("linear:1.5,0.2", "geometric", Linear(1.5, 0.2)),
        ("cosine:1.5,0.2", "geometric", Cosine(1.5, 0.2)),
        ("linear:1,0", "geometric", Linear(1.0, 0.0)),
    ],
)
def test_temperature_text_forms(spec, anneal, expected):
    schedule = temperature_schedule(spec, anneal)
    assert schedule == expected
    assert type(schedule) is type(expected)


def test_temperature_default_anneal_is_geometric():
    assert temperature_schedule("1.5:0.2") == Geometric(1.5, 0.2)


def test_a_callable_schedule_passes_through():
    def schedule(step, total):
        return 1.0

    assert temperature_schedule(schedule) is schedule
    assert block_schedule(schedule) is schedule
    yao = Yao()
    assert block_schedule(yao) is yao


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0.3", Constant(0.3)),
        (0.3, Constant(0.3)),
        ("1", Constant(1.0)),
        (1, Constant(1.0)),
        ("yao:0.9,0.1,0.7", Yao(0.9, 0.1, 0.7)),
        ("yao", Yao()),
        ("yao:0.8", Yao(0.8, 0.1, 0.7)),
        ("yao:0.8,0.2", Yao(0.8, 0.2, 0.7)),
        ("cosine-block:1.0,0.05", CosineBlock(1.0, 0.05)),
        ("cosine-block", CosineBlock()),
        (" yao:1,0.5,2 ", Yao(1.0, 0.5, 2.0)),
    ],
)
def test_block_text_forms(spec, expected):
    schedule = block_schedule(spec)
    assert schedule == expected
    assert type(schedule) is type(expected)


def test_defaults_of_the_block_schedules():
    assert Yao() == Yao(0.9, 0.1, 0.7)
    assert CosineBlock() == CosineBlock(1.0, 0.05)


@pytest.mark.parametrize(
    "schedule, text",
    [
        (Constant(1.0), "1"),
        (Constant(0.25), "0.25"),
        (Geometric(1.5, 0.2), "geometric:1.5,0.2"),
        (Linear(1.5, 0.0), "linear:1.5,0"),
        (Cosine(2.0, 0.5), "cosine:2,0.5"),
        (Yao(), "yao:0.9,0.1,0.7"),
        (CosineBlock(), "cosine-block:1,0.05"),
    ],
)
def test_str_gives_the_text_form(schedule, text):
    assert str(schedule) == text


# ---- str(schedule) round trips through the parser (property tests) ---------------------------------

# Numbers with at most 6 significant digits, the precision of the text form.
positive = st.integers(1, 100_000).map(lambda n: n / 1000)
fraction = st.integers(1, 1000).map(lambda n: n / 1000)


@st.composite
def temperature_schedules(draw):
    kind = draw(st.sampled_from(["constant", "geometric", "linear", "cosine"]))
    if kind == "constant":
        return Constant(draw(st.one_of(st.just(0.0), positive)))
    low = st.one_of(st.just(0.0), positive) if kind != "geometric" else positive
    return {"geometric": Geometric, "linear": Linear, "cosine": Cosine}[kind](draw(low), draw(low))


@st.composite
def block_schedules(draw):
    kind = draw(st.sampled_from(["constant", "yao", "cosine-block"]))
    if kind == "constant":
        return Constant(draw(fraction))
    if kind == "yao":
        a, b = sorted([draw(fraction), draw(fraction)])
        return Yao(b, a, draw(positive))
    return CosineBlock(draw(fraction), draw(fraction))


@settings(max_examples=200, deadline=None)
@given(schedule=temperature_schedules(), anneal=st.sampled_from(["geometric", "linear", "cosine"]))
def test_temperature_str_round_trip(schedule, anneal):
    again = temperature_schedule(str(schedule), anneal)
    assert again == schedule and type(again) is type(schedule)
    assert str(again) == str(schedule)


@settings(max_examples=200, deadline=None)
@given(schedule=block_schedules())
def test_block_str_round_trip(schedule):
    again = block_schedule(str(schedule))
    assert again == schedule and type(again) is type(schedule)


@pytest.mark.parametrize(
    "schedule, parse",
    [
        (Constant(1 / 3), temperature_schedule),
        (Linear(1.2345678, 0.1), temperature_schedule),
        (Geometric(2.0, 1e-7 * 1.23456789), temperature_schedule),
        (Yao(0.9, 0.123456789, 0.7), block_schedule),
    ],
)
def test_str_round_trip_keeps_full_precision(schedule, parse):
    assert parse(str(schedule)) == schedule


# ---- values ----------------------------------------------------------------------------------------------

start_end = st.floats(0.01, 100.0)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["geometric", "linear", "cosine"]),
    start=start_end,
    end=start_end,
    total=st.integers(2, 400),
)
def test_annealing_hits_start_and_end(kind, start, end, total):
    values = schedule_values(temperature_schedule(f"{kind}:{start!r},{end!r}"), total)
    assert len(values) == total
    assert math.isclose(values[0], start, rel_tol=1e-9)
    assert math.isclose(values[-1], end, rel_tol=1e-9)
    low, high = min(start, end), max(start, end)
    assert all(low * (1 - 1e-9) <= v <= high * (1 + 1e-9) for v in values)


@settings(max_examples=200, deadline=None)
@given(start=start_end, end=start_end, total=st.integers(2, 400))
def test_geometric_has_a_constant_ratio(start, end, total):
    values = schedule_values(Geometric(start, end), total)
    ratio = (end / start) ** (1 / (total - 1))
    for a, b in itertools.pairwise(values):
        assert math.isclose(b / a, ratio, rel_tol=1e-9)


def test_linear_and_cosine_midpoints():
    assert schedule_values(Linear(2.0, 0.0), 5) == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    assert schedule_values(Cosine(2.0, 0.0), 3) == pytest.approx([2.0, 1.0, 0.0])


def test_constant_is_constant():
    assert schedule_values(temperature_schedule("0.7"), 10) == [0.7] * 10


@settings(max_examples=200, deadline=None)
@given(
    amax=st.floats(0.01, 1.0),
    share=st.floats(0.0, 1.0),
    eta=st.floats(0.01, 5.0),
    total=st.integers(1, 300),
)
def test_yao_matches_its_formula(amax, share, eta, total):
    amin = max(amax * share, amax * 1e-3)  # 0 < amin <= amax
    schedule = block_schedule(f"yao:{amax!r},{amin!r},{eta!r}")
    assert schedule == Yao(amax, amin, eta)
    for n, value in enumerate(schedule_values(schedule, total)):
        expected = max(amin, amax - (n / total) * (amax - amin) / eta)
        assert math.isclose(value, expected, rel_tol=1e-12, abs_tol=1e-15)
        assert amin <= value <= amax


@pytest.mark.parametrize("amax, amin, eta", [(0.9, 0.1, 0.7), (1.0, 0.05, 1.0), (0.5, 0.5, 0.3), (0.8, 0.2, 2.0)])
def test_yao_examples(amax, amin, eta):
    total = 50
    values = schedule_values(Yao(amax, amin, eta), total)
    assert values[0] == amax
    for n, value in enumerate(values):
        assert value == pytest.approx(max(amin, amax - (n / total) * (amax - amin) / eta))


def test_cosine_block_values():
    values = schedule_values(CosineBlock(1.0, 0.05), 4)
    assert values[0] == pytest.approx(1.0)
    assert values == pytest.approx([0.05 + 0.95 * math.cos(math.pi / 2 * n / 4) for n in range(4)])


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, anneal",
    [
        ("-1", "geometric"),
        (-1, "geometric"),
        (-0.5, "linear"),
        ("-1:0.5", "linear"),
        ("1:-0.5", "cosine"),
        ("linear:-1,0", "geometric"),
        ("cosine:1,-2", "geometric"),
        ("1:0", "geometric"),  # geometric cannot end at 0
        ("geometric:1,0", "linear"),
        ("geometric:0,1", "linear"),
        ("abc", "geometric"),
        ("", "geometric"),
        ("1:abc", "geometric"),
        ("1:2:3", "geometric"),
        ("1,2", "geometric"),
        ("linear:1", "geometric"),
        ("linear:1,2,3", "geometric"),
        ("nan", "geometric"),
        ("1:nan", "linear"),
        ("linear:nan,1", "geometric"),
        ("inf", "geometric"),
        ("1e400", "geometric"),
        ("1.5:0.2", "bogus"),
        (1.0, "bogus"),
    ],
)
def test_bad_temperatures_raise_usage_error(spec, anneal):
    with pytest.raises(UsageError):
        temperature_schedule(spec, anneal)


@pytest.mark.parametrize("spec", [float("nan"), float("inf")])
def test_non_finite_numeric_temperature_raises(spec):
    with pytest.raises(UsageError):
        temperature_schedule(spec)


@pytest.mark.parametrize(
    "spec",
    [
        0,
        "0",
        0.0,
        1.5,
        "1.5",
        -0.1,
        "-0.1",
        "abc",
        "",
        "nan",
        float("nan"),
        float("inf"),
        "inf",
        "foo:1",
        "1:0.5",
        "yao:1,2",
        "yao:0.9,0.1,0.7,1",
        "yao:0.9,0.1,0",
        "yao:0.9,0,0.7",
        "yao:1.5",
        "yao:abc",
        "cosine-block:0,0.05",
        "cosine-block:1",
        "cosine-block:1,1.5",
        "cosine-block:1,0.05,3",
    ],
)
def test_bad_block_schedules_raise_usage_error(spec):
    with pytest.raises(UsageError):
        block_schedule(spec)


def test_usage_errors_say_what_was_wrong():
    with pytest.raises(UsageError, match="negative"):
        temperature_schedule("-1")
    with pytest.raises(UsageError, match="positive"):
        temperature_schedule("1:0", "geometric")
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        block_schedule("1.5")


@pytest.mark.parametrize(
    "text, at_quarter", [("cosine", 0.9238795), ("arccos", 0.8391388), ("linear", 0.75), ("pow:2", 0.9375)]
)
def test_mask_schedules_fall_from_one_to_zero_and_print_back(text, at_quarter):
    from gibbsdream.sampling.schedules import mask_schedule

    gamma = mask_schedule(text)
    assert gamma(0.0) == pytest.approx(1.0) and gamma(1.0) == pytest.approx(0.0, abs=1e-12)
    assert gamma(0.25) == pytest.approx(at_quarter, abs=1e-6)
    values = [gamma(r / 20) for r in range(21)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert str(gamma) == text and mask_schedule(str(gamma)) == gamma
