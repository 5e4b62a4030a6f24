"""Training loops."""

from .rbm import RBMTrainConfig, RBMTrainer, resolve_device, save_trainer, split_data

__all__ = ["RBMTrainConfig", "RBMTrainer", "resolve_device", "save_trainer", "split_data"]
