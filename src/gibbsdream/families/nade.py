"""The NADE family: Orderless NADE convnets over images (:class:`~gibbsdream.models.nade.OrderlessNADE`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ConfigError, UsageError
from ..models.nade import CAPTION_FIELDS, NADEConfig
from ..training.nade import NADETrainConfig
from ..training.runs import (
    Trained,
    changes_on_resume,
    check_epochs,
    checkpoint_held,
    corpus_source,
    fresh_run,
    given_fields,
    same_file,
)

# ==== training ========================================================================================

DIGITS_TEST_SIZE = 297  # the 1,500 / 297 split of the likelihood literature


@dataclass
class ImageOptions:
    """How images become training data (saved in the checkpoint's codec and "data_source" entry)."""

    levels: int | None = None  # K intensity levels per channel (2..256); None: 17 for builtin:digits, else 256
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: as the files are
    size: int | None = None  # builtin:shapes only: image side in pixels (None: its default)
    count: int | None = None  # builtin:shapes only: number of images (None: its default)
    test_size: int | float | None = None  # held out for evaluation: a count, or a fraction < 1; None: 297 for
    # builtin:digits, else 0.1


# The model fields the data sets (the codec's channels and levels, the caption vocabulary).
SET_BY_DATA = ("channels", "num_categories", "caption_vocab_size")
# The settings compared with the checkpoint's on resume, in the order a conflict is reported.
COMPARED_ON_RESUME = (
    "width",
    "depth",
    "kernel_size",
    "dilations",
    "residual",
    "masks",
    "loss",
    "rescale",
    "batch_size",
    "learning_rate",
    "lr_factor",
    "lr_patience",
    "min_lr",
    "weight_decay",
    "grad_clip",
    "validation_fraction",
    "seed",
    "captions",
    "caption_dropout",
    "caption_min_count",
    "caption_max_length",
    *CAPTION_FIELDS,
    "levels",
    "channels",
    "size",
    "count",
    "data",
)
# What apply_changes may change on resume: how the model learns, not what it is or sees.
CHANGEABLE_ON_RESUME = {
    "masks",
    "loss",
    "rescale",
    "learning_rate",
    "lr_factor",
    "lr_patience",
    "min_lr",
    "weight_decay",
    "grad_clip",
    "caption_dropout",
}
FIXED_ON_RESUME = set(COMPARED_ON_RESUME) - CHANGEABLE_ON_RESUME
CAPTION_SETTINGS = (*CAPTION_FIELDS, "caption_dropout", "caption_min_count", "caption_max_length")


def train(
    data: str | None,
    out,
    *,
    model=None,
    training=None,
    images=None,
    resume: bool = False,
    apply_changes: bool = False,
    device="auto",
    progress: bool = False,
    on_epoch=None,
    on_event=None,
) -> Trained:
    """Train an Orderless NADE on images into the checkpoint folder ``out``; see :func:`gibbsdream.train`.

    ``model``: :class:`NADEConfig` fields; ``training``: :class:`NADETrainConfig` fields (on resume,
    ``max_time`` is the training time to add); ``images``: :class:`ImageOptions` fields. Runs under
    torchrun (every rank calls it; rank 0 writes). ``on_event(name, info)`` hears ``"images"``
    (``data``, ``dataset``, ``codec``, ``splits`` {name: count}, ``vocabulary``: before training) and
    ``"changes"`` ({name: (old, new)}: a resume continues with them).
    """
    import torch

    from ..training import NADETrainer, resolve_device, save_nade_trainer, setup_distributed

    out = Path(out)
    given_model = given_fields(model, [f.name for f in fields(NADEConfig)], "model")
    for name in SET_BY_DATA:  # a NADEConfig's are replaced by the data's; a mapping's are a mistake
        if name in given_model and isinstance(model, Mapping):
            raise ConfigError(f"{name} is set by the images; leave it out", name)
        given_model.pop(name, None)
    given_training = given_fields(training, [f.name for f in fields(NADETrainConfig)], "training")
    given_images = given_fields(images, [f.name for f in fields(ImageOptions)], "images")
    event = on_event or (lambda name, info: None)
    target = resolve_device(device)
    with checkpoint_held(out, resume):
        if resume:
            checkpoint, config, changes = _resumed(
                data, out, given_model, given_training, given_images, apply_changes, event
            )
            nade, codec, splits = checkpoint.model, checkpoint.codec, checkpoint.data
            source, history = checkpoint.config.get("data_source", {}), list(checkpoint.history)
        else:
            fresh_run(out, apply_changes)
            config, nade, codec, splits, source = _fresh(
                data, given_model, given_training, given_images, event, _defaults_of(model, training)
            )
            checkpoint, changes, history = None, {}, []
        where = setup_distributed(target)
        if target.type == "cuda" and where.active:
            target = torch.device("cuda", where.local_rank)
        trainer = NADETrainer(
            nade.to(target),
            config,
            splits["train"],
            splits["validation"],
            where=where,
            history=history,
            train_captions=splits.get("captions.train"),
            validation_captions=splits.get("captions.validation"),
        )
        result = Trained(out, 0, trainer.history, trainer.model, codec, trainer, changes=changes, writer=where.is_main)
        if checkpoint is not None:
            trainer.load_state(checkpoint.trainer, checkpoint.config["trainer"])
            if changes:
                trainer.apply_settings()  # the optimizer and schedule were restored with the old values
            if trainer.epoch >= config.epochs:
                result.epochs, result.trained = trainer.epoch, False
                return result

        def saved(t):
            save_nade_trainer(t, out, codec, splits, source)
            if on_epoch is not None:
                on_epoch(t)

        trainer.fit(progress=progress, on_save=saved)
        result.epochs = trainer.epoch
        if where.active:
            torch.distributed.destroy_process_group()
        return result


def _defaults_of(model, training) -> set:
    """The caption settings a caller did not really give: those of a dataclass left at their defaults."""
    unset = set()
    for given, cls in ((model, NADEConfig), (training, NADETrainConfig)):
        if given is not None and not isinstance(given, Mapping):
            defaults = cls()
            unset |= {n for n in CAPTION_SETTINGS if hasattr(defaults, n) and getattr(given, n) == getattr(defaults, n)}
    return unset


def _fresh(data, given_model, given_training, given_images, event, unset):
    import torch

    from ..data.images import load_images
    from ..models import OrderlessNADE
    from ..training import split_images

    if data is None:
        raise ConfigError("data is needed to start a run (a folder of images or builtin:NAME)", "data")
    config = NADETrainConfig(**given_training).check()
    captions = config.captions
    # The model's shape is checked before the images are read (a placeholder vocabulary of 1 word
    # makes the caption fields count).
    NADEConfig(**given_model, caption_vocab_size=1 if captions else 0).check()
    if not captions:
        given = [n for n in CAPTION_SETTINGS if n in {**given_model, **given_training} and n not in unset]
        if given:
            raise ConfigError(
                f"{given[0]} applies only with captions; add captions or leave it out", given[0], "captions"
            )
    options = ImageOptions(**given_images)
    extra = {k: v for k, v in (("size", options.size), ("count", options.count)) if v is not None}
    dataset = load_images(data, options.levels, channels=options.channels, captions=captions, **extra)
    codec = dataset.codec
    if options.test_size is None:
        held = DIGITS_TEST_SIZE if data == "builtin:digits" else 0.1
    else:
        held = options.test_size  # a count or a fraction in [0, 1)
    # Split image numbers rather than images, so that captions follow their images.
    train_all, test = split_images(torch.arange(len(dataset.states)), held, config.seed)
    train, validation = split_images(train_all, float(config.validation_fraction), config.seed + 1)
    if len(train) == 0 or len(validation) == 0:
        raise UsageError(f"{data} has only {len(dataset.states)} images: too few to split into training and validation")
    parts = {"train": train, "validation": validation, "test": test}
    splits = {name: dataset.states[rows] for name, rows in parts.items()}
    vocabulary = None
    if captions:
        from ..data.captions import CaptionVocabulary, caption_table

        vocabulary = CaptionVocabulary.fit(
            (t for i in train.tolist() for t in dataset.captions[i]),
            min_count=config.caption_min_count,
            max_length=config.caption_max_length,
        )
        table = caption_table(dataset.captions, vocabulary)
        splits.update({f"captions.{name}": table[rows] for name, rows in parts.items()})
    model_config = NADEConfig(
        codec.channels, codec.levels, caption_vocab_size=vocabulary.size if vocabulary else 0, **given_model
    ).check()
    with torch.random.fork_rng():  # the initial weights depend on the seed alone (same on every rank)
        torch.manual_seed(config.seed)
        nade = OrderlessNADE(model_config)
    nade.caption_vocabulary = vocabulary
    source = {
        "source": corpus_source(data),
        "images": len(dataset.states),
        "levels": codec.levels,
        **extra,
        "split": {k: len(v) for k, v in parts.items()},
    }
    event(
        "images",
        {
            "data": data,
            "dataset": dataset,
            "codec": codec,
            "splits": {k: len(v) for k, v in parts.items()},
            "vocabulary": vocabulary,
        },
    )
    return config, nade, codec, splits, source


def _resumed(data, out, given_model, given_training, given_images, apply_changes, event):
    from ..checkpoint import load_checkpoint

    checkpoint = load_checkpoint(out, device="cpu", family="nade")
    saved = checkpoint.config
    if not isinstance(saved.get("training"), dict) or "epoch" not in (saved.get("trainer") or {}):
        raise UsageError(
            f"{out} was not written by `gibbsdream train nade`, so it cannot be resumed; train into a new --out"
        )
    codec_config, source_saved = saved.get("codec") or {}, saved.get("data_source") or {}
    model_saved = checkpoint.model.config
    known = {
        **{name: getattr(model_saved, name) for name in ("width", "depth", "kernel_size", "residual", *CAPTION_FIELDS)},
        "dilations": list(model_saved.dilations),
        **saved["training"],
        **{name: codec_config[name] for name in ("levels", "channels") if name in codec_config},
        **{name: source_saved[name] for name in ("size", "count") if name in source_saved},
        "data": source_saved.get("source"),
    }
    trained_with = {name: known[name] for name in COMPARED_ON_RESUME if name in known}
    given = {**given_model, **given_training, **given_images}
    if data is not None:
        given["data"] = trained_with["data"] if same_file(data, trained_with["data"]) else data
    changes = changes_on_resume(trained_with, given, FIXED_ON_RESUME, apply_changes)
    if changes:
        event("changes", changes)
    epochs = check_epochs(given_training["epochs"]) if "epochs" in given_training else None
    try:
        # Checkpoints before Model(config) repeat the model fields here: taken aside (training.legacy).
        config = NADETrainConfig(
            **{
                **saved["training"],
                **{name: new for name, (_, new) in changes.items()},
                **({"epochs": epochs} if epochs is not None else {}),
                "max_time": None,
            }
        )
    except TypeError:
        raise UsageError(
            f"{out} has training settings this gibbsdream cannot read; resume it with the version that wrote it"
        ) from None
    more = given_training.get("max_time")
    config.max_time = None if more is None else float(saved["trainer"]["elapsed"]) + more
    config.check()
    return checkpoint, config, changes
