"""Compiled CPU loops (numba) and what they need from the machine; the engines of
:mod:`gibbsdream.training` and :mod:`gibbsdream.sampling` that run on them.

* :mod:`.rbm` — the categorical RBM's training and block Gibbs sampling loops, the named bundles
  of arrays they take, and the checks of those bundles;
* :mod:`.threads` — running a loop on several threads: who owns which hidden units, the
  counters the threads meet on and the memory ordering they rely on, thread placement;
* :mod:`.native` — the BLAS and C library functions the loops call, and the machine they
  assume (x86-64), checked on import.

Importing this package imports neither numba nor the loops: :func:`rbm_loops` does, and says
why not where they cannot run. This package imports nothing of gibbsdream outside it.
"""

from __future__ import annotations

from .threads import default_threads


def rbm_loops():
    """The module :mod:`gibbsdream.kernels.rbm`, or the ImportError saying why its loops cannot run
    here (numba missing, not x86-64, or a PyTorch without MKL's ``sgemm``)."""
    try:
        from . import rbm  # numba and the library symbols: only when asked for (start-up time)
    except ImportError as error:
        return error
    return rbm


def fits_rbm_loops(model) -> bool:
    """Whether ``model`` is one the loops run: a categorical RBM with its parameters on the CPU, its
    transposed weights contiguous (whether the loops can run here at all is :func:`rbm_loops`)."""
    return (
        getattr(model, "categorical", False)
        and model.weight.device.type == "cpu"
        and model.flat_weight_t().is_contiguous()
    )


__all__ = ["default_threads", "fits_rbm_loops", "rbm_loops"]
