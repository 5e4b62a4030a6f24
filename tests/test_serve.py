"""``gibbsdream serve``: the web page's JSON API, its limits, jobs and the ``on_step`` hook.

Two tiny checkpoints are trained in this process once per session (an 8x8 grayscale Orderless
NADE with 4 levels on random images whose pixels are the four exact 8-bit values, and a 4-hidden
RBM on 4-letter strings) and served through FastAPI's TestClient; one test starts the real
command in a subprocess on 127.0.0.1 with port 0. The browser test (test_serve_browser.py)
reuses the fixtures.

Waiting for a job polls with a generous deadline so that a hung job fails instead of hanging;
nothing here asserts how fast anything is.
"""

import base64
import io
import json
import random
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_harness import ENV, assert_clean_error, assert_ok, gibbsdream_here, one_torch_thread

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # newer Starlette asks for httpx2 here; httpx still works
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from gibbsdream.web import Limits, create_app, load_models

LEVELS, SIDE = 4, 8
EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)  # the 8-bit values of the 4 levels
DEADLINE = 120.0  # seconds a job may take before a test gives up on it (tiny jobs take well under 1)
FOREVER = 200_000  # steps no test job gets near before it is cancelled (each takes well over a microsecond)


# ---- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serve_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def image_model(serve_work) -> Path:
    """A tiny Orderless NADE on 40 random 8x8 grayscale images with 4 levels (one epoch)."""
    rng = np.random.default_rng(5)
    folder = serve_work / "images"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(EXACT[rng.integers(0, LEVELS, (SIDE, SIDE))]).save(folder / f"im{i:02d}.png")
    out = serve_work / "pixels"
    with one_torch_thread():
        assert_ok(
            gibbsdream_here(
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


@pytest.fixture(scope="session")
def captioned_model(serve_work) -> Path:
    """A tiny captioned Orderless NADE on 30 random 8x8 images, two captions each (one epoch)."""
    rng = np.random.default_rng(6)
    folder = serve_work / "captioned-images"
    folder.mkdir()
    colours = ["red", "blue", "green", "black"]
    captions = {}
    for i in range(30):
        Image.fromarray(EXACT[rng.integers(0, LEVELS, (SIDE, SIDE))]).save(folder / f"im{i:02d}.png")
        captions[f"im{i:02d}.png"] = [f"a {colours[i % 4]} Square", f"the {colours[(i + 1) % 4]} square"]
    (folder / "captions.json").write_text(json.dumps(captions))
    out = serve_work / "captioned"
    with one_torch_thread():
        assert_ok(
            gibbsdream_here(
                "train", "nade", "--data", folder, "--levels", LEVELS, "--captions", "--caption-min-count", 1,
                "--width", 4, "--depth", 1, "--epochs", 1, "--quiet", "--device", "cpu", "--out", out,
            )
        )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def string_model(serve_work) -> Path:
    rng = random.Random(3)
    corpus = serve_work / "words.txt"
    corpus.write_text("\n".join("".join(rng.choice("abcd") for _ in range(4)) for _ in range(60)) + "\n")
    out = serve_work / "words"
    with one_torch_thread():
        assert_ok(
            gibbsdream_here(
                "train",
                "rbm",
                "--data",
                corpus,
                "--hidden",
                4,
                "--epochs",
                1,
                "--quiet",
                "--device",
                "cpu",
                "--out",
                out,
            )
        )
    return out


def make_client(paths, **limits) -> TestClient:
    # localhost: the server answers to loopback names only (TestClient's own default is "testserver")
    return TestClient(create_app(load_models(paths, "cpu"), Limits(**limits)), base_url="http://localhost")


@pytest.fixture(scope="module")
def client(image_model, string_model):
    with make_client([image_model, string_model]) as c:
        yield c


def wait(client, job_id: str, until=("done", "cancelled", "failed")) -> dict:
    stop = time.monotonic() + DEADLINE
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in until:
            return status
        assert time.monotonic() < stop, f"job still {status['state']} at step {status['step']}"
        time.sleep(0.02)


def wait_for_step(client, job_id: str, step: int = 1) -> dict:
    stop = time.monotonic() + DEADLINE
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["step"] >= step or status["state"] not in ("queued", "running"):
            return status
        assert time.monotonic() < stop, "the job never started"
        time.sleep(0.01)


def png_pixels(payload: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as img:
        return np.asarray(img).copy()


def data_url_pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return png_pixels(base64.b64decode(url.partition(",")[2]))


def data_url(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def error_of(response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def inpaint(client, **settings) -> dict:
    body = {"model": "pixels", "image": "test:0", "mask": "centre", "steps": 20, "seed": 1, **settings}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def hole_rows(x0, y0, w, h) -> list:
    rows = [[0] * SIDE for _ in range(SIDE)]
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            rows[y][x] = 1
    return rows


# ---- the sampler hook ----------------------------------------------------------------------------------


def test_on_step_sees_every_step_and_leaves_the_samples_alone(image_model, string_model):
    """The callback is told about every step, and the random stream is the same with or without it."""
    from gibbsdream import sample
    from gibbsdream.checkpoint import load_checkpoint

    nade = load_checkpoint(image_model, family="nade")
    x = nade.data["test"][:3]
    known = torch.ones_like(x, dtype=torch.bool)
    known[:, :, 2:6, 2:6] = False
    for sampler, steps in (("gibbs", 7), ("ancestral-gibbs", 3), ("ancestral", None)):
        seen = []
        kwargs = dict(x=x, known=known, sampler=sampler, steps=steps or 1, temperature="1.5:0.5", seed=4)
        with_hook = sample(
            nade.model, **kwargs, on_step=lambda n, s, t, seen=seen: seen.append((n, s.clone(), t.clone()))
        )
        plain = sample(nade.model, **kwargs)
        assert torch.equal(with_hook.samples, plain.samples), sampler
        total = plain.settings["steps"]
        assert [n for n, _, _ in seen] == list(range(total + 1)), sampler
        assert torch.equal(seen[-1][1], plain.samples)
        assert torch.allclose(torch.stack([t for _, _, t in seen]), plain.energy, equal_nan=True)

    rbm = load_checkpoint(string_model, family="rbm")
    seen = []
    kwargs = dict(num_chains=5, steps=9, temperature="2:0.5", seed=2, final="argmax")
    with_hook = sample(rbm.model, **kwargs, on_step=lambda n, v, e: seen.append((n, v.clone(), e.clone())))
    plain = sample(rbm.model, **kwargs, engine="torch")  # a hook needs the torch engine: like with like
    assert torch.equal(with_hook.samples, plain.samples) and torch.equal(with_hook.energy, plain.energy)
    assert [n for n, _, _ in seen] == list(range(10))
    assert torch.equal(seen[-1][1], plain.samples)
    assert torch.equal(torch.stack([e for _, _, e in seen]), plain.energy)


def test_an_exception_from_on_step_stops_the_sampler(string_model):
    from gibbsdream import sample
    from gibbsdream.checkpoint import load_checkpoint

    rbm = load_checkpoint(string_model, family="rbm")
    calls = []

    class Stop(Exception):
        pass

    def hook(n, v, e):
        calls.append(n)
        if n == 3:
            raise Stop

    with pytest.raises(Stop):
        sample(rbm.model, num_chains=2, steps=FOREVER, seed=0, on_step=hook)
    assert calls == [0, 1, 2, 3]


# ---- the page and what it may load ---------------------------------------------------------------------


def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    texts = [page.text]
    for name in ("app.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        texts.append(response.text)
    for text in texts:
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
        assert "@import" not in text and "url(" not in text
    # FastAPI's own docs pages would load scripts from a CDN: they are switched off.
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404


def test_models_are_listed_with_what_the_page_needs(client):
    from gibbsdream.sampling.schedules import DEFAULT_BLOCK

    data = client.get("/api/models").json()
    assert data["block"] == DEFAULT_BLOCK
    by_name = {m["name"]: m for m in data["models"]}
    assert set(by_name) == {"pixels", "words"}
    image, strings = by_name["pixels"], by_name["words"]
    assert (image["family"], image["kind"], image["channels"], image["height"], image["width"], image["levels"]) == (
        "nade",
        "image",
        1,
        SIDE,
        SIDE,
        LEVELS,
    )
    assert image["caption"] is False and image["gallery"] == 4 and image["gallery_split"] == "test"
    assert (strings["family"], strings["kind"], strings["positions"], strings["clamp"]) == (
        "rbm",
        "strings",
        4,
        "prefix",
    )
    assert "uniform" in strings["inits"] and set(strings["alphabet"]) == set("abcd")
    assert data["limits"]["max_jobs"] == 2 and data["limits"]["max_steps"] == 2000


def test_the_gallery_offers_the_held_out_images_captions(captioned_model, image_model):
    """A captioned model's gallery items carry their captions as the model reads them (the page
    offers them in the caption field); a model without captions gets none."""
    from gibbsdream.checkpoint import load_checkpoint

    folder = captioned_model.parent / "captioned-images"
    captions = json.loads((folder / "captions.json").read_text())
    with make_client([captioned_model, image_model]) as c:
        items = c.get("/api/models/captioned/images").json()["images"]
        test = load_checkpoint(captioned_model, family="nade").data["test"]
        # which files are held out: match the test split's pixels against the folder's images
        pixels = {name: np.asarray(Image.open(folder / name)) for name in captions}
        held_out = [
            next(n for n, p in pixels.items() if np.array_equal(EXACT[test[k, 0].numpy()], p))
            for k in range(len(items))
        ]
        assert [item["captions"] for item in items] == [[t.lower() for t in captions[n]] for n in held_out]
        assert all("captions" not in item for item in c.get("/api/models/pixels/images").json()["images"])


def test_gallery_and_masks(client, image_model):
    from gibbsdream.checkpoint import load_checkpoint

    gallery = client.get("/api/models/pixels/images").json()
    assert [item["id"] for item in gallery["images"]] == ["test:0", "test:1", "test:2", "test:3"]
    test = load_checkpoint(image_model, family="nade").data["test"]
    assert np.array_equal(data_url_pixels(gallery["images"][2]["png"]), EXACT[test[2, 0].numpy()])
    centre = client.post("/api/models/pixels/mask", json={"spec": "centre"}).json()["hole"]
    assert np.array_equal(np.array(centre), np.array(hole_rows(2, 2, 4, 4)))
    box = client.post("/api/models/pixels/mask", json={"spec": "box:1,2,3,1"}).json()["hole"]
    assert np.array_equal(np.array(box), np.array(hole_rows(1, 2, 3, 1)))
    a = client.post("/api/models/pixels/mask", json={"spec": "random:0.5", "seed": 3}).json()["hole"]
    assert a == client.post("/api/models/pixels/mask", json={"spec": "random:0.5", "seed": 3}).json()["hole"]
    assert "box:1,2,30,1" in error_of(client.post("/api/models/pixels/mask", json={"spec": "box:1,2,30,1"}))
    # A web request never gets to name a file on the server as its mask.
    assert "unknown mask" in error_of(
        client.post("/api/models/pixels/mask", json={"spec": str(image_model / "config.json")})
    )


# ---- image jobs ------------------------------------------------------------------------------------------


def test_an_inpainting_runs_to_the_end_and_keeps_the_known_pixels(client, image_model):
    from gibbsdream.checkpoint import load_checkpoint

    original = EXACT[load_checkpoint(image_model, family="nade").data["test"][1, 0].numpy()]
    hole = hole_rows(1, 3, 5, 3)
    job = inpaint(client, image="test:1", mask=hole, steps=30, temperature="1.5:0.5", block="0.5")
    assert job["steps"] == 30
    status = wait(client, job["id"])
    assert status["state"] == "done", status["error"]
    assert status["step"] == 30 and len(status["trace"]["mean"]) == 31
    result = png_pixels(client.get(status["result"]["png"]).content)
    known = np.array(hole) == 0
    assert np.array_equal(result[known], original[known])
    assert np.array_equal(data_url_pixels(status["frame"]), result)  # the last frame is the result
    mixing = status["result"]["diagnostics"]  # one chain: split R-hat compares its two halves
    assert mixing["draws"] == 16 and mixing["chains"] == 1, mixing
    assert mixing["text"].startswith("diagnostics of the trace"), mixing
    gif = client.get(status["result"]["gif"])
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content[:6] == b"GIF89a"
    # Same settings, same seed: the same picture.
    again = wait(client, inpaint(client, image="test:1", mask=hole, steps=30, temperature="1.5:0.5", block="0.5")["id"])
    assert np.array_equal(png_pixels(client.get(again["result"]["png"]).content), result)


def test_the_same_job_as_the_python_api(client, image_model):
    """What the page shows is what ``gibbsdream.sample`` gives for the same settings and seed."""
    from gibbsdream import sample
    from gibbsdream.checkpoint import load_checkpoint
    from gibbsdream.data.masks import mask_from_array

    ckpt = load_checkpoint(image_model, family="nade")
    hole = hole_rows(2, 1, 3, 4)
    status = wait(client, inpaint(client, image="test:3", mask=hole, steps=12, sampler="ancestral-gibbs", seed=9)["id"])
    x = ckpt.data["test"][3:4]
    known = mask_from_array(torch.tensor(hole), (1, SIDE, SIDE))[None]
    chain = sample(ckpt.model, x=x, known=known, sampler="ancestral-gibbs", steps=12, seed=9)
    expected = EXACT[chain.samples[0, 0].numpy()]
    assert np.array_equal(png_pixels(client.get(status["result"]["png"]).content), expected)


def test_ancestral_jobs_take_one_step_per_hole_pixel(client):
    status = wait(client, inpaint(client, sampler="ancestral", mask=hole_rows(0, 0, 3, 2))["id"])
    assert status["state"] == "done" and status["steps"] == 6 and status["trace"]["mean"][0] is None


def test_mh_jobs_run_on_small_holes_and_are_refused_on_large_ones(client, monkeypatch):
    import gibbsdream.web.app as web_app

    status = wait(client, inpaint(client, sampler="mh", steps=5, mask=hole_rows(0, 0, 3, 2))["id"])
    assert status["state"] == "done" and status["steps"] == 5
    monkeypatch.setattr(web_app, "MH_MAX_HOLE", 5)
    body = {"model": "pixels", "image": "test:0", "steps": 5, "sampler": "mh", "mask": hole_rows(0, 0, 3, 2)}
    assert "this hole has 6 hidden variables, above 5" in error_of(client.post("/api/jobs", json=body))


def test_an_uploaded_image_is_fitted_to_the_model(client):
    colour = np.zeros((20, 40, 3), dtype=np.uint8)
    colour[:, 20:] = (200, 40, 90)
    answer = client.post("/api/models/pixels/upload", json={"data": data_url(colour)})
    assert answer.status_code == 200, answer.text
    assert "resized from 40x20 to 8x8" in answer.json()["note"]
    fitted = data_url_pixels(answer.json()["png"])
    assert fitted.shape == (SIDE, SIDE) and set(np.unique(fitted)) <= set(EXACT.tolist())
    # The fitted picture (or any picture) can be the job's image.
    status = wait(client, inpaint(client, image=answer.json()["png"])["id"])
    assert status["state"] == "done"
    result = png_pixels(client.get(status["result"]["png"]).content)
    known = np.array(hole_rows(2, 2, 4, 4)) == 0
    assert np.array_equal(result[known], fitted[known])
    exact = EXACT[np.random.default_rng(0).integers(0, LEVELS, (SIDE, SIDE))]
    assert client.post("/api/models/pixels/upload", json={"data": data_url(exact)}).json()["note"] == "used as it is"


def test_uploads_are_read_as_image_files_are(client, tmp_path):
    """16-bit gray and RGBA files give the pixels `gibbsdream inpaint --image FILE` would read."""
    from gibbsdream.data.images import ImageCodec, load_image_file

    codec = ImageCodec(LEVELS, 1, SIDE, SIDE)
    rng = np.random.default_rng(2)
    wide = Image.fromarray(rng.integers(0, 65536, (SIDE, SIDE), dtype=np.uint16))
    rgba = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 4), dtype=np.uint8))
    for name, picture in (("wide.png", wide), ("rgba.png", rgba)):
        picture.save(tmp_path / name)
        url = "data:image/png;base64," + base64.b64encode((tmp_path / name).read_bytes()).decode()
        answer = client.post("/api/models/pixels/upload", json={"data": url})
        assert answer.status_code == 200, answer.text
        expected = codec.decode(codec.encode(load_image_file(tmp_path / name, channels=1)[None]))[0, 0].numpy()
        assert np.array_equal(data_url_pixels(answer.json()["png"]), expected), name


def test_a_request_beyond_the_size_limit_is_refused_before_it_is_read(image_model):
    with make_client([image_model], max_upload_bytes=1000) as c:
        body = b'{"data": "' + b"A" * 200_000 + b'"}'
        message = error_of(
            c.post("/api/models/pixels/upload", content=body, headers={"content-type": "application/json"}), 413
        )
        assert "larger than this server's limit (1 KB of image)" in message


@pytest.mark.parametrize(
    "body, words",
    [
        ({"data": "data:image/png;base64,aGVsbG8gd29ybGQ="}, "not an image"),
        ({"data": "data:image/png;base64,@@@"}, "not valid base64"),
        ({"data": "data:image/png;base64"}, "no comma"),
        ({"data": 5}, "data URL"),
        ({}, "data URL"),
    ],
)
def test_bad_uploads_are_refused_with_a_message(client, body, words):
    assert words in error_of(client.post("/api/models/pixels/upload", json=body))


def test_a_truncated_png_is_refused(client):
    whole = base64.b64decode(data_url(np.zeros((8, 8), dtype=np.uint8)).partition(",")[2])
    cut = "data:image/png;base64," + base64.b64encode(whole[: len(whole) // 2]).decode()
    assert "image" in error_of(client.post("/api/models/pixels/upload", json={"data": cut}))


def test_uploads_beyond_the_limits_are_refused(image_model):
    with make_client([image_model], max_upload_side=32, max_upload_bytes=2000) as c:
        wide = data_url(np.zeros((4, 40), dtype=np.uint8))
        assert "40x4 pixels" in error_of(c.post("/api/models/pixels/upload", json={"data": wide}))
        noise = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
        assert "larger than this server's limit" in error_of(
            c.post("/api/models/pixels/upload", json={"data": data_url(noise)})
        )


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"steps": 2001}, "steps is 2001, above this server's limit of 2000"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": "many"}, "steps must be a whole number"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": "-1"}, "temperature"),
        ({"anneal": "quadratic"}, "unknown anneal"),
        ({"block": "1.5"}, "block"),
        ({"sampler": "metropolis"}, "unknown sampler"),
        ({"block_select": "worst"}, "unknown block selection 'worst'; choose one of random, confidence"),
        ({"sampler": "confidence", "mask_schedule": "square"}, "unknown mask schedule"),
        ({"sampler": "confidence", "choice_temperature": -1}, "choice temperature must lie in [0, 100]"),
        ({"sampler": "confidence", "choice_temperature": "warm"}, "choice temperature must be a number"),
        ({"mask": [[1] * SIDE] * SIDE}, "hides every pixel"),
        ({"mask": [[0] * SIDE] * SIDE}, "hides no pixel"),
        ({"mask": [[1, 0]]}, "8 rows of 8"),
        ({"mask": [[2] * SIDE] * SIDE}, "only 0 (keep) and 1 (hole)"),
        ({"mask": "/etc/passwd"}, "unknown mask"),
        ({"mask": 3}, "mask must be"),
        ({"image": "test:99"}, "no built-in image"),
        ({"image": "secret:0"}, "no built-in image"),
        ({"image": None}, "no image"),
        ({"caption": "a red square"}, "no caption encoder"),
        ({"model": "nope"}, "no model named 'nope'; this server has pixels, words"),
    ],
)
def test_bad_image_jobs_are_refused_with_a_message(client, settings, words):
    body = {"model": "pixels", "image": "test:0", "mask": "centre", "steps": 5, **settings}
    status = 404 if "model" in settings else 400
    assert words in error_of(client.post("/api/jobs", json=body), status)


