"""Speed at the seed's size: 64x64 RGB images with 256 levels (issue 17).

The default ``OrderlessNADE(channels=3, num_categories=256)`` (width 64, depth 6) with random
weights (speed does not depend on what the weights say), in one run, round after round with the
variants alternating so that a change in the machine's load hits them all alike:

- **the matmul rate**: a float32 ``2048 x 2048 x 2048`` product, timed in every round;
- **the network**: its FLOPs per image (``torch.utils.flop_counter``) and one forward pass,
  ``model.logits`` (every variable's 256 logits), at each ``--batches`` size; FLOPs over time over
  the round's matmul rate is the fraction of the matmul rate;
- **a blocked Gibbs step** through the front door (``gibbsdream.sample``, sampler ``gibbs``, the
  default Yao block schedule) inpainting the 32x32 centre (3,072 free variables per image) and
  generating from a blank canvas (12,288), timed step by step (``on_step``): the mean step of a
  ``--steps``-step run and its first step (the largest block, 90% of the free variables); and the
  same with every variable read out (the model behind a wrapper without ``logits_at``, as every
  step was before this benchmark's issue);
- **a training step** (masks of the default distribution, the masked cross-entropy, backward,
  Adam) at each ``--train-batches`` size: the loss of the unknown variables alone, read out at
  those only (what ``NADETrainer`` does), the same with the forward pass in bfloat16
  (``--precision bfloat16``), and the masked loss of every variable's logits (what it did
  before); images per second; and where one step's time goes (torch profiler, by operator kind).
  The forward pass under bfloat16 autocast is timed too, for reference (sampling stays float32).

Run:  python benchmarks/bench_images64.py [--rounds 5] [--json results.json] [--device cuda]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections import defaultdict

import torch
from torch.utils.flop_counter import FlopCounterMode

import gibbsdream
from common import cpu_name
from gibbsdream.data.masks import training_masks
from gibbsdream.models.nade import OrderlessNADE
from gibbsdream.training.losses import masked_loss, unknown_loss
from gibbsdream.training.nade import NADETrainConfig

SHAPE = (3, 64, 64)
# (name, the loss of the unknown variables alone, the forward pass in bfloat16)
TRAINING_VARIANTS = (
    ("every variable", False, False),  # as NADETrainer did before issue 17
    ("unknown only", True, False),  # NADETrainer's default now
    ("unknown only, bfloat16", True, True),  # --precision bfloat16
)
LEVELS = 256
MATMUL = 2048


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work, device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - started


class EveryLogit:
    """The model without ``logits_at``: the samplers then read out every variable and pick."""

    def __init__(self, model):
        self.model, self.num_categories = model, model.num_categories

    def logits(self, x, known, context=None):
        return self.model.logits(x, known, context)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def forward_flops(model, x, known) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.logits(x, known)
    return counter.get_total_flops()


def gibbs_step_times(model, x, known, steps: int, device: torch.device) -> list[float]:
    """Seconds of each step of one run (step 0, the initial fill, left out)."""
    stamps = []

    def on_step(n, states, trace):
        sync(device)
        stamps.append(time.perf_counter())

    gibbsdream.sample(model, x=x, known=known, sampler="gibbs", steps=steps, seed=0, on_step=on_step)
    return [b - a for a, b in itertools.pairwise(stamps)]


def training_step(model, optimizer, masks, x, generator, unknown_only: bool, bfloat16: bool = False):
    known = masks(x.shape[0], tuple(x.shape[1:]), generator, x.device)
    if unknown_only:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bfloat16):  # as NADETrainer._loss
            logits = model(x, known, where=~known)
        loss = unknown_loss(logits.float(), x, known).mean()
    else:
        loss = masked_loss(model(x, known), x, known).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def where_training_goes(model, optimizer, masks, x, generator) -> dict:
    """Self time of one training step's operators, by kind (torch profiler), in seconds."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        training_step(model, optimizer, masks, x, generator, unknown_only=True)
        sync(x.device)
    kinds = defaultdict(float)
    for event in prof.key_averages():
        name = event.key
        if "conv" in name:
            kind = "convolutions (forward and backward)"
        elif any(k in name for k in ("addmm", "::mm", "linear", "log_softmax", "nll_loss", "cross_entropy")):
            kind = "readout and loss (forward and backward)"
        elif "adam" in name.lower() or "_foreach" in name:
            kind = "optimizer"
        elif any(k in name for k in ("index", "gather", "scatter", "nonzero", "sort", "cat")):
            kind = "gathering the unknown variables"
        elif any(k in name for k in ("rand", "uniform", "bernoulli")):
            kind = "random masks"
        else:
            kind = "other (embedding, ReLU, residual adds, copies)"
        kinds[kind] += event.self_cpu_time_total / 1e6
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=11, help="Gibbs steps per timed run")
    parser.add_argument("--batches", default="1,4,8", help="batch sizes of the forward passes and Gibbs steps")
    parser.add_argument("--train-batches", default="8,32")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    train_batches = [int(b) for b in args.train_batches.split(",")]
    torch.manual_seed(0)
    model = OrderlessNADE(channels=3, num_categories=LEVELS, width=args.width, depth=args.depth).to(device).eval()
    full = EveryLogit(model)
    g = torch.Generator(device).manual_seed(0)
    images = {b: torch.randint(0, LEVELS, (b, *SHAPE), generator=g, device=device) for b in batches}
    holes = {}
    for b in batches:
        centre = torch.ones(b, *SHAPE, dtype=torch.bool, device=device)
        centre[:, :, 16:48, 16:48] = False
        holes[b] = {"inpaint": centre, "generate": torch.zeros(b, *SHAPE, dtype=torch.bool, device=device)}
    flops = forward_flops(model, images[batches[0]][:1], holes[batches[0]]["inpaint"][:1])

    train_model = OrderlessNADE(channels=3, num_categories=LEVELS, width=args.width, depth=args.depth).to(device)
    # as NADETrainer lays it out while it trains
    train_model.to(memory_format=torch.channels_last)
    train_model.readout.weight.data = train_model.readout.weight.data.clone(memory_format=torch.contiguous_format)
    optimizer = torch.optim.Adam(train_model.parameters(), lr=1e-3)
    masks = training_masks(NADETrainConfig().masks)
    train_images = {b: torch.randint(0, LEVELS, (b, *SHAPE), generator=g, device=device) for b in train_batches}

    a = torch.randn(MATMUL, MATMUL, device=device)
    matmul_flops = 2 * MATMUL**3
    rounds = defaultdict(list)

    def record(key, seconds):
        rounds[key].append(seconds)

    with torch.no_grad():  # warm-up
        torch.mm(a, a)
        for b in batches:
            model.logits(images[b], holes[b]["inpaint"])
            gibbs_step_times(model, images[b], holes[b]["inpaint"], 2, device)
    for b in train_batches:
        training_step(train_model, optimizer, masks, train_images[b], g, True)
        training_step(train_model, optimizer, masks, train_images[b], g, False)

    for r in range(args.rounds):
        print(f"round {r + 1} of {args.rounds}", flush=True)
        record("matmul", timed(lambda: torch.mm(a, a), device))
        for b in batches:
            x = images[b]
            with torch.no_grad():
                record(f"forward/{b}", timed(lambda x=x, b=b: model.logits(x, holes[b]["inpaint"]), device))
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    record(f"forward bf16/{b}", timed(lambda x=x, b=b: model.logits(x, holes[b]["inpaint"]), device))
            for task, known in holes[b].items():
                for variant, m in (("logits_at", model), ("every logit", full)):
                    times = gibbs_step_times(m, x, known, args.steps, device)
                    record(f"step/{task}/{b}/{variant}", statistics.mean(times))
                    record(f"first step/{task}/{b}/{variant}", times[0])
        for b in train_batches:
            for variant, unknown_only, bf16 in TRAINING_VARIANTS:
                work = lambda b=b, u=unknown_only, h=bf16: training_step(
                    train_model, optimizer, masks, train_images[b], g, u, h
                )
                record(f"train/{b}/{variant}", timed(work, device))
        record("matmul", timed(lambda: torch.mm(a, a), device))

    # per round: the matmul rate is the faster of its two timings in that round
    per_round_rate = [
        matmul_flops / min(rounds["matmul"][2 * r], rounds["matmul"][2 * r + 1]) for r in range(args.rounds)
    ]
    results = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "load_average_at_end": list(os.getloadavg()),
        },
        "model": {
            "width": args.width,
            "depth": args.depth,
            "parameters": sum(p.numel() for p in model.parameters()),
            "gflop_per_image_forward": flops / 1e9,
        },
        "matmul_gflops": spread([rate / 1e9 for rate in per_round_rate]),
        "settings": {"rounds": args.rounds, "steps": args.steps, "device": str(device)},
        "forward": {},
        "gibbs": {},
        "training": {},
    }
    print(f"\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}")
    print(f"matmul rate {statistics.median(per_round_rate) / 1e9:.0f} GFLOP/s; forward {flops / 1e9:.2f} GFLOP/image")
    for b in batches:
        forward = rounds[f"forward/{b}"]
        fraction = [flops * b / t / rate for t, rate in zip(forward, per_round_rate)]
        bf16 = rounds[f"forward bf16/{b}"]
        results["forward"][b] = {
            "seconds": spread(forward),
            "fraction_of_matmul_rate": spread(fraction),
            "bfloat16_autocast_seconds": spread(bf16),
        }
        print(
            f"batch {b}: forward {statistics.median(forward) * 1e3:.1f} ms "
            f"({statistics.median(fraction):.0%} of the float32 matmul rate); "
            f"under bfloat16 autocast {statistics.median(bf16) * 1e3:.1f} ms"
        )
        for task in ("inpaint", "generate"):
            row = {}
            for variant in ("logits_at", "every logit"):
                step, first = rounds[f"step/{task}/{b}/{variant}"], rounds[f"first step/{task}/{b}/{variant}"]
                row[variant] = {
                    "mean_step_seconds": spread(step),
                    "first_step_seconds": spread(first),
                    "mean_step_over_forward": spread([s / f for s, f in zip(step, forward)]),
                    "first_step_over_forward": spread([s / f for s, f in zip(first, forward)]),
                }
                mean_ratio = row[variant]["mean_step_over_forward"]["median"]
                first_ratio = row[variant]["first_step_over_forward"]["median"]
                print(
                    f"  {task:8s} {variant:11s}: step {statistics.median(step) * 1e3:7.1f} ms ({mean_ratio:.2f}x "
                    f"forward), first step {statistics.median(first) * 1e3:7.1f} ms ({first_ratio:.2f}x)"
                )
            results["gibbs"].setdefault(task, {})[b] = row
    for b in train_batches:
        row = {}
        every = rounds[f"train/{b}/every variable"]
        for variant, _, _ in TRAINING_VARIANTS:
            seconds = rounds[f"train/{b}/{variant}"]
            row[variant] = {
                "seconds": spread(seconds),
                "images_per_second": b / statistics.median(seconds),
                "time_over_every_variable": spread([t / e for t, e in zip(seconds, every)]),
            }
            print(
                f"training batch {b:3d}, {variant:24s}: {row[variant]['images_per_second']:6.1f} images/s "
                f"(time {row[variant]['time_over_every_variable']['median']:.2f}x every variable's)"
            )
        results["training"][b] = row
    b = train_batches[0]
    results["training_profile"] = {
        "batch": b,
        "seconds_by_kind": where_training_goes(train_model, optimizer, masks, train_images[b], g),
    }
    print(f"where a training step at batch {b} goes:")
    for kind, seconds in results["training_profile"]["seconds_by_kind"].items():
        print(f"  {kind:48s} {seconds * 1e3:8.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
