"""Seeds and random generators, in one place (DESIGN.md, "Randomness": every entry point takes a
seed or a ``torch.Generator``; the same seed gives the same output on the same device).

This module imports nothing of gibbsdream but :mod:`gibbsdream.errors`, and PyTorch only when a
generator is made, so the command line can check seeds before PyTorch is loaded.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

from .errors import ConfigError, UsageError

if TYPE_CHECKING:
    import torch

# The trainers derive their other generators from seed + a small offset (seed + 1, seed + 424242,
# seed + epoch), and PyTorch seeds are 64-bit, so seeds stop at 2**63 - 1 to leave that room.
MAX_SEED = 2**63 - 1


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` if it is a whole number in [0, MAX_SEED], else a ConfigError naming ``name``."""
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)  # ints, numpy ints; not 1.5
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be a whole number from 0 to 2**63 - 1, got {seed!r}", name.rsplit(".", 1)[-1])
    return value


def make_generator(seed: int | None, device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (a fresh random seed when None)."""
    import torch  # here, not at the top: the command line imports this module before PyTorch (start-up time)

    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
        return generator
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):
        value = None
    # Up to what a PyTorch seed holds (64 bits), not check_seed's MAX_SEED: the trainers derive
    # their other generators from seed + small offsets.
    if value is None or value != seed or not 0 <= value < 2**64:
        raise UsageError(f"a seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    generator.manual_seed(value)
    return generator