def test_ancestral_sampling_of_a_big_hole_counts_against_the_step_limit(image_model):
    with make_client([image_model], max_steps=10) as c:
        words = error_of(c.post("/api/jobs", json={"model": "pixels", "image": "test:0", "sampler": "ancestral"}))
        assert "takes 16 model calls, above this server's limit of 10" in words


def test_requests_that_are_not_json_objects_are_refused(client):
    assert "not JSON" in error_of(
        client.post("/api/jobs", content=b"{model", headers={"content-type": "application/json"})
    )
    assert "Content-Type: application/json" in error_of(client.post("/api/jobs", content=b"{}"), 415)
    assert "JSON object" in error_of(client.post("/api/jobs", json=[1, 2]))
    assert "no such job" in error_of(client.get("/api/jobs/nope"), 404)
    assert "since" in error_of(client.get("/api/jobs/nope?since=x"))
    assert "string model" in error_of(client.get("/api/models/words/images"))


# ---- string jobs -------------------------------------------------------------------------------------------


def test_a_string_job_gives_samples_with_energies(client, string_model):
    from gibbsdream import sample
    from gibbsdream.checkpoint import load_checkpoint

    body = {
        "model": "words",
        "chains": 6,
        "steps": 40,
        "temperature": "2:0.5",
        "anneal": "linear",
        "init": "uniform",
        "prefix": "ab",
        "seed": 5,
    }
    status = wait(client, client.post("/api/jobs", json=body).json()["id"])
    assert status["state"] == "done" and status["step"] == 40
    samples = status["samples"]
    assert len(samples) == 6 and all(s["text"].startswith("ab") for s in samples)
    trace = status["trace"]
    assert len(trace["mean"]) == 41
    assert all(lo <= m + 1e-4 and m <= hi + 1e-4 for lo, m, hi in zip(trace["low"], trace["mean"], trace["high"]))
    # The same run through the Python API: the same strings and energies.
    ckpt = load_checkpoint(string_model, family="rbm")
    x, known = ckpt.codec.clamp_prefix("ab")
    chain = sample(
        ckpt.model,
        num_chains=6,
        steps=40,
        temperature="2:0.5",
        anneal="linear",
        x=x,
        known=known,
        seed=5,
        data=ckpt.data["train"],
        codec=ckpt.codec,
    )
    assert [s["text"] for s in samples] == ckpt.codec.decode(chain.samples)
    assert [s["energy"] for s in samples] == pytest.approx(chain.energy[-1].tolist(), abs=1e-4)
    assert min(trace["low"][-1:]) == pytest.approx(min(s["energy"] for s in samples), abs=1e-4)


