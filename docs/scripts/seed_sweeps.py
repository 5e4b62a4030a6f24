"""The seeds' two tables, made with `gibbsdream sweep`: RBM annealing schedules, and inpainting
under temperature x alpha_min x eta. Runs each sweep (resuming any that is half done) into
docs/sweeps/NAME/, then writes docs/sweeps.md from their results.json files.

Run from the repository root, after training the checkpoints named below:

    python docs/scripts/seed_sweeps.py           # runs missing sweeps, then writes the page
    python docs/scripts/seed_sweeps.py --page    # only rewrites the page from the results
    python docs/scripts/seed_sweeps.py --quick --out DIR   # tiny models and grids: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import quick  # docs/scripts/quick.py

import gibbsdream

ROOT = Path(__file__).resolve().parents[2]
INPAINT_GRID = [
    "--grid",
    "temperature=1,0.9,0.5,0",
    "--grid",
    "block=yao:0.5,0.1,0.7;yao:0.5,0.1,0.1;yao:0.5,0.01,0.7;yao:0.5,0.01,0.1",
    "--grid",
    "steps=200",
    "--problems",
    "6",
    "--samples",
    "2",
    "--every",
    "4",
]
SWEEPS = {  # name -> (sweep arguments, how the checkpoint was trained)
    "rbm-annealing": (
        [
            "runs/docs-regions",
            "--grid",
            "temperature=1,0.5,1.5:0.2,2:0.5,1:0.1",
            "--grid",
            "init=uniform,silhouettes",
            "--grid",
            "steps=1000",
            "--chains",
            "200",
        ],
        "python docs/scripts/rbm_annealing.py (train rbm --data builtin:regions --case-fold --max-length 20 "
        "--min-char-count 20 --hidden 256 --epochs 100)",
    ),
    "inpaint-digits": (
        ["runs/digits", *INPAINT_GRID],
        "gibbsdream train nade --data builtin:digits --epochs 150 --lr 2e-3 --max-time 20m --out runs/digits "
        "(as docs/scripts/nade_likelihood.py trains it)",
    ),
    "inpaint-shapes": (
        ["runs/shapes", *INPAINT_GRID],
        "gibbsdream train nade --data builtin:shapes --size 32 --levels 16 --width 48 --depth 6 --dilations 1,2,4,8 "
        "--masks orderless+contiguish --max-time 35m --out runs/shapes",
    ),
}


# --quick: the same three sweeps on tiny models trained here, with small grids (numbers mean nothing).
QUICK_MODELS = {  # name -> (family, data, gibbsdream.train settings)
    "rbm-annealing": ("rbm", "builtin:regions", dict(model={"num_hidden": 16}, training={"epochs": 2})),
    "inpaint-digits": ("nade", "builtin:digits", dict(model={"width": 8, "depth": 2}, training={"epochs": 1})),
    "inpaint-shapes": (
        "nade",
        "builtin:shapes",
        dict(model={"width": 8, "depth": 2}, training={"epochs": 1}, options={"count": 200, "size": 16, "levels": 4}),
    ),
}
QUICK_GRID = ["--grid", "steps=3", "--problems", "2", "--samples", "2", "--every", "1"]
QUICK_SWEEPS = {
    "rbm-annealing": [
        *("--grid", "temperature=1,1.5:0.2", "--grid", "init=uniform,silhouettes", "--grid", "steps=5"),
        *("--chains", "4"),
    ],
    "inpaint-digits": ["--grid", "temperature=1,0", "--grid", "block=yao:0.5,0.1,0.7;yao:0.5,0.1,0.1", *QUICK_GRID],
    "inpaint-shapes": ["--grid", "temperature=1,0", "--grid", "block=yao:0.5,0.1,0.7;yao:0.5,0.1,0.1", *QUICK_GRID],
}


def run_sweeps(docs: Path, quick_run: bool, fresh: bool = False) -> None:
    for name, (args, _) in SWEEPS.items():
        checkpoint = ROOT / args[0]
        if quick_run:
            checkpoint = docs / "runs" / f"quick-{name}"
            family, data, settings = QUICK_MODELS[name]
            if not (checkpoint / "config.json").exists():
                gibbsdream.train(family, data, checkpoint, device="cpu", **settings)
            args = [str(checkpoint), *QUICK_SWEEPS[name], "--quiet"]
        if not (checkpoint / "config.json").exists():
            print(f"skipping {name}: no checkpoint at {args[0]}", file=sys.stderr)
            continue
        out = docs / "sweeps" / name
        if fresh and out.exists():  # a sweep resumes its own folder and refuses another sweep's
            shutil.rmtree(out)
        out = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out  # as the page shows the command
        command = [sys.executable, "-m", "gibbsdream", "sweep", *args, "--out", str(out)]
        print("$", shlex.join(command), file=sys.stderr)
        subprocess.run(command, cwd=ROOT, check=True)


def _load(docs: Path, name: str) -> dict | None:
    path = docs / "sweeps" / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def _model(name: str) -> str:
    """How sweep ``name``'s checkpoint was trained and, where its history.jsonl is here, for how
    many epochs and seconds."""
    args, how = SWEEPS[name]
    path = ROOT / args[0] / "history.jsonl"
    if not path.exists():
        return how
    epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return f"{how}; {len(epochs)} epochs, {sum(e.get('seconds', 0) for e in epochs):.0f} s of training"


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def _mean(rows, key, **where) -> float:
    chosen = [r[key] for r in rows if all(r["settings"][k] == v for k, v in where.items()) and r.get(key) is not None]
    return sum(chosen) / len(chosen)


def rbm_section(results: dict) -> str:
    rows = results["rows"]
    lines = [
        "| # | T | init | mean final energy | lowest | unique | in training data | seconds |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["settings"]
        lines.append(
            f"| {r['cell']} | `{s['temperature']}` | {s['init']} | {r['mean_final_energy']:.1f} | "
            f"{r['lowest_final_energy']:.1f} | {_pct(r['unique_share'])} | {_pct(r['in_training_share'])} | "
            f"{r['seconds']:.1f} |"
        )
    plain, annealed = (
        _mean(rows, "mean_final_energy", temperature="1"),
        _mean(rows, "mean_final_energy", temperature="1.5:0.2"),
    )
    return f"""## RBM: annealing against plain Gibbs sampling

