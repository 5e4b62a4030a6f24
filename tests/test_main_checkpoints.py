"""Checkpoints written by the code before ``Model(config)`` (tests/fixtures/main-checkpoints, made by
make_main_checkpoints.py with that commit) still load, give the same samples, keep the same model
JSON, and resume; and :func:`gibbsdream.train` trains what the command line trains."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import gibbsdream
from cli_harness import assert_ok, gibbsdream_here
from gibbsdream.checkpoint import checkpoint_identity
from gibbsdream.errors import ConfigError
from gibbsdream.training.nade import MOVED_TO_MODEL
from gibbsdream.training.runs import ResumeConflict

FIXTURES = Path(__file__).parent / "fixtures" / "main-checkpoints"
NAMES = ("rbm", "nade", "nade-captions")


def _maker():
    spec = importlib.util.spec_from_file_location("make_main_checkpoints", FIXTURES.parent / "make_main_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_of_the_previous_main_loads_and_samples_the_same(name):
    expected = json.loads((FIXTURES / "expected-samples.json").read_text())[name]
    assert _maker().samples(FIXTURES / name) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_model_config_reads_back_as_the_json_it_was_saved_as(name):
    saved = json.loads((FIXTURES / name / "config.json").read_text())
    model = gibbsdream.load(FIXTURES / name, device="cpu").model
    assert model.config.to_dict() == saved["model"]
    assert model.config() == saved["model"]  # the old call form
    assert type(model)(**saved["model"]).config == model.config == type(model)(model.config).config


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_of_the_previous_main_resumes(tmp_path, name):
    """Its "training" entry still repeats the model fields: they are dropped on the next save."""
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    before = json.loads((out / "config.json").read_text())
    family = before["family"]
    assert "width" in before["training"] or "num_hidden" in before["training"]
    result = gibbsdream.train(family, None, out, training={"epochs": 2}, resume=True, device="cpu")
    assert result.trained and result.epochs == 2 and len(result.history) == 2
    after = json.loads((out / "config.json").read_text())
    assert after["model"] == before["model"]
    moved = {"num_hidden", *MOVED_TO_MODEL}
    assert not moved & set(after["training"])
    # Settings added since are saved at their defaults (which is what the old run did).
    added = {"precision": "float32"} if family == "nade" else {}
    assert {**added, **{k: v for k, v in before["training"].items() if k not in moved | {"epochs"}}} == {
        k: v for k, v in after["training"].items() if k != "epochs" and (k in before["training"] or k in added)
    }
    assert set(after["training"]) <= set(before["training"]) | set(added)
    with pytest.raises(ResumeConflict) as caught:
        gibbsdream.train(family, None, out, training={"epochs": 3, "seed": 5}, resume=True, device="cpu")
    assert caught.value.field == "seed" and caught.value.fixed and "--" not in str(caught.value)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("train-api") / "corpus.txt"
    path.write_text("\n".join(["abba", "baab", "abc", "cab", "bca", "aabb", "ccab", "abab"] * 4) + "\n")
    return path


def test_train_rbm_matches_the_command_line(tmp_path, corpus):
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert_ok(
        gibbsdream_here(
            "train", "rbm", "--data", corpus, "--out", cli_out, "--hidden", 5, "--epochs", 2, "--lr", 0.05,
            "--case-fold", "--engine", "torch", "--device", "cpu", "--quiet",
        )
    )  # fmt: skip
    seen = []
    result = gibbsdream.train(
        "rbm",
        str(corpus),
        api_out,
        model={"num_hidden": 5},
        training={"epochs": 2, "learning_rate": 0.05, "engine": "torch"},
        options={"case_fold": True},
        device="cpu",
        on_epoch=lambda t: seen.append(t.epoch),
    )
    assert seen == [1, 2] and result.epochs == 2 and result.checkpoint_path == api_out
    assert result.model.num_hidden == 5 and result.codec.max_length == 4
    assert checkpoint_identity(cli_out) == checkpoint_identity(api_out)
    saved = json.loads((api_out / "config.json").read_text())
    assert saved["model"] == {"num_visible": 4, "num_hidden": 5, "num_categories": result.codec.num_categories}
    assert "num_hidden" not in saved["training"]
    again = gibbsdream.train("rbm", str(corpus), api_out, training={"epochs": 2}, resume=True, device="cpu")
    assert not again.trained and again.epochs == 2


def test_train_refuses_in_python_terms(tmp_path, corpus):
    cases = [
        (dict(model={"num_hidden": 0}), "num_hidden"),
        (dict(model={"num_visible": 3}), "num_visible"),
        (dict(training={"momentum": 1.5}), "momentum"),
        (dict(training={"no_such_setting": 1}), "no_such_setting"),
        (dict(options={"rare": "sometimes"}, model={"num_hidden": -1}), "num_hidden"),
        (dict(apply_changes=True), "apply_changes"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ConfigError) as caught:
            gibbsdream.train("rbm", str(corpus), tmp_path / "out", device="cpu", **kwargs)
        assert caught.value.field == field and "--" not in str(caught.value), kwargs
        assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="family must be one of rbm, nade"):
        gibbsdream.train("gan", str(corpus), tmp_path / "out")


def test_train_nade_matches_the_command_line(tmp_path):
    images = tmp_path / "images"
    maker = _maker()
    maker.write_images(images)
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert_ok(
        gibbsdream_here(
            "train", "nade", "--data", images, "--out", cli_out, "--levels", 4, "--width", 4, "--depth", 1,
            "--test-size", 4, "--epochs", 1, "--captions", "--caption-hidden", 3, "--caption-kernel", 1,
            "--caption-min-count", 1, "--device", "cpu", "--quiet",
        )
    )  # fmt: skip
    events = []
    result = gibbsdream.train(
        "nade",
        str(images),
        api_out,
        model={"width": 4, "depth": 1, "caption_hidden": 3, "caption_kernel": 1},
        training={"epochs": 1, "captions": True, "caption_min_count": 1},
        options={"levels": 4, "test_size": 4},
        device="cpu",
        on_event=lambda name, info: events.append(name),
    )
    assert events == ["images"] and result.epochs == 1 and result.writer
    assert result.model.config.caption_kernel == 1 and result.model.config.caption_vocab_size > 0
    assert checkpoint_identity(cli_out) == checkpoint_identity(api_out)
    saved = json.loads((api_out / "config.json").read_text())
    assert saved["model"]["caption_kernel"] == 1 and "caption_kernel" not in saved["training"]
