"""Inpainting held-out digits, side by side with OpenCV, scikit-image and nearest neighbours.

Quality: the 297 held-out images of scikit-learn's 8x8 digits (17 levels, the split of
``gibbsdream train nade`` with seed 0) with part of each image hidden -- the 4x4 centre hole
(``centre``), each pixel hidden with probability 1/2 (``random:0.5``, a fresh mask per image) and
the left half (``box:0,0,4,8``). Every method fills the hole from the known pixels only (hidden
pixels are zeroed before any method sees them), and is scored over the hole pixels only, in 8-bit
intensity (the codec's decoding of the 17 levels to 0..255):

- Orderless NADE (trained here for ``--train-time`` seconds on ``--train-masks``, or loaded with
  ``--checkpoint``): the one-shot conditional mean (the expected intensity under the model's
  distribution of each hole pixel given only the known pixels: one network call, and the
  MSE-optimal fill under the model's conditionals), the posterior mean estimated by averaging
  ``--chains`` independent chains of Yao et al.'s blocked Gibbs sampler (``--steps`` steps) and of
  ancestral sampling, that average's error extrapolated to infinitely many chains, and single
  samples of both samplers;
- OpenCV ``cv2.inpaint`` (Telea; Navier-Stokes), scikit-image ``inpaint_biharmonic``;
- k-nearest-neighbour fill (k = 1, 5): the mean of the k training images closest on the known
  pixels (Euclidean);
- trivial fills: the mean of the image's known pixels, and the training-set mean image.

MSE is pooled over all hole pixels of all test images (and, for single samples, over all
``--chains`` draws); "PSNR" is 10 log10(255^2 / pooled MSE); "per-image PSNR" is the mean over
images of each image's own PSNR (capped at 60 dB for a hole filled exactly). Each method's gain in
pooled PSNR over 5-NN comes with a paired bootstrap 95% interval over images (``--bootstrap``).

The speed of a Gibbs step at the seed's size (64x64 RGB, 256 levels) is measured by
``bench_images64.py`` (this script did it until issue 17: its JSON results of then hold the figures).

Run:  python benchmarks/bench_inpaint.py [--checkpoint DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from common import cpu_name
from gibbsdream import __version__ as gibbsdream_version
from gibbsdream import sample
from gibbsdream.data.images import load_images
from gibbsdream.data.masks import inpaint_mask
from gibbsdream.models.nade import NADEConfig, OrderlessNADE
from gibbsdream.sampling.registry import applicable
from gibbsdream.training.nade import (
    NADETrainConfig,
    NADETrainer,
    save_nade_trainer,
    split_images,
)

PSNR_CAP = 60.0  # dB, for an image whose hole is reproduced exactly (MSE 0)
TEST_SIZE, SPLIT_SEED, VALIDATION_SIZE = 297, 0, 150


def machine() -> dict:
    import cv2
    import skimage

    cpu = cpu_name()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gibbsdream": gibbsdream_version,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "scikit-image": skimage.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": list(os.getloadavg()),
    }
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the model ------------------------------------------------------------------------------------


def get_model(args, device: torch.device):
    """The NADE, its codec and splits: loaded from --checkpoint, or trained here."""
    if args.checkpoint:
        from gibbsdream.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.checkpoint, device=device, family="nade")
        data = checkpoint.data
        codec = checkpoint.codec
        if "test" not in data:
            print(f"warning: {args.checkpoint} has no test split; using the 297-image split of builtin:digits, seed 0")
            dataset = load_images("builtin:digits")
            train_all, test = split_images(dataset.states, TEST_SIZE, seed=SPLIT_SEED)
            data = {"train": train_all, "test": test}
        # validation first, then train: the same order as this script's own split (k-NN breaks distance ties by it)
        reference = torch.cat([data[name] for name in ("validation", "train") if name in data])
        history = checkpoint.history
        training = {
            "source": "checkpoint",
            "checkpoint": str(args.checkpoint),
            "model": checkpoint.model.config.to_dict(),
            "training_config": checkpoint.config.get("training"),
            "seconds": (checkpoint.config.get("trainer") or {}).get("elapsed"),
            "epochs": (checkpoint.config.get("trainer") or {}).get("epoch"),
            "validation_loss": history[-1].get("validation_loss") if history else None,
            "validation_loss_orderless_masks": (
                orderless_validation_loss(checkpoint.model, data["validation"]) if "validation" in data else None
            ),
        }
        return checkpoint.model.eval(), codec, reference, data["test"].to(device), training

    dataset = load_images("builtin:digits")
    codec = dataset.codec
    train_all, test = split_images(dataset.states, TEST_SIZE, seed=SPLIT_SEED)
    validation, train = train_all[:VALIDATION_SIZE], train_all[VALIDATION_SIZE:]
    config = NADETrainConfig(
        width=args.width,
        depth=args.depth,
        epochs=args.epochs,
        max_time=args.train_time,
        learning_rate=args.learning_rate,
        masks=args.train_masks,
        seed=args.seed,
    ).check()
    torch.manual_seed(args.seed)  # the network's initial weights
    model = OrderlessNADE(**config.model_config(codec.channels, codec.levels)).to(device)
    started = time.perf_counter()
    trainer = NADETrainer(model, config, train.to(device), validation.to(device)).fit(progress=False)
    seconds = time.perf_counter() - started
    if args.save_checkpoint:
        save_nade_trainer(
            trainer,
            Path(args.save_checkpoint),
            codec,
            {"train": train, "validation": validation, "test": test},
            {"source": "builtin:digits"},
        )
    last = trainer.history[-1] if trainer.history else {}
    training = {
        "source": "trained in this run",
        "model": model.config.to_dict(),
        "training_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
        "seconds": seconds,
        "epochs": trainer.epoch,
        "validation_loss": last.get("validation_loss"),
        "best_validation_loss": min((row["validation_loss"] for row in trainer.history), default=None),
        "train_loss": last.get("train_loss"),
        "validation_loss_orderless_masks": orderless_validation_loss(model, validation),
    }
    return model.eval(), codec, train_all, test.to(device), training


def orderless_validation_loss(model, validation: torch.Tensor) -> float:
    """Validation loss (nats/image) under the plain orderless masks, comparable across mask mixes."""
    device = next(model.parameters()).device
    probe = NADETrainer(
        model, NADETrainConfig(masks="orderless", seed=0).check(), validation[:1].to(device), validation.to(device)
    )
    value = probe.validation_loss()
    model.eval()
    return value


# ---- the methods ----------------------------------------------------------------------------------
#
# Each takes the problem (states x with hidden pixels zeroed, known) and returns predicted 8-bit
# intensities, float64 numpy, shaped (N, C, H, W) or (R, N, C, H, W) for R draws per image.


def intensities(codec) -> torch.Tensor:
    """The 8-bit intensity of every level, as float64: (K,)."""
    return codec.decode(torch.arange(codec.levels).view(1, 1, 1, -1)).view(-1).double()


@torch.no_grad()
def nade_conditional_mean(model, codec, x, known, batch: int):
    table = intensities(codec).to(x.device)
    out = []
    for start in range(0, x.shape[0], batch):
        probs = torch.softmax(model.logits(x[start : start + batch], known[start : start + batch]).double(), -1)
        out.append(probs @ table)
    return torch.cat(out).cpu().numpy()


def nade_draws(model, codec, x, known, *, sampler, chains, steps, block, temperature, seed, batch):
    """``chains`` independent samples of every problem: (R, N, C, H, W) intensities."""
    N = x.shape[0]
    xs, ks = x.repeat(chains, 1, 1, 1), known.repeat(chains, 1, 1, 1)  # row r * N + n = draw r of image n
    out = []
    for index, start in enumerate(range(0, xs.shape[0], batch)):
        chain = sample(
            model,
            x=xs[start : start + batch],
            known=ks[start : start + batch],
            sampler=sampler,
            steps=steps,
            temperature=temperature,
            seed=seed + index,
            **applicable("conditional", sampler, block=block),
        )
        out.append(chain.samples)
    samples = torch.cat(out)
    return codec.decode(samples).double().cpu().numpy().reshape(chains, N, *x.shape[1:])


def opencv_inpaint(pixels, known, flag, radius):
    import cv2

    out = np.empty(pixels.shape, dtype=np.float64)
    for n in range(pixels.shape[0]):
        for c in range(pixels.shape[1]):
            hole = (~known[n, c]).astype(np.uint8) * 255
            out[n, c] = cv2.inpaint(np.ascontiguousarray(pixels[n, c]), hole, radius, flag)
    return out


def biharmonic(pixels, known):
    from skimage.restoration import inpaint_biharmonic

    out = np.empty(pixels.shape, dtype=np.float64)
    for n in range(pixels.shape[0]):
        for c in range(pixels.shape[1]):
            out[n, c] = inpaint_biharmonic(pixels[n, c] / 255.0, ~known[n, c]) * 255.0
    return out


def knn_fill(pixels, known, reference, k):
    """Mean of the k reference images nearest on each image's known pixels (ties: earlier reference first)."""
    X = torch.from_numpy(pixels.reshape(pixels.shape[0], -1)).double()
    m = torch.from_numpy(known.reshape(known.shape[0], -1)).double()
    T = torch.from_numpy(reference.reshape(reference.shape[0], -1)).double()
    # sum_j m_nj (X_nj - T_kj)^2 for every pair, with each image's own mask
    distance = (m * X * X).sum(1, keepdim=True) - 2 * (m * X) @ T.T + m @ (T * T).T
    nearest = distance.argsort(dim=1, stable=True)[:, :k]  # (N, k)
    return T[nearest].mean(1).numpy().reshape(pixels.shape)


