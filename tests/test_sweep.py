"""``gibbsdream sweep``: grids, cells, the report folder, resuming, processes and bad input.

Two tiny checkpoints are trained once per module (an RBM over 4-letter strings and a 6x6
grayscale Orderless NADE with 4 levels). The checks that matter: each row really ran its own
settings (it equals a direct ``gibbsdream.sample`` call with them and the same seed), rows do
not depend on the number of processes, a resumed sweep redoes only the missing cells, and the
page links only to files in its own folder.
"""

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cli_harness import assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.checkpoint import load_checkpoint
from gibbsdream.data.images import save_png
from gibbsdream.errors import UsageError
from gibbsdream.report import write_report
from gibbsdream.sampling import sample
from gibbsdream.summary import string_records, summarize_records
from gibbsdream.sweep import GRID_NAMES, SweepSpec, combinations, load_cells, parse_grid, run_sweep, valid_names

run = gibbsdream_here
LEVELS, SIDE = 4, 6
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def rbm(work) -> Path:
    rng = random.Random(5)
    corpus = work / "words.txt"
    corpus.write_text("\n".join("".join(rng.choice("abcde") for _ in range(4)) for _ in range(60)) + "\n")
    out = work / "rbm"
    assert_ok(
        run("train", "rbm", "--data", corpus, "--hidden", 8, "--epochs", 2, "--out", out, "--quiet", "--device", "cpu")
    )
    return out


@pytest.fixture(scope="module")
def nade(work) -> Path:
    rng = np.random.default_rng(3)
    folder = work / "images"
    for i in range(30):
        save_png(folder / f"im{i:02d}.png", EXACT[rng.integers(0, LEVELS, (SIDE, SIDE))])
    out = work / "nade"
    assert_ok(
        run(
            "train",
            "nade",
            "--data",
            folder,
            "--levels",
            LEVELS,
            "--width",
            8,
            "--depth",
            1,
            "--epochs",
            1,
            "--test-size",
            6,
            "--seed",
            0,
            "--quiet",
            "--device",
            "cpu",
            "--out",
            out,
        )
    )
    return out


def _without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# ---- the grid ---------------------------------------------------------------------------------


def test_grid_values_split_on_commas_or_on_semicolons_when_values_hold_commas():
    grid = parse_grid(
        ["temperature=1,0.5,1.5:0.2", "block=0.5;yao:0.9,0.1,0.7", "steps=10", "caption=none;a red square"], "nade"
    )
    assert grid == {
        "temperature": ["1", "0.5", "1.5:0.2"],
        "block": ["0.5", "yao:0.9,0.1,0.7"],
        "steps": [10],
        "caption": [None, "a red square"],
    }


@given(st.lists(st.integers(1, 3), min_size=1, max_size=4))
@settings(max_examples=25, deadline=None)
def test_combinations_are_the_whole_product_with_defaults_filled_in(sizes):
    names = ["temperature", "anneal", "steps", "init"][: len(sizes)]
    values = {
        "temperature": ["1", "0.5", "2"],
        "anneal": ["geometric", "linear", "cosine"],
        "steps": [1, 2, 3],
        "init": ["uniform", "zeros", "biases"],
    }
    grid = {name: values[name][:size] for name, size in zip(names, sizes)}
    cells = combinations(grid, "rbm")
    assert len(cells) == int(np.prod(sizes))
    assert len({json.dumps(c, sort_keys=True) for c in cells}) == len(cells)
    for cell in cells:
        assert set(cell) == set(valid_names("rbm"))
        assert all(cell[name] in grid[name] for name in names)


@pytest.mark.parametrize(
    ("entries", "family", "words"),
    [
        ([], "rbm", ["empty", "temperature", "init"]),
        (["temp=1,2"], "rbm", ["unknown grid name 'temp'", "temperature, anneal, steps, init, final"]),
        (["block=0.5"], "rbm", ["image (NADE)", "string (RBM)", "temperature"]),
        (["init=uniform"], "nade", ["string (RBM)", "block, sampler, caption"]),
        (["temperature="], "rbm", ["empty value"]),
        (["temperature=1,,2"], "rbm", ["empty value"]),
        (["temperature"], "rbm", ["NAME=V1,V2"]),
        (["temperature=hot"], "rbm", ["temperature", "hot"]),
        (["temperature=-1"], "rbm", ["negative"]),
        (["steps=ten"], "rbm", ["whole number"]),
        (["steps=0"], "rbm", [">= 1"]),
        (["block=1.5"], "nade", ["outside (0, 1]"]),
        (["sampler=metropolis"], "nade", ["gibbs, ancestral-gibbs, ancestral"]),
        (["anneal=fast"], "rbm", ["geometric, linear, cosine"]),
        (["steps=1", "steps=2"], "rbm", ["twice"]),
    ],
)
def test_bad_grids_name_what_is_wrong_and_the_valid_choices(entries, family, words):
    with pytest.raises(UsageError) as caught:
        parse_grid(entries, family)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_every_grid_name_applies_to_some_family():
    assert set(valid_names("rbm")) | set(valid_names("nade")) == set(GRID_NAMES)


