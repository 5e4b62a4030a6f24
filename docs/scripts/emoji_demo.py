"""Orderless NADE on emoji at the seed's size: 64x64 RGB, 256 levels, captions from CLDR names.

Uses the checkpoint written by (see docs/emoji.md for how long it trained, on what)

    gibbsdream train nade --data builtin:emoji --captions --precision bfloat16 --batch-size 8 \
        --max-time 105m --out runs/emoji

and measures, on its held-out emoji (whole skin-tone groups the model never saw):

- likelihood: the model's NLL estimated from random masks (with each image's own caption and
  without one: what the caption is worth), beside a per-pixel independent categorical and a
  mixture of categoricals fitted on the non-test emoji, and the file sizes of PNG at maximum
  compression and of lossless WebP (Pillow), all in bits per dimension;
- inpainting: a centre hole, the right half and 50% random pixels, filled by blocked Gibbs
  sampling (one sample, and the mean of several as the posterior mean) beside OpenCV Telea and
  Navier-Stokes, scikit-image's biharmonic fill and k-nearest-neighbour fills from the non-test
  emoji (the fills of benchmarks/bench_inpaint.py), with paired bootstrap intervals;
- caption steering: the skin of held-out people and hands hidden and filled with "... light skin
  tone", "... dark skin tone" and no caption (CIELAB lightness L* of the filled skin); held-out
  hearts hidden whole and filled with colour words (the share of fills nearest the asked colour).

Writes docs/data/emoji.json, pictures under docs/img/emoji/ and docs/emoji.md.

Run from the repository root:  python docs/scripts/emoji_demo.py [--checkpoint DIR]
(`--quick --out DIR`: a tiny captioned model of 16x16 emoji trained for one epoch, written to DIR;
checks that the script runs. Needs a colour emoji font, OpenCV and scikit-image.)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import quick  # docs/scripts/quick.py
import torch
from PIL import Image

import gibbsdream
from gibbsdream.baselines import IndependentCategorical, MixtureOfCategoricals
from gibbsdream.data.images import load_images
from gibbsdream.data.masks import inpaint_mask
from gibbsdream.files import atomic_write_text
from gibbsdream.training import split_images
from gibbsdream.viz import chain_gif, save_grid_png

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_inpaint  # noqa: E402  (the peers' fills and the scoring, shared with the digits benchmark)

IMG = Path("img") / "emoji"  # under the docs folder
TRAIN_COMMAND = (
    "gibbsdream train nade --data builtin:emoji --captions --precision bfloat16 --batch-size 8 "
    "--max-time 105m --out runs/emoji"
)
QUICK_TRAIN = dict(
    model={"width": 8, "depth": 2},
    training={"epochs": 1, "captions": True, "batch_size": 8},
    options={"count": 60, "size": 16},
    device="cpu",
)
ALPHAS = (1.0, 0.1, 0.01, 0.001)  # the baselines' add-alpha smoothing, chosen on the validation split
SKIN_TONES = ("light", "medium", "dark")
HEART_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
WHITE = 235  # a pixel with every channel at least this is background (the emoji are drawn on white)
SKIN_DIFFERENCE = 40  # a pixel is skin where the light and dark variants differ by more than this


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _mean_ci(values, rng, resamples=2000) -> dict:
    """Mean and a 95% bootstrap interval of ``values`` (1-D)."""
    values = np.asarray(values, dtype=np.float64)
    boot = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(low), float(high)], "n": len(values)}


# ---- the data behind the checkpoint -------------------------------------------------------------------


def emoji_split(ckpt) -> tuple[dict, list[dict], list[list[str]]]:
    """Which emoji went to train / validation / test (the CLI's seeded split redone), with every
    emoji's attributes and captions; checked against the states the checkpoint keeps."""
    source, training = ckpt.config["data_source"], ckpt.config["training"]
    options = {k: source[k] for k in ("count", "size") if source.get(k) is not None}
    dataset = load_images("builtin:emoji", captions=True, **options)
    held = source["split"]["test"]
    train_all, test = split_images(torch.arange(len(dataset)), int(held), training["seed"], groups=dataset.groups)
    train, validation = split_images(
        train_all,
        float(training["validation_fraction"]),
        training["seed"] + 1,
        groups=dataset.groups[train_all],
    )
    rows = {"train": train, "validation": validation, "test": test}
    for name, chosen in rows.items():
        if not torch.equal(dataset.states[chosen], ckpt.data[name]):
            raise SystemExit(f"error: the {name} split of builtin:emoji differs from the checkpoint's; retrain it")
    return rows, dataset.attributes, dataset.captions


# ---- likelihood ------------------------------------------------------------------------------------------


def _bits(nats, dims: int) -> float:
    return float(nats) / (dims * math.log(2))


def _file_bits(pixels: np.ndarray, **save) -> np.ndarray:
    """Bits per dimension of each ``(N, H, W, 3)`` image saved by Pillow with ``save`` options."""
    sizes = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, **save)
        sizes.append(8 * buffer.tell() / image.size)
    return np.array(sizes)


