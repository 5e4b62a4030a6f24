"""Exact categorical and Bernoulli draws."""

import pytest
import torch

from gibbsdream.sampling.categorical import categorical_from_uniform, sample_bernoulli, sample_categorical


def float64_inverse_cdf(probs, u):
    cdf = probs.double().cumsum(-1)
    return (cdf <= u * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


@pytest.mark.parametrize(
    ("rows", "K"),
    # below and above the float32 fast path's size; above it, one running sum (28 categories) and
    # the two-level sum of 256 categories (groups of 16) and of 100 (groups of 10)
    [(100, 28), (5000, 28), (5000, 256), (5000, 100)],
)
def test_draws_equal_a_float64_inverse_cdf_even_at_float32_boundaries(rows, K):
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        logits = torch.randn(rows, K, generator=g) * torch.rand(1, generator=g) * 30
        logits[:, 3] = -25.0  # probabilities ~1e-11 that a float32 running sum cannot resolve
        if K >= 64:
            logits[:, 20:40] = -torch.inf  # zero-probability categories: whole groups, and parts of groups
        probs = torch.softmax(logits, -1)
        cdf = probs.double().cumsum(-1)
        boundary = cdf.gather(-1, torch.randint(0, K, (rows, 1), generator=g)) / cdf[..., -1:]
        jitter = torch.randint(-3, 4, (rows, 1), generator=g).double() * 1e-9
        u = torch.where(
            torch.rand(rows, 1, generator=g) < 0.7,
            (boundary + jitter).clamp(0, 1 - 1e-12),
            torch.rand(rows, 1, generator=g, dtype=torch.float64),
        )
        assert torch.equal(categorical_from_uniform(probs, u), float64_inverse_cdf(probs, u))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_tempered_frequencies_match_p_to_the_one_over_t(temperature):
    p = torch.tensor([0.6, 0.25, 0.1, 0.05])
    draws = sample_categorical(p.log().expand(200_000, 4), temperature, torch.Generator().manual_seed(1))
    tempered = p ** (1 / temperature)
    tempered /= tempered.sum()
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    assert torch.allclose(freq, tempered.double(), atol=0.004)


def test_category_axis_can_be_any_dimension():
    logits = torch.randn(3, 5, 7)
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    a = sample_categorical(logits, 1.0, g1, dim=1)
    b = sample_categorical(logits.movedim(1, -1), 1.0, g2)
    assert a.shape == (3, 7) and torch.equal(a, b)


def test_zero_temperature_is_the_argmax_and_bernoulli_matches_its_probability():
    logits = torch.randn(50, 9)
    assert torch.equal(sample_categorical(logits, 0.0), logits.argmax(-1))
    x = torch.full((200_000,), 0.8473)  # log-odds of p = 0.7
    draws = sample_bernoulli(x, 1.0, torch.Generator().manual_seed(3))
    assert abs(draws.mean().item() - 0.7) < 0.004
    assert torch.equal(sample_bernoulli(torch.tensor([-1.0, 0.5]), 0.0), torch.tensor([0.0, 1.0]))


def test_bernoulli_draws_are_float_zeros_and_ones_never_one_at_p_zero_always_one_at_p_one():
    from gibbsdream.sampling.categorical import bernoulli_from_probs

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        probs = torch.tensor([0.0, 1.0, 2.0**-30, 1 - 2.0**-24], dtype=dtype).repeat(500_000, 1)
        draws = bernoulli_from_probs(probs, g)
        assert draws.dtype == dtype and set(draws.unique().tolist()) <= {0.0, 1.0}
        assert draws[:, 0].sum() == 0 and draws[:, 1].all()
        # Within one grid step (2^-24 for float32) of p: at most a handful of ones at p = 2^-30.
        assert draws[:, 2].sum() <= 5 and draws[:, 3].sum() >= 500_000 - 5
