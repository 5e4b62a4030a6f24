"""The README's commands, rerun from a fresh clone in a fresh virtual environment, each timed.

What a newcomer does: clone, install, run the demo, then every command of the README's ``bash``
blocks in order, as written, from the clone's folder. The commands are read from the README itself
(continuation lines joined, comments dropped), so the run follows the README as it changes. What a
newcomer brings is made first: ``names.txt`` (the ASCII words of 3-12 letters of the built-in
corpora, 11,234 lines) and ``photos/`` + ``photos-to-fill/`` (64x64 RGB PNGs of random coloured
ellipses and boxes, a stand-in for the user's photos). ``--shorten`` rewrites long time limits
(say ``--max-time 30m`` to ``3m``) and these rewrites are reported beside each command;
``gibbsdream serve`` runs until its page answers, then is stopped. The test command is skipped
unless ``--tests`` (CI runs it on a fresh checkout every session).

Run:  python benchmarks/bench_readme.py --workdir /tmp/readme-run [--tests] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import cpu_name

ROOT = Path(__file__).resolve().parents[1]
# Long time limits of the README, cut for a run that must fit in a session (reported per command).
SHORTEN = {
    "--data photos/ --max-time 30m": "--data photos/ --max-time 3m",
    "train nade --data builtin:shapes --max-time 10m": "train nade --data builtin:shapes --max-time 2m",
    "--data builtin:emoji --captions --max-time 30m": "--data builtin:emoji --captions --max-time 3m",
}


def readme_commands(readme: Path) -> list[str]:
    """The commands of the README's bash blocks, in order: continuations joined, comments dropped."""
    commands, block = [], None
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            block = [] if line.strip() == "```bash" and block is None else None
            continue
        if block is None:
            continue
        line = re.sub(r"\s+#\s.*$", "", line).rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1].rstrip() + " " + line.strip()
        else:
            commands.append(line.strip())
    return commands


def names_like() -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from gibbsdream.data.strings import read_lines

    words = set()
    for name in ("builtin:regions", "builtin:languages", "builtin:countries"):
        for line in read_lines(name):
            words.update(w for w in re.split(r"[\s\-/(),']+", line) if 3 <= len(w) <= 12 and w.isalpha())
    return sorted(w for w in words if w.isascii())


def stand_in_photos(folder: Path, count: int, seed: int) -> None:
    """``count`` 64x64 RGB PNGs: a random background and three random coloured ellipses or boxes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.randrange(48), rng.randrange(48)
            box = (x, y, x + rng.randrange(8, 32), y + rng.randrange(8, 32))
            colour = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        image.save(folder / f"photo-{i:04d}.png")


def run(command: str, folder: Path, env: dict, log) -> dict:
    shortened = command
    for long, short in SHORTEN.items():
        shortened = shortened.replace(long, short)
    started = time.perf_counter()
    if shortened.startswith("gibbsdream serve"):
        server = subprocess.Popen(shortened.split(), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        rc, deadline = None, time.time() + 120
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:7860/", timeout=2) as response:
                    rc = 0 if response.status == 200 else response.status
                break
            except OSError:
                time.sleep(0.2)
        seconds = time.perf_counter() - started
        server.terminate()
        server.wait(30)
        rc = rc if rc is not None else -1
    else:
        rc = subprocess.run(
            ["bash", "-c", shortened], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
        seconds = time.perf_counter() - started
    log.flush()
    return {"command": command, "ran": shortened, "seconds": round(seconds, 1), "rc": rc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then the clone and venv go here")
    parser.add_argument("--repo", default=str(ROOT), help="what to clone (default: this repository)")
    parser.add_argument("--tests", action="store_true", help="also run the README's test command")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    clone, venv = args.workdir / "gibbsdream", args.workdir / "venv"
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    (clone / "names.txt").write_text("\n".join(names_like()) + "\n")
    stand_in_photos(clone / "photos", 400, seed=0)
    stand_in_photos(clone / "photos-to-fill", 4, seed=1)
    results = []
    with open(args.workdir / "log.txt", "w") as log:
        for command in readme_commands(clone / "README.md"):
            if "pytest" in command and not args.tests:
                continue
            log.write(f"\n$ {command}\n")
            log.flush()
            results.append(found := run(command, clone, env, log))
            print(f"{found['seconds']:8.1f} s  rc {found['rc']}  {found['ran']}", flush=True)
    summary = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "commands": results,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if any(r["rc"] != 0 for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
