"""Samplers for conditional models against an explicit joint probability table.

The model knows a joint distribution over D = 3 variables with K = 3 categories (27 states) and
answers every conditional ``p(x_i | x_known)`` exactly by summing the table. Any exact sampler
must then reproduce the joint; total variation between 20,000 samples and 27 exact
probabilities is about 0.015 for an exact sampler, so 0.03 is the bound used.
"""

import pytest
import torch

from gibbsdream import sample
from gibbsdream.sampling.conditional import ancestral, blocked_gibbs


class JointTable:
    """A conditional model backed by a full joint probability table ``p: (K,) * D``."""

    def __init__(self, probs: torch.Tensor):
        self.num_categories = probs.shape[0]
        self.num_variables = probs.dim()
        self.log_p = probs.log().reshape(-1)
        grids = torch.meshgrid(*[torch.arange(self.num_categories)] * self.num_variables, indexing="ij")
        self.states = torch.stack(grids, -1).reshape(-1, self.num_variables)  # (M, D)

    def logits(self, x, known, context=None):
        consistent = ((self.states[None] == x[:, None]) | ~known[:, None]).all(-1)  # (N, M)
        weights = torch.where(consistent, self.log_p[None], torch.tensor(float("-inf")))
        onehot = torch.nn.functional.one_hot(self.states, self.num_categories).bool()  # (M, D, K)
        per_value = torch.where(onehot[None], weights[:, :, None, None], torch.tensor(float("-inf")))
        return torch.logsumexp(per_value, dim=1)  # (N, D, K)


@pytest.fixture(scope="module")
def table():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 3, 3, generator=g, dtype=torch.float64) ** 3  # peaked, strongly dependent
    return JointTable(probs / probs.sum())


def empirical(samples, K=3):
    codes = (samples * K ** torch.arange(samples.shape[1] - 1, -1, -1)).sum(1)
    return torch.bincount(codes, minlength=K ** samples.shape[1]).double() / len(samples)


def tv(p, q):
    return 0.5 * (p - q).abs().sum().item()


def blank(n, d=3):
    return torch.zeros(n, d, dtype=torch.long), torch.zeros(n, d, dtype=torch.bool)


@pytest.mark.parametrize("order", ["random", "greedy"])
def test_ancestral_sampling_reproduces_the_joint(table, order):
    x, known = blank(20000)
    chain = ancestral(table, x, known, generator=torch.Generator().manual_seed(1), order=order)
    assert tv(empirical(chain.samples), table.log_p.exp()) < 0.03


def test_single_site_gibbs_converges_to_the_joint(table):
    x, known = blank(20000)
    steps = 40
    chain = blocked_gibbs(table, x, known, steps, [1.0] * steps, [1 / 3] * steps, torch.Generator().manual_seed(2))
    assert tv(empirical(chain.samples), table.log_p.exp()) < 0.03


def test_independent_whole_block_resampling_does_not_reach_the_joint(table):
    # Redrawing every variable at once, independently, samples the product of the marginals:
    # the check above would catch a sampler that did this.
    x, known = blank(20000)
    chain = blocked_gibbs(table, x, known, 5, [1.0] * 5, [1.0] * 5, torch.Generator().manual_seed(3))
    assert tv(empirical(chain.samples), table.log_p.exp()) > 0.1


def test_ancestral_gibbs_with_a_whole_block_is_exact(table):
    x, known = blank(20000)
    chain = blocked_gibbs(
        table, x, known, 3, [1.0] * 3, [1.0] * 3, torch.Generator().manual_seed(4), resample="ancestral"
    )
    assert tv(empirical(chain.samples), table.log_p.exp()) < 0.03