# ---- string models ----------------------------------------------------------------------------


def test_rbm_rows_are_what_sample_gives_with_the_same_settings_and_seed(rbm, tmp_path):
    grid = ["temperature=1,2:0.3", "anneal=geometric,linear", "init=uniform,train", "steps=15"]
    spec = SweepSpec.create(rbm, grid, chains=12, seed=4, device="cpu")
    cells = run_sweep(spec, tmp_path / "out", progress=False)
    assert len(cells) == 8
    ckpt = load_checkpoint(rbm)
    corpus = set(ckpt.codec.decode(torch.cat([ckpt.data["train"], ckpt.data["validation"]])))
    energies = set()
    for cell in cells:
        s = cell["settings"]
        chain = sample(
            ckpt.model,
            num_chains=12,
            steps=15,
            temperature=s["temperature"],
            anneal=s["anneal"],
            init=s["init"],
            final=s["final"],
            seed=4,
            data=ckpt.data["train"],
            codec=ckpt.codec,
        )
        records = string_records(chain, ckpt.codec, corpus)
        assert [r["text"] for r in cell["samples"]] == [r["text"] for r in records]
        assert cell["row"]["mean_final_energy"] == pytest.approx(summarize_records(records)["mean_energy"], abs=1e-3)
        assert cell["row"]["in_training_share"] == pytest.approx(
            summarize_records(records)["in_training_share"], abs=1e-4
        )
        assert len(cell["mean_trace"]) == 16
        energies.add(cell["row"]["mean_final_energy"])
    assert len(energies) > 1  # the settings changed something


def test_rbm_report_folder_is_complete_and_offline(rbm, tmp_path):
    out = tmp_path / "report"
    result = run(
        "sweep",
        rbm,
        "--grid",
        "temperature=1,0.5",
        "--grid",
        "steps=10",
        "--chains",
        6,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert_ok(result)
    results = json.loads((out / "results.json").read_text())
    assert [r["settings"]["temperature"] for r in results["rows"]] == ["1", "0.5"]
    for row in results["rows"]:
        assert {"mean_final_energy", "unique_share", "in_training_share", "seconds", "settings"} <= set(row)
        # the chains' mixing and the run's yield, as Chain.diagnostics and the family's generate say
        assert row["rhat"] > 0.9 and row["ess_bulk"] > 0 and row["yield"] >= 0
    page = (out / "index.html").read_text()
    assert "<th>R-hat</th>" in page and "<th>yield / 1,000 chain-sweeps</th>" in page
    for plot in ("trace.png", "energy-diversity.png"):
        assert Image.open(out / plot).size[0] > 300
    _check_offline(page, out)
    assert page.count("<mark>") == 2  # the lowest-energy sample of each row
    assert '<meta name="viewport"' in page
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != ".lock")
    assert f"wrote {len(files)} files to {out}; open {out / 'index.html'}" in result.stderr.splitlines()


