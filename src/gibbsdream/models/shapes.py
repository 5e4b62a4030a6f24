"""Building a model as shapes only, on the ``meta`` device, without a byte for its values.

A checkpoint's model is built this way first, so that its sizes are checked (against the load
limits and the tensor files' headers) before anything is allocated. It must also be cheap: on
the meta device, value-computing operations (``arange``, ``mul``, ``normal_``) run through
PyTorch's Python reference implementations, whose first use imports sympy and torch._dynamo
(over a second at every start-up, several in a fresh environment; and a Ctrl+C landing in that
import leaves PyTorch half-imported). So a model's constructor makes its index buffers with
:func:`row_offsets`, and :func:`shapes_only` skips the initializers, which a shape does not need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

# What fills values in place and returns its argument: nn.init's functions, and the tensor methods
# that modules' reset_parameters and nn.init call.
_INITIALIZERS = frozenset(
    {
        "normal_",
        "uniform_",
        "zeros_",
        "ones_",
        "constant_",
        "trunc_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "orthogonal_",
        "TensorBase.normal_",
        "TensorBase.uniform_",
        "TensorBase.fill_",
        "TensorBase.zero_",
        "TensorBase.copy_",
    }
)


class _SkipInitializers(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__qualname__", None) in _INITIALIZERS:
            return kwargs["tensor"] if kwargs and "tensor" in kwargs else args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Build modules in this block on the meta device, skipping their initializers."""
    with torch.device("meta"), _SkipInitializers():
        yield


def row_offsets(count: int, step: int) -> torch.Tensor:
    """``[0, step, 2*step, ...]``, shape (count,) long: the first row of each of ``count`` blocks
    of ``step`` rows in a flattened table. Under :func:`shapes_only`, only its shape."""
    if torch.empty(0).is_meta:  # the default device is meta: an arange there would import sympy
        return torch.empty(count, dtype=torch.long)
    return torch.arange(count) * step
