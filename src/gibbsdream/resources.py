"""How much memory a run may still take, and what the big allocations of a run will ask for.

Sizes the user controls (chains, orders, AIS runs, the positions of a corpus's longest line)
multiply into tensors that can be larger than the machine. PyTorch then fails deep inside with an
allocator message, or, as Linux overcommits memory, the kernel's OOM killer ends the process with
no message at all. So commands estimate their largest allocations before starting and refuse
with a number and a remedy (:func:`check_memory`). The estimates count the tensors that grow with
those sizes, rounded up; they are meant to catch the order-of-magnitude mistakes (a million
chains, a corpus line of a million characters), not to predict a run's peak to the byte.
"""

from __future__ import annotations

from .errors import UsageError


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where there is none)."""
    out = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[name] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    except OSError:
        pass
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _virtual_size() -> int | None:
    """This process's address-space size (what RLIMIT_AS counts)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_bytes() -> int | None:
    """What this process can still allocate, or None where that is unknown.

    The smallest of: the system's available memory plus free swap; what the control group's memory
    limit leaves (containers); what the address-space and data limits (``ulimit -v``, ``-d``)
    leave above the process's current size.
    """
    limits = []
    info = _meminfo()
    if "MemAvailable" in info:
        limits.append(info["MemAvailable"] + info.get("SwapFree", 0))
    cgroup_max, cgroup_now = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if cgroup_max is not None and cgroup_now is not None:
        limits.append(max(0, cgroup_max - cgroup_now))
    try:
        import resource  # Unix only: absent on Windows (the except below)

        size = _virtual_size()
        for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
            if which is None:
                continue
            soft, _ = resource.getrlimit(which)
            if soft != resource.RLIM_INFINITY and size is not None:
                # RLIMIT_DATA counts less than VmSize, so this is cautious for it; large tensors are
                # anonymous mappings, which both limits count.
                limits.append(max(0, soft - size))
    except ImportError:  # not on Linux/macOS
        pass
    return min(limits) if limits else None


def human_bytes(count: float) -> str:
    """``12345678901`` -> ``"12.3 GB"`` (decimal units, as disks and most tools show them)."""
    if count >= 1e15:
        return f"{count:.1e} bytes"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} bytes"


def check_memory(needed: float, what: str, remedy: str) -> None:
    """Raise UsageError when ``needed`` bytes (described by ``what``) are more than this process can
    still allocate; ``remedy`` says which setting to lower."""
    available = available_bytes()
    if available is not None and needed > available:
        raise UsageError(
            f"this asks for about {human_bytes(needed)} ({what}), more than the {human_bytes(available)} "
            f"of memory free; {remedy}"
        )


# ---- estimates of the big allocations ---------------------------------------------------------------
# Bytes per element: long and float64 are 8, float32 is 4.


def rbm_sampling_bytes(
    chains: int, positions: int, categories: int, hidden: int, steps: int, frames: int = 0, threads: int = 1
) -> int:
    """Block Gibbs sampling of an RBM: per chain, the visible logits and their softmax, the float64
    CDF and uniforms (the compiled sampler keeps one float32 copy of the logits per thread), a few
    copies of the states, the hidden pre-activations and draws, the energy trace and the frames."""
    per_chain = (
        positions * categories * (4 * (2 + threads) + 8)
        + positions * 8 * 5
        + hidden * 4 * 4
        + (steps + 1) * 4
        + frames * positions * 8
    )
    return chains * per_chain


def image_sampling_bytes(
    images: int, channels: int, height: int, width: int, levels: int, features: int, steps: int, frames: int = 0
) -> int:
    """Sampling a convnet conditional model: per image, a few layers of feature maps, the logits with
    their softmax and float64 CDF, a few copies of the states and masks, the trace and the frames."""
    pixels = height * width
    variables = channels * pixels
    per_image = (
        pixels * features * 4 * (4 + 2 * channels)
        + pixels * (2 * channels * levels + 2) * 4
        + variables * levels * (4 * 3 + 8)
        + variables * 8 * 8
        + (steps + 1) * 4
        + frames * variables * 8
    )
    return images * per_image


def order_likelihood_bytes(
    images: int, orders: int, batch: int, channels: int, height: int, width: int, levels: int, features: int
) -> int:
    """:func:`gibbsdream.likelihood.order_log_likelihoods`: every image repeated once per order (the
    states and a float64 total), then per call of ``batch`` rows the orders, their ranks, the masks,
    the feature maps and the logits."""
    variables = channels * height * width
    rows = images * orders
    per_row = variables * (4 + 8 + 8 + 1) + image_sampling_bytes(1, channels, height, width, levels, features, 0)
    return rows * (variables * 8 + 8) + min(batch, rows) * per_row


def ais_bytes(runs: int, betas: int, positions: int, categories: int, hidden: int) -> int:
    """AIS (float64): per run, the visible logits, their softmax and CDF, the one-hot states, the
    hidden pre-activations and draws; per beta, the schedule as a tensor and as two Python lists."""
    return runs * (positions * categories * 8 * 5 + positions * 8 * 3 + hidden * 8 * 5) + betas * 80


def rbm_training_bytes(strings: int, positions: int, categories: int, hidden: int, batch: int) -> int:
    """Training an RBM: the encoded corpus (a Python list of codes per string, then a long tensor),
    the weights with their momentum, gradient and two working copies, and a batch's one-hot states
    and logits for the positive and negative phases."""
    weights = positions * categories * hidden * 4 * 5
    data = strings * positions * (8 + 8)
    per_row = positions * categories * 4 * 6 + hidden * 4 * 6
    return weights + data + min(batch, max(strings, 1)) * per_row


def product_text(*parts) -> str:
    """``("--chains", 10**8), (6, "positions")`` -> ``"--chains 100,000,000 x 6 positions"``."""
    words = []
    for a, b in parts:
        words.append(f"{a} {b:,}" if isinstance(b, int) else f"{a:,} {b}")
    return " x ".join(words)


__all__ = [
    "ais_bytes",
    "available_bytes",
    "check_memory",
    "human_bytes",
    "image_sampling_bytes",
    "order_likelihood_bytes",
    "product_text",
    "rbm_sampling_bytes",
    "rbm_training_bytes",
]
