"""Samplers for conditional models against an explicit joint probability table.

The model knows a joint distribution over D = 3 variables with K = 3 categories (27 states) and
answers every conditional ``p(x_i | x_known)`` exactly by summing the table. Any exact sampler
must then reproduce the joint; total variation between 20,000 samples and 27 exact
probabilities is about 0.015 for an exact sampler, so 0.03 is the bound used.
"""

import itertools

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
        # Every answer, looked up by (state, known pattern): the sums below for all of them at once.
        D, M = self.num_variables, len(self.states)
        patterns = (torch.arange(2**D).unsqueeze(1) >> torch.arange(D - 1, -1, -1)) & 1 == 1  # (P, D)
        self.table = self._sums(self.states.repeat_interleave(len(patterns), 0), patterns.repeat(M, 1))
        self.table = self.table.view(M, len(patterns), D, self.num_categories)

    def _code(self, x: torch.Tensor, base: int) -> torch.Tensor:
        return (x.long() * base ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1)

    def logits(self, x, known, context=None):
        return self.table[self._code(x, self.num_categories), self._code(known, 2)].clone()

    def _sums(self, x, known):
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


# ---- confidence decoding (MaskGIT) ------------------------------------------------------------------


def test_confidence_decoding_one_random_variable_per_step_reproduces_the_joint(table):
    """Keeping one variable per step (linear schedule, as many steps as variables) with a choice
    temperature so high that the Gumbel noise alone picks it is random-order ancestral sampling."""
    x, known = blank(20000)
    chain = sample(
        table, x=x, known=known, sampler="confidence", steps=3, mask_schedule="linear", choice_temperature=1e6, seed=7
    )
    assert tv(empirical(chain.samples), table.log_p.exp()) < 0.03
    # Decoding everything in one step draws every variable from its marginal: not the joint.
    one_step = sample(table, x=x, known=known, sampler="confidence", steps=1, seed=7)
    assert tv(empirical(one_step.samples), table.log_p.exp()) > 0.1
    # Keeping the most confident draw (no noise) is MaskGIT's bias toward likely values, not the joint either.
    greedy = sample(
        table, x=x, known=known, sampler="confidence", steps=3, mask_schedule="linear", choice_temperature=0, seed=7
    )
    assert tv(empirical(greedy.samples), table.log_p.exp()) > 0.05


class Counting:
    """A conditional model of D independent variables with fixed logits, recording how many
    variables each call asks for; variable i is the more peaked the larger i is."""

    num_categories = 3

    def __init__(self, D: int):
        self.base = torch.stack([torch.tensor([0.0, 0.3 * i + 0.1, 0.0]) for i in range(D)])  # (D, K)
        self.asked = []

    def logits(self, x, known, context=None):
        return self.base.expand(x.shape[0], -1, -1).clone()

    def logits_at(self, x, known, where, context=None):
        self.asked.append(int(where.sum()))
        return self.logits(x, known, context)[where]


@pytest.mark.parametrize(
    "schedule, decoded",
    [("cosine", [2, 3, 5, 6]), ("arccos", [3, 3, 3, 7]), ("linear", [4, 4, 4, 4]), ("pow:2", [1, 3, 5, 7])],
)
def test_confidence_decoding_follows_the_mask_schedule(schedule, decoded):
    """16 unknown variables over 4 steps: still masked after step n is floor(16 gamma((n + 1) / 4)),
    e.g. cosine: floor(16 cos(pi/8)) = 14, floor(16 cos(pi/4)) = 11, floor(16 cos(3 pi/8)) = 6, then 0."""
    model = Counting(16)
    x, known = blank(1, 16)
    chain = sample(model, x=x, known=known, sampler="confidence", steps=4, mask_schedule=schedule, seed=0)
    asked = model.asked  # the still-masked variables each step draws
    assert [a - b for a, b in itertools.pairwise(asked)] + [asked[-1]] == decoded
    assert chain.settings["mask_schedule"] == schedule and torch.isfinite(chain.trace[1:]).all()


