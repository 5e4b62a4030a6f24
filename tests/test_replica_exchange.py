"""Replica exchange for RBMs against the exact tempered distribution of a model built to be bimodal."""

import pytest
import torch

from gibbsdream import RBM, UsageError, sample
from test_rbm_exact import empirical_distribution, exact_visible_distribution, total_variation


def two_modes(num_visible: int = 8, strength: float = 3.0) -> RBM:
    """One hidden unit that turns every visible unit on or off: all-off and all-on are equally likely
    modes, separated (at T = 0.5) by states a block Gibbs chain practically never visits."""
    model = RBM(num_visible, 1, 2).double()
    with torch.no_grad():
        model.weight.fill_(strength)
        model.visible_bias.fill_(-strength / 2)
        model.hidden_bias.fill_(-num_visible * strength / 2)
    return model


def test_replica_exchange_samples_both_modes_where_gibbs_stays_in_one():
    model = two_modes()
    _, exact = exact_visible_distribution(model, 0.5)
    assert exact[0] > 0.3 and exact[-1] > 0.3  # the two modes
    start = torch.zeros(10000, 8, dtype=torch.long)  # every chain starts in the all-off mode
    chain = sample(model, sampler="replica-exchange", num_chains=10000, init=start, steps=200, temperature=0.5, seed=1)
    assert total_variation(empirical_distribution(chain.samples, 2), exact) < 0.05
    plain = sample(model, num_chains=10000, init=start, steps=200, temperature=0.5, seed=1, engine="torch")
    assert total_variation(empirical_distribution(plain.samples, 2), exact) > 0.3
    # the ladder: from the sampled temperature up to at most `hot`, every pair swapping at about one rate
    ladder, rates = chain.settings["ladder"], chain.settings["swap_rates"]
    assert ladder[0] == 0.5 and ladder[-1] <= 5.0 + 1e-9 and ladder == sorted(ladder) and len(ladder) == 8
    assert all(0 < r <= 1 for r in rates) and max(rates) - min(rates) < 0.2, rates
    assert chain.trace.shape == (201, 10000) and chain.settings["burn_in_steps"] == 50


def test_the_ladder_adapts_towards_a_reachable_target_rate():
    """A target above the rates of the starting ladder narrows the gaps until pairs swap at about the
    target, and the hottest temperature comes down from the cap."""
    model = two_modes(6, 2.0)
    chain = sample(model, sampler="replica-exchange", num_chains=2000, steps=400, temperature=1.0, replicas=4,
                   hot=20.0, target_swap_rate=0.9, burn_in=0.5, seed=2)  # fmt: skip
    assert chain.settings["ladder"][-1] < 20.0 * 0.9
    assert all(abs(r - 0.9) < 0.06 for r in chain.settings["swap_rates"]), chain.settings


def test_clamped_positions_never_change():
    model = two_modes()
    x = torch.zeros(8, dtype=torch.long)
    x[0] = 1
    known = torch.zeros(8, dtype=torch.bool)
    known[0] = True
    chain = sample(model, sampler="replica-exchange", num_chains=50, x=x, known=known, steps=20, temperature=0.5,
                   record_every=1, seed=3)  # fmt: skip
    assert (chain.frames[:, :, 0] == 1).all()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"temperature": "1:0.5"}, "give a constant temperature"),
        ({"temperature": 0}, "one temperature > 0"),
        ({"replicas": 1}, "replicas"),
        ({"hot": 0.4}, "hot must be a temperature above 0.5"),
        ({"target_swap_rate": 1.5}, "target_swap_rate must lie in"),
        ({"burn_in": 1.0}, "burn_in must be a share"),
    ],
)
def test_bad_options_are_refused(options, words):
    settings = {"temperature": 0.5, **options}
    with pytest.raises(UsageError, match=words):
        sample(two_modes(), sampler="replica-exchange", num_chains=4, steps=4, **settings)
