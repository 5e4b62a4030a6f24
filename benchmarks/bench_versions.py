"""Speed of this tree against another (e.g. the commit before a refactor), in the same run.

Each measurement runs in a fresh process per tree, the trees alternating round after round, so a
slow spell of a shared machine falls on both. Measured:

* ``train rbm`` (the CLI, numba and torch engines): seconds per epoch, from ``history.jsonl``;
* ``train nade`` (the CLI, ``builtin:digits``): seconds per epoch, from ``history.jsonl``;
* RBM block-Gibbs sampling and NADE blocked-Gibbs inpainting steps through ``gibbsdream.sample``
  (an API both trees have), timed in-process after a warm-up, on 8x8 digits and at the seed's size
  (64x64 RGB, 256 levels);
* the training updates of one epoch of ``NADETrainer`` at the seed's size (random images).

Usage::

    git worktree add /tmp/before 86a3c67
    python benchmarks/bench_versions.py --before /tmp/before/src --rounds 5

Prints one row per measurement: the median seconds of each tree and their ratio (after / before).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"

SAMPLING = r"""
import json, sys, time, torch, gibbsdream
torch.manual_seed(0)
kind = sys.argv[1]
if kind == "rbm":
    model = gibbsdream.RBM(12, 128, 27).eval()
    run = lambda: gibbsdream.sample(model, num_chains=200, steps=200, seed=0, engine=sys.argv[2])
elif kind == "nade":
    model = gibbsdream.OrderlessNADE(channels=1, num_categories=17, width=64, depth=6).eval()
    x = torch.zeros(16, 1, 8, 8, dtype=torch.long)
    known = torch.zeros_like(x, dtype=torch.bool)
    run = lambda: gibbsdream.sample(model, x=x, known=known, sampler="gibbs", steps=50, seed=0)
elif kind == "nade64":  # the seed's size: 64x64 RGB, 256 levels, the 32x32 centre hidden
    model = gibbsdream.OrderlessNADE(channels=3, num_categories=256).eval()
    x = torch.randint(0, 256, (int(sys.argv[2]), 3, 64, 64), generator=torch.Generator().manual_seed(0))
    known = torch.ones_like(x, dtype=torch.bool)
    known[:, :, 16:48, 16:48] = False
    run = lambda: gibbsdream.sample(model, x=x, known=known, sampler="gibbs", steps=10, seed=0)
else:  # "nade64-train": the training updates of one epoch of 32 random 64x64 RGB images, batch 8
    from gibbsdream.training.nade import NADETrainConfig, NADETrainer
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 64, 64), generator=g)
    def run():
        model = gibbsdream.OrderlessNADE(channels=3, num_categories=256)
        trainer = NADETrainer(model, NADETrainConfig(epochs=1, batch_size=8), images[:32], images[32:])
        trainer.fit(progress=False)
        return trainer.timings.training
if kind == "nade64-train":
    run()
    print(json.dumps(run()))
    sys.exit()
with torch.no_grad():
    run()
    started = time.perf_counter()
    run()
print(json.dumps(time.perf_counter() - started))
"""


def _epoch_seconds(src: str, command: list[str]) -> float:
    """Median seconds per epoch of a CLI training run under the source tree ``src``."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "run"
        env = {**os.environ, "PYTHONPATH": src}
        subprocess.run([sys.executable, "-m", "gibbsdream", *command, "--out", str(out), "--quiet"], env=env,
                       check=True, capture_output=True)  # fmt: skip
        rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
        return statistics.median(row["seconds"] for row in rows[1:] or rows)  # the first epoch compiles/warms up


def _sampling_seconds(src: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", SAMPLING, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


MEASUREMENTS = {
    "train rbm, numba (s/epoch)": lambda src: _epoch_seconds(
        src, ["train", "rbm", "--data", "builtin:regions", "--epochs", "6", "--engine", "numba", "--device", "cpu"]
    ),
    "train rbm, torch (s/epoch)": lambda src: _epoch_seconds(
        src, ["train", "rbm", "--data", "builtin:regions", "--epochs", "3", "--engine", "torch", "--device", "cpu"]
    ),
    "train nade, digits (s/epoch)": lambda src: _epoch_seconds(
        src,
        [
            "train",
            "nade",
            "--data",
            "builtin:digits",
            "--epochs",
            "3",
            "--width",
            "32",
            "--depth",
            "4",
            "--device",
            "cpu",
        ],
    ),
    "sample rbm 200x200, numba (s)": lambda src: _sampling_seconds(src, "rbm", "numba"),
    "sample rbm 200x200, torch (s)": lambda src: _sampling_seconds(src, "rbm", "torch"),
    "inpaint nade 16 images x 50 steps (s)": lambda src: _sampling_seconds(src, "nade"),
    "inpaint 64x64 RGB 256 levels, 1 image x 10 steps (s)": lambda src: _sampling_seconds(src, "nade64", "1"),
    "inpaint 64x64 RGB 256 levels, 8 images x 10 steps (s)": lambda src: _sampling_seconds(src, "nade64", "8"),
    "train nade 64x64 RGB 256 levels, 32 images, batch 8 (s)": lambda src: _sampling_seconds(src, "nade64-train"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other tree's src/ folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only measurements whose name contains this")
    parser.add_argument("--json", default=None, help="also write the medians and every round here")
    args = parser.parse_args()
    results = {"rounds": args.rounds, "measurements": {}}
    trees = {"before": str(Path(args.before).resolve()), "after": str(HERE)}
    for name, measure in MEASUREMENTS.items():
        if args.only and args.only not in name:
            continue
        times = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree, src in trees.items():
                times[tree].append(measure(src))
        before, after = (statistics.median(times[t]) for t in ("before", "after"))
        print(f"{name:40s} before {before:8.4f}  after {after:8.4f}  after/before {after / before:5.3f}", flush=True)
        results["measurements"][name] = {"before": before, "after": after, "after_over_before": after / before, **times}
    if args.json:
        results["load_average_at_end"] = list(os.getloadavg())
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
