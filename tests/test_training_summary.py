"""What a training run reports about itself: where its time went, the epochs it reached, how (and how
often) it checked the model, whether the model was still improving when it stopped; and the hint
that a folder's captions were left out.

The "still improving" rule is checked on histories built here; the commands are run on small data.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

import gibbsdream
from cli_harness import assert_ok, gibbsdream_here
from gibbsdream.data.images import save_png
from gibbsdream.errors import ConfigError
from gibbsdream.training.rbm import MONITOR_SHARE, RBMTrainConfig, check_cost_in_epochs, monitor_interval
from gibbsdream.training.runs import IMPROVING_GAIN, IMPROVING_WINDOW, Timings, still_improving, summarize

# ---- the "still improving" rule, on histories built by hand -------------------------------------------


def test_a_loss_still_falling_at_the_end_is_still_improving():
    assert still_improving([90.0, 85.0, 82.0, 80.5, 79.9, 79.4])
    assert still_improving([3.0, 2.0])  # two checks are enough to see a fall


@pytest.mark.parametrize(
    "losses, why",
    [
        ([90.0, 85.0, 80.0, 80.0, 80.0, 80.0, 80.0], "a plateau"),
        ([80.0, 80.01, 79.99, 80.02, 79.995], "noise around a plateau"),
        ([90.0, 80.0, 79.0, 78.5, 78.9], "the last is not the best of the window"),
        ([100.0, 99.99, 99.98, 99.97, 99.96], "a fall smaller than the threshold"),
        ([5.0], "one check"),
        ([], "no check"),
        ([5.0, float("nan"), 4.0], "a NaN in the window"),
    ],
)
def test_a_loss_that_has_stopped_falling_is_not(losses, why):
    assert not still_improving(losses), why


def test_the_threshold_is_relative_and_only_the_window_counts():
    # a fall of just over, and just under, IMPROVING_GAIN of the window's first value
    assert still_improving([100.0, 100.0 * (1 - 1.5 * IMPROVING_GAIN)])
    assert not still_improving([100.0, 100.0 * (1 - 0.5 * IMPROVING_GAIN)])
    # a large fall long ago does not count once the last IMPROVING_WINDOW values are flat
    assert not still_improving([500.0] + [80.0] * IMPROVING_WINDOW)
    assert still_improving([500.0] + [80.0] * (IMPROVING_WINDOW - 1) + [79.0])


def test_summarize_judges_the_first_measure_the_history_has():
    rising = [{"epoch": e, "train_pseudo_log_likelihood": -20.0 + e} for e in range(1, 6)]
    common = dict(seconds=1.0, timings=Timings(), first_epoch=0, epochs=5, target_epochs=5)
    summary = summarize(rising, ("validation_pseudo_log_likelihood", "train_pseudo_log_likelihood"), True, **common)
    assert (summary.measure, summary.last_checked, summary.still_improving) == ("train_pseudo_log_likelihood", 5, True)
    # a log-likelihood going down is not an improvement
    falling = [{"epoch": e, "train_pseudo_log_likelihood": -20.0 - e} for e in range(1, 6)]
    assert not summarize(falling, ("train_pseudo_log_likelihood",), True, **common).still_improving
    # rows without the measure (epochs not checked) are skipped
    sparse = [{"epoch": 1, "validation_loss": 9.0}, {"epoch": 2}, {"epoch": 3, "validation_loss": 8.0}, {"epoch": 4}]
    summary = summarize(sparse, ("validation_loss",), False, **common)
    assert (summary.last_checked, summary.still_improving) == (3, True)
    assert summarize([{"epoch": 1}], ("validation_loss",), False, **common).measure is None


# ---- the RBM's monitoring schedule ---------------------------------------------------------------------


@pytest.mark.parametrize("num_train", [50, 400, 3000, 20000, 200000])
@pytest.mark.parametrize("epochs", [1, 5, 20, 50, 300])
@pytest.mark.parametrize("categories", [2, 27, 151])
def test_auto_monitoring_keeps_the_estimated_cost_within_its_share_and_checks_as_often_as_that_allows(
    num_train, epochs, categories
):
    config = RBMTrainConfig(epochs=epochs, persistent=True)
    num_validation = num_train // 19
    cost = check_cost_in_epochs(config, categories, num_train, num_validation)
    interval = monitor_interval(config, categories, num_train, num_validation)
    if interval == 0:
        assert cost > MONITOR_SHARE * epochs  # not even one check fits
        return
    checks = math.ceil(epochs / interval)  # every multiple of the interval, and the last epoch
    assert checks * cost <= MONITOR_SHARE * epochs
    if interval > 1:  # one epoch less between checks would cost too much
        assert math.ceil(epochs / (interval - 1)) * cost > MONITOR_SHARE * epochs


def test_monitoring_cost_estimate_grows_with_what_a_check_scores_and_shrinks_with_the_corpus():
    def cost(train=10000, validation=500, categories=27, **settings):
        config = RBMTrainConfig(**{"persistent": True, **settings})
        return check_cost_in_epochs(config, categories, train, validation)

    assert cost(monitor_size=100) < cost() < cost(categories=151)
    assert cost(train=20000) < cost()
    assert cost(validation=0) < cost()  # no validation strings to score
    assert cost(cd_steps=5) < cost()  # more work per update
    assert cost(persistent=False) > cost()  # without persistent chains a check runs chains for its fantasies


def test_an_explicit_interval_is_kept():
    for every in (0, 1, 7):
        assert monitor_interval(RBMTrainConfig(epochs=50, monitor_every=every), 27, 100, 5) == every


@pytest.mark.parametrize("value", ["often", -1, 1.5, True, None])
def test_a_bad_monitor_every_is_refused_in_python_terms(value):
    with pytest.raises(ConfigError) as caught:
        RBMTrainConfig(monitor_every=value).check()
    assert caught.value.field == "monitor_every" and "auto" in str(caught.value)


# ---- runs, through the library and the command line ----------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("summary")


@pytest.fixture(scope="module")
def words(work) -> Path:
    """A corpus with structure to learn: a few syllables strung together."""
    rng = random.Random(11)
    syllables = ["ka", "ri", "to", "ne", "su", "mo"]
    path = work / "words.txt"
    path.write_text("\n".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(600)))
    return path


def test_the_summary_accounts_for_the_run(work, words):
    result = gibbsdream.train(
        "rbm",
        str(words),
        work / "api",
        model={"num_hidden": 8},
        training={"epochs": 4, "monitor_every": 2, "engine": "torch"},
        device="cpu",
    )
    summary = result.summary
    assert (summary.first_epoch, summary.epochs, summary.target_epochs) == (0, 4, 4)
    checked = [row["epoch"] for row in result.history if "train_pseudo_log_likelihood" in row]
    assert checked == [2, 4] and summary.timings.checks == 2
    assert summary.monitoring["every"] == 2 and not summary.monitoring["auto"]
    times = summary.timings
    assert times.training > 0 and times.monitoring > 0 and times.saving > 0
    assert times.training + times.monitoring + times.saving <= summary.seconds
    assert summary.measure == "validation_pseudo_log_likelihood" and summary.last_checked == 4
    # a resume reports its own epochs and time
    again = gibbsdream.train("rbm", None, work / "api", training={"epochs": 5}, resume=True, device="cpu")
    assert (again.summary.first_epoch, again.summary.epochs) == (4, 5)
    assert again.summary.timings.checks == 1  # the last epoch


def test_auto_monitoring_checks_at_the_epochs_its_interval_names(work, words):
    training = {"epochs": 30, "persistent": True, "monitor_size": 5}  # checks cheap enough to fit a few
    result = gibbsdream.train(
        "rbm", str(words), work / "auto", model={"num_hidden": 8}, training=training, device="cpu"
    )
    every = result.trainer.monitor_interval()
    assert 1 < every < 30  # some epochs checked, not all
    cost = check_cost_in_epochs(result.trainer.config, result.model.num_categories, 570, 30)
    assert result.summary.monitoring == {
        "every": every,
        "auto": True,
        "strings": 5,
        "validation_strings": 5,
        "check_cost_in_epochs": pytest.approx(cost),
    }
    expected = [e for e in range(1, 31) if e % every == 0 or e == 30]
    assert [row["epoch"] for row in result.history if "train_pseudo_log_likelihood" in row] == expected
    assert result.summary.timings.checks == len(expected)
    saved = json.loads((work / "auto" / "config.json").read_text())["training"]
    assert saved["monitor_every"] == "auto" and saved["monitor_size"] == 5


def test_a_checkpoint_that_checked_every_epoch_goes_on_doing_so(work, words):
    """The old default (monitor_every=1, monitor_size=500) is saved with a checkpoint, and a resume keeps it."""
    out = work / "old-default"
    old = {"epochs": 2, "monitor_every": 1, "monitor_size": 500}
    gibbsdream.train("rbm", str(words), out, model={"num_hidden": 8}, training=old, device="cpu")
    assert_ok(gibbsdream_here("train", "rbm", "--data", words, "--out", out, "--epochs", 4, "--resume", "--quiet"))
    history = gibbsdream.load(out).history
    assert [row["epoch"] for row in history if "train_pseudo_log_likelihood" in row] == [1, 2, 3, 4]


SUMMARY_LINE = re.compile(
    r"^trained epochs 1-(\d+) of (\d+) in [\d.]+ s: updates [\d.]+ s, monitoring [\d.]+ s, saving [\d.]+ s, "
    r"reading data and setting up [\d.]+ s$"
)


def test_train_rbm_says_where_the_time_went_and_how_it_monitored(work, words):
    result = gibbsdream_here(
        "train", "rbm", "--data", words, "--out", work / "cli", "--hidden", 8, "--epochs", 3, "--monitor-every", 2,
        "--device", "cpu",
    )  # fmt: skip
    assert_ok(result)
    lines = result.stderr.splitlines()
    summary = next(line for line in lines if line.startswith("trained "))
    assert SUMMARY_LINE.match(summary).groups() == ("3", "3"), summary
    monitoring = next(line for line in lines if line.startswith("monitoring: "))
    assert re.fullmatch(
        r"monitoring: every 2 epochs and after the last on 200 training \+ 30 validation strings; "
        r"2 checks, [\d.]+ s of [\d.]+ s",
        monitoring,
    ), monitoring
    auto = gibbsdream_here(
        "train", "rbm", "--data", words, "--out", work / "cli-auto", "--hidden", 8, "--epochs", 3, "--device", "cpu"
    )
    assert_ok(auto)
    line = next(line for line in auto.stderr.splitlines() if line.startswith("monitoring: "))
    assert "auto" in line and "--monitor-every N" in line, line
    never = gibbsdream_here(
        "train", "rbm", "--data", words, "--out", work / "cli-never", "--hidden", 8, "--epochs", 2,
        "--monitor-every", 0, "--device", "cpu",
    )  # fmt: skip
    assert "monitoring: none (--monitor-every 0)" in never.stderr.splitlines()


def test_a_bad_monitor_every_flag_is_one_error_line(work, words):
    from cli_harness import assert_clean_error

    line = assert_clean_error(
        gibbsdream_here("train", "rbm", "--data", words, "--out", work / "bad", "--monitor-every", "sometimes")
    )
    assert "--monitor-every" in line and "auto" in line
    assert not (work / "bad").exists()


def test_a_run_stopped_while_improving_says_so(work, words):
    """Four epochs of small steps on a corpus with structure: the pseudo-likelihood climbs at every check."""
    result = gibbsdream_here(
        "train", "rbm", "--data", words, "--out", work / "short", "--hidden", 8, "--epochs", 4, "--lr", 0.02,
        "--batch-size", 8, "--monitor-every", 1, "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert_ok(result)
    values = [row["validation_pseudo_log_likelihood"] for row in gibbsdream.load(work / "short").history]
    assert values == sorted(values) and values[-1] > values[0] + 0.5  # the premise: better at every check
    assert result.stderr.splitlines() == [
        "note: the validation pseudo-log-likelihood was still rising at epoch 4; train longer with --resume --epochs 8"
    ]


def test_a_run_that_has_plateaued_says_nothing_more(work, words):
    """It improved early, then its learning rate decayed fast (x0.3 an epoch) and it stopped moving."""
    result = gibbsdream_here(
        "train", "rbm", "--data", words, "--out", work / "plateau", "--hidden", 4, "--epochs", 12, "--lr", 0.1,
        "--lr-decay", 0.3, "--batch-size", 16, "--monitor-every", 1, "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert_ok(result)
    values = [row["validation_pseudo_log_likelihood"] for row in gibbsdream.load(work / "plateau").history]
    assert values[3] > values[0] + 0.2 and max(values[-5:]) - min(values[-5:]) < 0.01  # the premise
    assert result.stderr == ""


# ---- NADE: the summary, the note after a timed stop, the captions hint ---------------------------------


@pytest.fixture(scope="module")
def images(work) -> Path:
    """Stripes (every column one level), with a captions.json beside them."""
    rng = np.random.default_rng(5)
    folder = work / "images"
    for i in range(24):
        columns = rng.integers(0, 4, (1, 6))
        save_png(folder / f"im{i:02d}.png", (np.repeat(columns, 6, axis=0) * 85).astype(np.uint8))
    (folder / "captions.json").write_text(json.dumps({f"im{i:02d}.png": [f"picture {i % 3}"] for i in range(24)}))
    return folder


NADE = ["train", "nade", "--levels", 4, "--width", 8, "--depth", 1, "--device", "cpu"]


def test_train_nade_says_where_the_time_went_and_hints_at_ignored_captions(work, images):
    result = gibbsdream_here(*NADE, "--data", images, "--out", work / "nade", "--epochs", 2)
    assert_ok(result)
    lines = result.stderr.splitlines()
    hint = f"note: {images / 'captions.json'} holds captions, which this run ignores; pass --captions to train on them"
    assert lines.count(hint) == 1
    summary = next(line for line in lines if line.startswith("trained "))
    assert re.fullmatch(
        r"trained epochs 1-2 of 2 in [\d.]+ s: updates [\d.]+ s, validation [\d.]+ s \(2 passes over 2 images\), "
        r"saving [\d.]+ s, reading data and setting up [\d.]+ s",
        summary,
    ), summary
    with_captions = gibbsdream_here(
        *NADE, "--data", images, "--out", work / "nade-captions", "--epochs", 1, "--captions", "--caption-min-count", 1
    )
    assert_ok(with_captions)
    assert "holds captions" not in with_captions.stderr


def test_a_nade_run_stopped_by_time_while_improving_says_how_to_go_on(work, images, monkeypatch):
    """A run cut short by --max-time while its validation loss fell at every epoch: the note names
    --max-time. The clock is the trainer's: here its time runs out after the third epoch."""
    from gibbsdream.training.nade import NADETrainer

    monkeypatch.setattr(NADETrainer, "_out_of_time", lambda self, started: self.epoch >= 3)
    result = gibbsdream_here(
        *NADE, "--data", images, "--out", work / "nade-timed", "--max-time", "8m", "--lr", 0.02, "--batch-size", 4,
        "--quiet",
    )  # fmt: skip
    assert_ok(result)
    losses = [row["validation_loss"] for row in gibbsdream.load(work / "nade-timed").history]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0]  # the premise
    assert result.stderr.splitlines()[-1] == (
        "note: the validation loss was still falling at epoch 3; train longer with --resume --max-time 8m"
    )


def test_the_note_names_the_measure_and_the_way_on():
    from gibbsdream.cli.common import _still_improving_note
    from gibbsdream.training.runs import TrainingSummary

    def summary(**changes):
        settings = dict(seconds=1.0, timings=Timings(), first_epoch=0, epochs=20, target_epochs=20)
        settings.update(measure="validation_loss", last_checked=20, still_improving=True)
        return TrainingSummary(**{**settings, **changes})

    assert _still_improving_note(summary(), None) == (
        "note: the validation loss was still falling at epoch 20; train longer with --resume --epochs 40"
    )
    assert _still_improving_note(summary(stopped_by_time=True, epochs=7, last_checked=7), "20m") == (
        "note: the validation loss was still falling at epoch 7; train longer with --resume --max-time 20m"
    )
    rising = summary(measure="train_pseudo_log_likelihood", higher_is_better=True, last_checked=18)
    assert _still_improving_note(rising, None) == (
        "note: the training pseudo-log-likelihood was still rising at epoch 18; train longer with --resume --epochs 40"
    )
    assert _still_improving_note(summary(still_improving=False), None) is None