`{results["command"]}`

{results["problems"]}, seed {results["seed"]}; energy is the free energy F(v) at T = 1 (lower is more
probable), whatever temperature a chain ran at. The model: {_model("rbm-annealing")}.
[The report page](sweeps/rbm-annealing/index.html) lists every row's samples, lowest energy first.

{chr(10).join(lines)}

Averaged over both initialisations, annealing 1.5 → 0.2 ends at a mean energy of {annealed:.1f}
against {plain:.1f} for plain T = 1 sampling with the same 1000 sweeps; the price is diversity (the
x axis below). Ending at T = 0.5 keeps most samples distinct at nearly the cold schedules' energy.

![mean free energy over sweeps, one labelled line per combination](sweeps/rbm-annealing/trace.png)
![final energy against the share of unique samples](sweeps/rbm-annealing/energy-diversity.png)
"""


def inpaint_section(docs: Path, name: str, results: dict) -> str:
    rows = results["rows"]
    folder = f"sweeps/{name}"
    lines = [
        "| # | T | block | chains of problem 0 (magenta = the hole) | last redraw log p | diversity | hole PSNR |",
        "|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        s = r["settings"]
        cell = json.loads((docs / folder / "cells" / f"{r['cell']:03d}.json").read_text())
        lines.append(
            f"| {r['cell']} | {s['temperature']} | `{s['block']}` | ![row {r['cell']}]({folder}/{cell['gifs'][0]}) | "
            f"{r['mean_final_log_prob']:.3f} | {r['diversity']:.2f} | {r['hole_psnr_db']:.1f} dB |"
        )
    hot, cold = "1", "0"
    slow, fast = "yao:0.5,0.1,0.7", "yao:0.5,0.1,0.1"
    trend = (
        f"Averaged over the block schedules, going from T = 1 to T = 0 moves the last redraw's mean log-probability "
        f"from {_mean(rows, 'mean_final_log_prob', temperature=hot):.3f} "
        f"to {_mean(rows, 'mean_final_log_prob', temperature=cold):.3f}, "
        f"the diversity between two completions of a problem from {_mean(rows, 'diversity', temperature=hot):.2f} to "
        f"{_mean(rows, 'diversity', temperature=cold):.2f}, "
        f"and the hole PSNR from {_mean(rows, 'hole_psnr_db', temperature=hot):.1f} "
        f"to {_mean(rows, 'hole_psnr_db', temperature=cold):.1f} dB. With α_min = 0.1, η = 0.7 ({slow}) gives "
        f"{_mean(rows, 'mean_final_log_prob', block=slow):.3f} "
        f"and η = 0.1 ({fast}) {_mean(rows, 'mean_final_log_prob', block=fast):.3f} "
        "averaged over temperatures."
    )
    return f"""## Inpainting {name.split("-")[1]}: temperature × α_min × η

`{results["command"]}`

{results["problems"]}, seed {results["seed"]}, 200 Gibbs steps, Yao block schedule with α_max = 0.5. The
model: {_model(name)}. [The report page]({folder}/index.html) shows the GIFs of all six problems per row.

{chr(10).join(lines)}

{trend}

![mean log-probability of the redrawn variables over steps](sweeps/{name}/trace.png)
![last redraw log-probability against diversity](sweeps/{name}/energy-diversity.png)
"""


def write_page(docs: Path) -> None:
    import torch

    sections = []
    rbm = _load(docs, "rbm-annealing")
    if rbm:
        sections.append(rbm_section(rbm))
    for name in ("inpaint-digits", "inpaint-shapes"):
        results = _load(docs, name)
        if results:
            sections.append(inpaint_section(docs, name, results))
    machine = f"{platform.machine()}, 2 cores, torch {torch.__version__}"
    page = f"""# The seeds' tables, made by `gibbsdream sweep`

Each section is one `gibbsdream sweep` command: the same problems and the same seed under every
combination of a grid of sampling settings, so rows differ only by their settings. Each command wrote
a report folder under `docs/sweeps/` (`index.html` works offline; `results.json` holds every figure
below). Made by `python docs/scripts/seed_sweeps.py` on {machine}; times are wall-clock seconds per row
on that machine, which was running other work at the same time.

Reading the image tables: "last redraw log p" is the model's mean log-probability of the variables
redrawn at the last step (higher: the chain settled on fills the model finds likely); "diversity" is
the share of hole pixels where a problem's two completions differ; "hole PSNR" compares the fills with
the true images. A cold chain commits to one plausible completion, which is not the same as the true one.

{chr(10).join(sections)}"""
    (docs / "sweeps.md").write_text(page)
    print(page)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--page", action="store_true", help="only rewrite the page from the sweeps' results")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete each report folder before its sweep (needed after retraining a checkpoint: a sweep "
        "refuses a folder that holds another checkpoint's sweep, and resumes its own)",
    )
    quick.add_options(parser)
    args = parser.parse_args(argv)
    docs = quick.docs_folder(parser, args)
    if not args.page:
        run_sweeps(docs, args.quick, args.fresh)
    write_page(docs)


if __name__ == "__main__":
    main()
