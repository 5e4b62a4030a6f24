"""The tables of docs/samplers.md, printed as Markdown from the benchmarks' JSON results.

Run from the repository root, after the benchmarks that docs/samplers.md names:
    python docs/scripts/samplers_tables.py
(it reads benchmarks/results/samplers-digits-cpu-2core.json, samplers-emoji64-cpu-2core.json and
string-samplers-cpu-2core.json, where present, and prints one table per file.)
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def image_table(path: Path) -> str:
    report = json.loads(path.read_text())
    lines = [
        f"{report['images']} held-out images, {report['mask']} hole of {report['hole_variables']} variables, "
        f"{report['draws']} fills each; hole NLL by {report.get('hole_nll_estimate', 'orders:8')}.",
        "",
        "| sampler | steps | network rows per image | hole NLL (nats) | PSNR, one fill (dB) | PSNR, mean of fills "
        "(dB, 95% interval) | spread of the fills | ms per fill |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        interval = r.get("psnr_mean_of_fills_ci95")
        mean = f"{r['psnr_mean_of_fills']:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
        spread = r.get("diversity")
        acceptance = f" (acceptance {r['acceptance_rate']:.2f})" if r.get("acceptance_rate") is not None else ""
        lines.append(
            f"| {r['sampler']}{acceptance} | {r['steps']} | {r['rows_per_image']:,} | "
            f"{r['hole_nll_nats']:,.1f} ± {r['hole_nll_stderr']:.1f} | {r['psnr_one_fill']:.2f} | {mean} | "
            f"{'' if spread is None else f'{spread:.1f}'} | {1000 * r['seconds_per_fill']:,.1f} |"
        )
    return "\n".join(lines)


def string_table(path: Path) -> str:
    report = json.loads(path.read_text())
    lines = [
        f"{report['training_words']:,} training words, {report['held_out_words']:,} held out; "
        f"{report['chains']} chains x {report['steps']} steps, a state kept every {report['every']} steps; "
        f"mean ± sd over {report['seeds']} seeds.",
        "",
        "| run | final free energy | distinct final states | final states in training data | yield | "
        "yield per 1,000 chain-sweeps | yield per second | R-hat | bulk ESS | ESS per second | "
        "ESS per 1,000 chain-sweeps | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        m = {k: r[k]["mean"] for k in r if isinstance(r[k], dict) and "mean" in r[k]}
        sd = {k: r[k]["sd"] for k in r if isinstance(r[k], dict) and "sd" in r[k]}
        sweeps = r["repeats"][0]["chain_sweeps"]
        lines.append(
            f"| {r['run']} | {m['final_mean_free_energy']:.2f} | {100 * m['final_distinct_share']:.1f}% | "
            f"{100 * m['final_in_training_share']:.1f}% | {m['yield']:,.0f} ± {sd['yield']:.0f} | "
            f"{m['yield_per_1000_chain_sweeps']:.2f} | {m['yield_per_second']:,.0f} ± {sd['yield_per_second']:.0f} | "
            f"{m['rhat']:.3f} | {m['ess_bulk']:,.0f} | "
            f"{m['ess_bulk_per_second']:,.0f} ± {sd['ess_bulk_per_second']:.0f} | "
            f"{1000 * m['ess_bulk'] / sweeps:.1f} | {m['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    for name, table in (
        ("samplers-digits-cpu-2core.json", image_table),
        ("samplers-emoji64-cpu-2core.json", image_table),
        ("string-samplers-cpu-2core.json", string_table),
    ):
        path = RESULTS / name
        if path.exists():
            print(f"<!-- {name} -->\n{table(path)}\n")


if __name__ == "__main__":
    main()
