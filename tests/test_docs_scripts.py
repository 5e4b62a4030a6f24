"""The docs scripts rerun: each one's ``--quick`` mode runs the whole pipeline on a tiny model and
writes its page, data and figures where it is told; and they reach models through the front door."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "docs" / "scripts"
# Model work (training, loading, sampling, scoring) must go through gibbsdream.train / load /
# generate / inpaint / evaluate; these modules are what a script would reach past it with.
BEHIND_THE_FRONT_DOOR = (
    "gibbsdream.checkpoint",
    "gibbsdream.sampling",
    "gibbsdream.likelihood",
    "gibbsdream.families",
    "gibbsdream.cli",
    "gibbsdream.summary",
)


def run_quick(script: str, out: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_picture(path: Path) -> None:
    with Image.open(path) as picture:
        picture.load()
        assert picture.width > 1 and picture.height > 1


def behind_the_front_door(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [name for name in names if name.startswith(BEHIND_THE_FRONT_DOOR)]
    return found


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_model_work_goes_through_the_front_door(script):
    assert behind_the_front_door(SCRIPTS / script) == []


def test_the_front_door_check_can_fail(tmp_path):
    reaching = tmp_path / "reaching.py"
    reaching.write_text("import gibbsdream\nfrom gibbsdream.sampling import sample\nimport gibbsdream.checkpoint\n")
    assert behind_the_front_door(reaching) == ["gibbsdream.sampling", "gibbsdream.checkpoint"]


def test_quick_refuses_to_write_over_the_docs():
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "rbm_annealing.py"), "--quick"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 2 and "--quick needs --out" in done.stderr


def test_rbm_annealing_quick(tmp_path):
    run_quick("rbm_annealing.py", tmp_path)
    summary = json.loads((tmp_path / "data" / "rbm-annealing.json").read_text())
    assert len(summary) == 7
    for row in summary.values():
        assert math.isfinite(row["mean_energy"]) and 0 < row["unique_share"] <= 1
    page = (tmp_path / "rbm-annealing.md").read_text()
    assert "| plain Gibbs, T = 1 |" in page and "20 chains per schedule, 30 sweeps each" in page
    assert_picture(tmp_path / "img" / "rbm-annealing-energy.png")


def test_nade_likelihood_quick(tmp_path):
    run_quick("nade_likelihood.py", tmp_path)
    result = json.loads((tmp_path / "data" / "nade-likelihood.json").read_text())
    models = [row["model"] for row in result["rows"]]
    assert models[:2] == ["independent categorical per pixel", "mixture of 3 categoricals (EM, 3 iterations)"]
    assert models[2:] == ["Orderless NADE, ensemble of 1 order", "Orderless NADE, ensemble of 2 orders"]
    assert all(math.isfinite(row["nll_nats"]) and row["nll_nats"] > 0 for row in result["rows"])
    assert result["split"] == {"train": 1350, "validation": 150, "test": 297}
    assert "| Orderless NADE, ensemble of 2 orders |" in (tmp_path / "nade-likelihood.md").read_text()


@pytest.mark.slow  # about 40 s: ancestral sampling of the 16 x 16 shapes makes one network call per pixel
def test_caption_demo_quick(tmp_path):
    run_quick("caption_demo.py", tmp_path)
    result = json.loads((tmp_path / "data" / "captions.json").read_text())
    assert set(result["digits"]["wordings"]) == {"the digit {word}", "a handwritten {digit}", "no caption"}
    assert set(result["shapes"]["captions"]) == {"a red square", "a blue circle", "no caption"}
    assert result["shapes"]["images"] == 4 and len(result["shapes"]["sampler_variants"]) == 3
    figures = tmp_path / "img" / "captions"
    for name in ("digits-captioned.png", "digits-uncaptioned.png", "digits-captioned.gif", "shapes-a-red-square.gif"):
        assert_picture(figures / name)
    assert (tmp_path / "captions.md").read_text().startswith("# Captions: does the caption steer the model?")


def test_seed_sweeps_quick(tmp_path):
    run_quick("seed_sweeps.py", tmp_path)
    page = (tmp_path / "sweeps.md").read_text()
    for name in ("rbm-annealing", "inpaint-digits", "inpaint-shapes"):
        results = json.loads((tmp_path / "sweeps" / name / "results.json").read_text())
        assert len(results["rows"]) == 4  # a 2 x 2 grid each
        assert f"sweeps/{name}/trace.png" in page
        assert_picture(tmp_path / "sweeps" / name / "energy-diversity.png")
    assert page.count("\n## ") == 3


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver") and importlib.util.find_spec("selenium")),
    reason="needs chromium, chromedriver and selenium (apt-get install chromium chromium-driver)",
)
def test_serve_screenshot_quick(tmp_path):
    run_quick("serve_screenshot.py", tmp_path)
    for name, width in (("serve.png", 1280), ("serve-phone.png", 390)):
        with Image.open(tmp_path / "img" / name) as picture:
            assert picture.width == width and picture.height > 300


def _emoji_demo_needs() -> str | None:
    """Why the emoji page's script cannot run here, or None."""
    for module in ("cv2", "skimage", "emoji"):
        if importlib.util.find_spec(module) is None:
            return f"needs {module} (pip install -e '.[test]')"
    from gibbsdream.data.emoji import find_emoji_font
    from gibbsdream.errors import UsageError

    try:
        find_emoji_font()
    except UsageError:
        return "needs a colour emoji font (Debian/Ubuntu: apt install fonts-noto-color-emoji)"
    return None


@pytest.mark.skipif(_emoji_demo_needs() is not None, reason=str(_emoji_demo_needs()))
def test_emoji_demo_quick(tmp_path):
    run_quick("emoji_demo.py", tmp_path)
    result = json.loads((tmp_path / "data" / "emoji.json").read_text())
    models = [row["model"] for row in result["likelihood"]["rows"]]
    assert models[0] == "independent categorical per variable" and models[2].startswith("PNG")
    assert models[-2:] == [
        "Orderless NADE, own caption (2 random masks per image)",
        "Orderless NADE, no caption (the same 2 masks)",
    ]
    assert all(math.isfinite(row["bits_per_dim"]) and row["bits_per_dim"] > 0 for row in result["likelihood"]["rows"])
    assert set(result["inpainting"]["masks"]) == {"centre", "right half", "50% random pixels"}
    for mask in result["inpainting"]["masks"].values():
        assert set(mask["methods"]["NADE, one sample"]["psnr_gain_over"]) == {
            "OpenCV Telea",
            "OpenCV Navier-Stokes",
            "scikit-image biharmonic",
            "1-NN fill",
            "5-NN fill",
        }
    assert set(result["skin"]["captions"]) == {"light skin tone", "dark skin tone", "no caption"}
    figures = tmp_path / "img" / "emoji"
    for name in ("inpainting.png", "inpainting-centre.gif", "skin-steering.png", "generate.png", "generate.gif"):
        assert_picture(figures / name)
    page = (tmp_path / "emoji.md").read_text()
    assert page.startswith("# Emoji at the seed's size") and "| WebP lossless (Pillow, method 6) |" in page