def likelihood(ckpt, masks: int, components: int, iterations: int, seed: int) -> dict:
    train, validation, test = (ckpt.data[k] for k in ("train", "validation", "test"))
    dims, K = math.prod(test.shape[1:]), ckpt.codec.levels
    started = time.perf_counter()
    nade = gibbsdream.evaluate(ckpt, "heldout", method="masks", masks=masks, seed=seed).values
    nade_seconds = time.perf_counter() - started
    rows = []

    def add(name, nll, note=""):
        nll = np.asarray(nll, dtype=np.float64)
        rows.append(
            {
                "model": name,
                "nll_nats": float(nll.mean()),
                "stderr": float(nll.std(ddof=1) / len(nll) ** 0.5),
                "bits_per_dim": _bits(nll.mean(), dims),
                "note": note,
            }
        )

    # Smoothing chosen on the validation split, then refitted on all non-test images.
    started = time.perf_counter()
    validation_nll = {
        a: -IndependentCategorical(K, a).fit(train).log_likelihood(validation).mean().item() for a in ALPHAS
    }
    alpha = min(validation_nll, key=validation_nll.get)
    fit_on = torch.cat([train, validation])
    add("independent categorical per variable", -IndependentCategorical(K, alpha).fit(fit_on).log_likelihood(test))
    independent_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mixture = MixtureOfCategoricals(K, components=components, iterations=iterations, alpha=alpha, seed=seed)
    add(
        f"mixture of {components} categoricals (EM, {iterations} iterations)",
        -mixture.fit(fit_on).log_likelihood(test),
    )
    mixture_seconds = time.perf_counter() - started
    pixels = ckpt.codec.decode(test).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) uint8
    for name, options in (
        ("PNG, maximum compression (Pillow, optimize)", dict(format="PNG", optimize=True, compress_level=9)),
        ("WebP lossless (Pillow, method 6)", dict(format="WEBP", lossless=True, quality=100, method=6)),
    ):
        bits = _file_bits(pixels, **options)
        add(name, bits * dims * math.log(2), "the whole file, headers included")
    nll, err = nade["nll_nats"], nade["nll_nats_stderr"]
    rows.append(
        {
            "model": f"Orderless NADE, own caption ({masks} random masks per image)",
            "nll_nats": nll,
            "stderr": err,
            "bits_per_dim": _bits(nll, dims),
            "note": "estimate of the mean single-order NLL: an upper bound on the order ensemble's",
        }
    )
    if "nll_nats_without_caption" in nade:
        rows.append(
            {
                "model": f"Orderless NADE, no caption (the same {masks} masks)",
                "nll_nats": nade["nll_nats_without_caption"],
                "stderr": None,
                "bits_per_dim": _bits(nade["nll_nats_without_caption"], dims),
                "note": "",
            }
        )
    result = {
        "images": len(test),
        "dimensions": dims,
        "rows": rows,
        "masks": masks,
        "caption_gain_nats": nade.get("caption_gain_nats"),
        "caption_gain_nats_stderr": nade.get("caption_gain_nats_stderr"),
        "baseline_alpha": alpha,
        "baseline_validation_nll": {str(a): v for a, v in validation_nll.items()},
        "seconds": {
            "nade": round(nade_seconds, 1),
            "independent": round(independent_seconds, 1),
            "mixture": round(mixture_seconds, 1),
        },
    }
    for row in rows:
        print(f"likelihood: {row['model']}: {row['nll_nats']:.1f} nats, {row['bits_per_dim']:.3f} bits/dim")
    return result


# ---- inpainting ------------------------------------------------------------------------------------------


