"""Training loops."""

from ..devices import resolve_device  # its old home: devices live in gibbsdream.devices now
from .nade import (
    PRECISIONS,
    NADETrainConfig,
    NADETrainer,
    parse_duration,
    save_nade_trainer,
    setup_distributed,
    split_images,
)
from .rbm import RBMTrainConfig, RBMTrainer, save_trainer, split_data

__all__ = [
    "PRECISIONS",
    "NADETrainConfig",
    "NADETrainer",
    "RBMTrainConfig",
    "RBMTrainer",
    "parse_duration",
    "resolve_device",
    "save_nade_trainer",
    "save_trainer",
    "setup_distributed",
    "split_data",
    "split_images",
]
