"""The compiled (numba) Gibbs sampler against the PyTorch one.

Both draw the same random numbers in the same order and follow the same rules, so from the same
seed they must give the same chains (their probabilities differ in the last bits, which could
flip a draw about once in tens of millions: not in runs this small) and free energies equal to
float rounding. The exact-distribution checks are in test_rbm_exact.py, for both engines.
"""

import numpy as np
import pytest
import torch

from gibbsdream import RBM, sample
from gibbsdream.errors import UsageError
from gibbsdream.sampling import rbm_gibbs
from gibbsdream.sampling.init import initial_states

rbm_kernels = pytest.importorskip("gibbsdream.kernels.rbm")


def model(dtype=torch.float32, positions=7, hidden=40, categories=11):
    rbm = RBM(positions, hidden, categories).to(dtype)
    g = torch.Generator().manual_seed(0)
    rbm.reset_parameters(g, std=0.5)
    with torch.no_grad():
        rbm.visible_bias.normal_(generator=g)
        rbm.hidden_bias.normal_(generator=g)
    return rbm


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 1.0},
        {"temperature": "1.5:0.2"},  # geometric annealing
        {"temperature": "1:0", "anneal": "linear"},  # ends at T = 0: argmax draws, no random numbers
        {"temperature": 0.7, "final": "argmax"},
        {"temperature": 2.0, "init": "zeros"},
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_compiled_sampler_gives_the_torch_samplers_chains_and_energies(settings, threads, monkeypatch):
    rbm = model()
    monkeypatch.setattr(rbm_gibbs, "SWEEPS_PER_CHUNK", 4)  # several chunks in 25 sweeps
    compiled = rbm_gibbs.gibbs_compiled

    def with_threads(*args, **kwargs):
        return compiled(*args, **kwargs, threads=threads)

    monkeypatch.setattr("gibbsdream.sampling.api.gibbs_compiled", with_threads)
    ours = sample(rbm, num_chains=37, steps=25, seed=3, engine="numba", **settings)
    reference = sample(rbm, num_chains=37, steps=25, seed=3, engine="torch", **settings)
    assert torch.equal(ours.samples, reference.samples)
    assert ours.energy.shape == reference.energy.shape == (26, 37)
    assert torch.allclose(ours.energy, reference.energy, rtol=1e-5, atol=1e-4)
    assert ours.temperatures == reference.temperatures


def test_clamping_and_float64_models():
    rbm = model(torch.float64)
    x = torch.randint(0, 11, (7,), generator=torch.Generator().manual_seed(1))
    known = torch.tensor([True, False, True, False, False, False, True])
    ours = sample(rbm, num_chains=50, steps=20, x=x, known=known, seed=4, temperature="2:0.5", engine="numba")
    reference = sample(rbm, num_chains=50, steps=20, x=x, known=known, seed=4, temperature="2:0.5", engine="torch")
    assert torch.equal(ours.samples, reference.samples)
    assert (ours.samples[:, known] == x[known]).all()
    assert ours.energy.dtype == torch.float64
    assert torch.allclose(ours.energy, reference.energy, rtol=1e-12, atol=1e-9)


def test_the_energy_trace_is_the_free_energy_of_the_states():
    rbm = model()
    chain = sample(rbm, num_chains=30, steps=1, seed=5, engine="numba")
    start = initial_states("uniform", 30, rbm, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(chain.energy[0], rbm.free_energy(start), rtol=1e-5, atol=1e-4)
        assert torch.allclose(chain.energy[1], rbm.free_energy(chain.samples), rtol=1e-5, atol=1e-4)


def test_the_compiled_softplus_is_within_a_few_ulp():
    x = torch.cat([torch.linspace(-100, 100, 100_001), torch.randn(10_000) * 4, torch.tensor([0.0])])
    sums = np.empty(len(x))
    work, exponents = np.empty(len(x), np.float32), np.empty(len(x), np.int32)
    rbm_kernels._softplus_sums(x.numpy(), len(x), 1, work, exponents, sums)
    exact = torch.nn.functional.softplus(x.double()).numpy()
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    # Below x = -87 the clamped exp makes it exp(-87) = 1.6e-38 instead of smaller: no matter in a sum.
    assert np.all(np.abs(sums - exact) <= 4 * ulp + 2e-38)


def test_auto_takes_the_compiled_sampler_only_where_it_applies(monkeypatch):
    calls = []
    compiled = rbm_gibbs.gibbs_compiled
    monkeypatch.setattr("gibbsdream.sampling.api.gibbs_compiled", lambda *a, **k: calls.append(1) or compiled(*a, **k))
    rbm = model()
    sample(rbm, num_chains=4, steps=3, seed=0)
    assert calls == [1]
    sample(rbm, num_chains=4, steps=3, seed=0, record_every=1)  # frames: the torch engine
    sample(rbm, num_chains=4, steps=3, seed=0, on_step=lambda *a: None)  # a hook: the torch engine
    sample(RBM(5, 4, 2), num_chains=4, steps=3, seed=0)  # Bernoulli visibles: the torch engine
    assert calls == [1]


def test_engine_settings_that_cannot_work_are_usage_errors():
    rbm = model()
    with pytest.raises(UsageError, match="engine must be one of auto, torch, numba"):
        sample(rbm, num_chains=2, steps=2, engine="fortran")
    with pytest.raises(UsageError, match="without frames"):
        sample(rbm, num_chains=2, steps=2, engine="numba", record_every=1)
    with pytest.raises(UsageError, match="runs categorical RBMs on the CPU"):
        sample(RBM(5, 4, 2), num_chains=2, steps=2, engine="numba")
