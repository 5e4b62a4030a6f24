"""The RBM, its Gibbs sampler and its likelihood estimators against exact answers.

Models here are small enough to enumerate every joint state, so every check compares with a
brute-force value. Sampling checks use total variation (TV) between the empirical distribution
of many independent chains and the exact one; with n samples over m states the expected TV of
an exact sampler is about sqrt(m / (2 pi n)) (0.015 for m = 27, n = 20,000), so the bounds
below leave room for chance but not for a wrong temperature or a missed conditional.
"""

import pytest
import torch

from gibbsdream import RBM, sample
from gibbsdream.likelihood import (
    _all_states,
    ais_log_partition,
    exact_log_partition,
    log_partition,
    pseudo_log_likelihood,
)


def small_rbm(num_visible=3, num_hidden=4, num_categories=3, scale=1.0, seed=0):
    model = RBM(num_visible, num_hidden, num_categories).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.weight.copy_(torch.randn(model.weight.shape, generator=g, dtype=torch.float64) * scale)
        model.visible_bias.copy_(torch.randn(model.visible_bias.shape, generator=g, dtype=torch.float64) * scale)
        model.hidden_bias.copy_(torch.randn(model.hidden_bias.shape, generator=g, dtype=torch.float64) * scale)
    return model


def brute_force_joint(model, temperature=1.0):
    """All (v, h) pairs with their unnormalised log-probabilities -E(v, h) / T."""
    visible = _all_states(model.num_visible, model.num_categories, "cpu")
    hidden = _all_states(model.num_hidden, 2, "cpu").double()
    v = visible.repeat_interleave(len(hidden), 0)
    h = hidden.repeat(len(visible), 1)
    return visible, (-model.energy(v, h) / temperature).view(len(visible), len(hidden))


def exact_visible_distribution(model, temperature=1.0):
    visible, log_joint = brute_force_joint(model, temperature)
    return visible, torch.softmax(torch.logsumexp(log_joint, 1), 0)


def empirical_distribution(samples, num_categories):
    num_visible = samples.shape[1]
    codes = (samples * num_categories ** torch.arange(num_visible - 1, -1, -1)).sum(1)
    return torch.bincount(codes, minlength=num_categories**num_visible).double() / len(samples)


def total_variation(p, q):
    return 0.5 * (p - q).abs().sum().item()


@pytest.mark.parametrize("num_categories", [2, 3])
def test_free_energy_matches_brute_force(num_categories):
    model = small_rbm(num_categories=num_categories)
    visible, log_joint = brute_force_joint(model)
    assert torch.allclose(model.free_energy(visible), -torch.logsumexp(log_joint, 1), atol=1e-10)
    for temperature in (0.5, 2.0):
        _, log_joint_t = brute_force_joint(model, temperature)
        assert torch.allclose(model.free_energy(visible, temperature), -torch.logsumexp(log_joint_t, 1), atol=1e-10)


def test_parameter_shapes_follow_the_documented_layout():
    bernoulli, softmax = RBM(5, 7), RBM(5, 7, num_categories=4)
    assert bernoulli.weight.shape == (7, 5) and bernoulli.visible_bias.shape == (5,)
    assert softmax.weight.shape == (7, 5, 4) and softmax.visible_bias.shape == (5, 4)
    assert softmax.hidden_bias.shape == bernoulli.hidden_bias.shape == (7,)
    assert softmax.free_energy(torch.zeros(2, 5, dtype=torch.long)).shape == (2,)


