"""RBM speed, side by side with scikit-learn's BernoulliRBM in the same run.

Training: one epoch over random strings (default 50,000 strings of 20 positions x 28 symbols,
one-hot encoded for scikit-learn), 256 hidden units, batch 64, float32, PCD-1 for both (that is
what BernoulliRBM does), no momentum or weight cost (BernoulliRBM has neither). scikit-learn runs
with its default BLAS threads and with one; the ratio is taken against the faster. gibbsdream runs
with its default engine (on a CPU: the compiled numba loops) and, as a second row, with its
PyTorch engine (``--engine torch``), the one a GPU uses.

Sampling: Gibbs sweeps per second at 1,024 parallel chains, for gibbsdream.sample and for
BernoulliRBM.gibbs, and gibbsdream's rate in floating-point operations against this machine's
measured float32 matrix-multiply rate. A sweep of the dense one-hot formulation costs two
(N x V*K) by (V*K x H) products, 4*N*V*K*H flops; gibbsdream computes the hidden side as a
gather of V rows per chain (it exploits the one-hot structure), so its "dense-equivalent" rate
can exceed what its matmuls alone would do, and both figures are printed.

Run:  python benchmarks/bench_rbm.py [--json results.json] [--profile]

``--profile`` also prints where the time goes (torch profiler: the operators of one training
epoch and of the sampling sweeps, by self time), which is how docs/benchmarks.md's breakdown
is made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import sklearn
import torch
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

from common import cpu_name
from gibbsdream import RBM, sample
from gibbsdream.training import RBMTrainConfig, RBMTrainer


def machine(device: torch.device) -> dict:
    cpu = cpu_name()
    return {
        "cpu": cpu,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": _numba_version(),
        "scikit-learn": sklearn.__version__,
    }


def _numba_version() -> str | None:
    try:
        import numba
    except ImportError:
        return None
    return numba.__version__


SETTLE_SECONDS = 0.5


CPU = torch.device("cpu")


def interleaved(functions: dict, repeats: int, device: torch.device = CPU) -> dict:
    """Wall times of each function over ``repeats`` rounds, every round running each function once
    in turn (after one warm-up run of each), so that a slow spell of a shared machine falls on all
    of them alike; ratios are then taken round by round. Returns name -> list of seconds.

    Each run starts after a pause of SETTLE_SECONDS: BLAS and OpenMP worker threads keep spinning
    for a while after a call, and NumPy's and PyTorch's pools would otherwise slow each other
    down (measured here: a PyTorch matmul right after scikit-learn's sweeps ran at half speed)."""

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in functions.values():
        fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize()
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strings", type=int, default=50_000)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=28)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--chains", type=int, default=1024)
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--device", default="cpu", help="where gibbsdream runs (cpu or cuda); scikit-learn always runs on the CPU"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also print the top operators by CPU self time")
    args = parser.parse_args()
    N, V, K, H, B = args.strings, args.positions, args.symbols, args.hidden, args.batch_size
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    states = rng.integers(0, K, size=(N, V))
    one_hot = np.zeros((N, V * K), dtype=np.float32)
    one_hot[np.arange(N)[:, None], states + np.arange(V) * K] = 1.0
    states = torch.from_numpy(states)

    # ---- training: one epoch each --------------------------------------------------------------
    def sklearn_epoch():
        BernoulliRBM(n_components=H, learning_rate=args.learning_rate, batch_size=B, n_iter=1, random_state=0).fit(
            one_hot
        )

    def sklearn_epoch_one_thread():
        # Its products are small (64 x 560 by 560 x 256): one BLAS thread was measured faster than
        # two on the development machine, so scikit-learn is timed both ways and the headline
        # ratio is taken against the faster of the two, round by round.
        with threadpool_limits(1):
            sklearn_epoch()

    engines = {}

    def ours_epoch(engine="auto"):
        model = RBM(V, H, K)
        model.reset_parameters(torch.Generator().manual_seed(0))
        model.to(device)
        config = RBMTrainConfig(
            num_hidden=H,
            epochs=1,
            batch_size=B,
            learning_rate=args.learning_rate,
            lr_decay=1.0,
            momentum=0.0,
            weight_cost=0.0,
            cd_steps=1,
            persistent=True,
            validation_fraction=0.0,
            monitor_every=0,
            engine=engine,
        )
        trainer = RBMTrainer(model, config, states, states[:0])
        engines[engine] = trainer.engine
        trainer.fit(progress=False)

    contenders = {"sklearn": sklearn_epoch, "sklearn_one_thread": sklearn_epoch_one_thread, "gibbsdream": ours_epoch}
    if device.type == "cpu":  # on a GPU the default engine is the torch engine already
        contenders["gibbsdream_torch"] = lambda: ours_epoch("torch")
    train = interleaved(contenders, args.repeats, device)
    train["sklearn_default_threads"] = train.pop("sklearn")
    train["sklearn"] = [min(a, b) for a, b in zip(train["sklearn_default_threads"], train["sklearn_one_thread"])]
    t_sklearn, t_ours = statistics.median(train["sklearn"]), statistics.median(train["gibbsdream"])
    train_speedup = spread([a / b for a, b in zip(train["sklearn"], train["gibbsdream"])])
    torch_speedup = (
        spread([a / b for a, b in zip(train["sklearn"], train["gibbsdream_torch"])])
        if "gibbsdream_torch" in train
        else None
    )

    # ---- sampling: sweeps per second at many chains --------------------------------------------
    C, S = args.chains, args.sweeps
    model = RBM(V, H, K)
    model.reset_parameters(torch.Generator().manual_seed(0), std=0.1)
    peer = BernoulliRBM(n_components=H, random_state=0)
    peer.components_ = model.flat_weight().detach().numpy().copy()
    peer.intercept_hidden_ = model.hidden_bias.detach().numpy().copy()
    peer.intercept_visible_ = model.visible_bias.detach().numpy().reshape(-1).copy()
    peer.random_state_ = np.random.RandomState(0)
    model.to(device)
    v0 = one_hot[:C].copy()

    def peer_sweeps():
        v = v0
        for _ in range(S):
            v = peer.gibbs(v)

    a = torch.randn(C, V * K, device=device)
    w = torch.randn(V * K, H, device=device)
    # As many products as take about as long as the sweeps (a sweep costs about two of them): a run
    # of 20 (3.4 ms) was too short on the development VM, where the first parallel operation
    # after an idle pause can wait milliseconds for the second core, and the reference rate then
    # swung between 34 and 180 GFLOP/s from round to round (measured).
    matmuls = 2 * S
    sampling = interleaved(
        {
            "gibbsdream": lambda: sample(model, num_chains=C, steps=S, seed=0),
            "sklearn": peer_sweeps,
            "matmul": lambda: [torch.mm(a, w) for _ in range(matmuls)],
        },
        args.repeats,
        device,
    )
    per_sweep = {name: [t / S for t in sampling[name]] for name in ("gibbsdream", "sklearn")}
    per_matmul = [t / matmuls for t in sampling["matmul"]]
    t_sample, t_peer_sample = statistics.median(per_sweep["gibbsdream"]), statistics.median(per_sweep["sklearn"])
    matmul_flops = 2 * C * V * K * H
    dense_flops = 4 * C * V * K * H
    performed_flops = 2 * C * V * K * H + C * V * H  # visible matmul + hidden gather-and-sum
    # The fraction of the matmul rate, round by round: flops per second over the matmul's, same round.
    dense_fraction = spread([dense_flops / t / (matmul_flops / m) for t, m in zip(per_sweep["gibbsdream"], per_matmul)])
    performed_fraction = spread(
        [performed_flops / t / (matmul_flops / m) for t, m in zip(per_sweep["gibbsdream"], per_matmul)]
    )
    matmul_rate = matmul_flops / statistics.median(per_matmul)
    if torch_speedup:
        results_torch = {
            "gibbsdream_torch": statistics.median(train["gibbsdream_torch"]),
            "speedup_torch": torch_speedup["median"],
            "speedup_torch_range": [torch_speedup["min"], torch_speedup["max"]],
        }
    else:
        results_torch = {}
    results = {
        "machine": machine(device),
        "settings": vars(args),
        "train_epoch_seconds": {
            "gibbsdream": t_ours,
            "engine": engines["auto"],
            "sklearn": t_sklearn,
            "speedup": train_speedup["median"],
            "speedup_range": [train_speedup["min"], train_speedup["max"]],
            **results_torch,
            "rounds": train,
        },
        "sampling": {
            "chains": C,
            "sweep_seconds": {
                "gibbsdream": t_sample,
                "sklearn": t_peer_sample,
                "speedup": statistics.median([b / a for a, b in zip(per_sweep["gibbsdream"], per_sweep["sklearn"])]),
                "rounds": per_sweep,
            },
            "matmul_gflops": matmul_rate / 1e9,
            "matmul_gflops_range": [matmul_flops / max(per_matmul) / 1e9, matmul_flops / min(per_matmul) / 1e9],
            "dense_equivalent_gflops": dense_flops / t_sample / 1e9,
            "dense_equivalent_fraction_of_matmul": dense_fraction["median"],
            "dense_equivalent_fraction_range": [dense_fraction["min"], dense_fraction["max"]],
            # The cautious figure: the median sweep against the fastest round of the reference.
            "dense_equivalent_fraction_of_fastest_matmul": dense_flops / t_sample / (matmul_flops / min(per_matmul)),
            "performed_gflops": performed_flops / t_sample / 1e9,
            "performed_fraction_of_matmul": performed_fraction["median"],
        },
    }
    m = results["machine"]
    s = results["sampling"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"scikit-learn {m['scikit-learn']}" + (f"; gibbsdream on {m['device']}" if device.type == "cuda" else "")
    )
    print(
        f"\ntraining, one epoch of {N:,} strings ({V} x {K} one-hot), {H} hidden, batch {B} "
        f"(median of {args.repeats} interleaved rounds):"
    )
    print(
        f"  scikit-learn BernoulliRBM  {t_sklearn:8.3f} s   "
        f"(the faster of {statistics.median(train['sklearn_default_threads']):.3f} s "
        f"with its default BLAS threads and {statistics.median(train['sklearn_one_thread']):.3f} s "
        "with one, round by round)"
    )
    print(
        f"  gibbsdream RBM ({engines['auto']:5s})     {t_ours:8.3f} s   -> {train_speedup['median']:.2f}x faster "
        f"(rounds: {train_speedup['min']:.2f}-{train_speedup['max']:.2f}x)"
    )
    if torch_speedup:
        print(
            f"  gibbsdream RBM (torch)     {statistics.median(train['gibbsdream_torch']):8.3f} s   -> "
            f"{torch_speedup['median']:.2f}x faster (rounds: {torch_speedup['min']:.2f}-{torch_speedup['max']:.2f}x)"
        )
    print(f"\nGibbs sampling, {C} chains x {S} sweeps:")
    print(f"  scikit-learn .gibbs        {t_peer_sample * 1e3:8.2f} ms/sweep")
    print(
        f"  gibbsdream.sample          {t_sample * 1e3:8.2f} ms/sweep   -> {s['sweep_seconds']['speedup']:.2f}x faster"
    )
    print(
        f"  measured float32 matmul rate ({C}x{V * K} @ {V * K}x{H}): {s['matmul_gflops']:.1f} GFLOP/s "
        f"(rounds: {s['matmul_gflops_range'][0]:.0f}-{s['matmul_gflops_range'][1]:.0f})"
    )
    print(
        f"  gibbsdream, dense-equivalent: {s['dense_equivalent_gflops']:.1f} GFLOP/s = "
        f"{s['dense_equivalent_fraction_of_matmul']:.0%} of matmul rate "
        f"(rounds: {dense_fraction['min']:.0%}-{dense_fraction['max']:.0%})"
    )
    print(
        f"  gibbsdream, dense-equivalent against the fastest matmul round: "
        f"{s['dense_equivalent_fraction_of_fastest_matmul']:.0%}"
    )
    print(
        f"  gibbsdream, flops performed:  {s['performed_gflops']:.1f} GFLOP/s = "
        f"{s['performed_fraction_of_matmul']:.0%} of matmul rate"
    )
    if args.profile:
        from torch.profiler import profile

        for what, fn, per, unit in (
            (
                "one training epoch (torch engine; the numba engine's loops are not operators)",
                lambda: ours_epoch("torch"),
                (N + B - 1) // B,
                "update",
            ),
            (f"{S} sampling sweeps", lambda: sample(model, num_chains=C, steps=S, seed=0), S, "sweep"),
        ):
            with profile() as prof:
                fn()
            print(f"\nwhere the time goes, {what} (self time per {unit}, top operators):")
            events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
            total = sum(e.self_cpu_time_total for e in events)
            for e in events[:12]:
                print(
                    f"  {e.key:32s} {e.self_cpu_time_total / per:9.1f} us  {e.self_cpu_time_total / total:5.1%}  "
                    f"({e.count / per:.1f} calls)"
                )
            print(f"  {'all operators':32s} {total / per:9.1f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
