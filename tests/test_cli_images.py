"""The image half of the command line: ``train nade``, ``inpaint``, and the image branches of
``sample`` and ``evaluate``.

One tiny Orderless NADE (6x6 grayscale, 4 levels, width 8, depth 1, one epoch) is trained in
this process once per module and reused. The training images use only the four 8-bit values the
4-level codec shows exactly (0, 85, 170, 255), so known pixels survive a round trip bit for bit;
one test feeds arbitrary 8-bit values and compares after quantising them by hand.

Commands run in this process through ``gibbsdream.cli.main(argv)`` (output captured,
``SystemExit`` turned into an exit code, any other exception into a "Traceback" on stderr), except
for a few real subprocesses that check the installed entry point behaves the same.
"""

import json
import math
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_harness import Result, assert_clean_error, assert_ok, gibbsdream, gibbsdream_here
from gibbsdream.checkpoint import checkpoint_file

run = gibbsdream_here

LEVELS = 4
SIDE = 6
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)  # the 8-bit values of the 4 levels
STEPS = 6
BOX = "box:1,2,3,2"  # columns 1..3, rows 2..3


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def quantise(values: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """8-bit pixels as a K-level codec shows them: round to a level, then back to 8 bits (halves up)."""
    q = np.floor(values.astype(np.float64) * (levels - 1) / 255 + 0.5)
    return np.floor(q * 255 / (levels - 1) + 0.5).astype(np.uint8)


def box_known(x=1, y=2, w=3, h=2) -> np.ndarray:
    known = np.ones((SIDE, SIDE), dtype=bool)
    known[y : y + h, x : x + w] = False
    return known


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (to show that nothing was written or changed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text(encoding="utf-8").splitlines() if line]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(checkpoint_file(folder, "model"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-images")


@pytest.fixture(scope="module")
def images(work) -> Path:
    """40 random 6x6 grayscale PNGs whose pixels are the exact 8-bit values of the 4 levels."""
    rng = np.random.default_rng(1234)
    folder = work / "images"
    for i in range(40):
        save_png(folder / f"im{i:02d}.png", EXACT[rng.integers(0, LEVELS, (SIDE, SIDE))])
    return folder


TRAIN = ["--levels", LEVELS, "--width", 8, "--depth", 1, "--seed", 0, "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(work, images) -> Path:
    out = work / "model"
    assert_ok(run("train", "nade", "--data", images, *TRAIN, "--epochs", 1, "--out", out))
    return out


@pytest.fixture(scope="module")
def rbm(work) -> Path:
    rng = random.Random(7)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join("".join(rng.choice("abcd") for _ in range(4)) for _ in range(40)) + "\n")
    out = work / "rbm"
    assert_ok(
        run("train", "rbm", "--data", corpus, "--hidden", 4, "--epochs", 1, "--out", out, "--quiet", "--device", "cpu")
    )
    return out


@pytest.fixture(scope="module", autouse=True)
def subprocess_runs(work, model, images):
    """A few commands as real subprocesses (each spends seconds importing torch).

    Autouse: they start as soon as the model exists and run in background threads while the
    in-process tests go on; ``{name: Future}`` (plus ``"dir"``), read with ``.result()``.
    """
    folder = work / "subprocess"
    rgb = save_png(folder / "rgb.png", np.zeros((SIDE, SIDE, 3), dtype=np.uint8))
    jobs = {
        "inpaint file": [
            "inpaint",
            model,
            "--image",
            images / "im00.png",
            "--mask",
            BOX,
            "--steps",
            STEPS,
            "--seed",
            3,
            "--out",
            folder / "out.png",
            "--quiet",
            "--device",
            "cpu",
        ],
        "rgb into gray": [
            "inpaint",
            model,
            "--image",
            rgb,
            "--steps",
            STEPS,
            "--out",
            folder / "bad.png",
            "--device",
            "cpu",
        ],
    }
    pool = ThreadPoolExecutor(len(jobs))
    futures = {name: pool.submit(gibbsdream, *argv) for name, argv in jobs.items()}
    yield {**futures, "dir": folder}
    pool.shutdown(wait=True)


# ---- train nade -----------------------------------------------------------------------------------


def test_train_writes_an_image_checkpoint(model):
    for name in (
        "config.json",
        *(checkpoint_file(model, n).name for n in ("model", "data", "trainer")),
        "history.jsonl",
    ):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["family"] == "nade"
    assert config["codec"] == {"kind": "image", "levels": LEVELS, "channels": 1, "height": SIDE, "width": SIDE}
    assert config["trainer"]["epoch"] == 1 and config["trainer"]["batch"] == 0
    split = config["data_source"]["split"]
    assert sum(split.values()) == 40 and split["test"] == 4 and split["validation"] >= 1
    rows = history(model)
    assert [row["epoch"] for row in rows] == [1]
    assert math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["validation_loss"])


def test_resume_continues_to_the_new_total(work, images, model):
    folder = Path(shutil.copytree(model, work / "resumed"))
    assert_ok(run("train", "nade", "--data", images, *TRAIN, "--epochs", 2, "--out", folder, "--resume"))
    rows = history(folder)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[0] == history(model)[0]
    assert json.loads((folder / "config.json").read_text())["trainer"]["epoch"] == 2
    # Resuming is exact: the same weights as two epochs in one go.
    straight = work / "two-epochs"
    loud = [arg for arg in TRAIN if arg != "--quiet"]
    result = run("train", "nade", "--data", images, *loud, "--epochs", 2, "--out", straight)
    assert_ok(result)
    assert f"wrote {straight} (a checkpoint; done: 2 epochs" in result.stderr  # what it made, and where
    assert same_weights(folder, straight)
    assert [r["validation_loss"] for r in history(straight)] == [r["validation_loss"] for r in rows]


def test_resume_with_nothing_left_to_do_changes_nothing(work, images, model):
    folder = Path(shutil.copytree(model, work / "done"))
    before = snapshot(folder)
    result = run("train", "nade", "--data", images, *TRAIN, "--epochs", 1, "--out", folder, "--resume")
    assert_ok(result)
    assert "already has 1 epochs" in result.stderr
    assert snapshot(folder) == before


def test_max_time_stops_mid_epoch_and_resume_finishes_it(work, images):
    """A timed stop saves the place in the epoch; resuming reaches the very weights of an unbroken run."""
    args = ["--data", images, *TRAIN, "--batch-size", 1, "--epochs", 1]
    timed, straight = work / "timed", work / "straight"
    # One epoch is ~30 single-image batches (the first alone, with its warm-up, takes milliseconds):
    # 5 ms stops inside it, usually after a batch or two.
    assert_ok(run("train", "nade", *args, "--max-time", "0.005s", "--out", timed))
    config = json.loads((timed / "config.json").read_text())
    assert config["trainer"]["epoch"] == 0  # stopped inside the first epoch
    assert config["trainer"]["batch"] >= 0  # the batch to continue from (0 only if stopped at once)
    assert config["trainer"]["elapsed"] >= 0.005
    assert history(timed) == []  # no epoch finished
    assert_ok(run("train", "nade", *args, "--out", timed, "--resume"))
    config = json.loads((timed / "config.json").read_text())
    assert (config["trainer"]["epoch"], config["trainer"]["batch"]) == (1, 0)
    assert [row["epoch"] for row in history(timed)] == [1]
    assert_ok(run("train", "nade", *args, "--out", straight))
    assert same_weights(timed, straight)
    assert history(timed)[0]["validation_loss"] == history(straight)[0]["validation_loss"]


# ---- inpaint ------------------------------------------------------------------------------------


def inpaint(model, *args) -> Result:
    return run("inpaint", model, "--steps", STEPS, "--quiet", "--device", "cpu", *args)


def test_inpaint_file_to_file(work, model, images):
    out = work / "inpaint-file" / "out.png"
    assert_ok(inpaint(model, "--image", images / "im00.png", "--mask", BOX, "--out", out))
    given, made = pixels(images / "im00.png"), pixels(out)
    assert made.shape == (SIDE, SIDE) and made.dtype == np.uint8  # grayscale, as the model
    known = box_known()
    np.testing.assert_array_equal(made[known], given[known])
    assert set(np.unique(made[~known])) <= set(EXACT.tolist())  # the hole holds level values


def test_inpaint_keeps_known_pixels_as_the_codec_quantises_them(work, model):
    rng = np.random.default_rng(5)
    given = rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
    given[0, :4] = [42, 43, 127, 128]  # near the boundaries between levels
    source = save_png(work / "odd" / "odd.png", given)
    out = work / "odd" / "out.png"
    assert_ok(inpaint(model, "--image", source, "--mask", BOX, "--out", out))
    made = pixels(out)
    known = box_known()
    np.testing.assert_array_equal(made[known], quantise(given)[known])
    assert set(np.unique(made)) <= set(EXACT.tolist())


def test_inpaint_folder_to_folder_keeps_the_names(work, model, images):
    folder = work / "some"
    folder.mkdir()
    names = ["a.png", "b.png", "c.png"]
    for name, src in zip(names, ["im01.png", "im02.png", "im03.png"]):
        shutil.copy(images / src, folder / name)
    out = work / "some-out"
    assert_ok(inpaint(model, "--image", folder, "--mask", BOX, "--out", out))
    assert sorted(p.name for p in out.iterdir()) == sorted(["comparison.png", *names])
    for name in names:
        np.testing.assert_array_equal(pixels(out / name)[box_known()], pixels(folder / name)[box_known()])


def test_inpaint_heldout(work, model):
    from safetensors.torch import load_file

    out = work / "heldout"
    assert_ok(inpaint(model, "--image", "heldout:3", "--mask", BOX, "--out", out))
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", *[f"heldout-{i:04d}.png" for i in range(3)]]
    test = load_file(checkpoint_file(model, "data"))["test"].long().numpy()  # (N, 1, H, W) levels
    for i in range(3):
        expected = (test[i, 0] * 85).astype(np.uint8)
        np.testing.assert_array_equal(pixels(out / f"heldout-{i:04d}.png")[box_known()], expected[box_known()])


def test_heldout_count_is_capped_at_the_test_split(work, model):
    out = work / "heldout-all"
    assert_ok(inpaint(model, "--image", "heldout:100", "--out", out))
    assert len(list(out.iterdir())) == 4 + 1  # and the comparison


def test_samples_are_named_name_k(work, model, images):
    out = work / "two-samples"
    assert_ok(inpaint(model, "--image", images / "im04.png", "--samples", 2, "--out", out))
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "im04-0.png", "im04-1.png"]
    out = work / "two-samples-heldout"
    assert_ok(inpaint(model, "--image", "heldout:2", "--samples", 2, "--out", out))
    fills = [f"heldout-{i:04d}-{k}.png" for i in range(2) for k in range(2)]
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", *fills]


def test_inpaint_single_file_into_an_existing_folder(work, model, images):
    out = work / "into-folder"
    out.mkdir()
    assert_ok(inpaint(model, "--image", images / "im05.png", "--out", out))
    assert sorted(p.name for p in out.iterdir()) == ["im05-comparison.png", "im05.png"]


def tiles(picture: np.ndarray, rows: int, columns: int) -> list[list[np.ndarray]]:
    """The ``SIDE`` x ``SIDE`` pictures of a grid written with 1-pixel gaps, each scaled back down."""
    step = (picture.shape[0] - 1) // rows  # a picture and the gap after it
    scale = (step - 1) // SIDE
    assert picture.shape[:2] == (rows * step + 1, columns * step + 1)
    return [
        [picture[1 + r * step : 1 + r * step + SIDE * scale : scale, 1 + c * step : 1 + c * step + SIDE * scale : scale]
         for c in range(columns)]
        for r in range(rows)
    ]  # fmt: skip


def test_inpaint_writes_a_comparison_of_originals_holes_and_fills(work, model):
    from safetensors.torch import load_file

    out = work / "compare"
    result = run(
        "inpaint", model, "--image", "heldout:2", "--samples", 3, "--mask", BOX, "--steps", STEPS, "--out", out,
        "--device", "cpu",
    )  # fmt: skip
    assert_ok(result)
    picture = pixels(out / "comparison.png")
    assert picture.shape[2] == 3 and picture.shape[0] >= 64  # RGB (the hole is coloured), big enough to see
    grid = tiles(picture, rows=2, columns=2 + 3)
    test = load_file(checkpoint_file(model, "data"))["test"].long().numpy()  # (N, 1, H, W) levels
    gray = np.stack([np.repeat(EXACT[test[i, 0]][..., None], 3, axis=-1) for i in range(2)])
    for i, row in enumerate(grid):
        np.testing.assert_array_equal(row[0], gray[i])  # the original
        holed = gray[i].copy()
        holed[~box_known()] = (255, 0, 255)
        np.testing.assert_array_equal(row[1], holed)  # its hole, in magenta
        for k in range(3):  # then its fills, as written beside
            fill = pixels(out / f"heldout-{i:04d}-{k}.png")
            np.testing.assert_array_equal(row[2 + k], np.repeat(fill[..., None], 3, axis=-1))
    assert f"wrote 6 files to {out}" in result.stderr and f"wrote {out / 'comparison.png'}" in result.stderr


def test_gif_and_trace(work, model):
    folder = work / "gif"
    gif, trace = folder / "chain.gif", folder / "trace.json"
    result = run(
        "inpaint",
        model,
        "--image",
        "heldout:3",
        "--steps",
        STEPS,
        "--every",
        1,
        "--gif",
        gif,
        "--trace",
        trace,
        "--out",
        folder / "out",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert "inpainted 3 image(s)" in result.stderr  # the summary (not --quiet), and one line per output
    wrote = [line for line in result.stderr.splitlines() if line.startswith("wrote ")]
    assert wrote == [
        f"wrote 3 files to {folder / 'out'}",
        f"wrote {folder / 'out' / 'comparison.png'} (per image: the original, its hole in magenta, then the fills)",
        f"wrote {gif}",
        f"wrote {trace}",
    ]
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.is_animated and image.n_frames > 1
    report = json.loads(trace.read_text(encoding="utf-8"))
    assert report["settings"]["steps"] == STEPS and report["settings"]["sampler"] == "gibbs"
    rows = report["mean_log_prob"]
    assert len(rows) == 3 and all(len(row) == STEPS + 1 for row in rows)
    values = [v for row in rows for v in row if v is not None]
    assert values and all(math.isfinite(v) and v <= 0 for v in values)


def test_ancestral_trace_has_one_value_per_variable(work, model):
    trace = work / "ancestral.json"
    assert_ok(
        inpaint(
            model,
            "--image",
            "heldout:2",
            "--sampler",
            "ancestral",
            "--mask",
            BOX,
            "--trace",
            trace,
            "--out",
            work / "ancestral",
        )
    )
    rows = json.loads(trace.read_text())["mean_log_prob"]
    assert len(rows) == 2 and all(len(row) == 6 + 1 for row in rows)  # the 3x2 hole, one pixel per step


def test_same_seed_same_bytes_other_seed_other_images(work, model):
    def once(name, seed):
        out = work / "seeds" / name
        assert_ok(inpaint(model, "--image", "heldout:4", "--mask", "random:0.5", "--seed", seed, "--out", out))
        return snapshot(out)

    first, again, other = once("a", 5), once("b", 5), once("c", 6)
    assert first == again
    assert first != other  # 4 images x ~18 hidden pixels x 4 levels: a repeat is vanishingly unlikely


def test_gray_file_into_an_rgb_model_is_converted(work, images):
    rgb_model = work / "rgb-model"
    assert_ok(run("train", "nade", "--data", images, *TRAIN, "--channels", 3, "--epochs", 1, "--out", rgb_model))
    out = work / "rgb-out.png"
    assert_ok(inpaint(rgb_model, "--image", images / "im06.png", "--mask", BOX, "--out", out))
    made, given = pixels(out), pixels(images / "im06.png")
    assert made.shape == (SIDE, SIDE, 3)
    for channel in range(3):
        np.testing.assert_array_equal(made[..., channel][box_known()], given[box_known()])


# ---- sample / evaluate ----------------------------------------------------------------------------


def test_sample_writes_pngs_grid_gif_and_trace(work, model):
    out, gif, trace = work / "samples", work / "samples.gif", work / "samples.json"
    result = run(
        "sample", model, "--num-samples", 3, "--steps", STEPS, "--gif", gif, "--trace", trace, "--out", out,
        "--device", "cpu",
    )  # fmt: skip
    assert_ok(result)
    assert [line for line in result.stderr.splitlines() if line.startswith("wrote ")] == [
        f"wrote 3 files to {out} (sample-0000.png ...)",
        f"wrote {out / 'grid.png'} (all the samples in one picture)",
        f"wrote {gif}",
        f"wrote {trace}",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", *[f"sample-{i:04d}.png" for i in range(3)]]
    for i in range(3):
        made = pixels(out / f"sample-{i:04d}.png")
        assert made.shape == (SIDE, SIDE) and set(np.unique(made)) <= set(EXACT.tolist())
    with Image.open(out / "grid.png") as grid:
        assert grid.width > SIDE and grid.height >= SIDE
    with Image.open(gif) as image:
        assert image.is_animated and image.n_frames > 1
    rows = json.loads(trace.read_text())["mean_log_prob"]
    assert len(rows) == 3 and all(len(row) == STEPS + 1 for row in rows)


def test_evaluate_json(model):
    result = run("evaluate", model, "--orders", 2, "--max-images", 3, "--json", "--device", "cpu")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert {
        "nll_nats",
        "bits_per_dim",
        "nll_nats_stderr",
        "single_order_nll_nats",
        "images",
        "dimensions",
        "orders",
    } <= set(report)
    assert report["images"] == 3 and report["dimensions"] == SIDE * SIDE and report["orders"] == 2
    for key in ("nll_nats", "bits_per_dim", "nll_nats_stderr", "single_order_nll_nats"):
        assert math.isfinite(report[key]), key
    assert report["nll_nats"] > 0 and report["nll_nats_stderr"] >= 0
    assert report["bits_per_dim"] == pytest.approx(report["nll_nats"] / (SIDE * SIDE * math.log(2)), rel=1e-12)
    # log-mean-exp over orders >= the mean log-likelihood: the ensemble NLL is never the larger
    assert report["nll_nats"] <= report["single_order_nll_nats"] + 1e-9


def test_evaluate_by_masks(model):
    """--method masks: the mask estimate of the mean single-order NLL, which the order ensemble of
    the same images can only beat (up to noise: its bound is checked against enumeration in
    test_nade_training.py); auto keeps orders for these 36-variable images."""

    def ok(*args):
        result = run("evaluate", model, *args, "--device", "cpu")
        assert_ok(result)
        return result.stdout

    masked = json.loads(ok("--method", "masks", "--masks", 50, "--json"))
    assert masked["method"] == "masks" and masked["masks"] == 50 and "orders" not in masked
    assert masked["nll_nats"] == pytest.approx(masked["single_order_nll_nats"])
    assert math.isfinite(masked["nll_nats"]) and masked["nll_nats_stderr"] > 0
    ordered = json.loads(ok("--orders", 8, "--json"))
    assert ordered["method"] == "orders" and "ensembles" in ordered
    bound = 4 * math.hypot(masked["nll_nats_stderr"], ordered["single_order_nll_nats_stderr"])
    assert abs(masked["nll_nats"] - ordered["single_order_nll_nats"]) < bound
    text = ok("--method", "masks", "--masks", 2)
    assert "2 random masks each" in text and "NLL (mask estimate)" in text


def test_auto_estimates_from_masks_above_the_variables_orders_can_afford():
    from gibbsdream.families.nade import ORDERS_UP_TO_VARIABLES, auto_batch_size, likelihood_method

    assert likelihood_method("auto", ORDERS_UP_TO_VARIABLES) == "orders"
    assert likelihood_method("auto", ORDERS_UP_TO_VARIABLES + 1) == "masks"
    assert likelihood_method("orders", 64 * 64 * 3) == "orders"
    assert auto_batch_size(64, 17) == 1024 and auto_batch_size(64 * 64 * 3, 256) == 21


def test_evaluate_a_folder_as_text(work, model, images):
    folder = work / "evaluate-these"
    folder.mkdir()
    for i in range(6):
        shutil.copy(images / f"im{i:02d}.png", folder / f"e{i}.png")
    result = run("evaluate", model, "--data", folder, "--orders", 1, "--max-images", 5, "--device", "cpu")
    assert_ok(result)
    assert result.stdout.startswith(f"5 images ({folder})")
    assert "bits per dimension" in result.stdout


def test_evaluate_the_training_source_means_its_held_out_split(model, images):
    result = run("evaluate", model, "--data", images, "--orders", 1, "--json", "--device", "cpu")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["data"] == f"held-out test split of {images}"


# ---- bad input ------------------------------------------------------------------------------------


class Case:
    """A private folder for one bad-input case: its inputs and (never written) outputs live here."""

    def __init__(self, folder: Path, model: Path, rbm: Path, images: Path):
        self.dir, self.model, self.rbm, self.images = folder, model, rbm, images
        folder.mkdir(parents=True)

    @property
    def image(self) -> Path:
        return self.images / "im00.png"

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def png(self, name: str, array) -> Path:
        return save_png(self.dir / name, np.asarray(array, dtype=np.uint8))

    def folder_of(self, name: str, array, count: int = 3) -> Path:
        (self.dir / name).mkdir(exist_ok=True)
        for i in range(count):
            self.png(f"{name}/x{i}.png", array)
        return self.dir / name

    def mixed_folder(self) -> Path:
        self.png("mixed/odd.png", np.zeros((5, 5)))
        return self.folder_of("mixed", ZEROS)

    def file(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text, encoding="utf-8")
        return path

    def checkpoint(self) -> Path:
        return Path(shutil.copytree(self.model, self.dir / "checkpoint"))

    def inpaint(self, *args):
        defaults = {"--image": self.image, "--out": self.dir / "out.png", "--steps": STEPS}
        given = set(args[0::2]) if args else set()
        rest = [x for k, v in defaults.items() if k not in given for x in (k, v)]
        return ["inpaint", self.model, *args, *rest]

    def train(self, *args):
        out = [] if "--out" in args else ["--out", self.out]
        data = [] if "--data" in args else ["--data", self.images]
        return [
            "train",
            "nade",
            *data,
            "--levels",
            LEVELS,
            "--width",
            8,
            "--depth",
            1,
            "--epochs",
            1,
            "--quiet",
            *out,
            *args,
        ]


ZEROS = np.zeros((SIDE, SIDE))
# name: (build the command line, a fragment the one-line message must contain)
BAD_INPUT = {
    "image of the wrong size": (lambda c: c.inpaint("--image", c.png("big.png", np.zeros((8, 8)))), "resize it to 6x6"),
    "RGB image into a grayscale model": (
        lambda c: c.inpaint("--image", c.png("rgb.png", np.zeros((SIDE, SIDE, 3)))),
        "convert it to grayscale",
    ),
    "folder of wrong-size images": (
        lambda c: c.inpaint("--image", c.folder_of("big", np.zeros((5, 5))), "--out", c.out),
        "resize them",
    ),
    "mask box:0,0,0,0": (lambda c: c.inpaint("--mask", "box:0,0,0,0"), "w, h >= 1"),
    "mask box outside the image": (lambda c: c.inpaint("--mask", "box:4,4,3,3"), "does not fit"),
    "black MASK.png hides nothing": (lambda c: c.inpaint("--mask", c.png("black.png", ZEROS)), "hides no pixel"),
    "white MASK.png hides everything": (
        lambda c: c.inpaint("--mask", c.png("white.png", ZEROS + 255)),
        "hides every pixel",
    ),
    "mask centre:1 hides everything": (lambda c: c.inpaint("--mask", "centre:1"), "hides every pixel"),
    "mask random:0": (lambda c: c.inpaint("--mask", "random:0"), "random"),
    "MASK.png of the wrong size": (lambda c: c.inpaint("--mask", c.png("small.png", np.zeros((5, 5)))), "5x5"),
    "mask file missing": (lambda c: c.inpaint("--mask", c.dir / "nope.png"), "does not exist"),
    "mask nonsense": (lambda c: c.inpaint("--mask", "nonsense"), "valid forms"),
    "inpaint an RBM checkpoint": (
        lambda c: ["inpaint", c.rbm, "--image", c.image, "--out", c.dir / "out.png"],
        "needs an Orderless NADE",
    ),
    "inpaint a folder that is no checkpoint": (
        lambda c: ["inpaint", c.images, "--image", c.image, "--out", c.out],
        "not a gibbsdream checkpoint",
    ),
    "an image to fill named comparison.png": (
        lambda c: c.inpaint("--image", c.png("named/comparison.png", ZEROS).parent, "--out", c.out),
        "rename it",
    ),
    "--steps 0": (lambda c: c.inpaint("--steps", 0), "--steps"),
    "--steps -1": (lambda c: c.inpaint("--steps", -1), "--steps"),
    "--samples 0": (lambda c: c.inpaint("--samples", 0), "--samples"),
    "--every 0": (lambda c: c.inpaint("--every", 0, "--gif", c.dir / "c.gif"), "--every"),
    "--block 0": (lambda c: c.inpaint("--block", 0), "(0, 1]"),
    "--block 1.5": (lambda c: c.inpaint("--block", 1.5), "(0, 1]"),
    "--block yao:2,0.1,0.7": (lambda c: c.inpaint("--block", "yao:2,0.1,0.7"), "alpha_max"),
    "--block abc": (lambda c: c.inpaint("--block", "abc"), "block"),
    "--temperature -1": (lambda c: c.inpaint("--temperature", -1), "negative"),
    "--temperature abc": (lambda c: c.inpaint("--temperature", "abc"), "temperature"),
    "--sampler nonsense": (lambda c: c.inpaint("--sampler", "nonsense"), "--sampler"),
    "--image missing path": (lambda c: c.inpaint("--image", c.dir / "missing.png"), "does not exist"),
    "--image a text file": (lambda c: c.inpaint("--image", c.file("notes.txt", "hello\n")), "not an image file"),
    "--image heldout:x": (lambda c: c.inpaint("--image", "heldout:x", "--out", c.out), "whole number"),
    "--image heldout:0": (lambda c: c.inpaint("--image", "heldout:0", "--out", c.out), "N >= 1"),
    "--out x.png with a folder input": (
        lambda c: c.inpaint("--image", c.images, "--out", c.dir / "x.png"),
        "pass a folder",
    ),
    "--out x.png with --samples 2": (lambda c: c.inpaint("--samples", 2, "--out", c.dir / "x.png"), "pass a folder"),
    "--out an existing file with a folder input": (
        lambda c: c.inpaint("--image", c.images, "--out", c.file("taken", "keep me\n")),
        "is a file",
    ),
    "--out inside a file": (lambda c: c.inpaint("--out", c.file("taken", "keep me\n") / "out.png"), "is a file"),
    "--gif is a folder": (lambda c: c.inpaint("--gif", c.folder_of("gifdir", ZEROS, 1)), "--gif"),
    "--trace is a folder": (lambda c: c.inpaint("--trace", c.folder_of("tracedir", ZEROS, 1)), "--trace"),
    # sample
    "sample NADE with --prefix": (
        lambda c: ["sample", c.model, "--prefix", "ab", "--out", c.out],
        "--prefix applies to string",
    ),
    "sample RBM with --gif": (lambda c: ["sample", c.rbm, "--gif", c.dir / "c.gif"], "image"),
    "sample --steps 0": (lambda c: ["sample", c.model, "--steps", 0, "--out", c.out], "--steps"),
    "sample --num-samples 0": (lambda c: ["sample", c.model, "--num-samples", 0, "--out", c.out], "--chains"),
    "sample without --out": (lambda c: ["sample", c.model, "--steps", 2], "--out"),
    "sample --out x.png": (lambda c: ["sample", c.model, "--out", c.dir / "x.png"], "folder"),
    "sample --out an existing file": (
        lambda c: ["sample", c.model, "--out", c.file("taken", "keep me\n")],
        "is a file",
    ),
    "sample --gif is a folder": (
        lambda c: ["sample", c.model, "--steps", 2, "--out", c.out, "--gif", c.folder_of("gifdir", ZEROS, 1)],
        "--gif",
    ),
    "sample --block 0": (lambda c: ["sample", c.model, "--block", 0, "--out", c.out], "(0, 1]"),
    "sample --temperature -1": (lambda c: ["sample", c.model, "--temperature", -1, "--out", c.out], "negative"),
    # evaluate
    "evaluate a folder of wrong-size images": (
        lambda c: ["evaluate", c.model, "--data", c.folder_of("big", np.zeros((7, 7)))],
        "resize them",
    ),
    "evaluate an RGB image": (
        lambda c: ["evaluate", c.model, "--data", c.png("rgb.png", np.zeros((6, 6, 3)))],
        "grayscale",
    ),
    "evaluate an empty folder": (
        lambda c: ["evaluate", c.model, "--data", c.folder_of("empty", ZEROS, 0)],
        "no images",
    ),
    "evaluate builtin:nope": (lambda c: ["evaluate", c.model, "--data", "builtin:nope"], "builtin:digits"),
    "evaluate --orders 0": (lambda c: ["evaluate", c.model, "--orders", 0], "--orders"),
    "evaluate --max-images 0": (lambda c: ["evaluate", c.model, "--max-images", 0], "--max-images"),
    "evaluate NADE with --method": (lambda c: ["evaluate", c.model, "--method", "exact"], "string"),
    "evaluate --masks 0": (lambda c: ["evaluate", c.model, "--method", "masks", "--masks", 0], "--masks"),
    "evaluate an RBM by masks": (lambda c: ["evaluate", c.rbm, "--method", "masks"], "image models"),
    # train nade
    "train into an existing checkpoint": (lambda c: c.train("--out", c.checkpoint()), "--resume"),
    "train --out an existing file": (lambda c: c.train("--out", c.file("taken", "keep me\n")), "is a file"),
    "resume a missing checkpoint": (lambda c: c.train("--resume"), "does not exist"),
    "resume an RBM checkpoint": (
        lambda c: c.train("--out", Path(shutil.copytree(c.rbm, c.dir / "rbm")), "--resume"),
        "holds an RBM",
    ),
    "--max-time 0": (lambda c: c.train("--max-time", 0), "positive"),
    "--max-time abc": (lambda c: c.train("--max-time", "abc"), "duration"),
    "--max-time -5": (lambda c: c.train("--max-time", "-5"), "duration"),
    "--levels 1": (lambda c: c.train("--levels", 1), "from 2 to 256"),
    "--levels 300": (lambda c: c.train("--levels", 300), "from 2 to 256"),
    "--dilations a,b": (lambda c: c.train("--dilations", "a,b"), "--dilations"),
    "--dilations 0": (lambda c: c.train("--dilations", "0"), "dilations"),
    "--kernel-size 2": (lambda c: c.train("--kernel-size", 2), "odd"),
    "--masks nonsense": (lambda c: c.train("--masks", "nonsense"), "nonsense"),
    "--test-size -1": (lambda c: c.train("--test-size", -1), ">= 0"),
    "--test-size all images": (lambda c: c.train("--test-size", 40), "--test-size"),
    "--validation-fraction 0": (lambda c: c.train("--validation-fraction", 0), "--validation-fraction"),
    "train builtin:nope": (lambda c: c.train("--data", "builtin:nope"), "builtin:digits"),
    "train a missing folder": (lambda c: c.train("--data", c.dir / "missing"), "does not exist"),
    "train a text file": (lambda c: c.train("--data", c.file("notes.txt", "hi\n")), "not an image file"),
    "train --size with a folder": (lambda c: c.train("--size", 16), "builtin:shapes"),
    "train images of mixed sizes": (lambda c: c.train("--data", c.mixed_folder()), "different sizes"),
}


@pytest.fixture(scope="module")
def bad_runs(work, model, rbm, images) -> dict:
    """Run every bad-input case in its own folder: ``{name: (Result, files before, files after)}``.

    ``"shared"`` holds the files of the shared model, RBM and images before and after all of them.
    """

    def shared():
        return {"model": snapshot(model), "rbm": snapshot(rbm), "images": snapshot(images)}

    shared_before = shared()
    results = {}
    for index, (name, (build, _)) in enumerate(BAD_INPUT.items()):
        case = Case(work / "bad" / f"case{index:02d}", model, rbm, images)
        argv = build(case)
        if "--device" not in argv:
            argv += ["--device", "cpu"]
        before = snapshot(case.dir)
        result = run(*argv)
        results[name] = (result, before, snapshot(case.dir))
    results["shared"] = (shared_before, shared())
    return results


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_cleanly(bad_runs, case):
    result, before, after = bad_runs[case]
    message = assert_clean_error(result)
    assert BAD_INPUT[case][1] in message, message
    assert after == before, "a failed command wrote or changed files"


def test_bad_input_leaves_the_shared_inputs_alone(bad_runs):
    before, after = bad_runs["shared"]
    assert after == before


# ---- real subprocesses ----------------------------------------------------------------------------


def test_inpaint_in_a_subprocess(subprocess_runs, images):
    result = subprocess_runs["inpaint file"].result()
    assert_ok(result)
    made = pixels(subprocess_runs["dir"] / "out.png")
    np.testing.assert_array_equal(made[box_known()], pixels(images / "im00.png")[box_known()])


def test_bad_input_in_a_subprocess(subprocess_runs, model):
    message = assert_clean_error(subprocess_runs["rgb into gray"].result())
    assert "convert it to grayscale" in message
    assert not (subprocess_runs["dir"] / "bad.png").exists()


def test_single_file_inpaint_is_quiet(subprocess_runs):
    result = subprocess_runs["inpaint file"].result()
    assert_ok(result)
    assert result.stderr == ""  # --quiet


def test_confidence_decoding_takes_its_own_default_steps(work, model):
    """Without --steps, confidence decoding runs MaskGIT's 16 steps, not the Gibbs samplers' 200
    (the trace has one row per step and the start)."""
    import json

    trace = work / "confidence-trace.json"
    args = ("inpaint", model, "--quiet", "--device", "cpu", "--image", "heldout:1", "--sampler", "confidence")
    assert_ok(run(*args, "--trace", trace, "--out", work / "confidence"))
    assert json.loads(trace.read_text())["settings"]["steps"] == 16
    assert_ok(run(*args, "--steps", "3", "--trace", trace, "--out", work / "confidence-3"))
    assert json.loads(trace.read_text())["settings"]["steps"] == 3
