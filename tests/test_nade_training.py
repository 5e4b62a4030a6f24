"""Orderless NADE training, its losses, the order-ensemble likelihood and the baselines.

Exact answers wherever there are any: hand-computed losses, a model backed by an explicit joint
probability table (every chain-rule order must give exactly ``log p(x)``), baselines summed over
every state of a tiny space, bit-for-bit resumption, and two-process data-parallel training on CPU
(gloo, rendezvous through a file, never a socket listening on every interface).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import statistics

import pytest
import torch
from torch.nn import functional as F

from gibbsdream.baselines import IndependentCategorical, MixtureOfCategoricals
from gibbsdream.checkpoint import load_checkpoint
from gibbsdream.data.masks import training_masks
from gibbsdream.errors import UsageError
from gibbsdream.likelihood import ensemble_log_likelihood, mask_log_likelihoods, order_log_likelihoods
from gibbsdream.models.nade import OrderlessNADE
from gibbsdream.training.losses import masked_loss, unknown_loss
from gibbsdream.training.nade import (
    Distributed,
    NADETrainConfig,
    NADETrainer,
    parse_duration,
    save_nade_trainer,
    setup_distributed,
    split_images,
)

HISTORY_KEYS = {"epoch", "seconds", "elapsed", "learning_rate", "train_loss", "validation_loss"}


@pytest.fixture(autouse=True)
def one_thread():
    """CPU kernels on one thread are deterministic run to run (needed for bit-for-bit resumes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- helpers ------------------------------------------------------------------------------------


def stripes(n: int, levels: int = 3, size: int = 4, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` images whose columns are constant, each column a uniform level."""
    g = torch.Generator().manual_seed(seed)
    columns = torch.randint(levels, (n, 1, 1, size), generator=g)
    return columns.expand(n, 1, size, size).clone()


def tiny_config(**changes) -> NADETrainConfig:
    settings = dict(
        width=8, depth=2, dilations=(1, 2), epochs=3, batch_size=16, learning_rate=1e-2, lr_patience=1, seed=7
    )
    settings.update(changes)
    return NADETrainConfig(**settings).check()


def tiny_model(config: NADETrainConfig, seed: int = 0) -> OrderlessNADE:
    torch.manual_seed(seed)
    return OrderlessNADE(**config.model_config(channels=1, levels=3))


def tiny_split(n: int = 64):
    return split_images(stripes(n), 16, seed=1)  # n - 16 to train, 16 to validate


def all_states(num_variables: int, num_categories: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(num_categories), repeat=num_variables)))


class TableModel:
    """A conditional model answering ``p(x_i | x_known)`` exactly from a joint table ``(K,) * D``."""

    def __init__(self, probs: torch.Tensor):
        self.num_categories = probs.shape[0]
        self.states = all_states(probs.dim(), self.num_categories)  # (S, D), same order as reshape(-1)
        self.log_p = probs.reshape(-1).log()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        codes = (x * self.num_categories ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1)
        return self.log_p[codes]

    def logits(self, x, known, context=None):
        agrees = (self.states[None] == x[:, None]) | ~known[:, None]  # (B, S, D)
        consistent = agrees.all(-1)  # (B, S)
        out = torch.full((x.shape[0], x.shape[1], self.num_categories), float("-inf"), dtype=torch.float64)
        for value in range(self.num_categories):
            # mass of the consistent states whose variable i takes `value`, for every i at once
            take = consistent[:, :, None] & (self.states[None] == value)  # (B, S, D)
            weights = torch.where(take, self.log_p[None, :, None], torch.tensor(float("-inf"), dtype=torch.float64))
            out[..., value] = torch.logsumexp(weights, dim=1)
        return out


class ContextTables:
    """Two joint tables; each example's ``context`` (0 or 1) says which one it is drawn from."""

    def __init__(self, first: TableModel, second: TableModel):
        self.tables = (first, second)
        self.num_categories = first.num_categories

    def logits(self, x, known, context=None):
        assert context is not None and context.shape[0] == x.shape[0], "one context row per example"
        both = torch.stack([t.logits(x, known) for t in self.tables])  # (2, B, D, K)
        return both[context.long(), torch.arange(x.shape[0])]


class IncoherentModel:
    """Conditionals from a random linear map of the known one-hots: no joint agrees with all of
    them, so different orders give different chain-rule likelihoods."""

    def __init__(self, num_variables: int = 3, num_categories: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        size = num_variables * num_categories
        self.weight = 2 * torch.randn(size, size, generator=g, dtype=torch.float64)
        self.bias = torch.randn(size, generator=g, dtype=torch.float64)
        self.num_categories, self.num_variables = num_categories, num_variables

    def logits(self, x, known, context=None):
        given = (F.one_hot(x, self.num_categories).double() * known[..., None]).reshape(x.shape[0], -1)
        return (given @ self.weight + self.bias).view(x.shape[0], self.num_variables, self.num_categories)


def chain_rule(model, x: torch.Tensor, order) -> float:
    """``sum_d log p(x_{o_d} | x_{o_<d})`` for one example ``x: (D,)``, written out step by step."""
    total = 0.0
    known = torch.zeros_like(x, dtype=torch.bool)
    for i in order:
        log_p = torch.log_softmax(model.logits(x[None], known[None])[0].double(), -1)
        total += log_p[i, x[i]].item()
        known[i] = True
    return total


@pytest.fixture(scope="module")
def table():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 3, 3, generator=g, dtype=torch.float64) ** 3  # peaked and dependent
    return TableModel(probs / probs.sum())


# ---- 1. the masked losses ---------------------------------------------------------------------


def test_masked_cross_entropy_uria_rescaling_by_hand():
    # D = 4 variables, K = 3; the true level gets probability 0.5, 0.25, 0.1, 0.8 respectively.
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]], dtype=torch.float64)
    x = torch.tensor([[0, 0, 2, 1]])
    logits = (probs.log() + 3.0)[None]  # an additive constant must not matter
    known = torch.tensor([[False, True, False, False]])  # k = 1 known (the 0.25 one)
    unknown_ce = -math.log(0.5) - math.log(0.1) - math.log(0.8)
    rescaled = masked_loss(logits, x, known, "ce", rescale=True)
    assert rescaled.shape == (1,)
    assert rescaled.item() == pytest.approx(4 / 3 * unknown_ce, abs=1e-12)
    assert masked_loss(logits, x, known, "ce", rescale=False).item() == pytest.approx(unknown_ce / 3, abs=1e-12)
    # nothing known: D / D * the full sum; all but one known: D * that one's CE
    nothing = torch.zeros_like(known)
    assert masked_loss(logits, x, nothing).item() == pytest.approx(unknown_ce - math.log(0.25), abs=1e-12)
    one_unknown = torch.tensor([[True, True, False, True]])
    assert masked_loss(logits, x, one_unknown).item() == pytest.approx(-4 * math.log(0.1), abs=1e-12)
    assert masked_loss(logits, x, one_unknown, rescale=False).item() == pytest.approx(-math.log(0.1), abs=1e-12)


def test_masked_loss_is_per_example_and_handles_image_shapes():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 2, 2, 3, generator=g, dtype=torch.float64)  # (B, C, H, W, K)
    x = torch.randint(3, (2, 1, 2, 2), generator=g)
    known = torch.tensor([[[[True, False], [False, False]]], [[[True, True], [True, False]]]])
    ce = -torch.log_softmax(logits, -1).gather(-1, x[..., None])[..., 0]
    expected = torch.stack([ce[0].flatten()[1:].sum() * 4 / 3, ce[1].flatten()[3] * 4])
    torch.testing.assert_close(masked_loss(logits, x, known), expected, rtol=0, atol=1e-12)
    all_known = torch.ones_like(known)
    assert torch.equal(masked_loss(logits, x, all_known), torch.zeros(2, dtype=logits.dtype))


def test_emd2_by_hand():
    probs = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    logits = probs.log().view(1, 1, 3).expand(3, 1, 3)  # one variable, three examples
    x = torch.tensor([[0], [1], [2]])
    loss = masked_loss(logits, x, torch.zeros(3, 1, dtype=torch.bool), "emd2", rescale=False)
    # CDF [0.2, 0.5, 1] against [1, 1, 1], [0, 1, 1] and [0, 0, 1]
    expected = torch.tensor([0.8**2 + 0.5**2, 0.2**2 + 0.5**2, 0.2**2 + 0.5**2])
    torch.testing.assert_close(loss.float(), expected.float(), rtol=0, atol=1e-6)
    # a sure, right prediction costs nothing; a sure prediction two levels off costs 2
    sure = torch.tensor([[[30.0, -30.0, -30.0]]])
    assert masked_loss(sure, torch.tensor([[0]]), torch.tensor([[False]]), "emd2").item() == pytest.approx(0, abs=1e-6)
    assert masked_loss(sure, torch.tensor([[2]]), torch.tensor([[False]]), "emd2").item() == pytest.approx(2, abs=1e-6)


@pytest.mark.parametrize("kind", ["ce", "emd2"])
def test_known_variables_contribute_nothing_and_get_no_gradient(kind):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randint(4, (3, 6), generator=g)
    known = torch.rand(3, 6, generator=g) < 0.5
    known[:, 0], known[:, 1] = True, False  # every example has some of each
    masked_loss(logits, x, known, kind).sum().backward()
    assert torch.all(logits.grad[known] == 0)
    assert torch.all(logits.grad[~known].abs().sum(-1) > 0)
    # wild values (even the true level's impossibility) at known positions change nothing
    moved = logits.detach().clone()
    moved[known] = torch.randn(int(known.sum()), 4, generator=g, dtype=torch.float64) * 50
    torch.testing.assert_close(
        masked_loss(moved, x, known, kind), masked_loss(logits.detach(), x, known, kind), rtol=0, atol=0
    )


@pytest.mark.parametrize(("kind", "captions"), [("ce", 0), ("emd2", 0), ("ce", 7)])
def test_the_loss_of_the_unknown_variables_alone_is_the_masked_loss_with_its_gradients(kind, captions):
    """Training reads out the unknown variables only (``model(x, known, where=~known)`` and
    :func:`unknown_loss`): the same per-example losses and the same gradient for every weight as
    the masked loss of every variable's logits, on three channels whose unknown rows the readout
    groups by channel and puts back in order."""
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    model = OrderlessNADE(channels=3, num_categories=6, width=8, depth=2, caption_vocab_size=captions).double()
    x = torch.randint(6, (4, 3, 5, 5), generator=g)
    known = torch.rand(4, 3, 5, 5, generator=g) < torch.rand(4, 1, 1, 1, generator=g)
    context = torch.randint(1, captions, (4, 3), generator=g) if captions else None
    losses, grads = [], []
    for rows in ("all", "unknown"):
        model.zero_grad()
        if rows == "all":
            loss = masked_loss(model(x, known, context), x, known, kind)
        else:
            loss = unknown_loss(model(x, known, context, where=~known), x, known, kind)
        loss.sum().backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(losses[1], losses[0])
    for unknown_only, every in zip(*grads):
        torch.testing.assert_close(unknown_only, every)
    # The same rows in another order give another loss.
    shuffled = model(x, known, context, where=~known).detach().flip(0)
    assert not torch.allclose(unknown_loss(shuffled, x, known, kind), losses[0])


def test_an_impossible_known_variable_does_not_poison_the_loss():
    # the model is sure the known variable 0 is not its true level 1: its CE is inf, and must not count
    logits = torch.zeros(1, 2, 3)
    logits[0, 0, 1] = float("-inf")
    logits.requires_grad_(True)
    x, known = torch.tensor([[1, 0]]), torch.tensor([[True, False]])
    loss = masked_loss(logits, x, known)
    assert loss.item() == pytest.approx(2 * math.log(3), abs=1e-6)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad[0, 0] == 0)


def test_rescaled_loss_over_orderless_masks_is_the_exact_negative_log_likelihood(table):
    """Uria et al.: averaged over the orderless mask distribution, ``D / (D - k) * sum CE`` of a
    consistent model is ``-log p(x)`` exactly. Enumerating every mask checks the weighting; drawing
    masks from the trainer's own ``orderless`` distribution checks the two fit together."""
    D = 3
    x = all_states(D, 3)
    expected = -table.log_prob(x)
    exact = torch.zeros(x.shape[0], dtype=torch.float64)
    for k in range(D):
        subsets = list(itertools.combinations(range(D), k))
        for subset in subsets:
            known = torch.zeros(x.shape, dtype=torch.bool)
            known[:, list(subset)] = True
            exact += masked_loss(table.logits(x, known), x, known) / (D * len(subsets))
    torch.testing.assert_close(exact, expected, rtol=0, atol=1e-10)
    # the same by sampling masks the way training does, for one state
    n = 20000
    state = x[13:14].expand(n, D)
    known = training_masks("orderless")(n, (1, 1, D), torch.Generator().manual_seed(0)).view(n, D)
    losses = masked_loss(table.logits(state, known), state, known)
    error = 4 * losses.std().item() / math.sqrt(n)
    assert abs(losses.mean().item() - expected[13].item()) < error


# ---- 2. the order-ensemble likelihood ----------------------------------------------------------


def test_every_order_of_a_consistent_model_gives_the_exact_log_likelihood(table):
    x = all_states(3, 3)
    values = order_log_likelihoods(table, x, num_orders=5, generator=torch.Generator().manual_seed(0), batch_size=7)
    assert values.shape == (27, 5)
    exact = table.log_prob(x)
    torch.testing.assert_close(values, exact[:, None].expand(27, 5), rtol=0, atol=1e-5)
    torch.testing.assert_close(ensemble_log_likelihood(values), exact, rtol=0, atol=1e-5)
    # a normalised model: the estimates sum to one over the whole space
    assert torch.logsumexp(ensemble_log_likelihood(values), 0).item() == pytest.approx(0, abs=1e-5)


def test_order_likelihoods_are_chain_rule_values_of_random_orders():
    model = IncoherentModel()
    x = all_states(3, 3)[[0, 5, 13, 26]]
    values = order_log_likelihoods(model, x, num_orders=120, generator=torch.Generator().manual_seed(1), batch_size=50)
    assert values.shape == (4, 120)
    for n in range(4):
        per_order = torch.tensor([chain_rule(model, x[n], order) for order in itertools.permutations(range(3))])
        assert per_order.max() - per_order.min() > 0.1  # the orders really disagree
        # every value is one of the 3! chain-rule values, and every order turns up
        distance = (values[n][:, None] - per_order[None]).abs()
        assert distance.min(1).values.max() < 1e-5
        assert set(distance.argmin(1).tolist()) == set(range(6))
        # the ensemble is log-mean-exp: at least the mean order, at most the best
        ensemble = ensemble_log_likelihood(values[n : n + 1])[0]
        assert ensemble.item() == pytest.approx((torch.logsumexp(values[n], 0) - math.log(120)).item(), abs=1e-12)
        assert values[n].mean() < ensemble <= values[n].max()


def test_order_likelihoods_are_reproducible_with_a_seeded_generator():
    model = IncoherentModel(seed=2)
    x = all_states(3, 3)

    def run(seed, batch_size=1024):
        return order_log_likelihoods(
            model, x, num_orders=4, generator=torch.Generator().manual_seed(seed), batch_size=batch_size
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def _wrong_mask_estimates(model, x, num_masks, seed):
    """The estimator with a classic off-by-one, D / (D - k + 1) for k known variables: what the
    check below must reject."""
    D = x.shape[1]
    g = torch.Generator().manual_seed(seed)
    rows = x.repeat_interleave(num_masks, 0)
    k = torch.randint(D, (rows.shape[0],), generator=g)
    known = torch.rand(rows.shape, generator=g).argsort(-1).argsort(-1) < k[:, None]
    log_p = torch.log_softmax(model.logits(rows, known).double(), -1).gather(-1, rows[..., None])[..., 0]
    return (log_p.masked_fill(known, 0).sum(1) * D / (D - k + 1)).view(x.shape[0], num_masks)


def _mean_of_all_orders(model, x):
    return torch.tensor(
        [
            statistics.fmean(chain_rule(model, state, order) for order in itertools.permutations(range(x.shape[1])))
            for state in x
        ],
        dtype=torch.float64,
    )


def test_mask_estimates_average_to_the_chain_rule_averaged_over_every_order():
    """Against enumeration on a 4-variable model whose orders disagree: the mean of many mask
    estimates is within 4 standard errors of the mean over all 24 orders, for every state tried;
    the off-by-one variant fails the same check."""
    model = IncoherentModel(num_variables=4, num_categories=3, seed=5)
    x = all_states(4, 3)[[0, 7, 40, 80]]
    exact = _mean_of_all_orders(model, x)
    masks = 4000

    def within_bounds(estimates):
        error = 4 * estimates.std(1) / math.sqrt(masks)
        return ((estimates.mean(1) - exact).abs() < error).all().item()

    ours = mask_log_likelihoods(model, x, num_masks=masks, generator=torch.Generator().manual_seed(0), batch_size=999)
    assert ours.shape == (4, masks) and ours.dtype == torch.float64
    assert within_bounds(ours)
    assert not within_bounds(_wrong_mask_estimates(model, x, masks, seed=0))


def _chain_rule_given(model, x: torch.Tensor, known: torch.Tensor, order) -> float:
    """``log p_o(x_hole | x_known)`` for one example, the hole's variables revealed in ``order``."""
    total, shown = 0.0, known.clone()
    for i in order:
        log_p = torch.log_softmax(model.logits(x[None], shown[None])[0].double(), -1)
        total += log_p[i, x[i]].item()
        shown[i] = True
    return total


def _wrong_hole_estimates(model, x, known, num_masks, seed):
    """The hole estimator with the whole image's size where the hole's belongs, D / (D - d + 1):
    what the check below must reject."""
    g = torch.Generator().manual_seed(seed)
    rows, given = x.repeat_interleave(num_masks, 0), known.repeat_interleave(num_masks, 0)
    D, hole = x.shape[1], (~given).sum(1)
    k = (torch.rand(rows.shape[0], generator=g) * hole).floor().long()
    scores = torch.rand(rows.shape, generator=g).masked_fill(given, 2.0)
    shown = given | (scores.argsort(-1).argsort(-1) < k[:, None])
    log_p = torch.log_softmax(model.logits(rows, shown).double(), -1).gather(-1, rows[..., None])[..., 0]
    return (log_p.masked_fill(shown, 0).sum(1) * D / (D - k)).view(x.shape[0], num_masks)


def test_hole_estimates_average_to_the_chain_rule_over_every_order_of_the_hole():
    """Given known variables, the mask estimates are of the hole's likelihood: against
    enumeration of the hole's orders (a different known set per example, holes of 2 to 4 of 5
    variables, on a model whose orders disagree), within 4 standard errors; the variant that
    weights by the whole image's size instead of the hole's fails the same check."""
    model = IncoherentModel(num_variables=5, num_categories=3, seed=7)
    x = all_states(5, 3)[[3, 50, 121, 200]]
    known = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 0]], dtype=torch.bool)
    exact = torch.tensor(
        [
            statistics.fmean(
                _chain_rule_given(model, state, given, order)
                for order in itertools.permutations(torch.nonzero(~given).flatten().tolist())
            )
            for state, given in zip(x, known)
        ],
        dtype=torch.float64,
    )
    masks = 4000

    def within_bounds(estimates):
        error = 4 * estimates.std(1) / math.sqrt(masks)
        return ((estimates.mean(1) - exact).abs() < error).all().item()

    ours = mask_log_likelihoods(
        model, x, num_masks=masks, generator=torch.Generator().manual_seed(0), batch_size=777, known=known
    )
    assert within_bounds(ours)
    assert not within_bounds(_wrong_hole_estimates(model, x, known, masks, seed=0))
    with pytest.raises(ValueError, match="no unknown variable"):
        mask_log_likelihoods(model, x[:1], num_masks=2, known=torch.ones(1, 5, dtype=torch.bool))


def test_mask_estimates_of_a_consistent_model_average_to_log_p(table):
    x = all_states(3, 3)[[2, 13, 25]]
    estimates = mask_log_likelihoods(table, x, num_masks=3000, generator=torch.Generator().manual_seed(1))
    error = 4 * estimates.std(1) / math.sqrt(3000)
    assert ((estimates.mean(1) - table.log_prob(x)).abs() < error).all()


def test_masks_and_orders_agree_on_a_network_over_digits():
    """The two estimators of the mean single-order log-likelihood, on an untrained Orderless NADE
    over real 8x8 digits, agree within their standard errors (the trained digits model of
    docs/nade-likelihood.md is compared the same way there)."""
    from gibbsdream.data.images import load_images

    states = load_images("builtin:digits").states[:12]
    model = OrderlessNADE(channels=1, num_categories=17, width=8, depth=2).eval()
    orders = order_log_likelihoods(model, states, num_orders=24, generator=torch.Generator().manual_seed(2))
    masks = mask_log_likelihoods(model, states, num_masks=400, generator=torch.Generator().manual_seed(3))
    per_image_orders, per_image_masks = orders.mean(1), masks.mean(1)
    error = 4 * torch.sqrt(orders.var(1) / 24 + masks.var(1) / 400)
    assert ((per_image_orders - per_image_masks).abs() < error).all()


def test_mask_estimates_are_reproducible_with_a_seeded_generator():
    model = IncoherentModel(seed=2)
    x = all_states(3, 3)
    run = lambda seed, batch: mask_log_likelihoods(
        model, x, num_masks=5, generator=torch.Generator().manual_seed(seed), batch_size=batch
    )
    assert torch.equal(run(3, 1024), run(3, 1024))
    assert not torch.equal(run(3, 1024), run(4, 1024))


def test_ensemble_of_known_values():
    values = torch.tensor([[math.log(0.2), math.log(0.4)], [-1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        ensemble_log_likelihood(values), torch.tensor([math.log(0.3), -1.0], dtype=torch.float64)
    )


def test_orderless_nade_never_sees_the_unknown_values():
    config = tiny_config()
    model = tiny_model(config)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, (8, 1, 4, 4), generator=g)
    known = torch.rand(8, 1, 4, 4, generator=g) < 0.5
    other = torch.where(known, x, (x + 1) % 3)  # same known values, every unknown value changed
    with torch.no_grad():
        assert torch.equal(model.logits(x, known), model.logits(other, known))
        assert not torch.equal(model.logits(x, known), model.logits(other, torch.ones_like(known)))
        assert model.logits(x, known).shape == (8, 1, 4, 4, 3)


@pytest.mark.parametrize(("channels", "captions"), [(3, False), (3, True), (1, False)])
def test_logits_at_gives_the_logits_of_the_variables_asked_for(channels, captions):
    """``logits_at(x, known, where)`` is ``logits(x, known)[where]``: every channel of every pixel
    in the asked order, whatever the mix of channels asked per pixel, with and without a caption,
    in sampling (no gradients) and in training."""
    torch.manual_seed(0)
    model = OrderlessNADE(channels=channels, num_categories=5, width=8, depth=2, caption_vocab_size=7 * captions)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(5, (3, channels, 6, 7), generator=g)
    known = torch.rand(x.shape, generator=g) < 0.5
    context = torch.randint(1, 7, (3, 4), generator=g) if captions else None
    full = model.logits(x, known, context).detach()
    for where in (torch.rand(x.shape, generator=g) < 0.3, ~known, torch.zeros_like(known)):
        with torch.no_grad():
            torch.testing.assert_close(model.logits_at(x, known, where, context), full[where], rtol=0, atol=1e-5)
        torch.testing.assert_close(model.logits_at(x, known, where, context).detach(), full[where], rtol=0, atol=1e-5)
    if channels > 1:  # pixel-major rows (channels innermost, as the readout lays them out) are another order
        with torch.no_grad():
            at = model.logits_at(x, known, torch.ones_like(known), context)
        assert not torch.allclose(at, full.movedim(1, 3).reshape(-1, 5))


def test_one_order_of_orderless_nade_is_a_normalised_distribution():
    """Any network, trained or not, defines a normalised joint through the chain rule in one fixed
    order; the same seeded generator gives every single-example call the same order."""
    config = tiny_config()
    model = tiny_model(config)
    states = all_states(4, 3).view(81, 1, 2, 2)  # every 2x2 image with 3 levels
    for seed in (0, 1):
        values = torch.cat(
            [
                order_log_likelihoods(model, state[None], 1, generator=torch.Generator().manual_seed(seed))
                for state in states
            ]
        )
        assert values.shape == (81, 1)
        assert torch.logsumexp(values[:, 0], 0).item() == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("batch_size", [5, 1024])
def test_order_likelihoods_pass_each_example_its_own_context(batch_size):
    g = torch.Generator().manual_seed(4)
    first, second = (torch.rand(3, 3, 3, generator=g, dtype=torch.float64) ** 3 for _ in range(2))
    tables = (TableModel(first / first.sum()), TableModel(second / second.sum()))
    model = ContextTables(*tables)
    x = all_states(3, 3)
    context = torch.arange(27) % 2
    values = order_log_likelihoods(
        model, x, num_orders=3, generator=torch.Generator().manual_seed(0), batch_size=batch_size, context=context
    )
    exact = torch.where(context == 0, tables[0].log_prob(x), tables[1].log_prob(x))
    torch.testing.assert_close(values, exact[:, None].expand(27, 3), rtol=0, atol=1e-5)


# ---- 3. baselines -------------------------------------------------------------------------------


def test_independent_categorical_is_smoothed_counts():
    x = torch.tensor([[0, 1], [0, 2], [1, 1]])
    model = IndependentCategorical(3, alpha=1.0).fit(x)
    # variable 0 counts [2, 1, 0] + 1 -> [3, 2, 1] / 6; variable 1 counts [0, 2, 1] + 1 -> [1, 3, 2] / 6
    p0, p1 = [3 / 6, 2 / 6, 1 / 6], [1 / 6, 3 / 6, 2 / 6]
    queries = all_states(2, 3)
    expected = torch.tensor([math.log(p0[a]) + math.log(p1[b]) for a, b in queries.tolist()], dtype=torch.float64)
    torch.testing.assert_close(model.log_likelihood(queries), expected, rtol=0, atol=1e-12)
    # image-shaped input: variables are flattened in the same order
    images = torch.randint(3, (5, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    flat = IndependentCategorical(3, alpha=0.5).fit(images.view(5, -1))
    torch.testing.assert_close(
        IndependentCategorical(3, alpha=0.5).fit(images).log_likelihood(images), flat.log_likelihood(images.view(5, -1))
    )


def test_mixture_of_categoricals_is_normalised():
    data = torch.randint(3, (40, 3), generator=torch.Generator().manual_seed(0))
    model = MixtureOfCategoricals(3, components=4, iterations=15, alpha=0.1, seed=0).fit(data)
    every = model.log_likelihood(all_states(3, 3))
    assert every.shape == (27,)
    assert abs(torch.logsumexp(every, 0).item()) < 1e-9
    assert abs(torch.logsumexp(IndependentCategorical(3).fit(data).log_likelihood(all_states(3, 3)), 0).item()) < 1e-9


def test_mixture_em_never_decreases_its_objective():
    """EM with ``alpha`` pseudo-counts climbs ``sum log p(x) + alpha * sum log theta`` (a MAP
    objective) monotonically; with a small alpha the likelihood itself climbs too."""
    g = torch.Generator().manual_seed(1)
    # two clusters in 6 variables: all-low or all-high, with 10% noise
    cluster = torch.randint(2, (80, 1), generator=g) * 2
    noise = torch.rand(80, 6, generator=g) < 0.1
    data = torch.where(noise, torch.randint(3, (80, 6), generator=g), cluster.expand(80, 6))
    alpha = 1e-3
    objectives, likelihoods = [], []
    for iterations in range(1, 21):
        model = MixtureOfCategoricals(3, components=3, iterations=iterations, alpha=alpha, seed=0).fit(data)
        likelihood = model.log_likelihood(data).sum().item()
        likelihoods.append(likelihood)
        objectives.append(likelihood + alpha * model.log_theta.sum().item())
    steps = torch.tensor(objectives).diff()
    assert torch.all(steps > -1e-8 * abs(objectives[0])), objectives
    assert likelihoods[-1] > likelihoods[0] + 1.0
    assert likelihoods[-1] > IndependentCategorical(3, alpha=alpha).fit(data).log_likelihood(data).sum().item()


def test_baselines_index_their_tables_in_chunks_as_one_hot_sums_would(monkeypatch):
    """The tables are indexed in chunks of images (a one-hot copy of 64x64x3 images with 256 levels
    would not fit in memory): with chunks of 2 images the results equal one-hot sums over all."""
    import gibbsdream.baselines as baselines

    g = torch.Generator().manual_seed(3)
    train, test = torch.randint(256, (9, 3, 2, 3), generator=g), torch.randint(256, (5, 3, 2, 3), generator=g)
    D, K = 18, 256
    monkeypatch.setattr(baselines, "_CHUNK_VALUES", 2 * D * 4)  # two images per chunk with 4 components
    one_hot = torch.nn.functional.one_hot(test.reshape(5, -1), K).double()  # (N, D, K)
    independent = IndependentCategorical(K, alpha=0.5).fit(train)
    counts = torch.nn.functional.one_hot(train.reshape(9, -1), K).double().sum(0) + 0.5
    expected = one_hot.mul((counts / counts.sum(-1, keepdim=True)).log()).sum((1, 2))
    torch.testing.assert_close(independent.log_likelihood(test), expected, rtol=0, atol=1e-10)
    mixture = MixtureOfCategoricals(K, components=4, iterations=3, alpha=0.5, seed=0).fit(train)
    per_component = torch.einsum("ndk,mdk->nm", one_hot, mixture.log_theta) + mixture.log_pi
    torch.testing.assert_close(mixture.log_likelihood(test), torch.logsumexp(per_component, 1), rtol=0, atol=1e-10)
    # the M-step's counts summed in chunks equal those summed at once
    monkeypatch.setattr(baselines, "_CHUNK_VALUES", 2**22)
    whole = MixtureOfCategoricals(K, components=4, iterations=3, alpha=0.5, seed=0).fit(train)
    torch.testing.assert_close(mixture.log_theta, whole.log_theta, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="levels must lie in 0..255"):
        independent.log_likelihood(test + 1)


# ---- 4. the trainer and its small helpers ------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("8m", 480.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("2.5h", 9000.0),
        ("45", 45.0),
        (" 2M ", 120.0),
        ("1h2m3s", 3723.0),
        ("0.5s", 0.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "  ", "abc", "h", "m", "0", "0s", "0h0m", "-5m", "1d", "1.2.3s", "5 m", "1m1h"])
def test_parse_duration_rejects_nonsense(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_split_images_is_a_deterministic_partition():
    images = torch.arange(10).view(10, 1, 1, 1).expand(10, 1, 2, 2).clone()  # image i is all i
    train, held = split_images(images, 0.2, seed=3)
    assert train.shape == (8, 1, 2, 2) and held.shape == (2, 1, 2, 2)
    ids = torch.cat([train, held])[:, 0, 0, 0]
    assert sorted(ids.tolist()) == list(range(10))
    again = split_images(images, 0.2, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], held)
    assert not torch.equal(split_images(images, 0.2, seed=4)[0], train)
    assert [t.shape[0] for t in split_images(images, 3, seed=0)] == [7, 3]
    assert [t.shape[0] for t in split_images(images, 0, seed=0)] == [10, 0]
    for bad in (10, 11, -1, 0.999):
        with pytest.raises(UsageError):
            split_images(images, bad, seed=0)


@pytest.mark.parametrize(
    "change",
    [
        dict(width=0),
        dict(depth=0),
        dict(epochs=0),
        dict(batch_size=0),
        dict(batch_size=2.5),
        dict(width=True),
        dict(kernel_size=-3),
        dict(lr_patience=-1),
        dict(learning_rate=0.0),
        dict(learning_rate=float("nan")),
        dict(learning_rate=float("inf")),
        dict(min_lr=-1e-5),
        dict(lr_factor=1.0),
        dict(lr_factor=0.0),
        dict(weight_decay=-0.1),
        dict(grad_clip=-1.0),
        dict(precision="float16"),
        dict(max_time=0.0),
        dict(max_time=-5.0),
        dict(max_time="20m"),  # seconds in Python; durations like 20m are the command line's
        dict(loss="mse"),
        dict(validation_fraction=0.0),
        dict(validation_fraction=1.0),
        dict(masks="nonsense"),
    ],
)
def test_config_check_rejects_bad_settings(change):
    with pytest.raises(UsageError):
        NADETrainConfig(**change).check()


def test_config_check_accepts_defaults_and_normalises_dilations():
    assert NADETrainConfig().check().dilations == (1, 2, 1, 4)
    config = NADETrainConfig(
        dilations=[1, 3], max_time=60.0, loss="emd2", masks="orderless+squares", lr_patience=0
    ).check()
    assert config.dilations == (1, 3)
    assert config.model_config(3, 5)["dilations"] == [1, 3]


def test_training_reduces_the_validation_loss():
    train, validation = tiny_split()
    config = tiny_config(epochs=6)
    trainer = NADETrainer(tiny_model(config), config, train, validation)
    untrained = trainer.validation_loss()
    assert untrained == trainer.validation_loss()  # fixed validation masks: comparable across epochs
    assert untrained == pytest.approx(16 * math.log(3), rel=0.3)  # about uniform before training
    saves = []
    trainer.fit(progress=False, on_save=lambda t: saves.append((t.epoch, t.batch)))
    assert saves == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]
    assert [row["epoch"] for row in trainer.history] == [1, 2, 3, 4, 5, 6]
    for row in trainer.history:
        assert set(row) == HISTORY_KEYS
        assert all(math.isfinite(row[key]) for key in HISTORY_KEYS)
    assert trainer.history[-1]["validation_loss"] == trainer.validation_loss()
    assert trainer.history[-1]["validation_loss"] < 0.75 * untrained
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    assert trainer.epoch == 6 and trainer.batch == 0 and not trainer.stopped_by_time


def test_bfloat16_training_agrees_with_float32():
    """``precision="bfloat16"`` runs the network's forward pass under autocast and keeps the loss,
    the weights and validation in float32: from the same weights one update's loss and gradients
    are float32's within bfloat16's rounding, and a short run learns as much."""
    train, validation = tiny_split()
    config = {precision: tiny_config(epochs=6, precision=precision) for precision in ("float32", "bfloat16")}
    trainers = {p: NADETrainer(tiny_model(c), c, train, validation) for p, c in config.items()}
    x = train[:16].long()
    known = trainers["float32"].masks(16, tuple(x.shape[1:]), torch.Generator().manual_seed(0), "cpu")
    losses, grads = {}, {}
    for precision, trainer in trainers.items():
        trainer.model.zero_grad()
        loss = trainer._loss(trainer.model, x, known, precision=precision).mean()
        loss.backward()
        losses[precision] = loss.item()
        grads[precision] = torch.cat([p.grad.flatten() for p in trainer.model.parameters()])
    assert losses["bfloat16"] != losses["float32"]  # bfloat16 did round: the check below can fail
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.02)
    assert F.cosine_similarity(grads["bfloat16"], grads["float32"], dim=0) > 0.98
    untrained = trainers["bfloat16"].validation_loss()
    for trainer in trainers.values():
        trainer.fit(progress=False)
    final = {p: t.history[-1]["validation_loss"] for p, t in trainers.items()}
    assert final["bfloat16"] == pytest.approx(final["float32"], rel=0.05)
    assert final["bfloat16"] < 0.75 * untrained


def test_epoch_order_splits_each_epoch_between_ranks():
    train = stripes(49)  # 49 = 2 * 24 + 1: one image left out so the shares stay equal
    config = tiny_config()
    trainer = NADETrainer(tiny_model(config), config, train, train[:4])
    single = trainer._epoch_order(0)
    assert sorted(single.tolist()) == list(range(49))
    for epoch in range(3):
        shares = []
        for rank in range(2):
            trainer.where = Distributed(rank=rank, world_size=2, local_rank=rank)
            shares.append(trainer._epoch_order(epoch))
        assert shares[0].shape == shares[1].shape == (24,)
        assert not set(shares[0].tolist()) & set(shares[1].tolist())
        assert len(set(shares[0].tolist()) | set(shares[1].tolist())) == 48
    trainer.where = Distributed()
    assert not torch.equal(trainer._epoch_order(0), trainer._epoch_order(1))


# ---- 5. exact resumption ------------------------------------------------------------------------


def _resume_from(folder, train, validation) -> NADETrainer:
    checkpoint = load_checkpoint(folder, family="nade")
    saved = dict(checkpoint.config["training"])
    config = NADETrainConfig(**saved).check()
    trainer = NADETrainer(checkpoint.model, config, checkpoint.data["train"], checkpoint.data["validation"])
    assert torch.equal(trainer.train, train) and torch.equal(trainer.validation, validation)
    trainer.load_state(checkpoint.trainer, checkpoint.config["trainer"])
    trainer.history = list(checkpoint.history)
    return trainer


def _save(trainer, folder, train, validation):
    save_nade_trainer(trainer, folder, None, {"train": train, "validation": validation}, {"kind": "test"})


def _assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module):
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


def _without_times(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "elapsed")} for row in history]


def test_resume_between_epochs_is_exact(tmp_path):
    train, validation = tiny_split()
    config = tiny_config(epochs=3)  # 48 images / 16 = 3 batches per epoch
    reference = NADETrainer(tiny_model(config), config, train, validation).fit(progress=False)

    first = NADETrainer(tiny_model(config), dataclasses.replace(config, epochs=1), train, validation).fit(
        progress=False
    )
    _save(first, tmp_path / "ckpt", train, validation)
    resumed = _resume_from(tmp_path / "ckpt", train, validation)
    resumed.config.epochs = 3
    assert (resumed.epoch, resumed.batch) == (1, 0)
    assert resumed.learning_rate == first.learning_rate
    resumed.fit(progress=False)
    _assert_same_parameters(resumed.model, reference.model)
    assert _without_times(resumed.history) == _without_times(reference.history)
    resumed_state, reference_state = resumed.optimizer.state_dict()["state"], reference.optimizer.state_dict()["state"]
    assert resumed_state.keys() == reference_state.keys()
    for index, moments in reference_state.items():
        assert moments.keys() == resumed_state[index].keys()
        assert all(
            torch.equal(torch.as_tensor(resumed_state[index][k]), torch.as_tensor(v)) for k, v in moments.items()
        )


def test_resume_mid_epoch_after_a_timed_stop_is_exact(tmp_path, monkeypatch):
    train, validation = tiny_split()
    config = tiny_config(epochs=3, lr_patience=0, lr_factor=0.5)  # lr cuts happen: the scheduler is resumed too
    reference = NADETrainer(tiny_model(config), config, train, validation).fit(progress=False)

    calls = {"n": 0}

    def out_of_time_on_the_sixth_check(self, started):
        calls["n"] += 1
        return calls["n"] >= 6  # 3 batches of epoch 1, 2 of epoch 2, then stop

    saved = []

    def on_save(trainer):
        saved.append((trainer.epoch, trainer.batch))
        _save(trainer, tmp_path / "ckpt", train, validation)

    with monkeypatch.context() as patch:
        patch.setattr(NADETrainer, "_out_of_time", out_of_time_on_the_sixth_check)
        stopped = NADETrainer(tiny_model(config), config, train, validation).fit(progress=False, on_save=on_save)
    assert stopped.stopped_by_time and (stopped.epoch, stopped.batch) == (1, 2)
    assert saved == [(1, 0), (1, 2)]
    assert len(stopped.history) == 1

    resumed = _resume_from(tmp_path / "ckpt", train, validation)
    assert (resumed.epoch, resumed.batch) == (1, 2)
    assert resumed.scheduler.state_dict() == stopped.scheduler.state_dict()
    resumed.fit(progress=False)
    assert (resumed.epoch, resumed.batch) == (3, 0)
    _assert_same_parameters(resumed.model, reference.model)
    assert [row["learning_rate"] for row in resumed.history] == [row["learning_rate"] for row in reference.history]
    assert [row["validation_loss"] for row in resumed.history] == [row["validation_loss"] for row in reference.history]
    # the interrupted epoch's training loss counts the batches from before the stop too
    assert [row["train_loss"] for row in resumed.history] == [row["train_loss"] for row in reference.history]


def test_max_time_stops_training_and_counts_elapsed_time():
    train, validation = tiny_split()
    config = tiny_config(epochs=1000, max_time=0.3)
    trainer = NADETrainer(tiny_model(config), config, train, validation).fit(progress=False)
    assert trainer.stopped_by_time
    assert trainer.epoch < 1000
    assert trainer.elapsed >= 0.3


# ---- 6. data-parallel training on two CPU processes ---------------------------------------------


def _ddp_worker(rank: int, folder: str) -> None:
    """One rank of a two-process run; writes its parameters before and after training, and the
    warnings training raised."""
    import warnings

    from safetensors.torch import save_file
    from torch import distributed as dist

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    where = setup_distributed(torch.device("cpu"), init_method=f"file://{folder}/rendezvous")
    try:
        assert (where.rank, where.world_size, where.active) == (rank, 2, True)
        train, validation = tiny_split()
        # Batches of 16: at 8 the convolutions took another path whose gradients never showed the
        # layout mismatch that made DDP warn "Grad strides do not match bucket view strides".
        config = tiny_config(epochs=2, batch_size=16)
        model = tiny_model(config)
        before = {f"before.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = NADETrainer(model, config, train, validation, where=where)
            assert isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel)
            trainer.fit(progress=False)
        after = {f"after.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        save_file({**before, **after}, f"{folder}/rank{rank}.safetensors")
        with open(f"{folder}/rank{rank}.json", "w") as f:
            json.dump(_without_times(trainer.history), f)
        with open(f"{folder}/rank{rank}.warnings.json", "w") as f:
            json.dump([f"{w.category.__name__}: {w.message}" for w in caught], f)
    finally:
        dist.destroy_process_group()


def test_data_parallel_training_keeps_ranks_in_step(tmp_path):
    from safetensors.torch import load_file

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_ddp_worker, args=(rank, str(tmp_path))) for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join()
    assert [worker.exitcode for worker in workers] == [0, 0]

    ranks = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    names = [name for name in ranks[0] if name.startswith("after.")]
    assert names
    for name in names:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert any(not torch.equal(ranks[0][name], ranks[0]["before." + name[len("after.") :]]) for name in names)
    histories = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert len(histories[0]) == 2 and histories[0] == histories[1]  # losses are reduced over both ranks
    for rank in range(2):  # e.g. "Grad strides do not match bucket view strides", once per process
        assert json.loads((tmp_path / f"rank{rank}.warnings.json").read_text()) == [], rank


@pytest.mark.parametrize("batch, captions", [(8, 0), (16, 0), (64, 0), (16, 12)])
def test_every_gradient_is_laid_out_as_its_parameter(batch, captions):
    """DDP lays its gradient buckets out as the parameters are; a gradient with other strides makes
    it warn and copy. The convnet runs channels-last, so its 1x1 convolutions returned channels-last
    gradients for contiguous weights; the trainer lays the weights out channels-last while it trains,
    and contiguous again after."""
    train, validation = tiny_split()
    config = tiny_config(epochs=1, batch_size=batch)
    torch.manual_seed(0)
    model = OrderlessNADE(**config.model_config(channels=1, levels=3, caption_vocab_size=captions))
    tables = {}
    if captions:
        ids = torch.randint(1, captions, (64, 2, 5), generator=torch.Generator().manual_seed(1))
        tables = {"train_captions": ids[: len(train)], "validation_captions": ids[len(train) : 64]}
    checked = []

    def check(trainer):  # after the epoch's last update, still inside fit
        for name, parameter in trainer.model.named_parameters():
            if parameter.grad is not None:
                assert parameter.grad.stride() == parameter.stride(), name
                checked.append(name)

    NADETrainer(model, config, train, validation, **tables).fit(progress=False, on_save=check)
    assert any(name.endswith("readout.weight") for name in checked)
    assert all(p.is_contiguous() for p in model.parameters())  # after training: saves anywhere


@pytest.mark.parametrize("size, given, expected", [(16, None, 64), (40, None, 8), (40, 5, 5)])
def test_the_default_batch_size_follows_the_image_size(tmp_path, size, given, expected):
    """Without a batch size, images of more than 4,096 values (40x40 RGB: 4,800) train in batches
    of 8 and smaller ones in batches of 64 (docs/benchmarks.md measured why at 64x64); a given one
    is kept. The checkpoint records the number used."""
    import json

    import gibbsdream
    from gibbsdream.training.nade import default_batch_size

    training = {"epochs": 1} if given is None else {"epochs": 1, "batch_size": given}
    out = tmp_path / f"shapes-{size}"
    gibbsdream.train(
        "nade", "builtin:shapes", out, model={"width": 4, "depth": 1}, training=training,
        options={"size": size, "count": 30, "levels": 4}, device="cpu",
    )  # fmt: skip
    assert json.loads((out / "config.json").read_text())["training"]["batch_size"] == expected
    assert default_batch_size(4096) == 64 and default_batch_size(4097) == 8
