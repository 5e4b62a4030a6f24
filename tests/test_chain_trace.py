"""A chain's trace says what it holds (free energy or log-probability) and which way is better,
and that direction agrees with the model's exact probabilities on models small enough to enumerate."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from gibbsdream import sample
from gibbsdream.report import _chains_html, trace_kind
from gibbsdream.sampling import FREE_ENERGY, LOG_PROBABILITY, Chain, TraceKind
from gibbsdream.sampling.registry import Sampler, register, trace_kind_of, unregister
from gibbsdream.web.app import job_status
from gibbsdream.web.jobs import Job
from test_conditional_samplers import JointTable
from test_rbm_exact import exact_visible_distribution, small_rbm


def exact_log_p(model, states: torch.Tensor) -> torch.Tensor:
    """``(N,)`` log p(v) at T = 1 of ``states: (N, V)``, by enumerating every visible state."""
    visible, p = exact_visible_distribution(model)
    codes = (states[:, None, :] == visible[None]).all(-1).double().argmax(1)  # (N,) index of each state
    return p.log()[codes]


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_an_rbm_chain_traces_free_energy_and_lower_means_more_probable(engine):
    model = small_rbm(num_visible=3, num_hidden=4, num_categories=3).float()
    chain = sample(model, num_chains=400, steps=5, seed=0, engine=engine)
    assert chain.trace_kind == FREE_ENERGY and chain.trace_name == "free energy"
    assert chain.higher_is_better is False and chain.trace_kind.direction == "lower is better"
    # log p(v) = -F(v) - log Z: signed by its direction, the trace is log p up to one constant, so
    # "better" by the trace's direction is "more probable" under the exact distribution.
    sign = 1.0 if chain.higher_is_better else -1.0
    offset = sign * chain.final_trace.double() - exact_log_p(model.double(), chain.samples)
    assert chain.samples.unique(dim=0).shape[0] > 5  # several distinct states, so the check compares something
    assert offset.max() - offset.min() < 1e-4


@pytest.mark.parametrize("order", ["random", "greedy"])
def test_a_conditional_chain_traces_log_probability_and_higher_means_more_probable(order):
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 3, 3, generator=g, dtype=torch.float64) ** 3
    table = JointTable(probs / probs.sum())
    x, known = torch.zeros(300, 3, dtype=torch.long), torch.zeros(300, 3, dtype=torch.bool)
    chain = sample(table, x=x, known=known, sampler="ancestral", order=order, seed=1)
    assert chain.trace_kind == LOG_PROBABILITY and chain.trace_name == "log-probability"
    assert chain.higher_is_better is True
    # One variable per step: the rows after the first are log p(x_d | the ones drawn before), whose
    # sum is log p(x) by the chain rule; signed by the direction it is exactly the joint's log p.
    assert chain.trace.shape == (4, 300) and chain.trace[0].isnan().all()
    sign = 1.0 if chain.higher_is_better else -1.0
    codes = (chain.samples * 3 ** torch.arange(2, -1, -1)).sum(1)
    assert torch.allclose(sign * chain.trace[1:].double().sum(0), table.log_p[codes], atol=1e-5)  # float32 trace
    assert trace_kind_of(table) == LOG_PROBABILITY


def test_gibbs_on_a_conditional_model_also_traces_log_probability():
    table = JointTable(torch.full((2, 2), 0.25, dtype=torch.float64))
    chain = sample(table, x=torch.zeros(4, 2, dtype=torch.long), known=torch.zeros(4, 2, dtype=torch.bool), steps=3)
    assert chain.trace_kind == LOG_PROBABILITY and (chain.trace[1:] <= 0).all()


@dataclass(frozen=True)
class _NoOptions:
    pass


def test_a_sampler_that_does_not_say_gets_its_protocols_kind_and_the_old_name_still_builds_a_chain():
    def run(model, request, options):
        return Chain(samples=request.x, energy=torch.zeros(1, request.x.shape[0]), temperatures=[])  # the old keyword

    register(Sampler("silent", "conditional", _NoOptions, run))
    try:
        table = JointTable(torch.full((2, 2), 0.25, dtype=torch.float64))
        chain = sample(
            table, x=torch.zeros(3, 2, dtype=torch.long), known=torch.ones(3, 2, dtype=torch.bool), sampler="silent"
        )
    finally:
        unregister("conditional", "silent")
    assert chain.trace_kind == LOG_PROBABILITY
    assert chain.energy is chain.trace and torch.equal(chain.final_energy, chain.final_trace)
    with pytest.raises(TypeError, match="once"):
        Chain(samples=torch.zeros(1), trace=torch.zeros(1), energy=torch.zeros(1), temperatures=[])


def test_trace_kind_orders_best_first_and_round_trips_through_json():
    assert FREE_ENERGY.best([3.0, -2.0, 1.0]) == -2.0 and LOG_PROBABILITY.best([3.0, -2.0, 1.0]) == 3.0
    assert sorted([3.0, -2.0, 1.0], key=LOG_PROBABILITY.sort_key) == [3.0, 1.0, -2.0]
    assert sorted([3.0, -2.0, 1.0], key=FREE_ENERGY.sort_key) == [-2.0, 1.0, 3.0]
    for kind in (FREE_ENERGY, LOG_PROBABILITY):
        assert TraceKind.from_json(kind.to_json()) == kind


def test_a_report_reads_the_kind_from_its_cells_and_old_cells_by_family():
    spec = SimpleNamespace(family="rbm", outputs="strings")
    assert trace_kind(spec, [{"cell": 0}]) == FREE_ENERGY  # a cell written before records carried the kind
    assert trace_kind(spec, [{"cell": 0, "trace_kind": LOG_PROBABILITY.to_json()}]) == LOG_PROBABILITY
    samples = [
        {"text": "low", "energy": -5.0, "in_training_data": False},
        {"text": "high", "energy": 2.0, "in_training_data": False},
    ]
    cell = {"samples": samples}
    assert "<mark>low</mark>" in _chains_html(spec, cell, FREE_ENERGY)  # the best sample is highlighted
    assert "<mark>high</mark>" in _chains_html(spec, cell, LOG_PROBABILITY)


def test_the_web_job_status_names_the_trace_and_its_direction():
    rbm = small_rbm()
    status = job_status(Job("strings", "m", 3), SimpleNamespace(model=rbm), since=0)
    assert status["trace"]["name"] == "free energy" and status["trace"]["higher_is_better"] is False
    table = JointTable(torch.full((2, 2), 0.25, dtype=torch.float64))
    status = job_status(Job("image", "m", 3), SimpleNamespace(model=table), since=0)
    assert status["trace"]["name"] == "log-probability" and status["trace"]["higher_is_better"] is True
