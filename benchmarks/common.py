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