@pytest.mark.parametrize("sampler", ["ancestral", "gibbs", "ancestral-gibbs"])
def test_clamped_variables_never_change_and_the_rest_follow_the_conditional(table, sampler):
    x, known = blank(20000)
    x[:, 1], known[:, 1] = 2, True
    block = {} if sampler == "ancestral" else {"block": 0.5}  # ancestral sampling takes no block
    chain = sample(table, x=x, known=known, sampler=sampler, steps=30, seed=5, record_every=1, **block)
    assert (chain.frames[:, :, 1] == 2).all()
    joint = table.log_p.exp()
    conditional = torch.where(table.states[:, 1] == 2, joint, torch.zeros_like(joint))
    assert tv(empirical(chain.samples), conditional / conditional.sum()) < 0.03


def test_zero_temperature_gibbs_is_deterministic_and_the_trace_is_a_mean_log_probability(table):
    x, known = blank(8)
    a = sample(table, x=x, known=known, sampler="gibbs", steps=10, block="yao:0.9,0.1,0.7", temperature=0, seed=0)
    b = sample(table, x=x, known=known, sampler="gibbs", steps=10, block="yao:0.9,0.1,0.7", temperature=0, seed=0)
    assert torch.equal(a.samples, b.samples)
    assert a.energy.shape == (11, 8) and (a.energy <= 0).all()


def test_ancestral_groups_of_variables_per_call(table):
    """per_call=k draws k variables per model call: ceil(free / k) calls, clamps kept; with k = D
    every variable is drawn from its marginal given the clamps alone (independently)."""
    x, known = blank(20000)
    x[:, 0], known[:, 0] = 1, True
    chain = sample(table, x=x, known=known, sampler="ancestral", per_call=2, seed=3)
    assert chain.settings["steps"] == 1 and chain.energy.shape == (2, 20000)
    assert (chain.samples[:, 0] == 1).all()
    joint = table.log_p.exp().view(3, 3, 3)[1]  # p(x1, x2 | x0 = 1), unnormalised
    conditional = joint / joint.sum()
    independent = torch.outer(conditional.sum(1), conditional.sum(0)).reshape(-1)
    drawn = empirical(chain.samples[:, 1:])
    assert tv(drawn, independent) < 0.03
    assert tv(drawn, conditional.reshape(-1)) > 0.05  # the table is dependent enough to tell them apart
    with pytest.raises(ValueError, match="order"):
        sample(table, x=x[:4], known=known[:4], sampler="ancestral", order="sideways")


class TableAt(JointTable):
    """The table with ``logits_at``: the samplers then ask it for the variables they draw only."""

    def __init__(self, probs, wrong=False):
        super().__init__(probs)
        self.wrong, self.asked = wrong, []

    def logits_at(self, x, known, where, context=None):
        self.asked.append(int(where.sum()))
        rows = self.logits(x, known, context)[where]
        # The deliberately wrong variant: the rows in column-major order (variable first, then
        # example), as a convnet that gathered its pixels channel by channel would return them.
        return self.logits(x, known, context).transpose(0, 1)[where.T] if self.wrong else rows


@pytest.mark.parametrize("sampler", ["ancestral", "gibbs"])
def test_a_model_with_logits_at_is_asked_only_for_what_is_drawn_and_sampled_exactly(table, sampler):
    probs = table.log_p.exp().view(3, 3, 3)
    x, known = blank(20000)
    block = {"block": 1 / 3} if sampler == "gibbs" else {}
    right = TableAt(probs)
    chain = sample(right, x=x, known=known, sampler=sampler, steps=40, seed=6, **block)
    assert tv(empirical(chain.samples), table.log_p.exp()) < 0.03
    # Every call but a Gibbs chain's initial fill asks for one variable of each of the 20,000 chains.
    assert set(right.asked[1:] if sampler == "gibbs" else right.asked) == {20000}
    # The same seed gives the same samples as the table without logits_at (which computes all).
    assert torch.equal(
        chain.samples, sample(table, x=x, known=known, sampler=sampler, steps=40, seed=6, **block).samples
    )
    wrong = TableAt(probs, wrong=True)
    chain = sample(wrong, x=x, known=known, sampler=sampler, steps=40, seed=6, **block)
    assert tv(empirical(chain.samples), table.log_p.exp()) > 0.1
