"""Held-out data for every family, and progress bars on every long command.

``gibbsdream export-split CHECKPOINT train|valid|test --out ...`` writes a split a checkpoint keeps
as the files the other commands read (strings: a text file; images: PNGs and captions.json), and
``evaluate CHECKPOINT`` (``--data heldout``) scores a string model's validation split as it scores
an image model's test split. A progress bar shows where stderr is a terminal, unless ``-q``.

Two tiny models are trained in this process once per module: an RBM on mixed-case words (with
``--case-fold``, so the exported strings show the codec's view of the corpus) and a captioned
Orderless NADE on 6x6 images whose pixels are the exact 8-bit values of its 4 levels.
"""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gibbsdream
from cli_harness import assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.data.captions import tokenize
from gibbsdream.data.images import load_images

run = gibbsdream_here
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)  # the 8-bit values of the 4 levels
RBM_TRAIN = ["--hidden", 6, "--epochs", 1, "--case-fold", "--quiet", "--device", "cpu"]
NADE_TRAIN = ["--levels", 4, "--width", 8, "--depth", 1, "--seed", 0, "--quiet", "--device", "cpu"]
CAPTIONS = ["--captions", "--caption-hidden", 6, "--caption-embedding", 5, "--caption-min-count", 1]
WORDS = ("a", "dark", "light", "square", "small", "big")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("heldout")


@pytest.fixture(scope="module")
def corpus(work) -> list[str]:
    """80 distinct words of 3-6 letters, some capitalised (the model folds them)."""
    rng = random.Random(5)
    words = set()
    while len(words) < 80:
        word = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6)))
        words.add(word.capitalize() if rng.random() < 0.5 else word)
    lines = sorted(words)
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


@pytest.fixture(scope="module")
def rbm(work, corpus) -> Path:
    out = work / "rbm"
    assert_ok(
        run("train", "rbm", "--data", work / "corpus.txt", *RBM_TRAIN, "--validation-fraction", 0.25, "--out", out)
    )
    return out


@pytest.fixture(scope="module")
def images(work) -> dict[bytes, list[str]]:
    """40 random 6x6 gray PNGs with captions.json; {pixels' bytes: captions}."""
    folder = work / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    table, by_pixels = {}, {}
    for i in range(40):
        pixels = EXACT[rng.integers(0, 4, (6, 6))]
        Image.fromarray(pixels).save(folder / f"im{i:02d}.png")
        captions = [" ".join(rng.choice(WORDS, 3)) for _ in range(1 + i % 2)]
        table[f"im{i:02d}.png"], by_pixels[pixels.tobytes()] = captions, captions
    (folder / "captions.json").write_text(json.dumps(table))
    return by_pixels


@pytest.fixture(scope="module")
def nade(work, images) -> Path:
    out = work / "nade"
    assert_ok(run("train", "nade", "--data", work / "images", *NADE_TRAIN, *CAPTIONS, "--epochs", 1, "--out", out))
    return out


def figures(result) -> dict:
    """An evaluation's figures, without what names the data or times the run."""
    assert_ok(result)
    values = json.loads(result.stdout)
    return {k: v for k, v in values.items() if k not in ("data", "seconds", "checkpoint")}


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


# ---- strings ---------------------------------------------------------------------------------------


def test_export_writes_the_validation_strings_as_the_model_saw_the_corpus(work, rbm, corpus):
    valid, train = work / "valid.txt", work / "train.txt"
    assert_ok(run("export-split", rbm, "valid", "--out", valid))
    assert_ok(run("export-split", rbm, "train", "--out", train, "-q"))
    exported = valid.read_text(encoding="utf-8").splitlines()
    ckpt = gibbsdream.load(rbm, device="cpu")
    assert exported == ckpt.codec.decode(ckpt.data["validation"])  # the split, in its order
    assert len(exported) == round(0.25 * len(corpus))
    # Together the two splits are the corpus, folded as training folded it: nothing lost, nothing padded.
    together = exported + train.read_text(encoding="utf-8").splitlines()
    assert sorted(together) == sorted(line.casefold() for line in corpus)
    assert any(line != line.casefold() for line in corpus)  # so the folding was there to see


def test_evaluate_heldout_scores_what_the_exported_file_holds(work, rbm):
    held = work / "held-out.txt"
    assert_ok(run("export-split", rbm, "valid", "--out", held, "--quiet"))
    for method in (["--method", "exact"], ["--method", "ais", "--ais-runs", 4, "--ais-betas", 30]):
        from_file = figures(run("evaluate", rbm, "--data", held, *method, "--json", "-q"))
        from_checkpoint = figures(run("evaluate", rbm, "--data", "heldout", *method, "--json", "-q"))
        assert from_checkpoint == from_file and from_file["strings"] == len(held.read_text().splitlines())
    by_default = json.loads(run("evaluate", rbm, "--json", "-q").stdout)  # no --data: the held-out split
    assert by_default["data"].startswith("held-out validation split of") and by_default["strings"] > 0
    # ... which is not the training data: the figure differs from the whole corpus's.
    assert figures(run("evaluate", rbm, "--data", work / "corpus.txt", "--json", "-q")) != from_checkpoint


