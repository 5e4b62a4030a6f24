"""Captions on the command line: ``train nade --captions`` end to end (a folder with a
captions.json, exact resume), ``--caption`` on ``inpaint`` and ``sample``, and the bad input of
the captions issue, each a one-line ``error:`` or a ``notice:``, never a traceback.

The model is tiny (6x6 grayscale, 4 levels, width 8, depth 2, one epoch) and trained once per
module, in this process."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_harness import assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.checkpoint import checkpoint_file

run = gibbsdream_here
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)
BASE = ["--levels", 4, "--width", 8, "--depth", 2, "--seed", 0, "--quiet", "--device", "cpu"]
TRAIN = [*BASE, "--caption-hidden", 6, "--caption-embedding", 5, "--caption-min-count", 1]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("captions-cli")


@pytest.fixture(scope="module")
def images(work) -> Path:
    """30 6x6 images: dark ones captioned "a dark square", light ones "a light square"."""
    folder = work / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    captions = {}
    for i in range(30):
        light = i % 2
        pixels = EXACT[rng.integers(2 * light, 2 * light + 2, (6, 6))]
        Image.fromarray(pixels).save(folder / f"im{i:02d}.png")
        captions[f"im{i:02d}.png"] = [f"a {'light' if light else 'dark'} square", "a square" if i % 3 else "square"]
    (folder / "captions.json").write_text(json.dumps(captions))
    return folder


@pytest.fixture(scope="module")
def model(work, images) -> Path:
    out = work / "model"
    assert_ok(run("train", "nade", "--data", images, "--captions", *TRAIN, "--epochs", 1, "--out", out))
    return out


@pytest.fixture(scope="module")
def plain(work, images) -> Path:
    out = work / "plain"
    assert_ok(run("train", "nade", "--data", images, *BASE, "--epochs", 1, "--out", out))
    return out


def history(folder):
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines() if line]


def test_training_with_captions_saves_the_vocabulary_and_the_caption_tables(model):
    from gibbsdream.checkpoint import load_checkpoint
    from gibbsdream.data.captions import has_captions

    config = json.loads((model / "config.json").read_text())
    assert set(config["captions"]["words"]) == {"a", "dark", "light", "square"}
    assert config["model"]["caption_vocab_size"] == 6 and config["training"]["captions"] is True
    ckpt = load_checkpoint(model)
    assert has_captions(ckpt) and ckpt.model.caption_vocabulary.words == config["captions"]["words"]
    tables = {k: v for k, v in ckpt.data.items() if k.startswith("captions.")}
    assert {k: v.shape[0] for k, v in tables.items()} == {
        f"captions.{k}": ckpt.data[k].shape[0] for k in ("train", "validation", "test")
    }
    assert all(v.shape[1] == 2 for v in tables.values())  # two captions per image


def test_resume_with_captions_is_exact(work, images, model):
    resumed = Path(shutil.copytree(model, work / "resumed"))
    assert_ok(run("train", "nade", "--data", images, "--captions", *TRAIN, "--epochs", 2, "--out", resumed, "--resume"))
    straight = work / "straight"
    assert_ok(run("train", "nade", "--data", images, "--captions", *TRAIN, "--epochs", 2, "--out", straight))
    from safetensors.torch import load_file

    a, b = load_file(checkpoint_file(resumed, "model")), load_file(checkpoint_file(straight, "model"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert [r["validation_loss"] for r in history(resumed)] == [r["validation_loss"] for r in history(straight)]


def test_training_with_the_concat_merge(work, images):
    out = work / "concat"
    assert_ok(
        run(
            "train",
            "nade",
            "--data",
            images,
            "--captions",
            *TRAIN,
            "--caption-merge",
            "concat",
            "--caption-unidirectional",
            "--epochs",
            1,
            "--out",
            out,
        )
    )
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["caption_merge"] == "concat" and config["caption_bidirectional"] is False
    assert_ok(
        run(
            "sample",
            out,
            "--num-samples",
            2,
            "--steps",
            3,
            "--caption",
            "a light square",
            "--out",
            work / "concat-samples",
            "--quiet",
            "--device",
            "cpu",
        )
    )


def test_inpaint_and_sample_with_a_caption(work, model):
    out = work / "inpainted"
    for caption in ("a light square", None):
        args = ["--caption", caption] if caption else []
        result = run(
            "inpaint",
            model,
            "--image",
            "heldout:3",
            "--steps",
            4,
            "--out",
            out / str(caption),
            "--device",
            "cpu",
            *args,
        )
        assert_ok(result)
        assert result.stderr.count("notice") == 0
        assert len(list((out / str(caption)).glob("heldout-*.png"))) == 3
    result = run(
        "sample",
        model,
        "--num-samples",
        3,
        "--steps",
        4,
        "--caption",
        "a dark square",
        "--out",
        work / "samples",
        "--quiet",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert (work / "samples" / "grid.png").exists()


def test_a_caption_changes_the_samples_and_the_same_seed_repeats_them(work, model):
    def sampled(name, *args):
        assert_ok(
            run(
                "sample",
                model,
                "--num-samples",
                4,
                "--steps",
                4,
                "--seed",
                5,
                "--out",
                work / name,
                "--quiet",
                "--device",
                "cpu",
                *args,
            )
        )
        return [np.asarray(Image.open(p)) for p in sorted((work / name).glob("sample-*.png"))]

    light = sampled("s-light", "--caption", "a light square")
    again = sampled("s-light-again", "--caption", "A LIGHT square.")
    none = sampled("s-none")
    assert all((a == b).all() for a, b in zip(light, again))
    assert not all((a == b).all() for a, b in zip(light, none))


def test_long_and_partly_unknown_captions_are_notices(work, model):
    long = " ".join(["a light square"] * 20)
    result = run(
        "inpaint",
        model,
        "--image",
        "heldout:1",
        "--steps",
        2,
        "--caption",
        long,
        "--out",
        work / "long",
        "--quiet",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert result.stderr.splitlines() == ["notice: the caption has 60 words; the model reads only the first 24"]
    result = run(
        "sample",
        model,
        "--num-samples",
        1,
        "--steps",
        2,
        "--caption",
        "a light zébra square",
        "--out",
        work / "zebra",
        "--quiet",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert result.stderr.splitlines() == ["notice: the model does not know 'zébra'; read as unknown words"]


@pytest.mark.parametrize(
    "caption, message",
    [
        ("", "has no words"),
        ("  ...  ", "has no words"),
        ("zebra giraffe", "none of the words"),
        ("一个红色的方块", "none of the words"),
        ("ünknown wörds", "none of the words"),
    ],
)
@pytest.mark.parametrize("command", ["inpaint", "sample"])
def test_bad_captions_are_one_line_errors_and_write_nothing(work, model, command, caption, message):
    out = work / "never"
    args = ["--image", "heldout:1"] if command == "inpaint" else ["--num-samples", 1]
    line = assert_clean_error(
        run(command, model, *args, "--steps", 2, "--caption", caption, "--out", out, "--device", "cpu")
    )
    assert message in line
    assert not out.exists()


def test_a_caption_for_a_model_without_captions_or_a_string_model(work, plain):
    line = assert_clean_error(run("sample", plain, "--num-samples", 1, "--caption", "a square", "--out", work / "x"))
    assert "trained without captions" in line
    line = assert_clean_error(
        run("inpaint", plain, "--image", "heldout:1", "--caption", "a square", "--out", work / "x.png")
    )
    assert "trained without captions" in line
    corpus = work / "corpus.txt"
    corpus.write_text("abcd\nbcda\ncdab\ndabc\n" * 5)
    rbm = work / "rbm"
    assert_ok(
        run("train", "rbm", "--data", corpus, "--hidden", 4, "--epochs", 1, "--out", rbm, "--quiet", "--device", "cpu")
    )
    line = assert_clean_error(run("sample", rbm, "--caption", "a square"))
    assert "--caption applies to image (NADE) models only" in line


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing file", "names 'gone.png' and 1 more, which is not an image"),
        ("invalid json", "not valid JSON"),
        ("no captions", "has no captions.json"),
        ("no words", "none of the 4 images"),
    ],
)
def test_bad_caption_files_when_training(work, setup, message):
    folder = work / f"bad-{setup.replace(' ', '-')}"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(EXACT[np.full((6, 6), i % 4)]).save(folder / f"im{i}.png")
    contents = {
        "missing file": json.dumps({"im0.png": ["a"], "gone.png": ["b"], "zz.png": ["c"]}),
        "invalid json": '{"im0.png": ["a square"]',
        "no words": json.dumps({f"im{i}.png": ["?!"] for i in range(4)}),
    }
    if setup in contents:
        (folder / "captions.json").write_text(contents[setup])
    out = work / f"out-{setup.replace(' ', '-')}"
    line = assert_clean_error(run("train", "nade", "--data", folder, "--captions", *TRAIN, "--epochs", 1, "--out", out))
    assert message in line
    assert not out.exists()


def test_bad_caption_training_settings(work, images):
    for args, message in [
        (["--caption-dropout", "1"], "--caption-dropout must lie in [0, 1)"),
        (["--caption-min-count", "0"], "--caption-min-count must be"),
        (["--caption-hidden", "0"], "--caption-hidden must be"),
        (["--caption-min-count", "1000"], "no caption word occurs 1000 or more times"),
    ]:
        line = assert_clean_error(
            run("train", "nade", "--data", images, "--captions", *TRAIN, *args, "--out", work / "nope")
        )
        assert message in line, line
    line = assert_clean_error(
        run("train", "nade", "--data", images, "--caption-dropout", "0.5", "--out", work / "nope")
    )
    assert "--caption-dropout applies only with --captions" in line
    line = assert_clean_error(
        run(
            "train",
            "nade",
            "--data",
            "builtin:digits",
            "--captions",
            "--channels",
            "1",
            "--out",
            work / "nope",
            "--caption-merge-every",
            "0",
        )
    )
    assert "caption-merge-every" in line


def test_evaluate_a_captioned_model_with_and_without_captions(work, model, plain):
    import torch

    from gibbsdream.checkpoint import load_checkpoint
    from gibbsdream.likelihood import ensemble_log_likelihood, order_log_likelihoods
    from gibbsdream.sampling.api import make_generator

    result = run("evaluate", model, "--orders", 2, "--seed", 3, "--json", "--device", "cpu")
    assert_ok(result)
    own = json.loads(result.stdout)
    assert own["caption"] == "each image's own first caption" and own["images"] == 3
    assert own["caption_gain_nats"] == pytest.approx(own["nll_nats_without_caption"] - own["nll_nats"])
    # Both runs see the same orders: the uncaptioned figure is the plain order ensemble, recomputed here.
    ckpt = load_checkpoint(model)
    test = ckpt.data["test"]
    with_own = order_log_likelihoods(
        ckpt.model, test, num_orders=2, generator=make_generator(3, "cpu"), context=ckpt.data["captions.test"][:, 0]
    )
    without = order_log_likelihoods(ckpt.model, test, num_orders=2, generator=make_generator(3, "cpu"))
    assert own["nll_nats"] == pytest.approx(-ensemble_log_likelihood(with_own).mean().item(), rel=1e-6)
    assert own["nll_nats_without_caption"] == pytest.approx(-ensemble_log_likelihood(without).mean().item(), rel=1e-6)
    assert not torch.equal(with_own, without)

    result = run(
        "evaluate", model, "--orders", 2, "--seed", 3, "--caption", "a light square", "--device", "cpu", "--quiet"
    )
    assert_ok(result)
    assert "caption: a light square" in result.stdout and "the caption is worth" in result.stdout
    # A model without captions reports one NLL and refuses --caption.
    result = run("evaluate", plain, "--orders", 1, "--json", "--device", "cpu")
    assert_ok(result)
    assert json.loads(result.stdout)["caption"] is None and "caption_gain_nats" not in json.loads(result.stdout)
    assert "trained without captions" in assert_clean_error(run("evaluate", plain, "--caption", "a square"))
    assert "none of the words" in assert_clean_error(run("evaluate", model, "--caption", "zebra giraffe"))


def test_the_front_door_takes_one_caption_per_image(model):
    """``caption=[...]``: image i's completions read caption i; one caption for all reads the same."""
    import gibbsdream
    from gibbsdream.errors import UsageError

    ckpt = gibbsdream.load(model, device="cpu")
    images = ckpt.data["test"][:2]
    options = dict(samples=2, steps=3, seed=5)
    one = gibbsdream.inpaint(ckpt, images, "centre", caption="a light square", **options)
    each = gibbsdream.inpaint(ckpt, images, "centre", caption=["a light square"] * 2, **options)
    assert np.array_equal(one.outputs, each.outputs)
    mixed = gibbsdream.inpaint(ckpt, images, "centre", caption=["a light square", "a dark square"], **options)
    dark = gibbsdream.inpaint(ckpt, images, "centre", caption="a dark square", **options)
    # Rows draw the same random numbers whatever the others read, so each image's completions
    # match the run whose caption it was given (the trace: log-probabilities, which any caption moves).
    trace = {name: run.chain.trace for name, run in (("one", one), ("mixed", mixed), ("dark", dark))}
    assert torch.allclose(trace["mixed"][:, :2], trace["one"][:, :2], atol=1e-6)
    assert torch.allclose(trace["mixed"][:, 2:], trace["dark"][:, 2:], atol=1e-6)
    assert not torch.allclose(trace["one"][:, 2:], trace["dark"][:, 2:], atol=1e-4)
    with pytest.raises(UsageError, match="one caption for every image or one per image \\(2\\), not 3"):
        gibbsdream.inpaint(ckpt, images, "centre", caption=["a square"] * 3, **options)
    assert (
        gibbsdream.generate(ckpt, num_samples=2, steps=2, caption=["a dark square", "a light square"]).outputs.shape[0]
        == 2
    )
