"""Which sampler for which goal: hole quality against network cost, on held-out images.

Every conditional sampler of the registry fills the same holes of held-out images (digits by
default: 8x8, 17 levels; or a 64x64 emoji checkpoint, each image with its own caption) at several
budgets, and each fill is scored two ways:

- **hole NLL under the model**: -log p(fill | known pixels). ``--nll orders:M`` (the default for
  holes of at most 256 variables): the chain rule over the hole in M random orders combined by
  log-mean-exp (the order ensemble's likelihood of the fill). ``--nll masks:M`` (larger holes):
  the unbiased random-mask estimate of the order-averaged NLL of the hole
  (``likelihood.mask_log_likelihoods`` with ``known``), an upper bound on the ensemble's, at M
  calls instead of M x hole. Lower means a likelier fill: the mode-seeking end of the trade-off.
- **hole PSNR against the true image** (pooled MSE over hole pixels, 8-bit intensities) for one
  fill and for the mean of ``--draws`` fills (the posterior mean's estimate), each with a 95%
  bootstrap interval over images;
- **diversity**: the standard deviation across an image's ``--draws`` fills, averaged over hole
  values (8-bit units): how different the fills of one hole are (0 = every fill the same).

Cost is counted in **network rows per image**: one image's forward pass, whatever it reads out.
Gibbs: 1 (the initial fill) + steps; confidence decoding: steps; ancestral: one per hole variable;
mh: 1 + steps x (1 + hole variables) (the proposal, and the chain rule over the hole for the
acceptance ratio). Seconds are wall-clock on this machine, beside them.

Run:  python benchmarks/bench_samplers.py [--checkpoint runs/digits] [--json results.json]
(the digits checkpoint is trained with docs/scripts/nade_likelihood.py's settings when missing;
64x64: ``--checkpoint runs/emoji --images 8 --draws 2 --nll masks:16``, the model of docs/emoji.md.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import gibbsdream
from common import machine_facts
from gibbsdream.data.masks import inpaint_mask
from gibbsdream.likelihood import mask_log_likelihoods
from gibbsdream.sampling.conditional import order_log_probability, ranks_of

ROOT = Path(__file__).resolve().parents[1]
TRAIN = dict(training={"epochs": 150, "learning_rate": 2e-3, "max_time": 20 * 60}, device="cpu")
# (label, sampler options, the budgets: steps for each run)
CONFIGS = (
    ("gibbs, random blocks", dict(sampler="gibbs"), (4, 8, 16, 32, 64)),
    ("gibbs, least confident blocks", dict(sampler="gibbs", block_select="confidence"), (4, 8, 16, 32, 64)),
    # (budgets above the hole's size are left out: confidence decoding has nothing left to decode)
    ("confidence (MaskGIT), cosine", dict(sampler="confidence"), (2, 4, 8, 16, 32, 64)),
    ("confidence, no choice noise", dict(sampler="confidence", choice_temperature=0.0), (2, 4, 8, 16, 32, 64)),
    ("ancestral", dict(sampler="ancestral"), (1,)),
    ("mh (one order's joint)", dict(sampler="mh", block=0.25), (4, 16, 64)),
)
MH_MAX_HOLE = 256  # mh scores the whole hole at every step: above this the runs take hours here


def rows_per_image(sampler: str, steps: int, hole: int) -> int:
    if sampler in ("gibbs", "ancestral-gibbs"):
        return 1 + steps
    if sampler == "confidence":
        return steps
    if sampler == "ancestral":
        return hole
    if sampler == "mh":
        return 1 + steps * (1 + hole)
    raise ValueError(sampler)


def hole_nll(model, fills: torch.Tensor, known: torch.Tensor, how: str, seed: int, context=None) -> np.ndarray:
    """-log p(fill_hole | known) per fill: ``(N,)``. ``how``: ``orders:M`` (log-mean-exp over M
    random orders of the hole) or ``masks:M`` (the mean of M random-mask estimates)."""
    kind, _, count = how.partition(":")
    M = int(count)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if kind == "masks":
            estimates = mask_log_likelihoods(model, fills, M, g, batch_size=64, context=context, known=known)
            return -estimates.mean(1).numpy()
        flat_known = known.reshape(known.shape[0], -1)
        values = []
        for _ in range(M):
            scores = torch.rand(flat_known.shape, generator=g)
            ranks = ranks_of(torch.where(flat_known, torch.full_like(scores, 2.0), scores))  # hole first, at random
            values.append(order_log_probability(model, fills, known, ranks, context))
    stacked = torch.stack(values, 1)
    return -(torch.logsumexp(stacked, 1) - math.log(M)).numpy()


def psnr_with_interval(image_sse: np.ndarray, holes: int, index: np.ndarray) -> tuple[float, list[float]]:
    """Pooled hole PSNR of per-image squared errors ``(N,)`` (``holes`` values each) and its 95%
    bootstrap interval over images (``index`` ``(resamples, N)``)."""
    psnr = lambda sse: 10 * np.log10(255.0**2 / (sse / holes))
    low, high = np.percentile(psnr(image_sse[index].mean(1)), [2.5, 97.5])
    return float(psnr(image_sse.mean())), [float(low), float(high)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "digits")
    parser.add_argument("--images", type=int, default=100, help="held-out digits filled")
    parser.add_argument("--mask", default="centre", help="the hole (an inpaint mask spec)")
    parser.add_argument("--draws", type=int, default=4, help="fills per image (their mean: the posterior mean)")
    parser.add_argument("--nll", default=None, help="orders:M or masks:M (default: orders:8 up to 256 hole variables)")
    parser.add_argument("--batch", type=int, default=64, help="images filled per call")
    parser.add_argument("--samplers", help="only these samplers, comma-separated (e.g. gibbs,confidence)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw NLL and PSNR against network rows here (PNG)")
    args = parser.parse_args()
    if not (args.checkpoint / "config.json").exists():
        gibbsdream.train("nade", "builtin:digits", args.checkpoint, **TRAIN)
    ckpt = gibbsdream.load(args.checkpoint, device="cpu", family="nade")
    model, codec = ckpt.model.eval(), ckpt.codec
    images = ckpt.data["test"][: args.images]
    # a captioned model fills each image with its own (first) caption, as docs/emoji.md does
    captions = ckpt.data["captions.test"][: args.images, 0] if "captions.test" in ckpt.data else None
    C, H, W = images.shape[1:]
    known = inpaint_mask(args.mask, (C, H, W)).expand(len(images), C, H, W).clone()
    hole = int((~known[0]).sum())
    how = args.nll or ("orders:8" if hole <= 256 else "masks:16")
    truth = codec.decode(images).double().numpy()
    hidden = np.broadcast_to(~known.numpy(), truth.shape)
    index = np.random.default_rng(args.seed).integers(0, len(images), size=(2000, len(images)))
    repeated_known = known.repeat_interleave(args.draws, 0)
    context = None if captions is None else captions.repeat_interleave(args.draws, 0)  # token ids, one row a fill
    results = []
    chosen = None if args.samplers is None else set(args.samplers.split(","))
    for label, options, budgets in CONFIGS:
        if chosen is not None and options["sampler"] not in chosen:
            continue
        if options["sampler"] == "mh" and hole > MH_MAX_HOLE:
            print(f"{label}: skipped, the hole has {hole} variables (mh costs 1 + hole rows a step)", flush=True)
            continue
        for steps in budgets:
            if options["sampler"] == "confidence" and steps > hole:
                continue
            started = time.perf_counter()
            parts = []
            for start in range(0, len(images), args.batch):
                part = slice(start, start + args.batch)
                parts.append(
                    gibbsdream.inpaint(
                        ckpt,
                        images[part],
                        known[part],
                        samples=args.draws,
                        steps=steps,
                        seed=args.seed + start,
                        caption=None if captions is None else captions[part],
                        **options,
                    ).chain
                )
            seconds = time.perf_counter() - started
            # (N * draws, C, H, W): image i's draws are rows i*draws ...
            fills = torch.cat([c.samples.cpu() for c in parts])
            pixels = codec.decode(fills).double().numpy().reshape(len(images), args.draws, C, H, W)
            sse_one = (((pixels[:, 0] - truth) ** 2) * hidden).sum((1, 2, 3))  # (N,) per image
            sse_mean = (((pixels.mean(1) - truth) ** 2) * hidden).sum((1, 2, 3))
            psnr_one, ci_one = psnr_with_interval(sse_one, hole, index)
            psnr_mean, ci_mean = psnr_with_interval(sse_mean, hole, index)
            spread = pixels.std(1, ddof=1)[hidden].mean() if args.draws > 1 else float("nan")
            nll = hole_nll(model, fills, repeated_known, how, args.seed, context)
            row = {
                "sampler": label,
                "options": options,
                "steps": steps,
                "rows_per_image": rows_per_image(options["sampler"], steps, hole),
                "seconds_per_fill": seconds / (len(images) * args.draws),
                "hole_nll_nats": float(nll.mean()),
                "hole_nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))),
                "psnr_one_fill": psnr_one,
                "psnr_one_fill_ci95": ci_one,
                "psnr_mean_of_fills": psnr_mean,
                "psnr_mean_of_fills_ci95": ci_mean,
                "diversity": float(spread),
                "acceptance_rate": parts[0].settings.get("acceptance_rate"),
            }
            results.append(row)
            print(
                f"{label:32s} steps {steps:3d}  rows/image {row['rows_per_image']:6d}  "
                f"hole NLL {row['hole_nll_nats']:7.2f} ± {row['hole_nll_stderr']:.2f}  "
                f"PSNR one {row['psnr_one_fill']:6.2f}  mean {row['psnr_mean_of_fills']:6.2f} "
                f"[{ci_mean[0]:.2f}, {ci_mean[1]:.2f}]  spread {spread:5.1f}  "
                f"{1000 * row['seconds_per_fill']:7.2f} ms/fill",
                flush=True,
            )
    report = {
        "machine": machine_facts(),
        "checkpoint": str(args.checkpoint),
        "images": len(images),
        "mask": args.mask,
        "hole_variables": hole,
        "draws": args.draws,
        "hole_nll_estimate": how,
        "captions": captions is not None,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
        for label, _, _ in CONFIGS:
            rows = [r for r in results if r["sampler"] == label]
            if not rows:
                continue
            cost = [r["rows_per_image"] for r in rows]
            axes[0].plot(cost, [r["hole_nll_nats"] for r in rows], "o-", label=label)
            low, high = zip(*(r["psnr_mean_of_fills_ci95"] for r in rows))
            mean = [r["psnr_mean_of_fills"] for r in rows]
            errors = [np.subtract(mean, low), np.subtract(high, mean)]
            axes[1].errorbar(cost, mean, yerr=errors, fmt="o-", capsize=3, label=label)
            axes[2].plot(cost, [r["diversity"] for r in rows], "o-", label=label)
        names = (
            "hole NLL under the model (nats, lower = likelier)",
            "PSNR of the mean fill (dB, 95% interval)",
            "spread of the fills (8-bit std)",
        )
        for ax, name in zip(axes, names):
            ax.set_xscale("log")
            ax.set_xlabel("network rows per image")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(
            f"{len(images)} held-out images of {args.checkpoint.name}, {args.mask} hole ({hole} variables), "
            f"{args.draws} fills each; hole NLL by {how}"
        )
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