def test_the_front_door_exports_and_refuses_unknown_splits(work, rbm):
    done = gibbsdream.export_split(rbm, "valid", work / "api.txt")
    assert (done.split, done.outputs, done.path) == ("valid", "strings", work / "api.txt")
    assert done.count == len((work / "api.txt").read_text(encoding="utf-8").splitlines())
    with pytest.raises(gibbsdream.UsageError, match="split must be one of train, valid, test, got 'validation'"):
        gibbsdream.export_split(rbm, "validation", work / "nope.txt")
    with pytest.raises(gibbsdream.UsageError, match="pass overwrite=True"):
        gibbsdream.export_split(rbm, "train", work / "api.txt")
    assert not (work / "nope.txt").exists()


def test_force_replaces_an_exported_file(work, rbm):
    out = work / "forced.txt"
    out.write_text("old\n")
    assert "--force" in assert_clean_error(run("export-split", rbm, "valid", "--out", out))
    assert out.read_text() == "old\n"
    assert_ok(run("export-split", rbm, "valid", "--out", out, "--force", "-q"))
    assert out.read_text(encoding="utf-8") == (work / "valid.txt").read_text(encoding="utf-8")


# ---- images ---------------------------------------------------------------------------------------


def test_export_writes_the_test_images_and_their_captions(work, nade, images):
    out = work / "test-images"
    assert_ok(run("export-split", nade, "test", "--out", out, "-q"))
    ckpt = gibbsdream.load(nade, device="cpu")
    test = ckpt.data["test"]
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"test-{i:04d}.png" for i in range(len(test))] and len(test) == 4
    table = json.loads((out / "captions.json").read_text(encoding="utf-8"))
    for i, name in enumerate(names):
        pixels = png_pixels(out / name)
        assert np.array_equal(pixels, ckpt.codec.decode(test[i : i + 1])[0, 0].numpy())
        # The image is one of the training folder's, bit for bit, and its captions are that image's
        # (as the model reads them: its words, lower case).
        assert table[name] == [" ".join(tokenize(text)) for text in images[pixels.tobytes()]]
    # What `train --captions` reads gives the same states and captions back.
    again = load_images(str(out), codec=ckpt.codec, captions=True)
    assert again.names == names and (again.states == test).all()
    assert again.captions == [table[name] for name in names]


def test_evaluating_the_exported_folder_scores_the_held_out_images(work, nade):
    out = work / "test-again"
    assert_ok(run("export-split", nade, "test", "--out", out, "-q"))
    orders = ["--orders", 2, "--seed", 4, "--json", "-q", "--device", "cpu"]
    held = json.loads(run("evaluate", nade, *orders).stdout)
    folder = json.loads(run("evaluate", nade, "--data", out, *orders).stdout)
    # The held-out run is scored with captions and without, on the same orders; the folder, without.
    assert folder["images"] == held["images"] and folder["nll_nats"] == held["nll_nats_without_caption"]


def test_force_replaces_an_earlier_export_but_nothing_else(work, nade):
    out = work / "replaced"
    assert_ok(run("export-split", nade, "train", "--out", out, "-q"))
    assert "--force" in assert_clean_error(run("export-split", nade, "test", "--out", out))
    assert_ok(run("export-split", nade, "test", "--out", out, "--force", "-q"))
    assert not list(out.glob("train-*.png")) and len(list(out.glob("test-*.png"))) == 4  # no stale images
    (out / "notes.txt").write_text("mine")
    line = assert_clean_error(run("export-split", nade, "valid", "--out", out, "--force"))
    assert "notes.txt" in line and (out / "notes.txt").read_text() == "mine"
    assert not [p for p in work.iterdir() if p.name.startswith(".replaced")]  # no temporary folders left


# ---- bad input -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_validation(work) -> Path:
    out = work / "rbm-all-train"
    assert_ok(run("train", "rbm", "--data", work / "corpus.txt", *RBM_TRAIN, "--validation-fraction", 0, "--out", out))
    return out