@pytest.mark.parametrize(
    "num_categories,temperature,engine",
    [
        (3, 1.0, "torch"),
        (3, 1.0, "numba"),
        (3, 0.5, "torch"),
        (3, 0.5, "numba"),
        (2, 1.0, "torch"),
        (2, 0.5, "torch"),
    ],
)
def test_gibbs_samples_match_the_exact_distribution(num_categories, temperature, engine):
    model = small_rbm(num_visible=3 if num_categories == 3 else 4, num_categories=num_categories)
    _, exact = exact_visible_distribution(model, temperature)
    chain = sample(model, num_chains=20000, steps=60, temperature=temperature, seed=1, engine=engine)
    empirical = empirical_distribution(chain.samples, num_categories)
    assert total_variation(empirical, exact) < 0.03
    # The check has teeth: the other temperature's distribution is far from these samples.
    _, other = exact_visible_distribution(model, 1.5 if temperature != 1.5 else 1.0)
    assert total_variation(empirical, other) > 0.06


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_clamped_positions_never_change_and_the_rest_follow_the_conditional(engine):
    model = small_rbm(num_visible=3, num_categories=3)
    visible, exact = exact_visible_distribution(model)
    x = torch.tensor([2, 0, 0])
    known = torch.tensor([True, False, False])
    if engine == "torch":  # with frames, to see every recorded state
        chain = sample(model, num_chains=20000, steps=60, x=x, known=known, seed=2, record_every=7)
        assert (chain.frames[:, :, 0] == 2).all()
    else:
        chain = sample(model, num_chains=20000, steps=60, x=x, known=known, seed=2, engine=engine)
        assert (chain.samples[:, 0] == 2).all()
    conditional = torch.where(visible[:, 0] == 2, exact, torch.zeros_like(exact))
    conditional /= conditional.sum()
    assert total_variation(empirical_distribution(chain.samples, 3), conditional) < 0.03


def test_energy_trace_is_the_free_energy_of_every_recorded_state():
    model = small_rbm()
    chain = sample(model, num_chains=16, steps=12, temperature="2:0.5", seed=3, record_every=1)
    assert chain.energy.shape == (13, 16)
    recomputed = torch.stack([model.free_energy(frame) for frame in chain.frames])
    assert torch.allclose(chain.energy, recomputed)
    assert chain.temperatures[0] == pytest.approx(2.0) and chain.temperatures[-1] == pytest.approx(0.5)


def test_zero_temperature_and_argmax_final_step_are_deterministic():
    model = small_rbm(num_visible=4, num_categories=5)
    a = sample(model, num_chains=50, steps=5, temperature=0.0, seed=0, init="uniform")
    b = sample(model, num_chains=50, steps=5, temperature=0.0, seed=0, init="uniform")
    assert torch.equal(a.samples, b.samples)
    # With an argmax final step, the last visible state is the mode of p(v | h) for some h.
    chain = sample(model, num_chains=200, steps=3, final="argmax", seed=5, record_every=1)
    last_h_logits = model.hidden_logits(chain.frames[-2])
    assert chain.samples.shape == (200, 4)
    assert last_h_logits.shape == (200, model.num_hidden)


def test_same_seed_same_samples_and_different_seed_different_samples():
    model = small_rbm(num_visible=6, num_categories=4)
    a = sample(model, num_chains=64, steps=20, temperature="1.5:0.2", seed=11)
    b = sample(model, num_chains=64, steps=20, temperature="1.5:0.2", seed=11)
    c = sample(model, num_chains=64, steps=20, temperature="1.5:0.2", seed=12)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.energy, b.energy)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("shape", [(3, 4, 3), (2, 9, 2), (6, 3, 4)])
def test_exact_log_partition_agrees_with_the_joint_sum(shape):
    num_visible, num_hidden, num_categories = shape
    model = small_rbm(num_visible, num_hidden, num_categories)
    _, log_joint = brute_force_joint(model)
    assert exact_log_partition(model) == pytest.approx(torch.logsumexp(log_joint.flatten(), 0).item(), abs=1e-9)


