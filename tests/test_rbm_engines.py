"""The compiled (numba) training engine against the PyTorch one.

Both engines draw the same random numbers in the same order and use the same float64 rule for
categorical draws, so from the same state they draw the same chains (their probabilities differ
in the last bits, which could flip a draw about once in ten million: not in runs this small); the
parameters differ only by float rounding. The compiled engine splits the hidden units among
threads, so each test runs it with one thread and with several.
"""

import os
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gibbsdream import RBM
from gibbsdream.cli.fields import in_flags
from gibbsdream.errors import UsageError
from gibbsdream.kernels import threads as kernel_threads
from gibbsdream.training import RBMTrainConfig, RBMTrainer
from gibbsdream.training.rbm import resolve_engine

rbm_kernels = pytest.importorskip("gibbsdream.kernels.rbm")


def trainer(engine, data, dtype=torch.float32, num_categories=5, threads=1, **settings):
    model = RBM(data.shape[1], 10, num_categories).to(dtype)
    model.reset_parameters(torch.Generator().manual_seed(0), std=0.3)
    model.init_visible_bias_from_data(data)
    # monitor_every=1: the default when these were written (the whole-run test compares every epoch's checks)
    settings = {"monitor_every": 1, **settings}
    config = RBMTrainConfig(num_hidden=10, engine=engine, monitor_size=20, fantasy_particles=2, **settings)
    result = RBMTrainer(model, config, data[:380], data[380:])
    result.threads = threads
    return result


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
    with pytest.raises(UsageError, match="^engine must be one of auto, torch, numba"):
        RBMTrainConfig(engine="fortran").check()


def test_without_the_compiled_loop_auto_takes_torch_and_numba_says_why(monkeypatch):
    import gibbsdream.kernels as kernels

    monkeypatch.setattr(kernels, "rbm_loops", lambda: ImportError("sgemm_ is not exported here"))
    categorical = RBM(6, 4, 5)
    assert resolve_engine("auto", categorical) == "torch"
    with pytest.raises(UsageError) as caught:
        resolve_engine("numba", categorical)
    # The library names the argument; the command line shows the flag (cli/fields.py).
    assert 'cannot run here (sgemm_ is not exported here); use engine="torch"' in str(caught.value)
    assert "cannot run here (sgemm_ is not exported here); use --engine torch" in in_flags(caught.value, "train rbm")