def _check_offline(page: str, folder: Path) -> None:
    """Every link and image of the page is a relative path to a file in its folder; no scripts."""
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links
    for link in links:
        assert "://" not in link and not link.startswith(("/", "//")), link
        assert (folder / link).is_file(), link
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_no_two_labels_of_the_score_diversity_plot_overlap():
    """Settings that end alike put their points on top of each other (cells 3 and 6 of the annealing
    sweep in docs/sweeps.md printed their numbers over each other); every label gets a place of its own."""
    from types import SimpleNamespace

    from gibbsdream.report import score_diversity_figure

    spots = [(0.74, -83.7)] * 6 + [(0.745, -83.65), (0.71, -83.7), (0.74, -82.9), (1.0, -69.5), (1.0, -68.4)]
    spots += [(0.05, -84.0), (0.05, -84.3), (0.0, -84.35)]  # the corner: room on one side only
    cells = [
        {"cell": i, "label": f"T={i}", "row": {"diversity": x, "mean_final_energy": y}}
        for i, (x, y) in enumerate(spots)
    ]
    fig = score_diversity_figure(SimpleNamespace(outputs="strings"), cells)
    try:
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        labels = ax.texts
        assert sorted(int(t.get_text()) for t in labels) == list(range(len(spots)))
        boxes = [t.get_window_extent(renderer) for t in labels]
        frame = ax.get_window_extent(renderer)
        for i, a in enumerate(boxes):
            assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1, labels[i]
            for j, b in enumerate(boxes[:i]):
                assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
            for x, y in spots:  # nor does a label cover a marker's centre
                assert not a.contains(*ax.transData.transform((x, y))), labels[i].get_text()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_an_interrupted_sweep_resumes_without_redoing_finished_cells(rbm, tmp_path):
    out = tmp_path / "resume"
    spec = SweepSpec.create(rbm, ["temperature=1,0.7,0.4", "steps=8"], chains=5, device="cpu")
    finished = []

    def stop_after_one(record, done, total):
        finished.append(record["cell"])
        if len(finished) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, progress=False, on_cell=stop_after_one)
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == ["000.json"]
    first = (out / "cells" / "000.json").stat().st_mtime_ns
    again = []
    cells = run_sweep(
        spec, out, progress=False, on_cell=lambda record, done, total: again.append((record["cell"], done))
    )
    assert again == [(1, 2), (2, 3)]
    assert (out / "cells" / "000.json").stat().st_mtime_ns == first
    fresh = run_sweep(spec, tmp_path / "fresh", progress=False)
    assert _without_time([c["row"] for c in cells]) == _without_time([c["row"] for c in fresh])


