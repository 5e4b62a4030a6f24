"""Which string sampler for which goal: energy against diversity, yield per second, and mixing.

A categorical RBM is trained on a real word list that the tests never use (``builtin:words``:
Webster's Second, lower-case, at most ``--max-length`` letters), then sampled by every kind of run
the library offers at equal sweeps, from the same uniform starting states and seeds:

- plain Gibbs at T = 1; constant low temperatures; annealed schedules (the RBM seed's finding);
- replica exchange at a low temperature (R replicas per chain on an adaptive ladder, each replica
  swept once a step, so a step costs R sweeps).

Each run keeps every chain's state every ``--every`` sweeps (repeats within a chain dropped) and is
scored by ``gibbsdream.summary.yield_measure``: distinct strings not in the training data that a
character trigram model fitted on the training words rates at least as plausible as the median
held-out word, per 1,000 chain-sweeps and per second. Beside it: the mean free energy of the final
states (lower = likelier under the RBM) and the share of distinct final states, the two axes of
the energy-diversity frontier; and the chains' diagnostics (``Chain.diagnostics``: R-hat and bulk
ESS of the free-energy trace over the second half), whose ESS per second compares plain Gibbs with
replica exchange at the same temperature.

Run:  python benchmarks/bench_string_samplers.py [--json results.json] [--plot frontier.png]
(needs ``pip install -e ".[bench]"`` for the word list; the model is trained into --checkpoint
when missing: 10 epochs, 200 hidden units.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import gibbsdream
from common import machine_facts
from gibbsdream.summary import CharNGram, yield_measure

ROOT = Path(__file__).resolve().parents[1]
# (label, generate options); every run has the same chains, steps, starts and seed
RUNS = (
    ("plain Gibbs, T = 1", dict(temperature="1.0")),
    ("constant T = 0.8", dict(temperature="0.8")),
    ("constant T = 0.7", dict(temperature="0.7")),
    ("constant T = 0.6", dict(temperature="0.6")),
    ("constant T = 0.5", dict(temperature="0.5")),
    ("annealed 1.5 → 0.2", dict(temperature="1.5:0.2")),
    ("annealed 1.5 → 0.5", dict(temperature="1.5:0.5")),
    ("annealed 2.0 → 0.7", dict(temperature="2.0:0.7")),
    ("replica exchange, T = 0.7, R = 8", dict(temperature="0.7", sampler="replica-exchange", replicas=8)),
    ("replica exchange, T = 0.5, R = 8", dict(temperature="0.5", sampler="replica-exchange", replicas=8)),
    ("replica exchange, T = 0.5, R = 4", dict(temperature="0.5", sampler="replica-exchange", replicas=4)),
)


def run_once(ckpt, ngram, heldout, options: dict, chains: int, steps: int, every: int, seed: int) -> dict:
    """One run: its yield, frontier coordinates and diagnostics."""
    replicas = options.get("replicas", 1) if options.get("sampler") == "replica-exchange" else 1
    dream = gibbsdream.generate(
        ckpt, num_samples=chains, steps=steps, init="uniform", every=every, dedupe=True, seed=seed, **options
    )
    seconds = dream.seconds  # the sampling alone (not decoding, nor checking novelty against 140k words)
    chain = dream.chain
    final = chain.samples
    texts = ckpt.codec.decode(final)
    sweeps = chains * steps * replicas
    yielded = yield_measure(dream.records, ngram, heldout, sweeps, seconds)
    diag = chain.diagnostics()
    return {
        "seed": seed,
        "seconds": seconds,
        "chain_sweeps": sweeps,
        "records": len(dream.records),
        "yield": yielded["yield"],
        "new_distinct": yielded["new_distinct"],
        "yield_per_1000_chain_sweeps": yielded["per_1000_chain_sweeps"],
        "yield_per_second": yielded["per_second"],
        "final_mean_free_energy": float(chain.final_trace.double().mean()),
        "final_distinct_share": len(set(texts)) / len(texts),
        "final_in_training_share": sum(r["in_training_data"] for r in dream.records if r["step"] == steps)
        / max(1, sum(r["step"] == steps for r in dream.records)),
        "rhat": diag["rhat"],
        "ess_bulk": diag["ess_bulk"],
        "ess_bulk_per_second": None if diag["ess_bulk"] is None else diag["ess_bulk"] / seconds,
        "swap_rates": chain.settings.get("swap_rates"),
        "ladder": chain.settings.get("ladder"),
        "examples": texts[:12],
    }


def summarise(runs: list[dict], key: str) -> dict:
    values = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
    if not len(values):
        return {"mean": None, "sd": None}
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "bench-words")
    parser.add_argument("--max-length", type=int, default=10, help="longest word kept")
    parser.add_argument("--chains", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (a replica-exchange step: R sweeps)")
    parser.add_argument("--every", type=int, default=25, help="keep each chain's state every this many steps")
    parser.add_argument("--seeds", type=int, default=3, help="repeats of every run (seeds 0, 1, ...)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw the frontier and the yields here (PNG)")
    parser.add_argument("--replot", type=Path, help="only draw --plot from this earlier --json result")
    args = parser.parse_args()
    if args.replot:
        report = json.loads(args.replot.read_text())
        for key in ("max_length", "chains", "steps", "seeds"):
            setattr(args, key, report[key])
        plot(report["results"], args.plot, args)
        return

    started = time.perf_counter()
    if not (args.checkpoint / "config.json").exists():
        gibbsdream.train(
            "rbm",
            "builtin:words",
            args.checkpoint,
            model={"num_hidden": 200},
            training={"epochs": 10, "seed": 0},
            options={"max_length": args.max_length},
            device="cpu",
        )
    train_seconds = time.perf_counter() - started
    ckpt = gibbsdream.load(args.checkpoint, device="cpu", family="rbm")
    print(
        f"model: {ckpt.model.num_visible} positions x {ckpt.model.num_categories} categories, "
        f"{ckpt.model.num_hidden} hidden; {len(ckpt.data['train'])} training words "
        f"({train_seconds:.0f} s to train or load)",
        flush=True,
    )
    # the yardstick of gibbsdream.families.rbm.string_yield, fitted once for every run
    ngram = CharNGram().fit(ckpt.codec.decode(ckpt.data["train"]))
    heldout = ckpt.codec.decode(ckpt.data["validation"])
    results = []
    for label, options in RUNS:
        runs = [
            run_once(ckpt, ngram, heldout, options, args.chains, args.steps, args.every, seed)
            for seed in range(args.seeds)
        ]
        row = {"run": label, "options": options, "repeats": runs}
        for key in (
            "seconds",
            "yield",
            "yield_per_1000_chain_sweeps",
            "yield_per_second",
            "final_mean_free_energy",
            "final_distinct_share",
            "final_in_training_share",
            "rhat",
            "ess_bulk",
            "ess_bulk_per_second",
        ):
            row[key] = summarise(runs, key)
        results.append(row)
        m = {k: row[k]["mean"] for k in row if isinstance(row[k], dict) and "mean" in row[k]}
        rhat = "   n/a" if m["rhat"] is None else f"{m['rhat']:6.3f}"
        print(
            f"{label:34s} F {m['final_mean_free_energy']:7.2f}  distinct {100 * m['final_distinct_share']:5.1f}%  "
            f"yield {m['yield']:7.0f}  /1k sweeps {m['yield_per_1000_chain_sweeps']:6.2f}  "
            f"/s {m['yield_per_second']:7.1f}  R-hat {rhat}  ESS/s {m['ess_bulk_per_second'] or 0:8.1f}  "
            f"{m['seconds']:6.1f} s   e.g. {', '.join(runs[0]['examples'][:6])}",
            flush=True,
        )
    report = {
        "machine": machine_facts(),
        "checkpoint": str(args.checkpoint),
        "corpus": "builtin:words",
        "max_length": args.max_length,
        "training_words": len(ckpt.data["train"]),
        "held_out_words": len(ckpt.data["validation"]),
        "num_hidden": ckpt.model.num_hidden,
        "chains": args.chains,
        "steps": args.steps,
        "every": args.every,
        "seeds": args.seeds,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.plot:
        plot(results, args.plot, args)


def plot(results: list[dict], path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    for row in results:
        x = row["final_mean_free_energy"]["mean"]
        y = 100 * row["final_distinct_share"]["mean"]
        marker = "s" if "replica" in row["run"] else ("^" if "annealed" in row["run"] else "o")
        axes[0].errorbar(x, y, xerr=row["final_mean_free_energy"]["sd"], fmt=marker, label=row["run"])
    axes[0].set_xlabel("mean free energy of the final states (lower = likelier)")
    axes[0].set_ylabel("distinct final states (%)")
    axes[0].set_title("the energy–diversity frontier")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    labels = [row["run"] for row in results]
    for ax, key, name, colour in (
        (axes[1], "yield_per_1000_chain_sweeps", "yield per 1,000 chain-sweeps", "tab:blue"),
        (axes[2], "yield_per_second", "yield per second (this machine)", "tab:green"),
    ):
        means = [row[key]["mean"] for row in results]
        sds = [row[key]["sd"] for row in results]
        ax.barh(range(len(labels)), means, xerr=sds, color=colour)
        ax.set_yticks(range(len(labels)), labels if ax is axes[1] else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(name + "\n(new, distinct, plausible words)")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(
        f"RBM on builtin:words (≤ {args.max_length} letters): {args.chains} chains × {args.steps} steps, "
        f"{args.seeds} seeds"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
