"""``--resume`` refuses options that differ from the checkpoint's, unless told to apply them.

Options that shape the model, the data or its split can never change on a resume; learning rates
and the like change with ``--apply-changes``, which says what it changed. Repeating the original
options (the README's way of resuming) is fine, and so is another spelling of the same corpus.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_harness import assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.data.images import save_png

RBM = ["train", "rbm", "--hidden", 8, "--epochs", 1, "--quiet", "--engine", "torch", "--lr", 0.1]
NADE = ["train", "nade", "--levels", 4, "--width", 8, "--depth", 1, "--epochs", 1, "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume-settings")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = random.Random(5)
    path = work / "corpus.txt"
    path.write_text(
        "\n".join("".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6))) for _ in range(120)) + "\n"
    )
    return path


@pytest.fixture(scope="module")
def rbm(work, corpus) -> Path:
    out = work / "rbm"
    assert_ok(gibbsdream_here(*RBM, "--data", corpus, "--out", out))
    return out


@pytest.fixture(scope="module")
def images(work) -> Path:
    rng = np.random.default_rng(3)
    folder = work / "images"
    for i in range(24):
        save_png(folder / f"im{i:02d}.png", (rng.integers(0, 4, (6, 6)) * 85).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def nade(work, images) -> Path:
    out = work / "nade"
    assert_ok(gibbsdream_here(*NADE, "--data", images, "--out", out))
    return out


def copy(folder: Path, name: str) -> Path:
    return Path(shutil.copytree(folder, folder.parent / name))


def training(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())["training"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--hidden", 16),
        ("--max-length", 9),
        ("--case-fold", None),
        ("--seed", 3),
        ("--batch-size", 32),
        ("--persistent", None),
        ("--validation-fraction", 0.2),
    ],
)
def test_rbm_options_that_shape_the_model_or_data_are_refused(rbm, corpus, option, value):
    out = copy(rbm, f"rbm-fixed{option}")
    before = (out / "config.json").read_bytes()
    extra = [option] if value is None else [option, value]
    line = assert_clean_error(
        gibbsdream_here(*RBM, "--data", corpus, "--out", out, "--epochs", 2, "--resume", "--apply-changes", *extra)
    )
    assert option in line and "differs from the checkpoint's" in line and "new --out" in line
    assert (out / "config.json").read_bytes() == before


def test_rbm_another_corpus_is_refused(rbm, work, corpus):
    other = work / "other.txt"
    other.write_text("xyz\n" * 50)
    line = assert_clean_error(
        gibbsdream_here(*RBM, "--data", other, "--out", copy(rbm, "rbm-data"), "--epochs", 2, "--resume")
    )
    assert "--data" in line and "differs" in line


def test_rbm_learning_settings_change_only_when_told(rbm, corpus, capsys):
    out = copy(rbm, "rbm-lr")
    line = assert_clean_error(
        gibbsdream_here(*RBM, "--data", corpus, "--out", out, "--epochs", 2, "--resume", "--lr", 0.05)
    )
    assert "--lr 0.05 differs from the checkpoint's --lr 0.1" in line and "--apply-changes" in line
    result = gibbsdream_here(
        *RBM,
        "--data",
        corpus,
        "--out",
        out,
        "--epochs",
        2,
        "--resume",
        "--lr",
        0.05,
        "--momentum",
        0.5,
        "--apply-changes",
    )
    assert_ok(result)
    assert "continuing with --lr 0.05 (was --lr 0.1), --momentum 0.5 (was --momentum 0.9)" in result.stderr
    assert (training(out)["learning_rate"], training(out)["momentum"]) == (0.05, 0.5)


def test_rbm_repeating_the_original_options_resumes(rbm, corpus):
    out = copy(rbm, "rbm-same")
    spelled = os.path.relpath(corpus)  # another spelling of the same file
    assert_ok(gibbsdream_here(*RBM, "--data", spelled, "--out", out, "--epochs", 2, "--resume", "--hidden", 8))
    assert json.loads((out / "config.json").read_text())["trainer"]["epoch"] == 2


def test_apply_changes_needs_resume(work, corpus, images):
    line = assert_clean_error(gibbsdream_here(*RBM, "--data", corpus, "--out", work / "fresh", "--apply-changes"))
    assert "--apply-changes goes with --resume" in line
    line = assert_clean_error(gibbsdream_here(*NADE, "--data", images, "--out", work / "fresh2", "--apply-changes"))
    assert "--apply-changes goes with --resume" in line
    assert not (work / "fresh").exists() and not (work / "fresh2").exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--width", 16),
        ("--depth", 2),
        ("--levels", 8),
        ("--batch-size", 7),
        ("--dilations", "1,2"),
        ("--no-residual", None),
    ],
)
def test_nade_options_that_shape_the_model_or_data_are_refused(nade, images, option, value):
    extra = [option] if value is None else [option, value]
    line = assert_clean_error(
        gibbsdream_here(
            *NADE,
            "--data",
            images,
            "--out",
            copy(nade, f"nade{option}"),
            "--epochs",
            2,
            "--resume",
            "--apply-changes",
            *extra,
        )
    )
    assert option in line and "differs from the checkpoint's" in line


def test_nade_learning_rate_change_reaches_the_optimizer(nade, images):
    out = copy(nade, "nade-lr")
    line = assert_clean_error(
        gibbsdream_here(*NADE, "--data", images, "--out", out, "--epochs", 2, "--resume", "--lr", 3e-4)
    )
    assert "--apply-changes" in line
    result = gibbsdream_here(
        *NADE,
        "--data",
        images,
        "--out",
        out,
        "--epochs",
        2,
        "--resume",
        "--lr",
        3e-4,
        "--weight-decay",
        1e-5,
        "--apply-changes",
    )
    assert_ok(result)
    assert "continuing with --lr 0.0003 (was --lr 0.001)" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["learning_rate"] == 3e-4
    group = config["trainer"]["optimizer_groups"][0]
    assert (group["lr"], group["weight_decay"]) == (3e-4, 1e-5)


def test_a_run_that_diverges_stops_and_keeps_the_last_good_checkpoint(rbm, corpus):
    out = copy(rbm, "rbm-diverges")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    result = gibbsdream_here(
        *RBM, "--data", corpus, "--out", out, "--epochs", 3, "--resume", "--lr", 1e30, "--apply-changes"
    )
    note, line = result.stderr.strip().splitlines()  # the note says what was changed
    assert result.returncode == 2 and note.startswith("note: continuing with --lr 1e+30")
    assert line.startswith("error: ") and "NaN or infinite" in line and "last good state" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


def test_resume_from_another_working_directory_finds_the_same_corpus(work, corpus, monkeypatch):
    out = work / "rbm-elsewhere"
    monkeypatch.chdir(corpus.parent)
    assert_ok(gibbsdream_here(*RBM, "--data", corpus.name, "--out", out))  # a relative --data
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert_ok(gibbsdream_here(*RBM, "--data", corpus, "--out", out, "--epochs", 2, "--resume"))
    other = work / "other2.txt"
    other.write_text("xyz\n" * 50)
    line = assert_clean_error(gibbsdream_here(*RBM, "--data", other, "--out", out, "--epochs", 3, "--resume"))
    assert f"pass --data {corpus}" in line  # --data is required: the remedy names its original value


def test_a_corpus_file_name_that_is_not_utf8_is_saved_and_loads(work, corpus):
    import gibbsdream.checkpoint

    name = os.fsdecode(bytes(work / "c") + b"\xff.txt")  # a Latin-1 name, held by Python as a lone surrogate
    shutil.copy(corpus, name)
    out = work / "rbm-latin1"
    assert_ok(gibbsdream_here(*RBM, "--data", name, "--out", out))
    assert gibbsdream.checkpoint.load_checkpoint(out).config["corpus"]["source"] == name
    assert_ok(gibbsdream_here(*RBM, "--data", name, "--out", out, "--epochs", 2, "--resume"))


@pytest.mark.parametrize(
    "field, value", [("corpus", 5), ("codec", ["max_length"]), ("trainer", None), ("training", [1])]
)
def test_resuming_a_checkpoint_with_damaged_settings_is_one_line(rbm, corpus, field, value):
    out = copy(rbm, f"rbm-damaged-{field}")
    config = json.loads((out / "config.json").read_text())
    config[field] = value
    (out / "config.json").write_text(json.dumps(config))
    line = assert_clean_error(gibbsdream_here(*RBM, "--data", corpus, "--out", out, "--epochs", 2, "--resume"))
    assert str(out) in line


def test_a_lone_surrogate_in_config_json_is_one_line(rbm):
    out = copy(rbm, "rbm-surrogate")
    text = (out / "config.json").read_text().replace('"alphabet": "', '"alphabet": "\\ud800', 1)
    (out / "config.json").write_text(text)
    line = assert_clean_error(gibbsdream_here("sample", out, "--chains", 2, "--steps", 3))
    assert "not valid Unicode" in line
