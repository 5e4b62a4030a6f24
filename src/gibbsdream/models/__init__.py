"""Models: energy models (RBM) and conditional models (Orderless NADE), each built from its config."""

from .nade import NADEConfig, OrderlessNADE
from .rbm import RBM, RBMConfig

__all__ = ["RBM", "NADEConfig", "OrderlessNADE", "RBMConfig"]
