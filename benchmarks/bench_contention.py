"""The RBM engines on a busy machine: sampling and training, quiet and beside CPU-bound processes.

The numba engine runs its loop on several threads that meet twice per Gibbs step
(:mod:`gibbsdream.kernels.threads`). A meeting needs every worker running at once, so on a machine
whose cores are shared with other processes the way the workers wait decides the speed: this script
measures it. For each condition (quiet, then beside ``--load`` processes that each keep one core
busy with a pure-Python loop) it times, in the same run and alternating:

* **sampling**: the README's ``gibbsdream sample`` workload, 12 chains x 1,000 sweeps of an RBM over
  ``builtin:regions`` (51 positions, 151 symbols, 256 hidden units), by the numba engine on its
  default threads, the numba engine on one thread, and the torch engine;
* **training**: one epoch of persistent CD-1 on the same corpus (batch 64), numba and torch;
* **matmul**: a 1024^3 float32 product by PyTorch, whose rate tells how much of the machine this
  process got.

It reports medians and, per engine, the loaded time over the quiet time, next to the same ratio
for the matmul rate. The model is trained for 3 epochs first (its parameters, not its quality,
set the cost of a sweep).

Run:  python benchmarks/bench_contention.py [--load 2] [--repeats 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from bench_monitoring import seconds, trainer_for
from common import cpu_name
from gibbsdream import __version__ as gibbsdream_version
from gibbsdream.data.strings import read_lines
from gibbsdream.kernels import default_threads
from gibbsdream.models import RBM
from gibbsdream.sampling.rbm_gibbs import gibbs_compiled, gibbs_energy_model
from gibbsdream.training import RBMTrainer

BUSY_LOOP = "import time\nwhile True:\n    sum(range(100000))\n"


def trainer(engine: str, epochs: int = 1) -> RBMTrainer:
    """A persistent-CD trainer on builtin:regions, 256 hidden units, on ``engine``."""
    return trainer_for(read_lines("builtin:regions"), 256, epochs=epochs, engine=engine)


def workloads(model: RBM) -> dict:
    """name -> a function that runs it once (each a fresh start from the same seed)."""
    chains, sweeps = 12, 1000
    temperatures = [1.0] * sweeps

    def start():
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, model.num_categories, (chains, model.num_visible), generator=generator), generator

    def sample_numba(threads=None):
        v, generator = start()
        gibbs_compiled(model, v, sweeps, temperatures, generator=generator, threads=threads)

    def sample_torch():
        v, generator = start()
        gibbs_energy_model(model, v, sweeps, temperatures, generator=generator)

    trainers = {engine: trainer(engine) for engine in ("numba", "torch")}

    def train(engine):
        fitting = trainers[engine]
        fitting.config.epochs += 1  # one more epoch each time
        fitting.fit(progress=False)

    a = torch.randn(1024, 1024)

    def matmul():
        for _ in range(10):
            a @ a

    return {
        "sample numba": sample_numba,
        "sample numba 1 thread": lambda: sample_numba(1),
        "sample torch": sample_torch,
        "train numba": lambda: train("numba"),
        "train torch": lambda: train("torch"),
        "matmul": matmul,
    }


def measure(runs: dict, repeats: int) -> dict:
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, work in runs.items():  # alternating, so that a slow spell hits every workload
            times[name].append(seconds(work))
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes (default: the cores)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    fitted = trainer("auto", epochs=3)
    fitted.fit(progress=False)
    model = fitted.model
    runs = workloads(model)
    measure(runs, 1)  # warm-up: numba's loops load (or compile), PyTorch's pools start
    results = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "numba_threads": default_threads(model.num_hidden),
            "gibbsdream": gibbsdream_version,
        },
        "load_processes": args.load,
        "quiet": measure(runs, args.repeats),
    }
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.load)]
    try:
        time.sleep(1)
        results["loaded"] = measure(runs, args.repeats)
    finally:
        for process in busy:
            process.kill()
    flops = 10 * 2 * 1024**3
    print(f"{args.load} busy processes; medians in seconds; loaded / quiet")
    for name in runs:
        quiet, loaded = results["quiet"][name]["median"], results["loaded"][name]["median"]
        print(f"  {name:24s} quiet {quiet:7.3f}  loaded {loaded:7.3f}  x{loaded / quiet:5.1f}")
    rates = {k: flops / results[k]["matmul"]["median"] / 1e9 for k in ("quiet", "loaded")}
    results["matmul_gflops"] = rates
    print(f"  matmul rate: quiet {rates['quiet']:.0f} GFLOP/s, loaded {rates['loaded']:.0f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