def test_still_masked_keeps_one_back_until_the_last_step():
    from gibbsdream.sampling.conditional import still_masked

    unknown, remaining = torch.tensor([16, 16, 5, 0]), torch.tensor([3, 1, 5, 0])
    assert still_masked(unknown, remaining, 0.9, last=False).tolist() == [2, 1, 4, 0]  # min(rem - 1, ...), >= 1
    assert still_masked(unknown, remaining, 0.01, last=False).tolist() == [1, 1, 1, 0]
    assert still_masked(unknown, remaining, 0.9, last=True).tolist() == [0, 0, 0, 0]


def test_without_noise_confidence_decoding_keeps_the_most_confident_first():
    model = Counting(4)
    x, known = blank(1, 4)
    chain = sample(model, x=x, known=known, sampler="confidence", steps=4, mask_schedule="linear",
                   choice_temperature=0, temperature=0, record_every=1, seed=0)  # fmt: skip
    # argmax draws (value 1) with confidences rising with the index: variable 3 first, 0 last
    decoded = [(frame[0] == 1).nonzero().flatten().tolist() for frame in chain.frames]
    assert decoded == [[], [3], [2, 3], [1, 2, 3], [0, 1, 2, 3]]


def test_confidence_decoding_keeps_clamped_variables_and_decoded_ones(table):
    x, known = blank(500, 3)
    x[:, 1], known[:, 1] = 2, True
    chain = sample(table, x=x, known=known, sampler="confidence", steps=2, record_every=1, seed=1)
    assert (chain.frames[:, :, 1] == 2).all()
    # a variable once decoded never changes (argmax draws are all 1, so the 1s mark the decoded ones)
    model = Counting(12)
    x, known = blank(64, 12)
    chain = sample(model, x=x, known=known, sampler="confidence", steps=5, temperature=0, record_every=1, seed=2)
    for before, after in itertools.pairwise(chain.frames):
        assert ((before == 1) <= (after == 1)).all() and ((after == 1) | (after == 0)).all()
    assert (chain.samples == 1).all()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"mask_schedule": "sine"}, "unknown mask schedule 'sine'"),
        ({"mask_schedule": "pow:0"}, "needs a power > 0"),
        ({"choice_temperature": -1.0}, "choice_temperature must be a finite number >= 0"),
        ({"choice_temperature": float("nan")}, "choice_temperature must be a finite number >= 0"),
        ({"block": 0.5}, "block does not apply to the 'confidence' sampler"),
    ],
)
def test_confidence_decoding_refuses_bad_options(table, options, words):
    from gibbsdream.errors import UsageError

    x, known = blank(2)
    with pytest.raises(UsageError, match=words):
        sample(table, x=x, known=known, sampler="confidence", steps=2, **options)


# ---- blocked Gibbs with the block chosen by confidence ----------------------------------------------


class OneUnsure:
    """D independent variables: variable 0 uniform over 3 values, the others almost sure of value 1
    (p = 0.98); records which variables each call draws."""

    num_categories = 3

    def __init__(self, D: int = 8):
        self.base = torch.tensor([[0.0, 0.0, 0.0]] + [[0.0, 4.6, 0.0]] * (D - 1))  # (D, K)
        self.drawn = torch.zeros(D)

    def logits(self, x, known, context=None):
        return self.base.expand(x.shape[0], -1, -1).clone()

    def logits_at(self, x, known, where, context=None):
        self.drawn += where.sum(0)
        return self.logits(x, known, context)[where]


@pytest.mark.parametrize("sampler", ["gibbs", "ancestral-gibbs"])
def test_confidence_blocks_redraw_the_least_confident_variables_more_often(sampler):
    """One variable per step: chosen with weights 1/p, the unsure variable (1/p = 3 against 1.02 for
    each of 7 sure ones) is redrawn about 30% of the time; a random block redraws it 1/8 of the time."""
    x, known = blank(2000, 8)
    x[:, 5], known[:, 5] = 2, True  # a clamped variable is never redrawn, and stays as it was
    shares = {}
    for select in ("random", "confidence"):
        model = OneUnsure()
        chain = sample(model, x=x, known=known, sampler=sampler, steps=10, block=1 / 7, block_select=select, seed=8)
        assert (chain.samples[:, 5] == 2).all() and model.drawn[5] == 0
        redrawn = model.drawn - 2000 * (~known[0]).float()  # less the initial fill of every free variable
        shares[select] = (redrawn[0] / redrawn.sum()).item()
    assert abs(shares["random"] - 1 / 7) < 0.02
    expected = 3 / (3 + 6 / 0.98)  # weights 1/p over the 7 free variables (the unsure one and 6 sure)
    assert abs(shares["confidence"] - expected) < 0.04, shares
    if sampler == "gibbs":
        assert chain.settings["block_select"] == "confidence"


