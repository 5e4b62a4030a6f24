"""Screenshots of ``gibbsdream serve`` for the README, taken with headless Chromium.

Serves the given checkpoints on 127.0.0.1 (any free port) in this process, opens the page at
desktop width with the first image model, picks a held-out image, keeps the centre hole, sets a
caption when the model reads one, runs the inpainting and photographs the page when it is done;
then the same at phone width.

Needs the system's chromium and chromedriver (Debian: apt-get install chromium chromium-driver)
and selenium (pip install -e ".[test]").

Run from the repository root:

    OMP_NUM_THREADS=1 python docs/scripts/serve_screenshot.py runs/shapes-captions runs/demo-regions

writes docs/img/serve.png and docs/img/serve-phone.png (`--out DIR`: DIR/img/ instead; `--quick
--out DIR`: tiny models trained here and a few steps, to check that the script runs).
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

import quick  # docs/scripts/quick.py

import gibbsdream

# --quick: a tiny captioned image model and a tiny string model (their pictures mean nothing).
QUICK_MODELS = {
    "quick-shapes": (
        "nade",
        "builtin:shapes",
        dict(
            model={"width": 8, "depth": 2},
            training={"epochs": 1, "captions": True},
            options={"count": 200, "size": 16, "levels": 4},
        ),
    ),
    "quick-regions": ("rbm", "builtin:regions", dict(model={"num_hidden": 16}, training={"epochs": 1})),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--image", type=int, default=0, help="which gallery image to inpaint")
    parser.add_argument("--caption", default="a purple square")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    quick.add_options(parser)
    args = parser.parse_args(argv)
    docs = quick.docs_folder(parser, args)
    if args.quick:
        args.steps, args.checkpoints = 3, []
        for name, (family, data, settings) in QUICK_MODELS.items():
            folder = docs / "runs" / name
            if not (folder / "config.json").exists():
                gibbsdream.train(family, data, folder, device="cpu", **settings)
            args.checkpoints.append(folder)
    if not args.checkpoints:
        parser.error("give the checkpoints to serve (an image model first), or --quick")

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from gibbsdream.web import bind, create_app, load_models
    from gibbsdream.web.server import url_of

    models = load_models(args.checkpoints, "cpu")
    image_model = next(m for m in models if m.family == "nade")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(models), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-background-networking",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        for width, out in ((1280, docs / "img" / "serve.png"), (390, docs / "img" / "serve-phone.png")):
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            driver.set_window_size(width, 900)
            driver.get(f"{url_of(sock)}?model={image_model.name}")
            wait = WebDriverWait(driver, 120, poll_frequency=0.05)
            wait.until(lambda d: "pixels to fill" in d.find_element(By.ID, "hole-count").text)
            driver.find_elements(By.CSS_SELECTOR, "#gallery img")[args.image].click()
            driver.find_element(By.ID, "mask-centre").click()
            if image_model.has_caption():
                driver.find_element(By.ID, "i-caption").send_keys(args.caption)
            for field, value in (("i-steps", args.steps), ("i-seed", args.seed), ("i-temperature", "1.0:0.7")):
                box = driver.find_element(By.ID, field)
                box.clear()
                box.send_keys(str(value))
            driver.find_element(By.ID, "i-run").click()
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-last-job-state"))
            wait.until(
                lambda d: d.execute_script(
                    "const g = document.getElementById('gif'); return g.complete && g.naturalWidth > 0"
                )
            )
            # The whole page in one picture: a viewport as tall as the page, scrolled to the top.
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
            )
            driver.execute_script("window.scrollTo(0, 0)")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
            print(f"wrote {out} ({width}x{height})")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=30)


if __name__ == "__main__":
    main()