def test_string_jobs_run_replica_exchange_and_report_its_swap_rates(client):
    body = {"model": "words", "chains": 3, "steps": 12, "sampler": "replica-exchange", "replicas": 3, "seed": 2}
    status = wait(client, client.post("/api/jobs", json=body).json()["id"])
    assert status["state"] == "done", status["error"]
    settings, mixing = status["result"]["settings"], status["result"]["diagnostics"]
    assert len(settings["ladder"]) == 3 and len(mixing["swap_rates"]) == 2
    assert "swap rates" in mixing["text"] and len(status["samples"]) == 3


def test_image_jobs_take_the_block_choice_and_confidence_decoding_settings(client):
    chosen = wait(client, inpaint(client, block_select="confidence", steps=6)["id"])
    assert chosen["state"] == "done" and chosen["result"]["settings"]["block_select"] == "confidence"
    decoded = wait(
        client, inpaint(client, sampler="confidence", steps=4, mask_schedule="pow:2", choice_temperature="0")["id"]
    )
    settings = decoded["result"]["settings"]
    assert decoded["state"] == "done" and settings["mask_schedule"] == "pow:2" and settings["choice_temperature"] == 0
    offered = client.get("/api/models").json()
    assert offered["block_selects"] == ["random", "confidence"] and offered["defaults"]["choice_temperature"] == 4.5
    assert [s["name"] for s in offered["string_samplers"]] == ["gibbs", "replica-exchange"]