def known_mean_fill(pixels, known):
    flat, m = pixels.reshape(pixels.shape[0], -1), known.reshape(known.shape[0], -1)
    means = (flat * m).sum(1) / m.sum(1)
    return np.broadcast_to(means[:, None, None, None], pixels.shape).copy()


# ---- scoring --------------------------------------------------------------------------------------


def score(prediction, truth, known) -> dict:
    """MSE and PSNR over the hole pixels; ``prediction`` (N, ...) or (R, N, ...) with R draws."""
    prediction = np.clip(prediction, 0.0, 255.0)
    if prediction.ndim == truth.ndim:
        prediction = prediction[None]
    hole = ~known
    squared = (prediction - truth[None]) ** 2 * hole[None]
    per_image = squared.reshape(*squared.shape[:2], -1).sum(-1) / hole.reshape(hole.shape[0], -1).sum(-1)  # (R, N)
    mse = float(squared.sum() / (hole.sum() * prediction.shape[0]))
    psnr_per_image = np.minimum(10 * np.log10(255.0**2 / np.maximum(per_image, 1e-300)), PSNR_CAP)
    return {
        "_image_sse": squared.reshape(*squared.shape[:2], -1).sum(-1).mean(0),  # (N,) for the bootstrap; not saved
        "mse": mse,
        "mse_levels": mse * (16 / 255) ** 2,
        "psnr": 10 * math.log10(255.0**2 / mse) if mse > 0 else PSNR_CAP,
        "psnr_per_image": float(psnr_per_image.mean()),
        "exact_fraction": float((per_image == 0).mean()),
        "draws": int(prediction.shape[0]),
    }