def test_steps_is_the_one_value_grid_of_steps(rbm, tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    assert_ok(run("sweep", rbm, "--grid", "temperature=1,0.5", "--steps", 3, "--chains", 2, "--out", short, "-q"))
    given = ("--grid", "temperature=1,0.5", "--grid", "steps=3")
    assert_ok(run("sweep", rbm, *given, "--chains", 2, "--out", long, "-q"))
    spec, same = (json.loads((folder / "sweep.json").read_text()) for folder in (short, long))
    assert spec["grid"] == same["grid"] == {"temperature": ["1", "0.5"], "steps": [3]}
    assert [len(json.loads((short / "cells" / f"{i:03d}.json").read_text())["mean_trace"]) for i in (0, 1)] == [4, 4]


def test_a_folder_with_another_sweep_is_refused(rbm, tmp_path):
    out = tmp_path / "taken"
    assert_ok(run("sweep", rbm, "--grid", "steps=3,4", "--chains", 2, "--out", out, "--quiet"))
    message = assert_clean_error(run("sweep", rbm, "--grid", "steps=3,5", "--chains", 2, "--out", out, "--quiet"))
    assert "different sweep" in message
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "other files" in assert_clean_error(run("sweep", rbm, "--grid", "steps=3", "--out", other, "--quiet"))
    assert (other / "notes.txt").read_text() == "mine"


# ---- image models -----------------------------------------------------------------------------


def test_image_rows_match_sample_keep_known_pixels_and_do_not_depend_on_processes(nade, tmp_path):
    grid = ["temperature=1,0", "block=0.5;yao:0.9,0.1,0.7", "steps=6"]
    spec = SweepSpec.create(nade, grid, problems=3, samples=2, mask="centre", seed=2, device="cpu")
    one = run_sweep(spec, tmp_path / "one", progress=False)
    two = run_sweep(spec, tmp_path / "two", workers=2, progress=False)
    assert _without_time([c["row"] for c in one]) == _without_time([c["row"] for c in two])
    ckpt = load_checkpoint(nade)
    x = ckpt.data["test"][:3].repeat_interleave(2, 0)
    from gibbsdream.data.masks import inpaint_masks

    known = inpaint_masks("centre", ckpt.codec.shape, 6)
    for cell in one:
        s = cell["settings"]
        chain = sample(
            ckpt.model.eval(),
            x=x,
            known=known,
            sampler="gibbs",
            steps=6,
            temperature=s["temperature"],
            block=s["block"],
            seed=2,
        )
        assert cell["row"]["mean_final_log_prob"] == pytest.approx(chain.energy[-1].mean().item(), abs=1e-4)
        assert len(cell["gifs"]) == 3
        for gif in cell["gifs"]:
            frames = Image.open(tmp_path / "one" / gif)
            assert frames.n_frames >= 2
        assert 0 <= cell["row"]["diversity"] <= 1 and cell["row"]["hole_psnr_db"] > 0
    cold = [c for c in one if c["settings"]["temperature"] == "0"]
    hot = [c for c in one if c["settings"]["temperature"] == "1"]
    assert sum(c["row"]["mean_final_log_prob"] for c in cold) > sum(c["row"]["mean_final_log_prob"] for c in hot)


def _shaded(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class=best><td class=num data-label="#">(\d+)</td>', page)]


def test_the_shaded_image_row_comes_closest_to_the_truth_not_the_coldest(nade, tmp_path):
    spec = SweepSpec.create(nade, ["temperature=1,0", "block=0.5", "steps=6"], problems=3, samples=2, device="cpu")
    cells = run_sweep(spec, tmp_path, progress=False)
    hot, cold = cells
    # What shaded the coldest row before: its last redraw took every conditional's mode, so the
    # mean log-probability of that redraw (the final trace) is the highest there by construction.
    assert cold["row"]["mean_final_log_prob"] > hot["row"]["mean_final_log_prob"]
    for closest in (hot, cold):  # whichever row's fills come closest to the true images is shaded
        other = cold if closest is hot else hot
        closest["row"]["hole_psnr_db"], other["row"]["hole_psnr_db"] = 9.0, 8.0
        write_report(spec, cells, tmp_path)
        page = (tmp_path / "index.html").read_text()
        assert _shaded(page) == [closest["cell"]] and "highest hole PSNR" in page
    hot["row"]["hole_psnr_db"] = None  # recorded so where the fills equal the truth (no finite PSNR)
    write_report(spec, cells, tmp_path)
    assert _shaded((tmp_path / "index.html").read_text()) == [hot["cell"]]


def _gif_tiles(path: Path, count: int) -> list[list[np.ndarray]]:
    """Per frame of a sweep's GIF, its ``count`` tiles (RGB, scaled back to SIDE x SIDE)."""
    scale = -(-64 // SIDE)  # the GIFs' default: at least 64 pixels a side
    step = SIDE * scale + 1
    frames = []
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            picture = np.asarray(gif.convert("RGB"))
            assert picture.shape[:2] == (step + 1, count * step + 1)
            frames.append([picture[1:step:scale, 1 + c * step : (c + 1) * step : scale] for c in range(count)])
    return frames


def test_image_sweep_gifs_show_the_true_image_first(nade, tmp_path):
    spec = SweepSpec.create(nade, ["steps=4"], problems=2, samples=2, mask="centre", every=1, device="cpu")
    (cell,) = run_sweep(spec, tmp_path, progress=False)
    ckpt = load_checkpoint(nade)
    truth = ckpt.codec.decode(ckpt.data["test"][:2]).permute(0, 2, 3, 1).numpy()  # (2, H, W, 1)
    from gibbsdream.data.masks import inpaint_masks

    hole = ~inpaint_masks("centre", ckpt.codec.shape, 1)[0, 0].numpy()
    for p, gif in enumerate(cell["gifs"]):
        frames = _gif_tiles(tmp_path / gif, 1 + 2)
        assert len(frames) >= 2
        for tiles in frames:  # the true image, unchanging and never painted as a hole
            np.testing.assert_array_equal(tiles[0], np.repeat(truth[p], 3, axis=-1))
        for chain in frames[0][1:]:  # the chains start with their hole shown in magenta
            assert (chain[hole] == (255, 0, 255)).all() and (chain[~hole] == np.repeat(truth[p], 3, -1)[~hole]).all()
    write_report(spec, [cell], tmp_path)
    assert "beside the true image" in (tmp_path / "index.html").read_text()


def test_image_report_via_the_cli_blank_canvas_and_one_sample(nade, tmp_path):
    out = tmp_path / "blank"
    assert_ok(
        run(
            "sweep",
            nade,
            "--grid",
            "sampler=gibbs,ancestral",
            "--grid",
            "steps=4",
            "--mask",
            "blank",
            "--problems",
            2,
            "--samples",
            1,
            "--out",
            out,
            "--quiet",
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 2
    for row in results["rows"]:
        assert row["diversity"] is None and "hole_psnr_db" not in row
    page = (out / "index.html").read_text()
    _check_offline(page, out)
    assert page.count(".gif") == 4  # two rows x two canvases
    cell = json.loads((out / "cells" / "000.json").read_text())
    assert len(_gif_tiles(out / cell["gifs"][0], 1)[0]) == 1  # the chain alone: a blank canvas has no true image
    assert _shaded(page) == [] and "No row is shaded" in page  # no true image: nothing ranks the rows


def test_image_sweep_of_a_folder(nade, tmp_path, work):
    out = tmp_path / "folder"
    assert_ok(
        run(
            "sweep",
            nade,
            "--grid",
            "steps=2,3",
            "--image",
            work / "images",
            "--problems",
            2,
            "--mask",
            "box:1,1,3,3",
            "--out",
            out,
            "--quiet",
        )
    )
    cell = json.loads((out / "cells" / "000.json").read_text())
    assert cell["problems"] == ["im00", "im01"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grid", "chain=3"], ["unknown grid name 'chain'", "temperature"]),
        (["--grid", "block=0.5"], ["image (NADE)", "init"]),
        ([], ["grid is empty"]),
        (["--grid", "temperature="], ["empty value"]),
        (["--grid", "temperature=warm"], ["warm"]),
        (["--grid", "steps=2", "--problems", 3], ["--problems applies to image (NADE) models"]),
        (["--grid", "steps=2", "--chains", 0], ["--chains must be >= 1"]),
        (["--grid", "steps=2", "--steps", 3], ["--steps", "--grid steps", "not both"]),
        (["--steps", 0], ["--steps must be >= 1"]),
    ],
)
def test_bad_sweeps_of_string_models(rbm, tmp_path, args, words):
    message = assert_clean_error(run("sweep", rbm, *args, "--out", tmp_path / "x"))
    for word in words:
        assert word in message
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grid", "init=train"], ["string (RBM)", "block"]),
        (["--grid", "steps=2", "--chains", 3], ["--chains applies to string (RBM) models"]),
        (["--grid", "caption=a red square"], ["without captions"]),
        (["--grid", "steps=2", "--caption", "a cat", "--grid", "caption=none"], ["not both"]),
        (["--grid", "steps=2", "--mask", "blank", "--image", "x.png"], ["blank"]),
        (["--grid", "steps=2", "--image", "missing.png"], ["does not exist"]),
        (["--grid", "steps=2", "--mask", "oval"], ["oval"]),
    ],
)
def test_bad_sweeps_of_image_models(nade, tmp_path, args, words):
    message = assert_clean_error(run("sweep", nade, *args, "--out", tmp_path / "x"))
    for word in words:
        assert word in message


def test_report_can_be_rewritten_from_the_cells_alone(rbm, tmp_path):
    spec = SweepSpec.create(rbm, ["steps=3,6"], chains=3, device="cpu")
    run_sweep(spec, tmp_path, progress=False)
    results = write_report(spec, load_cells(spec, tmp_path), tmp_path, command="by hand")
    assert [r["settings"]["steps"] for r in results["rows"]] == [3, 6]
    assert "by hand" in (tmp_path / "index.html").read_text()


def test_a_caption_grid_steers_a_captioned_model(work, tmp_path):
    model = work / "captioned"
    assert_ok(
        run(
            "train",
            "nade",
            "--data",
            "builtin:shapes",
            "--size",
            16,
            "--count",
            40,
            "--levels",
            4,
            "--captions",
            "--width",
            8,
            "--depth",
            1,
            "--caption-hidden",
            8,
            "--caption-embedding",
            8,
            "--epochs",
            1,
            "--quiet",
            "--device",
            "cpu",
            "--out",
            model,
        )
    )
    out = tmp_path / "captions"
    assert_ok(
        run(
            "sweep",
            model,
            "--grid",
            "caption=none;a red square;a blue circle",
            "--grid",
            "steps=3",
            "--problems",
            2,
            "--out",
            out,
            "--quiet",
        )
    )
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["settings"]["caption"] for r in rows] == [None, "a red square", "a blue circle"]
    assert len({r["mean_final_log_prob"] for r in rows}) == 3  # the caption reaches the model
    assert "a red square" in (out / "index.html").read_text()
    message = assert_clean_error(run("sweep", model, "--grid", "caption=zzz qqq", "--out", tmp_path / "bad"))
    assert "zzz qqq" in message or "unknown" in message
    assert not (tmp_path / "bad").exists()


def test_damaged_cells_are_run_again_and_a_damaged_spec_is_one_line(rbm, tmp_path):
    out = tmp_path / "damaged"
    args = ["sweep", rbm, "--grid", "steps=3,4", "--chains", 2, "--quiet"]
    assert_ok(run(*args, "--out", out))
    before = json.loads((out / "results.json").read_text())
    for damage in ("[]", '{"cell": 1}', "not json"):  # a cell file that is not a whole record
        (out / "cells" / "001.json").write_text(damage)
        assert_ok(run(*args, "--out", out))
        assert _without_time(json.loads((out / "results.json").read_text())["rows"]) == _without_time(before["rows"])
    os.unlink(out / "sweep.json")
    os.mkfifo(out / "sweep.json")  # would block a reader forever
    message = assert_clean_error(run(*args, "--out", out))
    assert "sweep.json is damaged" in message