def test_polls_send_only_the_new_trace_rows(client):
    status = wait(client, client.post("/api/jobs", json={"model": "words", "chains": 3, "steps": 10}).json()["id"])
    tail = client.get(f"/api/jobs/{status['id']}?since=8").json()["trace"]
    assert tail["start"] == 8 and tail["mean"] == status["trace"]["mean"][8:]


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"chains": 257}, "chains is 257, above this server's limit of 256"),
        ({"steps": 5000}, "steps is 5000, above this server's limit of 2000"),
        ({"init": "magic"}, "unknown init"),
        ({"final": "best"}, "unknown final"),
        ({"prefix": "xyz"}, "cannot be clamped"),
        ({"prefix": "abcdabcd"}, "cannot be clamped"),
        ({"suffix": "ab"}, "padded on the left"),
        ({"caption": "hello"}, "takes no caption"),
        ({"temperature": "1:"}, "temperature"),
        ({"sampler": "mh"}, "unknown sampler 'mh'; choose one of gibbs, replica-exchange"),
        ({"sampler": "replica-exchange", "replicas": 1}, "replicas must be at least 2"),
        ({"sampler": "replica-exchange", "replicas": 33}, "replicas is 33, above this server's limit of 32"),
        ({"sampler": "replica-exchange", "chains": 256, "replicas": 9}, "chains x replicas = 2,304"),
        ({"sampler": "replica-exchange", "final": "argmax"}, "replica exchange ends on a sample"),
        ({"sampler": "replica-exchange", "temperature": "1.5:0.2"}, "give a constant temperature above 0"),
        ({"sampler": "replica-exchange", "temperature": "0"}, "give a constant temperature above 0"),
    ],
)
def test_bad_string_jobs_are_refused_with_a_message(client, settings, words):
    body = {"model": "words", "chains": 2, "steps": 5, **settings}
    assert words in error_of(client.post("/api/jobs", json=body))