def _fills(ckpt, images, known, captions, samples: int, steps: int, seed: int, batch: int) -> np.ndarray:
    """``samples`` NADE fills of each image: ``(samples, N, C, H, W)`` float64 intensities
    (``captions``: one per image, as texts or token ids, or None)."""
    per_call = max(1, batch // samples)
    out = []
    for start in range(0, len(images), per_call):
        part = slice(start, start + per_call)
        caption = None if captions is None else captions[part]
        filled = gibbsdream.inpaint(
            ckpt, images[part], known[part], samples=samples, caption=caption, steps=steps, seed=seed + start
        )
        out.append(torch.from_numpy(filled.outputs).permute(0, 3, 1, 2))  # (n * samples, C, H, W)
    pixels = torch.cat(out).double().numpy()
    N = len(images)
    return pixels.reshape(N, samples, *pixels.shape[1:]).swapaxes(0, 1)


def inpainting(ckpt, rows, count, samples, steps, seed, batch, img: Path, resamples: int) -> dict:
    import cv2

    test, codec = ckpt.data["test"], ckpt.codec
    C, H, W = test.shape[1:]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(test), size=min(count, len(test)), replace=False))
    images = test[chosen]
    captions = ckpt.data["captions.test"][chosen, 0]  # (N, T): each image's own first caption
    truth = codec.decode(images).double().numpy()
    reference = codec.decode(torch.cat([ckpt.data["validation"], ckpt.data["train"]])).double().numpy()
    masks = {
        "centre": "centre",
        "right half": f"box:{W // 2},0,{W - W // 2},{H}",
        "50% random pixels": "random:0.5",
    }
    result = {"images": len(chosen), "samples": samples, "steps": steps, "masks": {}}
    figure = []
    for label, spec in masks.items():
        known = torch.stack([inpaint_mask(spec, (C, H, W), generator=seed * 100003 + n) for n in range(len(images))])
        known_np = known.numpy()
        hidden_images = torch.where(known, images, torch.zeros_like(images))  # the hole never reaches a method
        pixels = codec.decode(hidden_images).numpy()
        started = time.perf_counter()
        draws = _fills(ckpt, hidden_images, known, captions, samples, steps, seed, batch)
        nade_seconds = time.perf_counter() - started
        assert np.array_equal(draws[:, known_np], np.broadcast_to(truth[known_np], draws[:, known_np].shape))
        predictions = {
            "NADE, one sample": draws,
            f"NADE, mean of {samples} samples": draws.mean(0),
            "OpenCV Telea": bench_inpaint.opencv_inpaint(pixels, known_np, cv2.INPAINT_TELEA, 3.0),
            "OpenCV Navier-Stokes": bench_inpaint.opencv_inpaint(pixels, known_np, cv2.INPAINT_NS, 3.0),
            "scikit-image biharmonic": bench_inpaint.biharmonic(pixels, known_np),
            "1-NN fill": bench_inpaint.knn_fill(pixels.astype(np.float64), known_np, reference, 1),
            "5-NN fill": bench_inpaint.knn_fill(pixels.astype(np.float64), known_np, reference, 5),
        }
        methods = {name: bench_inpaint.score(p, truth, known_np) for name, p in predictions.items()}
        hidden = (~known_np).reshape(len(images), -1).sum(1)
        # Each NADE fill's PSNR gain over every peer, with a paired bootstrap interval over images.
        index = np.random.default_rng(seed).integers(0, len(images), size=(resamples, len(images)))
        for nade_name in list(predictions)[:2]:
            gains = {}
            for peer in list(predictions)[2:]:
                low, high = bench_inpaint.bootstrap_gain(
                    methods[nade_name]["_image_sse"], methods[peer]["_image_sse"], hidden, index
                )
                gains[peer] = {"db": methods[nade_name]["psnr"] - methods[peer]["psnr"], "ci95": [low, high]}
            methods[nade_name]["psnr_gain_over"] = gains
        for m in methods.values():
            m.pop("_image_sse")
        result["masks"][label] = {
            "spec": spec,
            "hole_pixels_per_image": float(hidden.mean() / C),
            "nade_seconds": round(nade_seconds, 1),
            "methods": methods,
        }
        for name, m in methods.items():
            print(f"inpainting, {label}: {name}: PSNR {m['psnr']:.2f} dB")
        # figure rows: truth, the problem, one sample, the posterior mean, Telea, biharmonic, 1-NN
        shown = min(6, len(images))
        problem = np.where(known_np, truth, np.array([255.0, 0.0, 255.0])[:C, None, None])
        for i in range(shown):
            figure.extend(
                [truth[i], problem[i], draws[0, i], draws.mean(0)[i]]
                + [predictions[k][i] for k in ("OpenCV Telea", "scikit-image biharmonic", "1-NN fill")]
            )
    grid = torch.from_numpy(np.clip(np.rint(np.stack(figure)), 0, 255).astype(np.uint8))  # (B, C, H, W)
    save_grid_png(img / "inpainting.png", grid, columns=7, scale=2)
    # one GIF: the centre hole filled, six held-out emoji, one chain each
    known = inpaint_mask("centre", (C, H, W)).expand(len(images), C, H, W)[:6]
    filled = gibbsdream.inpaint(ckpt, images[:6], known, caption=captions[:6], steps=steps, seed=seed, every=10)
    chain_gif(filled.chain.frames, codec, img / "inpainting-centre.gif", known=known, columns=6, scale=1)
    return result