def test_block_select_refuses_an_unknown_rule(table):
    from gibbsdream.errors import UsageError

    x, known = blank(2)
    with pytest.raises(UsageError, match="unknown block_select 'lowest'; choose one of random, confidence"):
        sample(table, x=x, known=known, sampler="gibbs", steps=2, block_select="lowest")


# ---- Metropolis-Hastings on one order's joint, tempered exactly --------------------------------------


def tempered(p: torch.Tensor, T: float) -> torch.Tensor:
    q = p ** (1 / T)
    return q / q.sum()


@pytest.mark.parametrize("T", [1.0, 0.5])
def test_mh_samples_the_tempered_joint_of_a_coherent_model(table, T):
    x, known = blank(20000)
    chain = sample(table, x=x, known=known, sampler="mh", steps=30, temperature=T, block=2 / 3, seed=9)
    assert tv(empirical(chain.samples), tempered(table.log_p.exp(), T)) < 0.03
    assert 0.2 < chain.settings["acceptance_rate"] < 1.0  # two-variable proposals are sometimes refused
    assert chain.acceptance.shape == (30, 20000) and chain.settings["network_rows_per_step"] == 4


class Incoherent(JointTable):
    """Conditionals from two tables: variable 0's from ``other``, the rest from ``probs``. No joint
    has these conditionals; each order of the chain rule defines a different one."""

    def __init__(self, probs, other):
        super().__init__(probs)
        self.other = JointTable(other)

    def logits(self, x, known, context=None):
        mine, theirs = super().logits(x, known, context), self.other.logits(x, known, context)
        return torch.cat([theirs[:, :1], mine[:, 1:]], 1)


def order_joints(model) -> list[torch.Tensor]:
    """p_sigma over the 27 states for each of the 6 orders, by the chain rule on the model's conditionals."""
    states, out = model.states, []
    for sigma in itertools.permutations(range(3)):
        log_p = torch.zeros(len(states), dtype=torch.float64)
        known = torch.zeros(len(states), 3, dtype=torch.bool)
        for i in sigma:
            log_p += torch.log_softmax(model.logits(states, known), -1)[torch.arange(len(states)), i, states[:, i]]
            known[:, i] = True
        out.append(log_p.exp())
    return out


@pytest.mark.parametrize("T", [1.0, 0.5])
def test_mh_tempers_one_orders_joint_where_tempered_gibbs_tempers_none(T):
    g = torch.Generator().manual_seed(4)
    a, b = (torch.rand(3, 3, 3, generator=g, dtype=torch.float64) ** 3 for _ in range(2))
    model = Incoherent(a / a.sum(), b / b.sum())
    targets = [tempered(p, T) for p in order_joints(model)]
    # the orders disagree (those that only swap the variables after variable 0, or before it, agree)
    assert sorted(tv(targets[0], q) for q in targets)[2] > 0.05
    x, known = blank(20000)
    mh = empirical(sample(model, x=x, known=known, sampler="mh", steps=60, temperature=T, block=1.0, seed=10).samples)
    assert min(tv(mh, p) for p in targets) < 0.03
    gibbs = empirical(
        sample(model, x=x, known=known, sampler="gibbs", steps=40, temperature=T, block=1 / 3, seed=10).samples
    )
    assert min(tv(gibbs, p) for p in targets) > 0.05


def test_mh_keeps_clamped_variables_and_refuses_zero_temperature(table):
    from gibbsdream.errors import UsageError

    x, known = blank(4000)
    x[:, 1], known[:, 1] = 2, True
    chain = sample(table, x=x, known=known, sampler="mh", steps=20, block=1.0, record_every=1, seed=11)
    assert (chain.frames[:, :, 1] == 2).all()
    conditional = torch.where(table.states[:, 1] == 2, table.log_p.exp(), torch.zeros(27, dtype=torch.float64))
    assert tv(empirical(chain.samples), conditional / conditional.sum()) < 0.05
    with pytest.raises(UsageError, match="mh sampler needs temperatures > 0"):
        sample(table, x=x, known=known, sampler="mh", steps=2, temperature=0)
