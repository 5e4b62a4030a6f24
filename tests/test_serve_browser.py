"""``gibbsdream serve`` in a real browser: headless Chromium driven by Selenium.

The page is served by uvicorn on 127.0.0.1 (port 0) in a thread of this process. The browser
paints a hole with mouse drags on the canvas, runs an inpainting and waits for it to finish;
the test then checks, from the picture the page offers for download, that the known pixels are
untouched and the hole changed. A second test dreams strings and reads the table of samples.

The browser resolves no host but 127.0.0.1 and the page's Content-Security-Policy allows this
server only, so a request to anywhere else would show up as a console error, which fails the test.

Needs the system's ``chromium`` and ``chromedriver`` (Debian packages ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them); skipped with the reason when they are absent.
"""

import base64
import io
import os
import shutil
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image

from test_serve import (  # noqa: F401  (shared fixtures)
    EXACT,
    SIDE,
    captioned_model,
    image_model,
    serve_work,
    string_model,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs the system's chromium and chromedriver (apt-get install chromium chromium-driver)",
)
WAIT = 120  # seconds the browser may take for anything before the test gives up (not a speed check)


@pytest.fixture(scope="module")
def server(image_model, string_model, captioned_model):  # noqa: F811
    """The app on 127.0.0.1 with any free port, served by uvicorn in a thread; yields its URL."""
    import uvicorn

    from gibbsdream.web import bind, create_app, load_models
    from gibbsdream.web.server import url_of

    sock = bind("127.0.0.1", 0)
    app = create_app(load_models([image_model, string_model, captioned_model], "cpu"))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield url_of(sock)
    uv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def until(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def console_errors(driver) -> list:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return response.read()


def test_paint_a_hole_and_inpaint_it(server, browser, image_model):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    from gibbsdream.checkpoint import load_checkpoint

    d = browser
    d.get(server + "?model=pixels")
    until(d, lambda d: "pixels to fill" in d.find_element(By.ID, "hole-count").text, "the image and its hole to show")
    from gibbsdream.sampling.registry import sampler_names
    from gibbsdream.sampling.schedules import ANNEAL_KINDS, DEFAULT_BLOCK

    # The sampler and annealing lists are the server's registry's; the block schedule is the library's default.
    assert d.find_element(By.ID, "i-block").get_attribute("value") == DEFAULT_BLOCK
    assert [o.get_attribute("value") for o in Select(d.find_element(By.ID, "i-sampler")).options] == list(
        sampler_names("conditional")
    )
    assert [o.get_attribute("value") for o in Select(d.find_element(By.ID, "i-anneal")).options] == list(ANNEAL_KINDS)
    # each sampler's own settings show only while it is chosen, with the library's defaults
    shown = lambda *ids: [d.find_element(By.ID, i).is_displayed() for i in ids]
    rows = ("block-row", "block-select-row", "mask-schedule-row", "choice-row")
    assert shown(*rows) == [True, True, False, False]
    Select(d.find_element(By.ID, "i-sampler")).select_by_value("confidence")
    assert shown(*rows) == [False, False, True, True]
    assert d.find_element(By.ID, "i-choice-temperature").get_attribute("value") == "4.5"
    assert d.find_element(By.ID, "i-steps").get_attribute("value") == "16"  # confidence decoding's default
    Select(d.find_element(By.ID, "i-sampler")).select_by_value("mh")
    assert shown(*rows) == [True, False, False, False]
    Select(d.find_element(By.ID, "i-sampler")).select_by_value("gibbs")
    assert d.find_element(By.ID, "i-steps").get_attribute("value") == "200"
    d.find_element(By.ID, "mask-clear").click()
    assert d.find_element(By.ID, "hole-count").text.startswith("0 of 64")

    # Paint: a horizontal drag across the upper half, then a short vertical one down the right side.
    canvas = d.find_element(By.ID, "paint")
    side = canvas.size["width"]
    assert side == canvas.size["height"] and side >= 8 * SIDE
    cell = side / SIDE

    def at(col: float, row: float):  # the offset of a cell's centre from the canvas's centre
        return round((col + 0.5) * cell - side / 2), round((row + 0.5) * cell - side / 2)

    Select(d.find_element(By.ID, "brush")).select_by_visible_text("1")
    drag = ActionChains(d)
    drag.move_to_element_with_offset(canvas, *at(1, 2)).click_and_hold()
    for col in range(2, 7):
        drag.move_to_element_with_offset(canvas, *at(col, 2))
    drag.release()
    drag.move_to_element_with_offset(canvas, *at(6, 3)).click_and_hold()
    drag.move_to_element_with_offset(canvas, *at(6, 5)).release()
    drag.perform()
    hole = np.array(d.execute_script("return window.gibbsdream.holeRows()"), dtype=bool)
    expected = np.zeros((SIDE, SIDE), dtype=bool)
    expected[2, 1:7] = True
    expected[3:6, 6] = True
    assert np.array_equal(hole, expected), hole.astype(int)
    assert d.find_element(By.ID, "hole-count").text.startswith("9 of 64")

    steps = d.find_element(By.ID, "i-steps")
    steps.clear()
    steps.send_keys("40")
    seed = d.find_element(By.ID, "i-seed")
    seed.clear()
    seed.send_keys("3")
    d.find_element(By.ID, "i-run").click()
    until(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-last-job-state"), "the job to end")
    assert d.find_element(By.TAG_NAME, "body").get_attribute("data-last-job-state") == "done", d.find_element(
        By.ID, "error"
    ).text
    assert d.find_element(By.ID, "i-status").text.startswith("done: step 40 of 40")
    assert not d.find_element(By.ID, "error").is_displayed()

    link = d.find_element(By.ID, "dl-png")
    assert link.is_displayed() and d.find_element(By.ID, "dl-gif").is_displayed()
    with Image.open(io.BytesIO(fetch(link.get_attribute("href")))) as img:
        result = np.asarray(img).copy()
    original = EXACT[load_checkpoint(image_model, family="nade").data["test"][0, 0].numpy()]
    assert np.array_equal(result[~hole], original[~hole]), "a known pixel changed"
    assert not np.array_equal(result[hole], original[hole]), "the hole was not filled with anything new"
    # The picture on show is the result.
    shown = d.find_element(By.ID, "frame").get_attribute("src")
    with Image.open(io.BytesIO(base64.b64decode(shown.partition(",")[2]))) as img:
        assert np.array_equal(np.asarray(img), result)
    assert fetch(d.find_element(By.ID, "dl-gif").get_attribute("href"))[:6] == b"GIF89a"
    assert console_errors(d) == []


def test_the_caption_field_offers_the_gallery_captions(server, browser):
    """Picking a held-out image fills in its caption unless the user wrote one; the field lists them all."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    d = browser
    d.get(server + "?model=captioned")
    until(d, lambda d: "pixels to fill" in d.find_element(By.ID, "hole-count").text, "the image and its hole to show")
    thumbs = d.find_elements(By.CSS_SELECTOR, "#gallery img")
    captions = d.execute_script(
        "return fetch('/api/models/captioned/images').then((r) => r.json())"
        ".then((g) => g.images.map((i) => i.captions))"
    )
    field = d.find_element(By.ID, "i-caption")
    assert field.is_displayed() and field.get_attribute("value") == captions[0][0]
    offered = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#caption-list option")]
    assert offered == list(dict.fromkeys(t for texts in captions for t in texts))
    thumbs[1].click()
    until(d, lambda d: field.get_attribute("value") == captions[1][0], "the second image's caption")
    field.clear()
    field.send_keys("my own words")
    thumbs[2].click()
    until(d, lambda d: "chosen" in thumbs[2].get_attribute("class"), "the third image to be chosen")
    assert field.get_attribute("value") == "my own words"
    Select(d.find_element(By.ID, "model")).select_by_value("pixels")
    until(d, lambda d: not d.find_element(By.ID, "caption-row").is_displayed(), "the caption field to hide")
    assert console_errors(d) == []


def test_dream_strings_and_see_their_energies(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    d = browser
    d.get(server)
    until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"), "the models to load")
    Select(d.find_element(By.ID, "model")).select_by_value("words")
    until(d, lambda d: d.find_element(By.ID, "string-ui").is_displayed(), "the string settings to show")
    for field, value in (("s-chains", "7"), ("s-steps", "60"), ("s-clamp", "b")):
        box = d.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    d.find_element(By.ID, "s-run").click()
    until(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-last-job-state"), "the job to end")
    assert d.find_element(By.TAG_NAME, "body").get_attribute("data-last-job-state") == "done"
    rows = d.find_elements(By.CSS_SELECTOR, "#samples tbody tr")
    assert len(rows) == 7
    texts = [r.find_element(By.CSS_SELECTOR, "td.text").text.split("\n")[0].split(" in training")[0] for r in rows]
    assert all(t.startswith("b") for t in texts), texts
    energies = [float(r.find_element(By.CSS_SELECTOR, "td.num").text) for r in rows]
    assert energies == sorted(energies)
    assert "best" in rows[0].get_attribute("class")
    # Replica exchange: its replicas field shows, the last-sweep choice hides, and its swap rates are reported.
    Select(d.find_element(By.ID, "s-sampler")).select_by_value("replica-exchange")
    assert d.find_element(By.ID, "replicas-row").is_displayed()
    assert not d.find_element(By.ID, "final-row").is_displayed()
    d.find_element(By.ID, "s-run").click()
    status, error = (lambda d, i=i: d.find_element(By.ID, i) for i in ("s-status", "error"))
    ended = lambda d: "swap rates" in status(d).text or error(d).is_displayed()
    until(d, ended, "the replica-exchange job to end")
    assert not d.find_element(By.ID, "error").is_displayed(), d.find_element(By.ID, "error").text
    assert "swap rates" in d.find_element(By.ID, "s-status").text, d.find_element(By.ID, "s-status").text
    assert len(d.find_elements(By.CSS_SELECTOR, "#samples tbody tr")) == 7
    Select(d.find_element(By.ID, "s-sampler")).select_by_value("gibbs")
    # A request beyond the limits is refused with the server's message on the page.
    chains = d.find_element(By.ID, "s-chains")
    chains.clear()
    chains.send_keys("100000")
    d.find_element(By.ID, "s-run").click()
    until(d, lambda d: d.find_element(By.ID, "error").is_displayed(), "the error message")
    assert "above this server's limit of 256" in d.find_element(By.ID, "error").text
    # The refused request is the only thing the console reports (the browser logs the 400).
    assert all("400" in message for message in console_errors(d))
