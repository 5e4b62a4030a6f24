"""The one table from the library's names for settings to the command line's flags.

The library speaks in Python names (a :class:`~gibbsdream.errors.ConfigError` carries the fields it
is about); the command line shows its own flags instead, through :data:`FLAGS` and
:func:`in_flags`. ``tests/test_cli_fields.py`` checks every command here against its dataclasses:
each field has a flag or a reason in :data:`NOT_EXPOSED`, and each flag's default is the field's.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

# command -> {field or argument name -> flag}. The sources: the arguments of gibbsdream.train, the
# model config, the trainer config and the family's data options.
FLAGS = {
    "train rbm": {
        # gibbsdream.train
        "data": "--data",
        "out": "--out",
        "device": "--device",
        "resume": "--resume",
        "apply_changes": "--apply-changes",
        # RBMConfig
        "num_hidden": "--hidden",
        # RBMTrainConfig
        "epochs": "--epochs",
        "batch_size": "--batch-size",
        "learning_rate": "--lr",
        "lr_decay": "--lr-decay",
        "momentum": "--momentum",
        "weight_cost": "--weight-cost",
        "cd_steps": "--cd-steps",
        "persistent": "--persistent",
        "validation_fraction": "--validation-fraction",
        "monitor_every": "--monitor-every",
        "seed": "--seed",
        "engine": "--engine",
        # families.rbm.CorpusOptions
        "max_length": "--max-length",
        "case_fold": "--case-fold",
        "pad_side": "--pad-side",
        "min_char_count": "--min-char-count",
        "rare": "--rare",
    },
    "train nade": {
        # gibbsdream.train
        "data": "--data",
        "out": "--out",
        "device": "--device",
        "resume": "--resume",
        "apply_changes": "--apply-changes",
        # NADEConfig
        "width": "--width",
        "depth": "--depth",
        "kernel_size": "--kernel-size",
        "dilations": "--dilations",
        "residual": "--residual",
        "caption_embedding": "--caption-embedding",
        "caption_hidden": "--caption-hidden",
        "caption_kernel": "--caption-kernel",
        "caption_layers": "--caption-layers",
        "caption_bidirectional": "--caption-bidirectional",
        "caption_merge": "--caption-merge",
        "caption_merge_every": "--caption-merge-every",
        # NADETrainConfig
        "epochs": "--epochs",
        "max_time": "--max-time",
        "batch_size": "--batch-size",
        "learning_rate": "--lr",
        "lr_factor": "--lr-factor",
        "lr_patience": "--lr-patience",
        "min_lr": "--min-lr",
        "weight_decay": "--weight-decay",
        "grad_clip": "--grad-clip",
        "masks": "--masks",
        "loss": "--loss",
        "rescale": "--rescale",
        "precision": "--precision",
        "validation_fraction": "--validation-fraction",
        "seed": "--seed",
        "captions": "--captions",
        "caption_dropout": "--caption-dropout",
        "caption_min_count": "--caption-min-count",
        "caption_max_length": "--caption-max-length",
        # families.nade.ImageOptions (its channels is the flag; the model's follows the images)
        "levels": "--levels",
        "channels": "--channels",
        "size": "--size",
        "count": "--count",
        "emoji_font": "--emoji-font",
        "test_size": "--test-size",
    },
}

# command -> {"Class.field": why it has no flag}.
NOT_EXPOSED = {
    "train rbm": {
        "RBMConfig.num_visible": "the corpus sets it: the codec's positions (see --max-length)",
        "RBMConfig.num_categories": "the corpus sets it: the size of the codec's alphabet",
        "RBMTrainConfig.monitor_size": "how many strings each check scores; the default serves",
        "RBMTrainConfig.fantasy_particles": "how many samples each history row keeps; the default serves",
    },
    "train nade": {
        "NADEConfig.channels": "the images set it (--channels forces them)",
        "NADEConfig.num_categories": "the images set it (--levels)",
        "NADEConfig.caption_vocab_size": "the caption vocabulary fitted to the training captions sets it",
    },
}
# Flags that are not settings of the library: how the command presents its work.
PRESENTATION = {"train rbm": {"--quiet"}, "train nade": {"--quiet"}}

# The arguments of gibbsdream.generate, inpaint and evaluate (the families' functions) and of the
# other commands that their flags expose, for the same translation of ConfigError messages.
FLAGS.update(
    {
        "sample": {
            "device": "--device",
            "engine": "--engine",
            "num_samples": "--chains",
            "steps": "--steps",
            "every": "--every",
            "dedupe": "--dedupe",
            "prefix": "--prefix",
            "suffix": "--suffix",
            "caption": "--caption",
            "init": "--init",
            "out": "--out",
        },
        "inpaint": {
            "device": "--device",
            "images": "--image",
            "image": "--image",  # images_to_fill's argument
            "mask": "--mask",
            "samples": "--samples",
            "caption": "--caption",
            "every": "--every",
            "out": "--out",
        },
        "evaluate": {
            "device": "--device",
            "data": "--data",
            "skip_invalid": "--skip-invalid",
            "method": "--method",
            "orders": "--orders",
            "max_images": "--max-images",
            "caption": "--caption",
        },
        "export-split": {"overwrite": "--force"},
        "sweep": {"device": "--device", "image": "--image", "out": "--out"},
        "serve": {"device": "--device"},
        "demo": {"device": "--device"},
    }
)


def in_flags(error: ConfigError, command: str) -> str:
    """``error``'s message with the names of its fields replaced by ``command``'s flags: a name as
    written by Python (``seed``, ``RBMTrainConfig.seed``, ``resume=True``) becomes ``--seed``,
    ``--resume``, and a name given a quoted value (``engine="torch"``) the flag with that value
    (``--engine torch``). A name inside a path or a longer word is left alone."""
    flags = FLAGS.get(command, {})
    text = str(error)
    for name in error.fields:
        if name in flags:
            pattern = (
                rf"(?<![\w./\\-])(?:[A-Za-z]\w*\.)?{re.escape(name)}"
                r"(?:=True|=(?P<quote>[\"'])(?P<value>[^\"']*)(?P=quote))?(?![\w/\\-]|\.\w)"
            )
            text = re.sub(pattern, lambda m, flag=flags[name]: " ".join(filter(None, (flag, m["value"]))), text)
    return text