# ---- caption steering --------------------------------------------------------------------------------------


def _lightness(pixels: np.ndarray) -> np.ndarray:
    """``(..., 3)`` 8-bit RGB -> CIELAB L* (0 black .. 100 white)."""
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(pixels, dtype=np.float64) / 255.0)[..., 0]


def _tone(attributes: dict) -> str | None:
    """ "light", "medium", "dark", ... for an emoji with exactly one skin tone, else None."""
    tones = [m.removesuffix(" skin tone") for m in attributes["modifiers"] if m.endswith("skin tone")]
    return tones[0] if len(tones) == 1 else None


def skin_steering(ckpt, rows, attributes, count, samples, steps, seed, batch, img: Path, resamples: int) -> dict:
    """Hide the skin of held-out people and hands, fill it with a light and a dark caption and none."""
    codec, test_rows = ckpt.codec, rows["test"].tolist()
    by_base = {}
    for position, r in enumerate(test_rows):
        tone = _tone(attributes[r])
        if tone in SKIN_TONES:
            by_base.setdefault(attributes[r]["base"], {})[tone] = position
    bases = sorted(b for b, tones in by_base.items() if set(tones) == set(SKIN_TONES))
    rng = np.random.default_rng(seed)
    bases = [bases[i] for i in sorted(rng.choice(len(bases), size=min(count, len(bases)), replace=False))]
    test = ckpt.data["test"]
    problems = []
    for base in bases:
        tones = by_base[base]
        light, dark, medium = (codec.decode(test[tones[t]]).double() for t in ("light", "dark", "medium"))
        skin = (light - dark).abs().amax(0) > SKIN_DIFFERENCE  # (H, W)
        if skin.sum() < 8:
            continue
        problems.append(
            {
                "base": base,
                "names": {t: attributes[test_rows[tones[t]]]["name"] for t in SKIN_TONES},
                "image": test[tones["medium"]],
                "known": ~skin.expand(codec.channels, *skin.shape),
                "true_lightness": {
                    t: float(_lightness(x.permute(1, 2, 0).numpy())[skin.numpy()].mean())
                    for t, x in (("light", light), ("medium", medium), ("dark", dark))
                },
            }
        )
    result = {"emoji": [p["names"]["medium"] for p in problems], "samples": samples, "captions": {}}
    if not problems:
        return result
    images = torch.stack([p["image"] for p in problems])
    known = torch.stack([p["known"] for p in problems])
    skin = ~known[:, 0].numpy()
    filled_by = {}
    for tone in ("light", "dark", None):
        captions = [p["names"][tone] for p in problems] if tone else None
        fills = _fills(ckpt, images, known, captions, samples, steps, seed, batch)  # (samples, N, C, H, W)
        draws = fills.transpose(1, 0, 3, 4, 2).astype(np.uint8)  # (N, samples, H, W, 3): whole intensities
        filled_by[tone] = draws
        lightness = np.array(
            [[_lightness(draws[i, s])[skin[i]].mean() for s in range(samples)] for i in range(len(problems))]
        )
        nearer_light = np.array(
            [
                [
                    abs(lightness[i, s] - p["true_lightness"]["light"])
                    < abs(lightness[i, s] - p["true_lightness"]["dark"])
                    for s in range(samples)
                ]
                for i, p in enumerate(problems)
            ]
        )
        # A fill may give up the skin for background: white skin pixels would read as very light skin.
        white = np.array(
            [[(draws[i, s][skin[i]] >= WHITE).all(-1).mean() for s in range(samples)] for i in range(len(problems))]
        )
        key = f"{tone} skin tone" if tone else "no caption"
        result["captions"][key] = {
            "white_share": float(white.mean()),
            "lightness": _mean_ci(lightness.mean(1), rng, resamples),
            "share_nearer_light": float(nearer_light.mean()),
            "per_emoji_lightness": lightness.mean(1).round(2).tolist(),
        }
        print(f"skin, {key}: L* {lightness.mean():.1f}, nearer the light variant {nearer_light.mean():.0%}")
    light, dark = (np.array(result["captions"][f"{t} skin tone"]["per_emoji_lightness"]) for t in ("light", "dark"))
    result["light_minus_dark"] = _mean_ci(light - dark, rng, resamples)
    result["true_lightness"] = {
        t: float(np.mean([p["true_lightness"][t] for p in problems])) for t in ("light", "medium", "dark")
    }
    # figure: per emoji, the true light, medium and dark variants' skin is what the fills aim at
    shown = min(8, len(problems))
    tiles = []
    for i in range(shown):
        problem = codec.decode(images[i]).permute(1, 2, 0).numpy().copy()
        problem[skin[i]] = (255, 0, 255)
        tiles.extend([problem, filled_by["light"][i, 0], filled_by["dark"][i, 0], filled_by[None][i, 0]])
    save_grid_png(img / "skin-steering.png", np.stack(tiles), columns=4, scale=2)
    return result