# ---- jobs: cancelling, limits, several visitors ---------------------------------------------------------------


def test_a_running_job_can_be_cancelled(image_model, string_model):
    with make_client([image_model, string_model], max_steps=FOREVER) as c:
        for body in (
            {"model": "words", "chains": 2, "steps": FOREVER},
            {"model": "pixels", "image": "test:0", "mask": "centre", "steps": FOREVER},
        ):
            job = c.post("/api/jobs", json=body).json()
            assert wait_for_step(c, job["id"])["state"] == "running"
            assert c.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
            status = wait(c, job["id"])
            assert status["state"] == "cancelled" and 0 < status["step"] < FOREVER
            assert ("samples" if body["model"] == "words" else "frame") in status  # the last state stays on show
        # The cancelled jobs freed their places; downloads say why there are none.
        assert "the job is cancelled" in error_of(c.get(f"/api/jobs/{job['id']}/result.png"))
        assert "the job is cancelled" in error_of(c.get(f"/api/jobs/{job['id']}/chain.gif"))
        status = wait(c, c.post("/api/jobs", json={"model": "words", "chains": 2, "steps": 5}).json()["id"])
        assert status["state"] == "done"
        # Cancelling a finished job changes nothing.
        assert c.post(f"/api/jobs/{status['id']}/cancel").json()["state"] == "done"