def extrapolated(draws, truth, known) -> dict:
    """The pooled MSE that the mean of infinitely many draws would have, estimated without bias.

    With R draws per pixel, E[(mean_R - t)^2] = (mu - t)^2 + var / R, so (mean_R - t)^2 - s^2 / R
    (s^2 the draws' sample variance) estimates the error (mu - t)^2 of the exact sample mean mu.
    Pooled over hole pixels only; no per-image PSNR (a single image's estimate may be negative).
    """
    draws = np.clip(draws, 0.0, 255.0)
    R = draws.shape[0]
    hole = ~known
    corrected = (draws.mean(0) - truth) ** 2 - draws.var(0, ddof=1) / R
    mse = float(corrected[hole].mean())
    image_sse = (corrected * hole).reshape(hole.shape[0], -1).sum(-1)
    return {
        "_image_sse": image_sse,
        "mse": mse,
        "mse_levels": mse * (16 / 255) ** 2,
        "psnr": 10 * math.log10(255.0**2 / mse),
        "psnr_per_image": None,
        "exact_fraction": None,
        "draws": R,
        "seconds": None,
    }


def bootstrap_gain(sse: np.ndarray, peer_sse: np.ndarray, hidden: np.ndarray, index: np.ndarray) -> tuple[float, float]:
    """95% interval of the pooled-PSNR gain of a method (per-image hole SSE ``sse``) over a peer's,
    paired over images: ``index`` ``(resamples, N)`` draws images with replacement; ``hidden`` ``(N,)``
    counts each image's hole values."""
    holes = hidden[index].sum(1)

    def psnr(image_sse):
        return 10 * np.log10(255.0**2 / (image_sse[index].sum(1) / holes))

    low, high = np.percentile(psnr(sse) - psnr(peer_sse), [2.5, 97.5])
    return float(low), float(high)