BAD = {
    "unknown split": (lambda w, r, n: ["export-split", r, "validation", "--out", w / "x.txt"], "'SPLIT'"),
    "test split of an RBM": (lambda w, r, n: ["export-split", r, "test", "--out", w / "x.txt"], "train and a valid"),
    "out file exists": (lambda w, r, n: ["export-split", r, "valid", "--out", w / "corpus.txt"], "--force"),
    "out folder not empty": (lambda w, r, n: ["export-split", n, "test", "--out", w / "images"], "--force"),
    "out a folder for strings": (lambda w, r, n: ["export-split", r, "valid", "--out", w / "images"], "folder"),
    "out a file for images": (lambda w, r, n: ["export-split", n, "test", "--out", w / "corpus.txt"], "is a file"),
    "out a device": (lambda w, r, n: ["export-split", r, "valid", "--out", "/dev/null", "--force"], "regular file"),
    "checkpoint missing": (lambda w, r, n: ["export-split", w / "gone", "valid", "--out", w / "x.txt"], "not exist"),
    "no split given": (lambda w, r, n: ["export-split", r, "--out", w / "x.txt"], "SPLIT"),
    "no --out": (lambda w, r, n: ["export-split", r, "valid"], "--out"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_export_input_is_one_error_line(work, rbm, nade, case):
    make, expected = BAD[case]
    before = (work / "corpus.txt").read_bytes(), sorted(p.name for p in (work / "images").iterdir())
    line = assert_clean_error(run(*make(work, rbm, nade)))
    assert expected in line, line
    assert ((work / "corpus.txt").read_bytes(), sorted(p.name for p in (work / "images").iterdir())) == before
    assert not (work / "x.txt").exists()


def test_a_checkpoint_without_held_out_strings_says_so(work, no_validation):
    line = assert_clean_error(run("export-split", no_validation, "valid", "--out", work / "x.txt"))
    assert "keeps no valid strings" in line
    line = assert_clean_error(run("evaluate", no_validation, "--json"))
    assert "keeps no held-out strings" in line and "give --data" in line
    assert_ok(run("export-split", no_validation, "train", "--out", work / "all.txt", "-q"))


# ---- progress bars ---------------------------------------------------------------------------------


def long_commands(work, rbm, nade, out: Path) -> dict:
    """Every command that can take long, as a tiny run writing under ``out``, with the words its bar shows."""
    cpu = ["--device", "cpu"]
    return {
        "evaluate strings, exact log Z": (["evaluate", rbm, "--method", "exact", *cpu], "exact log Z"),
        "evaluate strings, AIS": (
            ["evaluate", rbm, "--method", "ais", "--ais-runs", 3, "--ais-betas", 20, "--json", *cpu],
            "AIS log Z",
        ),
        "sample strings": (["sample", rbm, "--chains", 2, "--steps", 5, *cpu], "sampling"),
        "train rbm": (
            ["train", "rbm", "--data", work / "corpus.txt", "--hidden", 2, "--epochs", 1, "--out", out, *cpu],
            "epoch 1/1",
        ),
        "sweep": (["sweep", rbm, "--grid", "steps=3", "--chains", 2, "--out", out, *cpu], "sweep"),
        "inpaint": (["inpaint", nade, "--image", "heldout:2", "--steps", 2, "--out", out, *cpu], "sampling"),
        "sample images": (["sample", nade, "--chains", 2, "--steps", 2, "--out", out, *cpu], "sampling"),
        "evaluate images": (["evaluate", nade, "--orders", 1, "--max-images", 2, "--json", *cpu], "likelihood"),
        "export images": (["export-split", nade, "test", "--out", out], "exporting test"),
    }


LONG = [
    "evaluate strings, exact log Z",
    "evaluate strings, AIS",
    "sample strings",
    "train rbm",
    "sweep",
    "inpaint",
    "sample images",
    "evaluate images",
    "export images",
]
BAR = "━"  # what rich draws the bar with


@pytest.mark.parametrize("name", LONG)
def test_long_commands_show_a_bar_on_a_terminal_and_none_with_quiet(work, rbm, nade, monkeypatch, tmp_path, name):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stderr counts as a terminal (rich's own switch)
    argv, words = long_commands(work, rbm, nade, tmp_path / "shown")[name]
    shown = run(*argv)
    assert_ok(shown)
    assert words in shown.stderr and BAR in shown.stderr, shown.stderr
    argv, words = long_commands(work, rbm, nade, tmp_path / "quiet")[name]
    quiet = run(*argv, "-q")
    assert_ok(quiet)
    assert words not in quiet.stderr and BAR not in quiet.stderr, quiet.stderr


def test_no_bar_off_a_terminal(work, rbm, nade, monkeypatch, tmp_path):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    for name in ("evaluate strings, AIS", "export images"):
        argv, words = long_commands(work, rbm, nade, tmp_path / name)[name]
        result = run(*argv)
        assert_ok(result)
        assert words not in result.stderr and BAR not in result.stderr, result.stderr
