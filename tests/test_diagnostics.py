"""Convergence diagnostics of a chain's trace, against processes whose answers are known."""

import math

import pytest
import torch

from gibbsdream.sampling.chain import Chain
from gibbsdream.sampling.diagnostics import chain_diagnostics, diagnostics_text


def chain_of(trace: torch.Tensor, acceptance=None) -> Chain:
    return Chain(trace[-1], trace=trace, temperatures=[], acceptance=acceptance)


def ar1(steps: int, chains: int, phi: float, seed: int, offsets=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(steps, chains, generator=g, dtype=torch.float64)
    out = torch.zeros(steps, chains, dtype=torch.float64)
    out[0] = noise[0] / math.sqrt(1 - phi**2)  # started in the stationary distribution
    for t in range(1, steps):
        out[t] = phi * out[t - 1] + noise[t]
    return out + (0 if offsets is None else offsets)


def test_independent_draws_have_rhat_one_and_no_autocorrelation():
    d = chain_of(ar1(801, 8, 0.0, 0)).diagnostics()
    assert d["draws"] == 401 and d["chains"] == 8
    assert abs(d["rhat"] - 1) < 0.02 and 0.8 < d["iat"] < 1.25 and d["warning"] is None
    assert d["ess_bulk"] > 0.8 * 401 * 8


def test_the_autocorrelation_time_of_an_ar1_process():
    """AR(1) with phi = 0.8 has integrated autocorrelation time (1 + phi) / (1 - phi) = 9."""
    d = chain_diagnostics(ar1(4001, 16, 0.8, 1), burn_in=0.0)
    assert 9 * 0.8 < d["iat"] < 9 * 1.2, d
    assert abs(d["rhat"] - 1) < 0.02


def test_chains_stuck_in_different_modes_are_flagged():
    stuck = ar1(801, 8, 0.5, 2, offsets=torch.arange(8, dtype=torch.float64) * 3)  # eight separate modes
    d = chain_of(stuck).diagnostics()
    assert d["rhat"] > 1.5 and "have not mixed" in d["warning"] and "R-hat" in diagnostics_text(d)
    # the same chains, pooled into one mode, pass
    assert chain_of(ar1(801, 8, 0.5, 2)).diagnostics()["warning"] is None


def test_nan_rows_and_short_traces_and_acceptance():
    trace = ar1(21, 4, 0.0, 3)
    trace[0] = float("nan")  # e.g. ancestral sampling: nothing drawn before the first step
    acceptance = torch.tensor([[1.0, 0.0]]).repeat(20, 2)
    d = chain_of(trace, acceptance).diagnostics(burn_in=0.0)
    assert d["draws"] == 20 and d["acceptance_rate"] == 0.5 and "acceptance 0.50" in diagnostics_text(d)
    few = chain_of(ar1(5, 4, 0.0, 4)).diagnostics()
    assert few["draws"] == 3 and few["rhat"] is None and "too few draws" in diagnostics_text(few)
    with pytest.raises(ValueError, match="burn_in"):
        chain_of(trace).diagnostics(burn_in=1.0)


def test_a_single_chain_is_judged_by_its_halves():
    steady = chain_of(ar1(801, 1, 0.0, 5)).diagnostics()
    assert abs(steady["rhat"] - 1) < 0.05 and steady["warning"] is None
    drifting = ar1(801, 1, 0.0, 6) + torch.linspace(0, 10, 801, dtype=torch.float64).unsqueeze(1)
    assert chain_of(drifting).diagnostics()["rhat"] > 1.5


def test_swap_rates_of_a_replica_exchange_run_are_reported():
    chain = chain_of(ar1(41, 4, 0.0, 7))
    chain.settings = {"ladder": [0.5, 0.8, 1.3], "swap_rates": [0.25, 0.4]}
    d = chain.diagnostics()
    assert d["swap_rates"] == [0.25, 0.4] and "swap rates 0.25 to 0.40 over 2 pairs" in diagnostics_text(d)
    assert chain_of(ar1(41, 4, 0.0, 7)).diagnostics()["swap_rates"] is None
