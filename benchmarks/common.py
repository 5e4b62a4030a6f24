"""What the benchmarks share: a description of the machine they ran on."""

import platform


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what platform knows."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def machine_facts() -> dict:
    """What a benchmark's JSON says about where it ran: CPU, threads, versions."""
    import os

    import torch

    import gibbsdream

    return {
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gibbsdream": gibbsdream.__version__,
    }