def test_jobs_beyond_the_limit_are_refused_until_one_ends(image_model, string_model):
    with make_client([image_model, string_model], max_jobs=2, max_steps=FOREVER) as c:
        long = {"model": "words", "chains": 2, "steps": FOREVER}
        first, second = (c.post("/api/jobs", json=long).json()["id"] for _ in range(2))
        refused = c.post("/api/jobs", json={"model": "pixels", "image": "test:0", "steps": 5})
        assert "the server is busy: 2 jobs are running" in error_of(refused, 429)
        c.post(f"/api/jobs/{first}/cancel")
        assert wait(c, first)["state"] == "cancelled"
        status = wait(c, c.post("/api/jobs", json={"model": "pixels", "image": "test:0", "steps": 5}).json()["id"])
        assert status["state"] == "done"
        c.post(f"/api/jobs/{second}/cancel")
        assert wait(c, second)["state"] == "cancelled"


def test_two_visitors_at_once_each_get_their_own_result(client, image_model):
    """Two inpaintings started together (different images, holes and seeds) end with their own pictures."""
    from gibbsdream.checkpoint import load_checkpoint

    test = load_checkpoint(image_model, family="nade").data["test"]
    asks = [("test:0", hole_rows(0, 0, 4, 4), 11), ("test:2", hole_rows(4, 4, 4, 4), 12)]

    def visit(ask):
        image, hole, seed = ask
        return wait(client, inpaint(client, image=image, mask=hole, seed=seed, steps=40)["id"])

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(visit, asks))
    assert results[0]["id"] != results[1]["id"]
    for (image, hole, _), status in zip(asks, results):
        assert status["state"] == "done"
        picture = png_pixels(client.get(status["result"]["png"]).content)
        known = np.array(hole) == 0
        original = EXACT[test[int(image.split(":")[1]), 0].numpy()]
        assert np.array_equal(picture[known], original[known])