@pytest.mark.parametrize(
    "settings",
    [
        {"persistent": True, "momentum": 0.0, "weight_cost": 0.0},  # the step goes straight into the rows
        {"persistent": True},  # momentum 0.9 and weight cost: the dense step
        {"persistent": False, "cd_steps": 2},
        {"persistent": True, "momentum": 0.0, "weight_cost": 1e-3, "batch_size": 48},  # weight cost alone
        {"persistent": False, "batch_size": 100, "learning_rate": 0.5},
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compiled_updates_draw_the_same_chains_and_reach_the_same_parameters(settings, threads):
    data = corpus()
    ours, reference = trainer("numba", data, threads=threads, **settings), trainer("torch", data, **settings)
    batch = ours.config.batch_size
    for start in range(0, 380, batch):  # the last batch is a short one
        ours.update(ours.train_data[start : start + batch])
        reference.update(reference.train_data[start : start + batch])
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
    ours = trainer("numba", data, torch.float64, threads=2, persistent=True)
    reference = trainer("torch", data, torch.float64, persistent=True)
    for start in range(0, 380, 64):
        ours.update(ours.train_data[start : start + 64])
        reference.update(reference.train_data[start : start + 64])
    assert ours.model.weight.dtype == torch.float64
    assert torch.equal(ours.chains, reference.chains)
    assert_same_parameters(ours, reference, atol=1e-12)


def test_whole_runs_of_the_two_engines_agree():
    data = corpus(num_categories=7, positions=9, seed=1)
    runs = {}
    for engine in ("numba", "torch"):
        t = trainer(engine, data, num_categories=7, epochs=3, persistent=True, threads=2)
        t.fit(progress=False)
        runs[engine] = t
    assert torch.equal(runs["numba"].chains, runs["torch"].chains)
    assert_same_parameters(runs["numba"], runs["torch"], atol=1e-5)
    for a, b in zip(runs["numba"].history, runs["torch"].history):
        assert a["fantasy"] == b["fantasy"]
        assert a["validation_pseudo_log_likelihood"] == pytest.approx(b["validation_pseudo_log_likelihood"], abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    chains=st.integers(1, 9),
    positions=st.integers(1, 11),
    categories=st.integers(3, 30),
    spread=st.floats(0.0, 40.0),
    seed=st.integers(0, 2**31 - 1),
    on_boundaries=st.booleans(),
)
def test_draws_are_the_float64_inverse_cdf_and_gathers_the_hidden_preactivations(
    chains,
    positions,
    categories,
    spread,
    seed,
    on_boundaries,
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

    states = torch.empty(chains, positions, dtype=torch.long)
    scratch = np.empty((4, categories))
    for c in range(chains):
        rbm_kernels.draw_categories(probs[c].reshape(-1).numpy(), u[c].numpy(), categories, scratch, states[c].numpy())
    assert torch.equal(states, expected)

    model = RBM(positions, 7, categories)
    model.reset_parameters(g, std=1.0)
    with torch.no_grad():
        model.hidden_bias.normal_(generator=g)
        reference = model.hidden_logits(states)
    weight_t, hidden_bias = model.flat_weight_t().detach().numpy(), model.hidden_bias.detach().numpy()
    for first, last in ((0, 7), (2, 5)):  # all hidden units, and a block of them
        out = np.empty(chains * (last - first), np.float32)
        block = np.ascontiguousarray(weight_t[:, first:last])
        rbm_kernels.hidden_preactivations(states.numpy(), categories, block, hidden_bias[first:last], out)
        assert np.allclose(out.reshape(chains, -1), reference[:, first:last].numpy(), atol=1e-5, rtol=0)


def test_the_compiled_exp_and_sigmoid_are_within_a_few_ulp_of_the_exact_values():
    x = torch.cat([torch.linspace(-87, 88, 200_001), torch.randn(10_000) * 5, torch.tensor([0.0, -1e-30, 1e-30])])
    ours = x.numpy().copy()
    rbm_kernels._exp(ours, 0, len(ours), np.empty(len(ours), np.int32))
    reference = torch.exp(x.double())
    assert ((torch.from_numpy(ours).double() - reference).abs() / reference).max() < 2 * 2**-24
    both_ends = np.array([-200.0, -88.5, 88.5, 200.0], np.float32)
    rbm_kernels._exp(both_ends, 0, 4, np.empty(4, np.int32))
    assert np.all(np.isfinite(both_ends)) and both_ends[0] > 0  # clamped to [-87, 88]: no inf, no 0

    probs = (x * 0.3).numpy().copy()
    rbm_kernels.sigmoid(probs, len(probs), np.empty(len(probs), np.int32))
    exact = torch.sigmoid((x * 0.3).double()).numpy()
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(probs - exact) <= 3 * ulp)  # PyTorch's own sigmoid is 2.2 ulp off at worst here
    float64 = x.double().numpy().copy()
    rbm_kernels._exp(float64, 0, len(float64), np.empty(len(float64), np.int32))
    assert np.allclose(float64, reference.numpy(), rtol=1e-15, atol=0)


def test_a_failing_worker_calls_the_run_off_instead_of_leaving_the_others_waiting():
    ours = trainer("numba", corpus(), threads=2, persistent=True)
    original = ours._scratch

    def broken(thread, *args):  # the second thread gets a scratch array of the wrong size
        workspace = original(thread, *args)
        if thread == 1:
            workspace = workspace._replace(own_hidden_bias=np.empty(1, workspace.own_hidden_bias.dtype))
        return workspace

    ours._scratch = broken
    outcome = {}

    def run():
        try:
            ours.update(ours.train_data[:64])
        except ValueError as error:
            outcome["error"] = error

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive() and "error" in outcome


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_workers_are_kept_apart_only_while_they_run():
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    cpu = kernel_threads.current_cpu()
    with kernel_threads.kept_apart(0, cpu):
        assert os.sched_getaffinity(0) == {cpu}
    with kernel_threads.kept_apart(1, cpu):
        assert os.sched_getaffinity(0) == allowed - {cpu}
    assert os.sched_getaffinity(0) == allowed


def test_two_runs_at_once_in_one_process_finish_and_match_runs_alone():
    data = corpus()
    alone = trainer("numba", data, threads=3, persistent=True, epochs=2, monitor_every=0)
    alone.fit(progress=False)
    together = [trainer("numba", data, threads=3, persistent=True, epochs=2, monitor_every=0) for _ in range(2)]
    runners = [threading.Thread(target=t.fit, kwargs={"progress": False}, daemon=True) for t in together]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=120)
    assert not any(runner.is_alive() for runner in runners)
    for t in together:
        assert t.epoch == 2 and torch.equal(t.chains, alone.chains)
        assert_same_parameters(t, alone, atol=0)