@pytest.mark.parametrize("num_categories", [2, 4])
def test_ais_matches_the_exact_log_partition_within_its_error_bar(num_categories):
    model = small_rbm(num_visible=8, num_hidden=10, num_categories=num_categories, scale=0.7, seed=4)
    exact = exact_log_partition(model)
    estimate, stderr = ais_log_partition(model, num_runs=200, num_betas=3000, seed=0)
    assert 0 < stderr < 0.2
    assert abs(estimate - exact) < 3 * stderr + 0.02
    assert log_partition(model, method="auto") == (pytest.approx(exact), 0.0)


def test_pseudo_log_likelihood_is_the_sum_of_exact_full_conditionals():
    for num_categories in (2, 4):
        model = small_rbm(num_visible=4, num_categories=num_categories, seed=7)
        visible, _exact = exact_visible_distribution(model)
        v = visible[torch.randperm(len(visible), generator=torch.Generator().manual_seed(0))[:10]]
        expected = torch.zeros(len(v), dtype=torch.float64)
        for i in range(model.num_visible):
            variants = v.unsqueeze(1).repeat(1, num_categories, 1)
            variants[:, :, i] = torch.arange(num_categories)
            neg_free = -model.free_energy(variants.view(-1, model.num_visible)).view(len(v), num_categories)
            expected += neg_free.log_softmax(1).gather(1, v[:, i : i + 1]).squeeze(1)
        assert torch.allclose(pseudo_log_likelihood(model, v), expected, atol=1e-9)


@pytest.mark.parametrize("engine", ["torch", "numba"])
@pytest.mark.parametrize("persistent", [False, True])
def test_contrastive_divergence_moves_the_model_towards_the_data(persistent, engine):
    from gibbsdream.training import RBMTrainConfig, RBMTrainer

    target_model = small_rbm(num_visible=3, num_hidden=4, num_categories=3, scale=1.5, seed=9)
    visible, target = exact_visible_distribution(target_model)
    draws = torch.multinomial(target.float(), 3000, replacement=True, generator=torch.Generator().manual_seed(0))
    data = visible[draws]
    model = RBM(3, 8, 3)
    model.reset_parameters(torch.Generator().manual_seed(0))
    config = RBMTrainConfig(
        num_hidden=8,
        epochs=15,
        batch_size=32,
        learning_rate=0.1,
        lr_decay=1.0,
        momentum=0.5,
        weight_cost=1e-4,
        persistent=persistent,
        monitor_size=50,
        fantasy_particles=0,
        engine=engine,
    )

    def kl_to_target():
        _, p = exact_visible_distribution(model.double())
        model.float()
        return (target * (target / p).log()).sum().item()

    before = kl_to_target()
    RBMTrainer(model, config, data, data[:0]).fit(progress=False)
    after = kl_to_target()
    assert after < 0.5 * before and after < 0.05


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_resumed_training_equals_uninterrupted_training(tmp_path, engine):
    from gibbsdream.checkpoint import load_checkpoint
    from gibbsdream.training import RBMTrainConfig, RBMTrainer, save_trainer

    data = torch.randint(0, 5, (400, 6), generator=torch.Generator().manual_seed(0))

    def fresh(epochs):
        model = RBM(6, 10, 5)
        model.reset_parameters(torch.Generator().manual_seed(0))
        config = RBMTrainConfig(
            num_hidden=10, epochs=epochs, persistent=True, monitor_size=20, fantasy_particles=2, engine=engine
        )
        return RBMTrainer(model, config, data[:380], data[380:])

    straight = fresh(3)
    straight.fit(progress=False)

    first = fresh(2)
    first.fit(progress=False)
    save_trainer(first, tmp_path / "ckpt")
    ckpt = load_checkpoint(tmp_path / "ckpt")
    resumed = RBMTrainer(ckpt.model, fresh(3).config, ckpt.data["train"], ckpt.data["validation"], history=ckpt.history)
    resumed.load_state_tensors(ckpt.trainer, ckpt.config["trainer"]["epoch"])
    resumed.fit(progress=False)
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name
    assert len(resumed.history) == 3
    assert resumed.history[-1]["learning_rate"] == pytest.approx(straight.history[-1]["learning_rate"])


