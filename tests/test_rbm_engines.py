"""The compiled (numba) training engine against the PyTorch one.

Both engines draw the same random numbers in the same order and use the same float64 rule for
categorical draws, so from the same state they must draw the same chains; the parameters may
differ only by float rounding, because the compiled step adds the statistics in another order.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gibbsdream import RBM
from gibbsdream.errors import UsageError
from gibbsdream.training import RBMTrainConfig, RBMTrainer
from gibbsdream.training.rbm import resolve_engine

rbm_kernels = pytest.importorskip("gibbsdream.training.rbm_kernels")


def trainer(engine, data, dtype=torch.float32, num_categories=5, **settings):
    model = RBM(data.shape[1], 10, num_categories).to(dtype)
    model.reset_parameters(torch.Generator().manual_seed(0), std=0.3)
    model.init_visible_bias_from_data(data)
    config = RBMTrainConfig(num_hidden=10, engine=engine, monitor_size=20, fantasy_particles=2, **settings)
    return RBMTrainer(model, config, data[:380], data[380:])


def corpus(num_categories=5, positions=6, seed=0):
    return torch.randint(0, num_categories, (400, positions), generator=torch.Generator().manual_seed(seed))


def assert_same_parameters(a, b, atol):
    for name, p in a.model.named_parameters():
        q = dict(b.model.named_parameters())[name]
        assert torch.allclose(p, q, atol=atol, rtol=0), (name, (p - q).abs().max().item())


def test_auto_takes_numba_for_categorical_models_on_the_cpu_and_torch_otherwise():
    assert trainer("auto", corpus()).engine == "numba"
    assert trainer("torch", corpus()).engine == "torch"
    bernoulli = RBM(6, 4, 2)
    assert resolve_engine("auto", bernoulli) == "torch"
    with pytest.raises(UsageError, match="categorical RBMs on the CPU only"):
        resolve_engine("numba", bernoulli)
    with pytest.raises(UsageError, match="--engine must be one of auto, torch, numba"):
        RBMTrainConfig(engine="fortran").check()


@pytest.mark.parametrize("settings", [
    {"persistent": True, "momentum": 0.0, "weight_cost": 0.0},  # the step goes straight into the rows
    {"persistent": True},  # momentum 0.9 and weight cost: the dense step
    {"persistent": False, "cd_steps": 2},
    {"persistent": True, "momentum": 0.0, "weight_cost": 1e-3, "batch_size": 48},  # weight cost alone
    {"persistent": False, "batch_size": 100, "learning_rate": 0.5},
])
def test_compiled_updates_draw_the_same_chains_and_reach_the_same_parameters(settings):
    data = corpus()
    ours, reference = trainer("numba", data, **settings), trainer("torch", data, **settings)
    batch = ours.config.batch_size
    for start in range(0, 380, batch):  # the last batch is a short one
        ours.update(ours.train_data[start:start + batch])
        reference.update(reference.train_data[start:start + batch])
        if reference.chains is not None:
            assert torch.equal(ours.chains, reference.chains)
    assert torch.equal(ours.generator.get_state(), reference.generator.get_state())
    assert_same_parameters(ours, reference, atol=2e-6)
    if ours.config.momentum:
        for name, velocity in reference.velocity.items():
            assert torch.allclose(ours.velocity[name], velocity, atol=2e-6, rtol=0), name
    else:
        assert all(not v.any() for v in ours.velocity.values())  # as torch.optim.SGD: no velocity without momentum


def test_float64_models_train_in_float64():
    data = corpus()
    ours, reference = trainer("numba", data, torch.float64, persistent=True), trainer("torch", data, torch.float64, persistent=True)
    for start in range(0, 380, 64):
        ours.update(ours.train_data[start:start + 64])
        reference.update(reference.train_data[start:start + 64])
    assert ours.model.weight.dtype == torch.float64
    assert torch.equal(ours.chains, reference.chains)
    assert_same_parameters(ours, reference, atol=1e-12)


def test_whole_runs_of_the_two_engines_agree():
    data = corpus(num_categories=7, positions=9, seed=1)
    runs = {}
    for engine in ("numba", "torch"):
        t = trainer(engine, data, num_categories=7, epochs=3, persistent=True)
        t.fit(progress=False)
        runs[engine] = t
    assert torch.equal(runs["numba"].chains, runs["torch"].chains)
    assert_same_parameters(runs["numba"], runs["torch"], atol=1e-5)
    for a, b in zip(runs["numba"].history, runs["torch"].history):
        assert a["fantasy"] == b["fantasy"]
        assert a["validation_pseudo_log_likelihood"] == pytest.approx(b["validation_pseudo_log_likelihood"], abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    chains=st.integers(1, 9), positions=st.integers(1, 11), categories=st.integers(3, 30),
    spread=st.floats(0.0, 40.0), seed=st.integers(0, 2**31 - 1), on_boundaries=st.booleans(),
)
def test_draw_and_gather_is_the_float64_inverse_cdf_then_the_hidden_preactivations(
    chains, positions, categories, spread, seed, on_boundaries,
):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(chains, positions, categories, generator=g) * spread, -1)
    probs[..., 0] = 0.0  # a category that can never be drawn
    cdf = probs.double().cumsum(-1)
    if on_boundaries:  # uniforms exactly on, or a hair beside, a boundary of the float64 CDF
        picked = cdf.gather(-1, torch.randint(0, categories, (chains, positions, 1), generator=g)) / cdf[..., -1:]
        nudge = torch.randint(-1, 2, picked.shape, generator=g).double() * 1e-16
        u = (picked + nudge).clamp(0, 1 - 2**-53).squeeze(-1)
    else:
        u = torch.rand(chains, positions, generator=g, dtype=torch.float64)
    expected = (cdf <= (u.unsqueeze(-1) * cdf[..., -1:])).sum(-1).clamp(max=categories - 1)

    model = RBM(positions, 7, categories)
    model.reset_parameters(g, std=1.0)
    with torch.no_grad():
        model.hidden_bias.normal_(generator=g)
    states = torch.empty(chains, positions, dtype=torch.long)
    preactivations = torch.empty(chains, 7)
    weight_t, hidden_bias = model.flat_weight_t().detach().numpy(), model.hidden_bias.detach().numpy()
    rbm_kernels.draw_and_gather(probs.numpy(), u.numpy(), weight_t, hidden_bias, states.numpy(), preactivations.numpy())
    assert torch.equal(states, expected)
    with torch.no_grad():
        assert torch.allclose(preactivations, model.hidden_logits(states), atol=1e-5, rtol=0)

    both = torch.empty(2 * chains, 7)
    rbm_kernels.hidden_preactivations(states.numpy(), expected.flip(0).numpy(), categories, weight_t, hidden_bias, both.numpy())
    with torch.no_grad():
        assert torch.allclose(both, model.hidden_logits(torch.cat([states, expected.flip(0)])), atol=1e-5, rtol=0)
