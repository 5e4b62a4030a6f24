"""Models: energy models (RBM) and conditional models (Orderless NADE)."""

from .rbm import RBM

__all__ = ["RBM"]