def compare_to(results: dict, peer: str, hidden: np.ndarray, resamples: int, seed: int) -> None:
    """Add each method's pooled-PSNR gain over ``peer``, with a paired bootstrap 95% interval over images."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, hidden.shape[0], size=(resamples, hidden.shape[0]))
    peer_sse = results[peer]["_image_sse"]
    for result in results.values():
        sse = result.pop("_image_sse")
        gain = result["psnr"] - results[peer]["psnr"]
        low, high = bootstrap_gain(sse, peer_sse, hidden, index) if sse is not peer_sse else (0.0, 0.0)
        result[f"psnr_gain_over_{peer.split()[0]}"] = {"db": float(gain), "ci95": [low, high]}
    results[peer].pop("_image_sse", None)


def run_mask(spec, args, model, codec, reference, test, device) -> dict:
    C, H, W = test.shape[1:]
    known = torch.stack([inpaint_mask(spec, (C, H, W), generator=args.seed * 100003 + n) for n in range(test.shape[0])])
    known_np = known.numpy()
    truth = codec.decode(test.cpu()).double().numpy()
    x = torch.where(known.to(device), test, torch.zeros_like(test))  # hidden pixels never reach a method
    pixels = codec.decode(x.cpu()).numpy()  # uint8 (N, C, H, W), zero in the hole
    known_dev = known.to(device)
    reference_pixels = codec.decode(reference.cpu()).double().numpy()
    train_mean = np.broadcast_to(reference_pixels.mean(0, keepdims=True), truth.shape)

    results = {}

    def record(name, fn, draws_name=None):
        sync(device)
        started = time.perf_counter()
        prediction = fn()
        sync(device)
        seconds = time.perf_counter() - started
        if draws_name is None:
            results[name] = {**score(prediction, truth, known_np), "seconds": seconds}
        else:  # R draws: their mean estimates the posterior mean; each draw is a single sample
            results[name] = {**score(prediction.mean(0), truth, known_np), "seconds": seconds}
            results[name.split(", mean")[0] + ", mean of inf. samples (extrapolated)"] = extrapolated(
                prediction, truth, known_np
            )
            results[draws_name] = {**score(prediction, truth, known_np), "seconds": None}
        return prediction

    common = {"block": args.block, "temperature": args.temperature, "batch": args.sample_batch}
    record(
        "NADE one-shot conditional mean", lambda: nade_conditional_mean(model, codec, x, known_dev, args.sample_batch)
    )
    record(
        f"NADE Gibbs, mean of {args.chains} samples",
        lambda: nade_draws(
            model,
            codec,
            x,
            known_dev,
            sampler="gibbs",
            chains=args.chains,
            steps=args.steps,
            seed=args.seed * 1000,
            **common,
        ),
        draws_name="NADE Gibbs, single sample",
    )
    # the time of one sample per image, measured on its own (its error is scored over all draws above)
    sync(device)
    started = time.perf_counter()
    nade_draws(
        model, codec, x, known_dev, sampler="gibbs", chains=1, steps=args.steps, seed=args.seed * 1000 + 100, **common
    )
    sync(device)
    results["NADE Gibbs, single sample"]["seconds"] = time.perf_counter() - started
    record(
        f"NADE ancestral, mean of {args.chains} samples",
        lambda: nade_draws(
            model,
            codec,
            x,
            known_dev,
            sampler="ancestral",
            chains=args.chains,
            steps=1,
            seed=args.seed * 1000 + 200,
            **common,
        ),
        draws_name="NADE ancestral, single sample",
    )
    sync(device)
    started = time.perf_counter()
    nade_draws(
        model, codec, x, known_dev, sampler="ancestral", chains=1, steps=1, seed=args.seed * 1000 + 300, **common
    )
    sync(device)
    results["NADE ancestral, single sample"]["seconds"] = time.perf_counter() - started

    import cv2

    record("OpenCV Telea", lambda: opencv_inpaint(pixels, known_np, cv2.INPAINT_TELEA, args.radius))
    record("OpenCV Navier-Stokes", lambda: opencv_inpaint(pixels, known_np, cv2.INPAINT_NS, args.radius))
    record("scikit-image biharmonic", lambda: biharmonic(pixels, known_np))
    record("1-NN fill", lambda: knn_fill(pixels.astype(np.float64), known_np, reference_pixels, 1))
    record("5-NN fill", lambda: knn_fill(pixels.astype(np.float64), known_np, reference_pixels, 5))
    record("mean of known pixels", lambda: known_mean_fill(pixels.astype(np.float64), known_np))
    record("training mean image", lambda: train_mean)
    hidden = (~known_np).reshape(known_np.shape[0], -1).sum(1)
    compare_to(results, "5-NN fill", hidden, args.bootstrap, args.seed)
    return {
        "mask": spec,
        "hole_pixels_per_image": {"mean": float(hidden.mean()), "min": int(hidden.min()), "max": int(hidden.max())},
        "methods": results,
    }


# ---- speed of one Gibbs step on 64x64 RGB ---------------------------------------------------------


# ---- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", help="a `gibbsdream train nade` checkpoint of builtin:digits (else train one here)"
    )
    parser.add_argument("--save-checkpoint", help="save the model trained here to this folder")
    parser.add_argument("--train-time", type=float, default=240.0, help="seconds of training when no --checkpoint")
    parser.add_argument("--width", type=int, default=NADEConfig.width)
    parser.add_argument("--depth", type=int, default=NADEConfig.depth)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--epochs", type=int, default=1000, help="training stops at this many epochs or --train-time")
    parser.add_argument("--train-masks", default="orderless+contiguish", help="training mask distribution")
    parser.add_argument("--masks", default="centre;random:0.5;box:0,0,4,8", help="inpainting masks, ';'-separated")
    parser.add_argument("--chains", type=int, default=16, help="samples per image for the posterior mean")
    parser.add_argument("--steps", type=int, default=16, help="blocked-Gibbs steps per chain")
    parser.add_argument("--block", default="yao:0.9,0.1,0.7")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sample-batch", type=int, default=2376, help="chains per sampler call")
    parser.add_argument("--radius", type=float, default=3.0, help="OpenCV inpaint radius (pixels)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples for the intervals of the gain over 5-NN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    started = time.perf_counter()

    m = machine()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"OpenCV {m['opencv']}, scikit-image {m['scikit-image']}, device {device}"
        + (f" ({m['cuda']})" if device.type == "cuda" else ""),
        flush=True,
    )

    mask_specs = [spec.strip() for spec in args.masks.split(";") if spec.strip()]
    training, masks, test_images, reference_images = None, {}, None, None
    if mask_specs:
        model, codec, reference, test, training = get_model(args, device)
        test_images, reference_images = int(test.shape[0]), int(reference.shape[0])
        loss = training["validation_loss"]
        print(
            f"model: {training['source']}, {training['seconds'] or 0:.0f} s, {training['epochs']} epochs, "
            f"validation loss {'?' if loss is None else f'{loss:.2f}'} nats/image on its training masks, "
            f"{training['validation_loss_orderless_masks'] or float('nan'):.2f} on orderless masks; "
            f"{test_images} test images, "
            f"{reference_images} reference (training) images for k-NN",
            flush=True,
        )

    for spec in mask_specs:
        result = run_mask(spec, args, model, codec, reference, test, device)
        masks[spec] = result
        holes = result["hole_pixels_per_image"]
        print(
            f"\nmask {spec} ({holes['mean']:.1f} hidden pixels per image): "
            "MSE and PSNR over the hole, 8-bit intensities"
        )
        print(
            f"  {'method':52s} {'MSE':>9s} {'MSE (0..16)':>11s} {'PSNR dB':>8s} {'per-image':>9s} "
            f"{'vs 5-NN dB [95% interval]':>26s} {'seconds':>8s}"
        )
        for name, r in result["methods"].items():
            seconds = f"{r['seconds']:8.2f}" if r["seconds"] is not None else f"{'':8s}"
            per_image = f"{r['psnr_per_image']:9.2f}" if r["psnr_per_image"] is not None else f"{'':9s}"
            gain = r["psnr_gain_over_5-NN"]
            versus = f"{gain['db']:+6.2f} [{gain['ci95'][0]:+6.2f}, {gain['ci95'][1]:+6.2f}]"
            print(
                f"  {name:52s} {r['mse']:9.1f} {r['mse_levels']:11.2f} {r['psnr']:8.2f} "
                f"{per_image} {versus:>26s} {seconds}",
                flush=True,
            )

    total = time.perf_counter() - started
    print(f"\ntotal time {total:.0f} s")
    results = {
        "machine": m,
        "settings": vars(args),
        "scoring": (
            "MSE over hole pixels only, in 8-bit intensity (levels decoded by the codec); 'psnr' from the "
            "MSE pooled over all hole pixels of all test images (and all draws for single samples); "
            f"'psnr_per_image' the mean of per-image PSNRs capped at {PSNR_CAP:g} dB; 'mse_levels' = mse * (16/255)^2"
        ),
        "training": training,
        "test_images": test_images,
        "reference_images": reference_images,
        "masks": masks,
        "total_seconds": total,
        "load_average_at_end": list(os.getloadavg()),  # other work on the machine skews the timings
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
