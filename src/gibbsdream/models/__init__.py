"""Models: energy models (RBM) and conditional models (Orderless NADE)."""

from .nade import OrderlessNADE
from .rbm import RBM

__all__ = ["RBM", "OrderlessNADE"]
