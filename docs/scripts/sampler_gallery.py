"""What each conditional sampler's fills look like: one row per sampler, the same held-out holes.

The pictures beside benchmarks/bench_samplers.py's figures: the first held-out images of a
checkpoint's test split (each with its own caption where the model reads captions), their centre
hidden, filled once by each sampler at one budget of network rows, with the original and the
holed image on top. Written to docs/img/ for docs/samplers.md.

Run from the repository root:
    python docs/scripts/sampler_gallery.py --checkpoint runs/emoji --out docs/img/samplers-emoji64-fills.png
    python docs/scripts/sampler_gallery.py --checkpoint runs/digits --out docs/img/samplers-digits-fills.png --scale 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import gibbsdream
from gibbsdream.data.masks import inpaint_mask

# (label, options): each at --steps network rows per image, ancestral at one row per hole variable
ROWS = (
    ("gibbs, random blocks", dict(sampler="gibbs")),
    ("gibbs, least confident blocks", dict(sampler="gibbs", block_select="confidence")),
    ("confidence (MaskGIT)", dict(sampler="confidence")),
    ("confidence, no choice noise", dict(sampler="confidence", choice_temperature=0.0)),
    ("ancestral", dict(sampler="ancestral")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--steps", type=int, default=16, help="steps of the Gibbs and confidence samplers")
    parser.add_argument("--mask", default="centre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="nearest-neighbour enlargement of small images")
    args = parser.parse_args()
    ckpt = gibbsdream.load(args.checkpoint, device="cpu", family="nade")
    codec = ckpt.codec
    images = ckpt.data["test"][: args.images]
    captions = ckpt.data["captions.test"][: args.images, 0] if "captions.test" in ckpt.data else None
    known = inpaint_mask(args.mask, tuple(images.shape[1:])).expand_as(images).clone()

    def pixels(states: torch.Tensor) -> np.ndarray:
        rgb = codec.decode(states).permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
        rgb = np.repeat(rgb, 3, -1) if rgb.shape[-1] == 1 else rgb
        return rgb.repeat(args.scale, 1).repeat(args.scale, 2)

    holed = pixels(images).copy()
    hole = (~known).numpy().any(1)[..., None].repeat(args.scale, 1).repeat(args.scale, 2)  # (N, H, W, 1)
    holed[np.broadcast_to(hole, holed.shape)] = 128  # gray where the samplers fill
    rows = [("held-out image", pixels(images)), ("its hole", holed)]
    for label, options in ROWS:
        filled = gibbsdream.inpaint(ckpt, images, known, steps=args.steps, seed=args.seed, caption=captions, **options)
        rows.append((label, pixels(filled.chain.samples)))
        print(label, flush=True)
    fig, axes = plt.subplots(len(rows), args.images, figsize=(1.3 * args.images + 2.2, 1.3 * len(rows)))
    for r, (label, tiles) in enumerate(rows):
        for c in range(args.images):
            ax = axes[r, c]
            ax.imshow(tiles[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    hole_size = int((~known[0]).sum())
    fig.suptitle(
        f"{args.checkpoint.name}: {args.mask} hole ({hole_size} variables); Gibbs and confidence {args.steps} steps, "
        f"ancestral {hole_size}",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