def _foreground(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> bool, True off the white background."""
    return (pixels < WHITE).any(-1)


def heart_steering(ckpt, rows, attributes, samples, steps, seed, img: Path) -> dict:
    """Hide each held-out heart whole and fill it with "a <colour> heart" for six colours and no caption."""
    codec = ckpt.codec
    everything = torch.cat([rows["train"], rows["validation"], rows["test"]]).tolist()
    states = torch.cat([ckpt.data["train"], ckpt.data["validation"], ckpt.data["test"]])
    names = [attributes[r]["name"] for r in everything]
    reference = {}  # colour word -> mean RGB of the foreground of "<colour> heart" (wherever it is in the split)
    for colour in HEART_COLOURS:
        if f"{colour} heart" in names:
            pixels = codec.decode(states[names.index(f"{colour} heart")]).permute(1, 2, 0).numpy()
            reference[colour] = pixels[_foreground(pixels)].mean(0)
    test_rows = rows["test"].tolist()
    hearts = [
        i for i, r in enumerate(test_rows) if "heart" in attributes[r]["subject"] and not attributes[r]["modifiers"]
    ]
    hearts = [i for i in hearts if not attributes[test_rows[i]]["subject"].startswith(("couple", "kiss"))]
    result = {"hearts": [attributes[test_rows[i]]["name"] for i in hearts], "samples": samples, "captions": {}}
    if not hearts or len(reference) < 2:
        return result
    from skimage.color import rgb2lab

    words = list(reference)
    reference_lab = rgb2lab(np.stack([reference[w] for w in words])[None] / 255.0)[0]
    images = ckpt.data["test"][hearts]
    pixels = codec.decode(images).permute(0, 2, 3, 1).numpy()
    hole = np.stack([_foreground(p) for p in pixels])  # the heart itself
    known = torch.from_numpy(~hole)[:, None].expand(-1, codec.channels, -1, -1)
    fills = []  # one (hearts, H, W, 3) first fill per caption
    for colour in [*words, None]:
        article = "an" if colour and colour[0] in "aeiou" else "a"
        caption = f"{article} {colour} heart" if colour else None
        filled = gibbsdream.inpaint(ckpt, images, known, samples=samples, caption=caption, steps=steps, seed=seed)
        draws = filled.outputs.reshape(len(hearts), samples, *filled.outputs.shape[1:])
        nearest = []
        for i in range(len(hearts)):
            for s in range(samples):
                inside = draws[i, s][hole[i] & _foreground(draws[i, s])]
                if len(inside) == 0:
                    nearest.append("background")
                    continue
                lab = rgb2lab(inside.mean(0)[None, None] / 255.0)[0, 0]
                nearest.append(words[int(((reference_lab - lab) ** 2).sum(-1).argmin())])
        key = caption or "no caption"
        result["captions"][key] = {
            "nearest_colour_counts": {w: nearest.count(w) for w in [*words, "background"] if nearest.count(w)},
            "share_asked_colour": None if colour is None else nearest.count(colour) / len(nearest),
        }
        print(f"hearts, {key}: {result['captions'][key]}")
        fills.append(draws[:, 0])
    problem = pixels.copy()
    problem[hole] = (255, 0, 255)
    tiles = np.stack([problem, *fills], axis=1)  # (hearts, 2 + colours, H, W, 3): one row per heart
    save_grid_png(img / "heart-steering.png", tiles.reshape(-1, *tiles.shape[2:]), columns=tiles.shape[1], scale=2)
    result["colours"] = words
    return result


# ---- generation ------------------------------------------------------------------------------------------------


def generation(ckpt, rows, attributes, captions, steps, seed, img: Path) -> dict:
    """Eight held-out emoji generated from a blank canvas by their own first captions: a GIF and a grid."""
    test_rows = rows["test"].tolist()
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(test_rows), size=min(8, len(test_rows)), replace=False))
    context = ckpt.data["captions.test"][chosen, 0]  # (N, T): the captions as the model reads them
    generated = gibbsdream.generate(ckpt, num_samples=len(chosen), caption=context, steps=steps, seed=seed, every=10)
    chain_gif(generated.chain.frames, ckpt.codec, img / "generate.gif", columns=len(chosen), scale=1)
    truth = ckpt.data["test"][chosen]
    samples = generated.chain.samples.cpu()
    save_grid_png(img / "generate.png", torch.cat([truth, samples]), ckpt.codec, columns=len(chosen), scale=2)
    return {"captions": [captions[test_rows[i]][0] for i in chosen], "seconds": round(generated.seconds, 1)}


# ---- the page --------------------------------------------------------------------------------------------------


def _ci(d: dict, digits: int = 1) -> str:
    return f"{d['mean']:.{digits}f} [{d['ci95'][0]:.{digits}f}, {d['ci95'][1]:.{digits}f}]"


def write_page(result: dict, docs: Path) -> None:
    t, lk, inp, skin, hearts = (result[k] for k in ("training", "likelihood", "inpainting", "skin", "hearts"))
    webp = next(r for r in lk["rows"] if r["model"].startswith("WebP"))
    nade = next(r for r in lk["rows"] if "own caption" in r["model"])
    table = "\n".join(
        f"| {r['model']} | {r['nll_nats']:,.0f}"
        + (f" ± {r['stderr']:.0f}" if r["stderr"] is not None else "")
        + f" | {r['bits_per_dim']:.3f} |"
        for r in sorted(lk["rows"], key=lambda r: -r["bits_per_dim"])
    )
    lines = [
        "# Emoji at the seed's size: 64×64 RGB, 256 levels, captions people wrote",
        "",
        "An Orderless NADE trained on `builtin:emoji`: every fully qualified emoji that the system's colour",
        "emoji font draws, centred on white at 64×64, RGB with 256 levels (D = 12,288 variables per image),",
        'captioned with its English CLDR name in a few wordings ("man superhero: medium-dark skin tone").',
        "All skin-tone variants of one emoji fall on the same side of the split, so every held-out",
        "emoji below is one the model never saw in any tone. Every figure comes from",
        "[`docs/scripts/emoji_demo.py`](scripts/emoji_demo.py); its raw output is",
        "[`docs/data/emoji.json`](data/emoji.json).",
        "",
        f"**The model.** `{t['checkpoint']}`: the network of `train nade`'s defaults",
        f"({t['model']['width']} feature maps, {t['model']['depth']} residual blocks, dilations "
        f"{t['model']['dilations']}) with the QRNN caption",
        f"reader, trained by `{TRAIN_COMMAND}`"
        + (f", {t['note']}" if t.get("note") else "")
        + f": {t['epochs']} epochs in {t['seconds'] / 60:.0f} minutes on {t['machine']} "
        f"({t['split']['train']:,} training, {t['split']['validation']:,} validation and {t['split']['test']:,} "
        f"held-out emoji). Last validation loss {t['validation_loss']:,.0f} nats per image. This is a short "
        "training run for a model of this size: every number below is what a CPU afternoon buys, not what the",
        "architecture can reach.",
        "",
        "## Likelihood of the held-out emoji",
        "",
        f"Negative log-likelihood of the {lk['images']} held-out emoji, in nats per image (± standard error over",
        "images) and bits per dimension; lower is better.",
        "",
        "| model | NLL (nats / image) | bits / dim |",
        "|---|---:|---:|",
        table,
        "",
        f"- The NADE figure is the unbiased estimate of the mean single-order NLL from {lk['masks']} random masks",
        "  per image (`gibbsdream evaluate runs/emoji --method masks`; the chain rule in one order would cost",
        "  12,288 network calls per image). The ensemble of orders can only do better.",
        f"- **What the caption is worth:** {lk['caption_gain_nats']:.1f} ± {lk['caption_gain_nats_stderr']:.1f} nats",
        "  per image (own first caption against none, the same masks).",
        f"- **Against lossless WebP:** {nade['bits_per_dim']:.3f} against {webp['bits_per_dim']:.3f} bits per "
        f"dimension ({nade['bits_per_dim'] / webp['bits_per_dim']:.2f}×). "
        + (
            "The model is below WebP."
            if nade["bits_per_dim"] < webp["bits_per_dim"]
            else "The model is not yet below WebP: it saw each training emoji "
            f"{t['epochs']} times, once per epoch with one random mask, and its validation loss fell from "
            f"{t['history'][max(0, len(t['history']) - 11)]['validation_loss']:,.0f} to "
            f"{t['history'][-1]['validation_loss']:,.0f} nats over its last "
            f"{min(10, len(t['history']) - 1)} epochs (the history is in the JSON)."
        ),
        f"- The baselines are fitted on all {t['split']['train'] + t['split']['validation']:,} non-test emoji with "
        f"add-{lk['baseline_alpha']:g} smoothing (chosen among {', '.join(f'{a:g}' for a in ALPHAS)} on the "
        "validation split). PNG and WebP sizes are whole files, headers included.",
        "",
        "## Inpainting held-out emoji",
        "",
        f"{inp['images']} held-out emoji (a seeded choice), each with its own caption, filled by blocked Gibbs "
        f"sampling ({inp['steps']} steps, the default Yao schedule): PSNR over the hole pixels in dB (pooled MSE; "
        f'higher is better). "Mean of {inp["samples"]} samples" estimates the posterior mean, the MSE-optimal fill;',
        "one sample is what a user sees. The gain columns are the NADE fill's PSNR minus the peer's, with a paired",
        "bootstrap 95% interval over images.",
        "",
    ]
    for label, m in inp["masks"].items():
        methods = m["methods"]
        nade_names = [n for n in methods if n.startswith("NADE")]
        peers = [n for n in methods if not n.startswith("NADE")]
        lines += [
            f"**{label}** ({m['hole_pixels_per_image']:.0f} hidden pixels per image):",
            "",
            "| method | PSNR (dB) | " + " | ".join(f"{n}: gain over it (dB)" for n in nade_names) + " |",
            "|---|---:|" + "---:|" * len(nade_names),
        ]
        for name in nade_names:
            lines.append(f"| {name} | {methods[name]['psnr']:.2f} |" + " |" * len(nade_names))
        for peer in peers:
            cells = [
                f"{g['db']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}]"
                for g in (methods[n]["psnr_gain_over"][peer] for n in nade_names)
            ]
            lines.append(f"| {peer} | {methods[peer]['psnr']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Known pixels never change (the script checks every fill). Each row of the picture: the emoji, the",
        "problem (hole in magenta), one NADE sample, the mean of the samples, OpenCV Telea, biharmonic, 1-NN;",
        "the centre hole first, then the right half, then 50% random pixels.",
        "",
        "![inpainting](img/emoji/inpainting.png)",
        "",
        "The centre hole filled, one chain per emoji, every 10th step:",
        "",
        "![inpainting chains](img/emoji/inpainting-centre.gif)",
        "",
        "## Caption steering",
        "",
    ]
    if skin["captions"]:
        lines += [
            "**Skin tone.** For held-out people and hands that come in light, medium and dark skin tones, the",
            "skin (the pixels where the light and dark variants differ) of the medium variant is hidden and filled",
            f"{skin['samples']} times with the CLDR name of the light variant, of the dark variant, and with no",
            "caption.",
            "The measure is the mean CIELAB lightness L* of the filled skin (0 black, 100 white), with bootstrap",
            '95% intervals over emoji; "nearer light" is the share of fills whose L* is nearer the true light',
            "variant's skin than the dark one's.",
            "",
            "| caption | L* of the filled skin | nearer light | follows the caption | skin pixels filled white |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, c in skin["captions"].items():
            share = c["share_nearer_light"]
            follows = {"light skin tone": share, "dark skin tone": 1 - share}.get(key)
            lines.append(
                f"| {key} | {_ci(c['lightness'])} | {100 * share:.0f}% | "
                + ("–" if follows is None else f"{100 * follows:.0f}%")
                + f" | {100 * c['white_share']:.0f}% |"
            )
        tl = skin["true_lightness"]
        lines += [
            "",
            f"The true skin's L*: light {tl['light']:.1f}, medium {tl['medium']:.1f}, dark {tl['dark']:.1f}. Light "
            f"caption minus dark caption, paired by emoji: {_ci(skin['light_minus_dark'])} L*. Emoji: "
            + ", ".join(skin["emoji"])
            + ".",
            "",
            "Each row: the problem, filled with the light caption, the dark caption, no caption.",
            "",
            "![skin steering](img/emoji/skin-steering.png)",
            "",
        ]
    if hearts["captions"]:
        lines += [
            f"**Colour.** The held-out hearts ({', '.join(hearts['hearts'])}) are hidden whole (every non-white",
            f'pixel) and filled {hearts["samples"]} times with "a <colour> heart" and with no caption. Each fill\'s',
            "mean colour is given the nearest of the coloured heart emoji's mean colours (in CIELAB). The",
            "picture has a row per heart: the problem, then one fill per caption in the table's order.",
            "",
            "| caption | fills nearest the asked colour | nearest colours |",
            "|---|---:|---|",
        ]
        for key, c in hearts["captions"].items():
            share = "–" if c["share_asked_colour"] is None else f"{100 * c['share_asked_colour']:.0f}%"
            counts = ", ".join(f"{w} {n}" for w, n in c["nearest_colour_counts"].items())
            lines.append(f"| {key} | {share} | {counts} |")
        lines += ["", "![heart steering](img/emoji/heart-steering.png)", ""]
    lines += [
        "## Generation",
        "",
        "Eight held-out emoji generated from a blank canvas by their own first captions alone (200 Gibbs",
        "steps): the true emoji above, the generated ones below. Captions: "
        + "; ".join(result["generation"]["captions"])
        + ".",
        "",
        "![generated](img/emoji/generate.png)",
        "",
        "![generating](img/emoji/generate.gif)",
        "",
        "## Speed",
        "",
        "The network's cost at this size, a Gibbs step's time against a forward pass and training images per",
        "second are measured by `benchmarks/bench_images64.py`: see",
        "[benchmarks.md](benchmarks.md#the-seeds-size-64x64-rgb-256-levels-issue-17).",
        "",
        "## How to reproduce",
        "",
        f"    {TRAIN_COMMAND}",
        "    python docs/scripts/emoji_demo.py",
        "",
        f"The script took {result['seconds'] / 60:.0f} minutes on {result['machine']}.",
        "",
    ]
    (docs / "emoji.md").write_text("\n".join(lines))


# ---- main -----------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default runs/emoji")
    parser.add_argument("--masks", type=int, default=16, help="random masks per image for the likelihood")
    parser.add_argument("--components", type=int, default=16, help="the mixture baseline's components")
    parser.add_argument("--iterations", type=int, default=20, help="the mixture baseline's EM iterations")
    parser.add_argument("--inpaint-images", type=int, default=16, help="held-out emoji inpainted per mask")
    parser.add_argument("--skin-emoji", type=int, default=8, help="held-out people and hands for skin steering")
    parser.add_argument("--samples", type=int, default=4, help="fills per problem")
    parser.add_argument("--steps", type=int, default=200, help="Gibbs steps per fill")
    parser.add_argument("--batch", type=int, default=8, help="chains per sampler call")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trained-on", default="the 2-core AMD EPYC VM of docs/benchmarks.md", help="where the model trained (page)"
    )
    parser.add_argument("--note", default="", help="how the model was trained beyond the command (for the page)")
    quick.add_options(parser)
    args = parser.parse_args(argv)
    docs = quick.docs_folder(parser, args)
    checkpoint = args.checkpoint or (docs / "runs" / "quick-emoji" if args.quick else ROOT / "runs" / "emoji")
    if args.quick:
        args.masks, args.components, args.iterations = 2, 2, 2
        args.inpaint_images, args.skin_emoji, args.samples, args.steps, args.bootstrap = 3, 2, 2, 3, 50
        if not (checkpoint / "config.json").exists():
            gibbsdream.train("nade", "builtin:emoji", checkpoint, **QUICK_TRAIN)
    ckpt = gibbsdream.load(checkpoint, device="cpu", family="nade")
    img = docs / IMG
    img.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, attributes, captions = emoji_split(ckpt)
    history = ckpt.history
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    result = {
        "training": {
            "checkpoint": _shown(checkpoint),
            "command": TRAIN_COMMAND,
            "note": args.note,
            "model": ckpt.config["model"],
            "settings": ckpt.config["training"],
            "epochs": ckpt.config["trainer"]["epoch"],
            "seconds": ckpt.config["trainer"]["elapsed"],
            "validation_loss": history[-1]["validation_loss"] if history else None,
            "history": [
                {k: h.get(k) for k in ("epoch", "elapsed", "train_loss", "validation_loss", "learning_rate")}
                for h in history
            ],
            "split": ckpt.config["data_source"]["split"],
            "machine": args.trained_on,
        },
        "machine": machine,
    }
    common = dict(seed=args.seed, img=img)
    result["likelihood"] = likelihood(ckpt, args.masks, args.components, args.iterations, args.seed)
    result["inpainting"] = inpainting(
        ckpt, rows, args.inpaint_images, args.samples, args.steps, batch=args.batch, resamples=args.bootstrap, **common
    )
    result["skin"] = skin_steering(
        ckpt,
        rows,
        attributes,
        args.skin_emoji,
        args.samples,
        args.steps,
        batch=args.batch,
        resamples=args.bootstrap,
        **common,
    )
    result["hearts"] = heart_steering(ckpt, rows, attributes, args.samples, args.steps, **common)
    result["generation"] = generation(ckpt, rows, attributes, captions, args.steps, **common)
    result["seconds"] = round(time.perf_counter() - started, 1)
    (docs / "data").mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / "data" / "emoji.json", json.dumps(result, indent=2) + "\n")
    write_page(result, docs)
    print(f"wrote {docs / 'emoji.md'} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