@pytest.mark.parametrize("num_categories", [2, 5])
def test_contrastive_gradients_equal_autograd_of_the_free_energy_difference(num_categories):
    model = small_rbm(num_visible=6, num_hidden=7, num_categories=num_categories, seed=3)
    g = torch.Generator().manual_seed(0)
    v_data = torch.randint(0, num_categories, (9, 6), generator=g)
    v_model = torch.randint(0, num_categories, (13, 6), generator=g)
    objective = model.free_energy(v_data).mean() - model.free_energy(v_model).mean()
    expected = torch.autograd.grad(objective, [model.weight, model.visible_bias, model.hidden_bias])
    with torch.no_grad():
        h_data, h_model = torch.sigmoid(model.hidden_logits(v_data)), torch.sigmoid(model.hidden_logits(v_model))
        got = model.contrastive_gradients(v_data, h_data, v_model, h_model)
    for e, g_ in zip(expected, got):
        assert g_.shape == e.shape
        assert torch.allclose(g_, e, atol=1e-12)


@pytest.mark.parametrize("momentum, weight_cost", [(0.0, 0.0), (0.9, 1e-3)])
def test_the_training_step_is_torch_optim_sgd_with_weight_cost_on_the_weights_only(momentum, weight_cost):
    from gibbsdream.training import RBMTrainConfig, RBMTrainer

    ours = small_rbm(num_visible=4, num_hidden=5, num_categories=3, seed=1)
    reference = small_rbm(num_visible=4, num_hidden=5, num_categories=3, seed=1)
    config = RBMTrainConfig(num_hidden=5, learning_rate=0.3, lr_decay=0.5, momentum=momentum, weight_cost=weight_cost)
    data = torch.zeros(4, 4, dtype=torch.long)
    trainer = RBMTrainer(ours, config, data, data[:0])
    trainer.epoch = 1  # the rate is learning_rate * lr_decay ** epoch
    optimizer = torch.optim.SGD(
        [
            {"params": [reference.weight], "weight_decay": weight_cost},
            {"params": [reference.visible_bias, reference.hidden_bias], "weight_decay": 0.0},
        ],
        lr=0.3 * 0.5,
        momentum=momentum,
    )
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [
            torch.randn(p.shape, generator=g, dtype=p.dtype) for p in (ours.weight, ours.visible_bias, ours.hidden_bias)
        ]
        for p, grad in zip((reference.weight, reference.visible_bias, reference.hidden_bias), grads):
            p.grad = grad.clone()
        optimizer.step()
        with torch.no_grad():
            trainer._step(tuple(grad.clone() for grad in grads))
    for name, p in ours.named_parameters():
        assert torch.allclose(p, dict(reference.named_parameters())[name], atol=1e-12), name


def test_both_trainers_fit_returns_the_trainer():
    """``fit`` returns the trainer on both families (scikit-learn's convention), its history filled."""
    from gibbsdream.models.nade import OrderlessNADE
    from gibbsdream.training import NADETrainConfig, NADETrainer, RBMTrainConfig, RBMTrainer

    data = torch.randint(0, 3, (32, 4))
    rbm = RBMTrainer(
        RBM(4, 3, 3),
        RBMTrainConfig(num_hidden=3, epochs=2, batch_size=8, monitor_every=0, engine="torch"),
        data,
        data[:0],
    )
    assert rbm.fit(progress=False) is rbm and len(rbm.history) == 2
    images = torch.randint(0, 4, (16, 1, 4, 4))
    config = NADETrainConfig(width=4, depth=1, epochs=1, batch_size=8)
    nade = NADETrainer(OrderlessNADE(1, 4, width=4, depth=1), config, images[:12], images[12:])
    assert nade.fit(progress=False) is nade and len(nade.history) == 1
