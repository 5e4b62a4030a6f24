"""The sampler registry: ``sample()`` dispatches through it and refuses every option that its
sampler does not take; the front ends (command line, web page, sweep) read their lists from it.

The refusals are parametrized from the registry itself, so a sampler registered later is covered.
"""

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gibbsdream import RBM, UsageError, sample
from gibbsdream.models import OrderlessNADE
from gibbsdream.sampling import Chain
from gibbsdream.sampling.registry import (
    PROTOCOLS,
    Sampler,
    applicable,
    get_sampler,
    protocol_of,
    register,
    sampler_names,
    samplers,
    unregister,
)
from gibbsdream.sampling.schedules import ANNEAL_KINDS


class Uniform:
    """A tiny conditional model: every variable uniform over K = 3 categories, whatever is known."""

    num_categories = 3

    def logits(self, x, known, context=None):
        return torch.zeros(*x.shape, self.num_categories)


def tiny_rbm():
    torch.manual_seed(0)
    model = RBM(6, 4, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def model_for(protocol):
    return {"energy": tiny_rbm, "conditional": Uniform}[protocol]()


def states(n=4, d=5):
    x = torch.zeros(n, d, dtype=torch.long)
    known = torch.zeros_like(x, dtype=torch.bool)
    known[:, 0] = True
    return x, known


def inputs_for(protocol):
    if protocol == "conditional":
        x, known = states()
        return {"x": x, "known": known}
    return {}


def every_option():
    """Each option any registered sampler takes, with that sampler's default (and context: conditional
    only); an option whose default is None (not given) gets 1, since sample() reads num_chains=None as
    not given."""
    options = {"context": "a caption"}
    for s in samplers():
        for field in dataclasses.fields(s.options):
            default = field.default if field.default not in (None, dataclasses.MISSING) else 1
            options.setdefault(field.name, default)
    return options


def inapplicable():
    cases = []
    for s in samplers():
        takes = set(s.option_names) | ({"context"} if s.protocol == "conditional" else set())
        cases += [
            pytest.param(s.protocol, s.name, name, value, id=f"{s.protocol}-{s.name}-{name}")
            for name, value in every_option().items()
            if name not in takes
        ]
    return cases


CASES = inapplicable()


def test_every_sampler_is_refused_some_option():
    refused = {(protocol, name) for protocol, name, _, _ in (case.values for case in CASES)}
    assert refused == {(s.protocol, s.name) for s in samplers()}
    assert len(CASES) >= 20  # 4 built-in samplers; each refuses the others' options


@pytest.mark.parametrize("protocol, name, option, value", CASES)
def test_sample_refuses_an_option_its_sampler_does_not_take(protocol, name, option, value):
    chosen = get_sampler(protocol, name)
    with pytest.raises(UsageError) as caught:
        sample(model_for(protocol), steps=2, seed=0, sampler=name, **{option: value}, **inputs_for(protocol))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{option} does not apply to the {name!r} sampler of {PROTOCOLS[protocol]}")
    assert message.endswith(f"its options are {', '.join(chosen.option_names)}")


def test_the_message_the_design_promises():
    with pytest.raises(UsageError) as caught:
        sample(tiny_rbm(), block="yao:0.9,0.1,0.7")
    assert str(caught.value) == (
        "block does not apply to the 'gibbs' sampler of energy models (gibbsdream.RBM); "
        "its options are num_chains, init, final, engine, data, codec"
    )


def test_num_chains_given_by_position_is_an_option_too():
    x, known = states()
    with pytest.raises(UsageError, match="^num_chains does not apply to the 'gibbs' sampler of conditional"):
        sample(Uniform(), 4, x=x, known=known)


def test_unknown_samplers_and_models_are_refused():
    with pytest.raises(
        UsageError, match="unknown sampler 'ancestral' for energy models .*; choose one of gibbs, replica-exchange$"
    ):
        sample(tiny_rbm(), sampler="ancestral")
    x, known = states()
    with pytest.raises(UsageError, match="choose one of gibbs, ancestral-gibbs, ancestral, mh, confidence"):
        sample(Uniform(), x=x, known=known, sampler="metropolis")
    with pytest.raises(UsageError, match="does not know how to sample a object"):
        sample(object())


def test_the_built_in_samplers_and_protocols():
    assert sampler_names("energy") == ("gibbs", "replica-exchange")
    assert sampler_names("conditional") == ("gibbs", "ancestral-gibbs", "ancestral", "mh", "confidence")
    assert protocol_of(tiny_rbm()) == "energy"
    assert protocol_of(Uniform()) == "conditional"
    assert protocol_of(OrderlessNADE(num_categories=3, width=4, depth=1)) == "conditional"
    for s in samplers():
        assert dataclasses.is_dataclass(s.options) and s.summary
        s.options()  # every option has a default
    assert applicable("conditional", "ancestral", block=0.5) == {}
    assert applicable("conditional", "gibbs", block=0.5) == {"block": 0.5}
    assert applicable("conditional", "confidence", block=0.5, mask_schedule="arccos") == {"mask_schedule": "arccos"}


def test_a_sampler_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(get_sampler("conditional", "gibbs"))
    with pytest.raises(TypeError, match="dataclass"):
        Sampler("odd", "conditional", dict, lambda *a: None)
    with pytest.raises(ValueError, match="protocol"):
        Sampler("odd", "quantum", dataclass(type("NoOptions", (), {})), lambda *a: None)


def test_the_registry_imports_nothing_above_sampling():
    source = Path(__file__).parents[1] / "src" / "gibbsdream" / "sampling" / "registry.py"
    relative = [
        (node.level, node.module)
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert all(level == 1 or (level == 2 and module == "errors") for level, module in relative), relative


# ---- a sampler of one's own -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyOptions:
    fill: int = 0


def toy_run(model, request, options):
    x = torch.where(request.known, request.x, torch.full_like(request.x, options.fill))
    trace = torch.zeros(2, x.shape[0])
    chain = Chain(
        samples=x,
        energy=trace,
        temperatures=[request.temperature(0, 1)],
        known=request.known,
        frames=None,
        frame_steps=[],
    )
    chain.settings = {"sampler": "toy", "fill": options.fill}
    return chain


@pytest.fixture
def toy():
    sampler = register(Sampler("toy", "conditional", ToyOptions, toy_run, "fills every hole with one value"))
    try:
        yield sampler
    finally:
        unregister("conditional", "toy")
    assert "toy" not in sampler_names("conditional")


def test_a_registered_sampler_is_dispatched_to_and_its_options_checked(toy):
    x, known = states()
    chain = sample(Uniform(), x=x, known=known, sampler="toy", fill=2, temperature=0.5)
    assert (chain.samples[:, 1:] == 2).all() and (chain.samples[:, 0] == 0).all()
    assert chain.settings == {"sampler": "toy", "fill": 2} and chain.temperatures == [0.5]
    with pytest.raises(UsageError, match="^block does not apply to the 'toy' sampler .*; its options are fill$"):
        sample(Uniform(), x=x, known=known, sampler="toy", block=0.5)
    with pytest.raises(UsageError, match="^fill does not apply to the 'gibbs' sampler"):
        sample(Uniform(), x=x, known=known, fill=2)


def test_a_registered_sampler_appears_where_the_front_ends_look(toy):
    from fastapi.testclient import TestClient

    from gibbsdream.sweep import check_value
    from gibbsdream.web import Limits, create_app

    assert sampler_names("conditional")[-1] == "toy"
    assert check_value("sampler", "toy") == "toy"
    with TestClient(create_app([], Limits()), base_url="http://localhost") as client:
        data = client.get("/api/models").json()
    assert [s["name"] for s in data["samplers"]] == list(sampler_names("conditional"))
    assert {"name": "toy", "summary": "fills every hole with one value"} in data["samplers"]
    assert data["anneals"] == list(ANNEAL_KINDS)


def test_the_sweep_refuses_a_sampler_that_is_not_registered():
    from gibbsdream.sweep import check_value

    with pytest.raises(UsageError, match="choose one of gibbs, ancestral-gibbs, ancestral, mh, confidence"):
        check_value("sampler", "toy")


def test_the_command_line_choices_are_the_registry_names():
    import click

    from gibbsdream.cli import app

    def choices(command, name):
        option = next(p for p in command.params if p.name == name)
        assert isinstance(option.type, click.Choice)
        return tuple(option.type.choices)

    assert choices(app.commands["inpaint"], "sampler") == sampler_names("conditional")
    # sample takes both kinds: the image models' samplers, then the string models' others
    both = sampler_names("conditional") + tuple(
        n for n in sampler_names("energy") if n not in sampler_names("conditional")
    )
    assert choices(app.commands["sample"], "sampler") == both
    for command in (app.commands["sample"], app.commands["inpaint"]):
        assert choices(command, "anneal") == ANNEAL_KINDS


# ---- unchanged results -----------------------------------------------------------------------------


def test_an_rbm_samples_the_same_with_the_same_seed():
    model = tiny_rbm()
    for engine in ("torch", "auto"):
        a = sample(model, 7, 9, "2:0.5", seed=3, engine=engine, final="argmax")
        b = sample(
            model,
            num_chains=7,
            steps=9,
            temperature="2:0.5",
            seed=3,
            engine=engine,
            final="argmax",
            init="uniform",
            sampler="gibbs",
        )
        assert torch.equal(a.samples, b.samples) and torch.equal(a.energy, b.energy)
    c = sample(model, 7, 9, "2:0.5", seed=4, engine="torch", final="argmax")
    assert not torch.equal(a.samples, c.samples)


def test_a_nade_samples_the_same_with_the_same_seed():
    torch.manual_seed(1)
    model = OrderlessNADE(channels=1, num_categories=4, width=8, depth=2).eval()
    x = torch.randint(0, 4, (3, 1, 5, 5))
    known = torch.ones_like(x, dtype=torch.bool)
    known[:, :, 1:4, 1:4] = False
    runs = {
        "gibbs": ({}, {"sampler": "gibbs", "block": "yao:0.9,0.1,0.7"}),
        "ancestral-gibbs": ({"sampler": "ancestral-gibbs"}, {"sampler": "ancestral-gibbs", "block": "yao:0.9,0.1,0.7"}),
        "ancestral": ({"sampler": "ancestral"}, {"sampler": "ancestral", "per_call": 1, "order": "random"}),
    }
    for name, (plain, explicit) in runs.items():
        a = sample(model, x=x, known=known, steps=4, temperature="1.5:0.5", seed=7, **plain)
        b = sample(model, x=x, known=known, steps=4, temperature="1.5:0.5", seed=7, **explicit)
        assert torch.equal(a.samples, b.samples), name
        assert torch.allclose(a.energy, b.energy, equal_nan=True), name
        assert a.settings["sampler"] == name
        assert torch.equal(a.samples[known], x[known]), name
