"""Where tensors live, in one place (DESIGN.md, "Devices": ``device="auto"`` uses CUDA when present).

This module imports nothing of gibbsdream but :mod:`gibbsdream.errors`.
"""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name or device as a ``torch.device``.

    A CUDA device asked for where there is none is a ConfigError (about ``device``), not a failure later on.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use device cpu or auto", "device")
    return torch.device(device)