# ---- the command --------------------------------------------------------------------------------------------------


def test_serve_refuses_bad_checkpoints_and_options(serve_work, image_model):
    assert "does not exist" in assert_clean_error(gibbsdream_here("serve", serve_work / "missing"))
    assert "not a gibbsdream checkpoint" in assert_clean_error(gibbsdream_here("serve", serve_work))
    assert "--max-jobs must be >= 1" in assert_clean_error(gibbsdream_here("serve", image_model, "--max-jobs", 0))
    assert "--port must be 0" in assert_clean_error(gibbsdream_here("serve", image_model, "--port", 70000))
    assert "--device" in assert_clean_error(gibbsdream_here("serve", image_model, "--device", "tpu"))
    for name in ("http://example.test", "example.test:80", "a b", "example.test/x"):
        assert "--allow-host takes a bare host name" in assert_clean_error(
            gibbsdream_here("serve", image_model, "--allow-host", name)
        )
    assert "Missing argument" in assert_clean_error(gibbsdream_here("serve"))
    from gibbsdream.web import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        message = assert_clean_error(gibbsdream_here("serve", image_model, "--port", port))
        assert f"cannot listen on 127.0.0.1:{port}" in message and "--port 0" in message
    finally:
        taken.close()


def test_serve_in_a_subprocess_prints_its_address_and_answers(image_model, string_model):
    """The real command; it answers to its own address and --allow-host names only (see test_serve_hostile.py)."""
    import http.client
    import json
    import urllib.request

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gibbsdream.cli",
            "serve",
            image_model,
            string_model,
            "--port",
            "0",
            "--quiet",
            "--device",
            "cpu",
            "--allow-host",
            "gibbsdream.test",
            "--allow-host",
            "Other.Test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("gibbsdream is serving 2 model(s) at http://127.0.0.1:"), line + process.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/models", timeout=60) as response:
            names = [m["name"] for m in json.load(response)["models"]]
        assert names == ["pixels", "words"]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for host, status in (("gibbsdream.test", 200), (f"other.test:{port}", 200), ("evil.test", 400)):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/api/models", headers={"Host": host})
            answer = connection.getresponse()
            assert answer.status == status, (host, answer.read())
            connection.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "Traceback" not in process.stderr.read()
