"""The Orderless NADE family: convnets over images (``C`` channels of ``K`` levels), optionally
reading a caption, that generate and inpaint by the conditional samplers (blocked Gibbs, ancestral).

Its checkpoints hold the model, an :class:`~gibbsdream.ImageCodec` (the size it was trained on) and
the held-out test images (with their captions, for captioned models).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data.captions import (
    CAPTIONS_FILE,
    CaptionVocabulary,
    caption_context,
    caption_table,
    captions_file,
    has_captions,
)
from ..data.images import load_images
from ..data.masks import inpaint_masks
from ..errors import ConfigError, UsageError
from ..files import atomic_folder, atomic_write_text, same_file
from ..likelihood import ensemble_log_likelihood, mask_log_likelihoods, order_log_likelihoods
from ..models import OrderlessNADE
from ..models.nade import CAPTION_FIELDS, NADEConfig
from ..progress import progress_bar
from ..randomness import make_generator
from ..sampling import sample
from ..sampling.registry import applicable
from ..sampling.schedules import (
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_SELECT,
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_MASK_SCHEDULE,
)
from ..training import NADETrainer, resolve_device, save_nade_trainer, setup_distributed, split_images
from ..training.nade import NADETrainConfig
from ..training.runs import (
    Trained,
    TrainingSummary,
    changes_on_resume,
    check_epochs,
    checkpoint_held,
    corpus_source,
    fresh_run,
    given_fields,
    summarize,
)
from ..viz import write_image
from .base import Evaluation, Exported, Family, Generated, check_export_target, check_split, register

DEFAULT_STEPS = 200  # Gibbs steps when none are asked for
# Confidence decoding's steps when none are asked for: MaskGIT decodes in 8 to 16 network calls, and
# on 64x64 emoji (docs/samplers.md) 16 steps already give fills likelier than the model's own
# samples; more steps make them likelier still, and flatter, at a call each.
DEFAULT_CONFIDENCE_STEPS = 16


def default_steps(sampler: str) -> int:
    """The steps a conditional sampler takes when none are asked for (ancestral ignores them)."""
    return DEFAULT_CONFIDENCE_STEPS if sampler == "confidence" else DEFAULT_STEPS


def prepare(checkpoint) -> None:
    """Refuse a checkpoint without the image codec its samples need."""
    if checkpoint.codec is None or getattr(checkpoint.codec, "height", None) is None:
        raise UsageError(f"checkpoint {checkpoint.path} has no image codec; retrain it with `gibbsdream train nade`")


def frame_every(steps: int, every: int | None) -> int:
    """Frames every ``every`` steps; by default about 50 frames per animation."""
    return every if every is not None else max(1, steps // 50)


def caption_ids(checkpoint, caption):
    """A caption -> the model's caption context (None without one); bad captions are UsageErrors.

    ``caption`` is one text for every image, a list of texts (one per image), or token ids already
    made by :func:`~gibbsdream.data.captions.caption_context` (a ``(1, T)`` or ``(N, T)`` long
    tensor), e.g. by a front end that checks a caption before reading its images.
    """
    if isinstance(caption, torch.Tensor):
        return caption.to(_device(checkpoint))
    if caption is None or isinstance(caption, str):
        caption = None if caption is None else [caption]
    return caption_context(checkpoint, caption, _device(checkpoint))


def _device(checkpoint) -> torch.device:
    return next(checkpoint.model.parameters()).device


def run_sampler(
    model,
    x,
    known,
    *,
    sampler="gibbs",
    steps=DEFAULT_STEPS,
    temperature="1.0",
    anneal="geometric",
    block=DEFAULT_BLOCK,
    block_select=DEFAULT_BLOCK_SELECT,
    mask_schedule=DEFAULT_MASK_SCHEDULE,
    choice_temperature=DEFAULT_CHOICE_TEMPERATURE,
    seed=0,
    every=None,
    progress=False,
    context=None,
    on_step=None,
):
    """One conditional sampler run over ``x`` ``(N, C, H, W)`` with ``known`` clamped; the block
    schedule, mask schedule and choice temperature go to the samplers that take them (the
    registry says which)."""
    return sample(
        model,
        x=x,
        known=known,
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        seed=seed,
        record_every=every,
        progress=progress,
        context=context,
        on_step=on_step,
        **applicable(
            "conditional",
            sampler,
            block=block,
            block_select=block_select,
            mask_schedule=mask_schedule,
            choice_temperature=choice_temperature,
        ),
    )


def _pixels(codec, states: torch.Tensor):
    """``(N, C, H, W)`` states -> ``(N, H, W, C)`` uint8 pixels."""
    return codec.decode(states.cpu()).permute(0, 2, 3, 1).numpy()


# ---- generating ----------------------------------------------------------------------------------


def generate(
    checkpoint,
    *,
    num_samples: int = 16,
    sampler: str = "gibbs",
    steps: int | None = None,
    temperature="1.0",
    anneal: str = "geometric",
    block: str = DEFAULT_BLOCK,
    caption: str | list[str] | None = None,
    every: int | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step=None,
    block_select: str = DEFAULT_BLOCK_SELECT,
    mask_schedule: str = DEFAULT_MASK_SCHEDULE,
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE,
) -> Generated:
    """Generate ``num_samples`` images from a blank canvas.

    Args:
        checkpoint: a loaded NADE checkpoint (:func:`gibbsdream.load`).
        num_samples: images ``N``.
        sampler: a conditional sampler of the registry (``gibbs``, ``ancestral``, ...).
        steps: sampler steps (default :func:`default_steps`: 200, and 16 for ``confidence``;
            ``ancestral`` ignores it).
        temperature, anneal: a constant or annealed temperature and how it goes.
        block: share of the canvas redrawn per Gibbs step (a number or ``yao:a_max,a_min,eta``).
        block_select: how the Gibbs samplers choose a step's block: ``"random"`` or
            ``"confidence"`` (the least confident likeliest).
        mask_schedule, choice_temperature: the ``confidence`` sampler's (MaskGIT's) share still
            masked after each step (``cosine``, ``arccos``, ``linear``, ``pow:P``) and the scale of
            the Gumbel noise on the confidences, annealed to 0.
        caption: what the images should show (captioned models only): one text, a list of
            ``N`` texts (one per image), or token ids.
        every: keep frames every this many steps (for an animation).
        seed: same seed, same device: same images.
        on_step: called as ``on_step(n, states, trace)`` after every step (a live view).

    Returns:
        :class:`Generated` with ``outputs`` the ``(N, H, W, C)`` uint8 pixels and the chain (its
        trace: mean log-probability of the redrawn variables, higher is likelier).
    """
    # Generating is inpainting a blank canvas where nothing is known.
    blank = torch.zeros((num_samples, *checkpoint.codec.shape), dtype=torch.long)
    filled = inpaint(
        checkpoint,
        blank,
        torch.zeros_like(blank, dtype=torch.bool),
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
        block_select=block_select,
        mask_schedule=mask_schedule,
        choice_temperature=choice_temperature,
        caption=caption,
        every=every,
        seed=seed,
        progress=progress,
        on_step=on_step,
    )
    return Generated(chain=filled.chain, outputs=filled.outputs, seconds=filled.seconds)


def inpaint(
    checkpoint,
    images: torch.Tensor,
    mask="centre",
    *,
    samples: int = 1,
    sampler: str = "gibbs",
    steps: int | None = None,
    temperature="1.0",
    anneal: str = "geometric",
    block: str = DEFAULT_BLOCK,
    caption: str | list[str] | None = None,
    every: int | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step=None,
    block_select: str = DEFAULT_BLOCK_SELECT,
    mask_schedule: str = DEFAULT_MASK_SCHEDULE,
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE,
) -> Generated:
    """Fill the holes of ``images``; the known pixels never change.

    Args:
        checkpoint: a loaded NADE checkpoint.
        images: ``(N, C, H, W)`` states in the codec's levels (``checkpoint.codec.encode``, or
            :func:`gibbsdream.data.images.images_to_fill`).
        mask: a mask spec (``centre[:F]``, ``box:x,y,w,h``, ``random:P``, a mask image path) or a
            ``(N, C, H, W)`` / ``(C, H, W)`` bool tensor, True = known.
        samples: completions per image (image ``i``'s are rows ``i*samples ... i*samples+samples-1``).
        The sampling arguments are those of :func:`generate`; ``seed`` also draws a random mask.

    Returns:
        :class:`Generated` with ``outputs`` the ``(N*samples, H, W, C)`` uint8 pixels and
        ``extra["known"]`` the ``(N*samples, C, H, W)`` mask used.
    """
    codec = checkpoint.codec
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(codec.shape):
        raise UsageError(f"images must have shape (N, {', '.join(map(str, codec.shape))}), got {list(images.shape)}")
    context = caption_ids(checkpoint, caption)
    if isinstance(mask, torch.Tensor):
        known = mask.bool().expand(images.shape) if mask.dim() == 3 else mask.bool()
        if known.shape != images.shape:
            raise UsageError(f"mask must have shape {list(images.shape)} or {list(images.shape[1:])}")
    else:
        known = inpaint_masks(mask, codec.shape, len(images), make_generator(seed, "cpu"))
    device = _device(checkpoint)
    x = images.repeat_interleave(samples, 0).to(device)
    known = known.repeat_interleave(samples, 0).to(device)
    if context is not None and len(context) > 1:  # one caption per image: each of its completions reads it
        if len(context) != len(images):
            raise UsageError(f"give one caption for every image or one per image ({len(images)}), not {len(context)}")
        context = context.repeat_interleave(samples, 0)
    started = time.perf_counter()
    chain = run_sampler(
        checkpoint.model,
        x,
        known,
        sampler=sampler,
        steps=default_steps(sampler) if steps is None else steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
        block_select=block_select,
        mask_schedule=mask_schedule,
        choice_temperature=choice_temperature,
        seed=seed,
        every=every,
        progress=progress,
        context=context,
        on_step=on_step,
    )
    seconds = time.perf_counter() - started
    if not torch.equal(chain.samples[known], x[known]):  # the samplers promise this; never ship a broken result
        raise RuntimeError("a known pixel changed during sampling")
    return Generated(chain=chain, outputs=_pixels(codec, chain.samples), seconds=seconds, extra={"known": known})


# ---- scoring -------------------------------------------------------------------------------------


def held_out_images(checkpoint, data, progress: bool = False) -> tuple[torch.Tensor, str, bool]:
    """``data`` -> (states ``(N, C, H, W)``, label, whether they are the checkpoint's own test split).

    ``None``, ``"heldout"`` or the source the model was trained on mean the held-out split;
    ``progress`` shows a bar while a large folder is read.
    """
    source = checkpoint.config.get("data_source", {}).get("source")
    if isinstance(data, torch.Tensor):
        return data, f"{len(data)} images", False
    if data in (None, "heldout") or data == source or same_file(data, source):
        states = checkpoint.data.get("test")
        if states is None or len(states) == 0:
            raise ConfigError(
                f"checkpoint {checkpoint.path} keeps no held-out images; give data (a folder of images)", "data"
            )
        return states, f"held-out test split of {source}", True
    return load_images(data, codec=checkpoint.codec, progress=progress).states, str(data), False


# Likelihood by the chain rule costs D network calls per order; above this many variables an
# image's orders take too long (12,288 calls per order at 64x64 RGB), so method="auto" estimates
# from random masks instead, one call each.
ORDERS_UP_TO_VARIABLES = 1024
LIKELIHOOD_METHODS = ("auto", "orders", "masks")
# One network call's logits at most this many bytes when batch_size is left to evaluate
# (1024 rows of 8x8 digits; 21 of 64x64 RGB images with 256 levels).
AUTO_BATCH_BYTES = 2**28


def likelihood_method(method: str, dimensions: int) -> str:
    """``"orders"`` or ``"masks"``: what ``method`` (one of :data:`LIKELIHOOD_METHODS`) means for
    images of ``dimensions`` variables."""
    if method not in LIKELIHOOD_METHODS:
        raise ConfigError(f"method must be one of {', '.join(LIKELIHOOD_METHODS)}, got {method!r}", "method")
    if method == "auto":
        return "orders" if dimensions <= ORDERS_UP_TO_VARIABLES else "masks"
    return method


def auto_batch_size(dimensions: int, levels: int) -> int:
    """Images x orders (or masks) per network call when not given: logits within
    :data:`AUTO_BATCH_BYTES`, at most 1024."""
    return max(1, min(1024, AUTO_BATCH_BYTES // (dimensions * levels * 4)))


def evaluate(
    checkpoint,
    data=None,
    *,
    method: str = "auto",
    orders: int = 8,
    masks: int = 32,
    batch_size: int | None = None,
    max_images: int | None = None,
    caption: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Evaluation:
    """Negative log-likelihood of images, by the chain rule over an ensemble of random orders or
    estimated from random masks.

    ``method="orders"`` scores each image in ``orders`` random orders, D network calls each, and
    reports their log-mean-exp ensemble (and the mean single order). ``method="masks"`` draws
    ``masks`` random masks per image, one call each, and reports the unbiased estimate of the mean
    single-order NLL (:func:`gibbsdream.likelihood.mask_log_likelihoods`), an upper bound on the
    NLL of the ensemble of all orders. ``"auto"`` takes orders up to
    :data:`ORDERS_UP_TO_VARIABLES` variables per image, masks above.

    A captioned model is scored twice with the same orders or masks, with captions (``caption``
    for every image, else each held-out image's own first caption) and without, so the difference
    is what the caption is worth in nats per image.

    Args:
        checkpoint: a loaded NADE checkpoint.
        data: None or ``"heldout"`` (the checkpoint's test split), a folder or file of images, or
            ``(N, C, H, W)`` states.
        method: ``"auto"``, ``"orders"`` or ``"masks"`` (above).
        orders: random orders per image (``method="orders"``).
        masks: random masks per image (``method="masks"``).
        batch_size: images x orders (or masks) per network call; default :func:`auto_batch_size`.
        max_images: score only the first this many.
        seed: the orders or masks.

    Returns:
        :class:`Evaluation` with ``method``, ``images``, ``dimensions``, ``caption``, ``nll_nats``
        (± ``nll_nats_stderr``, over images), ``bits_per_dim``, ``single_order_nll_nats`` (± stderr),
        and ``seconds``; for orders also ``orders`` and ``ensembles`` (the NLL of the first 1, 2,
        4, ... orders' ensemble: ``orders``, ``nll_nats``, ``nll_nats_stderr``), for masks ``masks``;
        with a caption also ``nll_nats_without_caption`` and ``caption_gain_nats`` (± stderr).
    """
    states, label, held_out = held_out_images(checkpoint, data, progress)
    if max_images is not None:
        states = states[:max_images]
    dims = math.prod(states.shape[1:])
    method = likelihood_method(method, dims)
    batch_size = batch_size or auto_batch_size(dims, checkpoint.codec.levels)
    device = _device(checkpoint)
    context, caption_label = None, None
    if caption is not None:
        context, caption_label = caption_ids(checkpoint, caption), caption
    elif has_captions(checkpoint.model) and held_out and "captions.test" in checkpoint.data:
        context = checkpoint.data["captions.test"][: len(states), 0].to(device)  # (N, T): each image's first caption
        caption_label = "each image's own first caption"

    def log_likelihoods(context):
        estimate = order_log_likelihoods if method == "orders" else mask_log_likelihoods
        return estimate(
            checkpoint.model,
            states.to(device),
            orders if method == "orders" else masks,
            generator=make_generator(seed, device),
            batch_size=batch_size,
            context=context,
            progress=progress,
        ).cpu()

    def stderr(values):
        return (values.std() / len(values) ** 0.5).item() if len(values) > 1 else 0.0

    def per_image(values):  # (N, M) -> (N,): the ensemble of the orders, or the mean of the masks
        return ensemble_log_likelihood(values) if method == "orders" else values.mean(1)

    started = time.perf_counter()
    values = log_likelihoods(context)
    score = per_image(values)
    nll = -score.mean().item()
    result = {
        "checkpoint": str(checkpoint.path),
        "data": label,
        "method": method,
        "images": len(states),
        "dimensions": dims,
        method: orders if method == "orders" else masks,
        "caption": caption_label,
        "nll_nats": nll,
        "nll_nats_stderr": stderr(score),
        "bits_per_dim": nll / (dims * math.log(2)),
        "single_order_nll_nats": -values.mean().item(),
        "single_order_nll_nats_stderr": stderr(values.mean(1)),
    }
    if method == "orders":
        # How much each doubling of the ensemble buys: the first m orders' ensemble, m = 1, 2, 4, ...
        result["ensembles"] = [
            {"orders": m, "nll_nats": -part.mean().item(), "nll_nats_stderr": stderr(part)}
            for m in sorted({*(2**i for i in range(orders.bit_length())), orders})
            for part in [ensemble_log_likelihood(values[:, :m])]
        ]
    if context is not None:
        # The same seed gives the same orders (masks), so the two runs differ only by the caption.
        plain = per_image(log_likelihoods(None))
        result.update(
            nll_nats_without_caption=-plain.mean().item(),
            caption_gain_nats=(score - plain).mean().item(),
            caption_gain_nats_stderr=stderr(score - plain),
        )
    result["seconds"] = round(time.perf_counter() - started, 3)
    if method == "orders":
        lines = [
            f"{result['images']} images ({label}), {orders} random orders each"
            + (f"; caption: {caption_label}" if caption_label else ""),
            f"NLL (order ensemble)  {nll:.3f} ± {result['nll_nats_stderr']:.3f} nats per image",
            f"bits per dimension    {result['bits_per_dim']:.4f}",
            f"single-order NLL      {result['single_order_nll_nats']:.3f} nats per image (mean over orders)",
        ]
    else:
        lines = [
            f"{result['images']} images ({label}), {masks} random masks each (an estimate of the mean "
            f"single-order NLL, one network call per mask; an upper bound on the order ensemble's)"
            + (f"; caption: {caption_label}" if caption_label else ""),
            f"NLL (mask estimate)   {nll:.3f} ± {result['nll_nats_stderr']:.3f} nats per image",
            f"bits per dimension    {result['bits_per_dim']:.4f}",
        ]
    if context is not None:
        lines.append(
            f"without a caption     {result['nll_nats_without_caption']:.3f} nats per image: the caption is worth "
            f"{result['caption_gain_nats']:.3f} ± {result['caption_gain_nats_stderr']:.3f} nats per image"
        )
    return Evaluation(values=result, lines=lines)


# ---- exporting a split ---------------------------------------------------------------------------


def export_split(checkpoint, split: str, out, *, overwrite: bool = False, progress: bool = False) -> Exported:
    """Write the images of a split the checkpoint keeps into the folder ``out`` as PNG files, with
    their captions in ``captions.json`` when the model reads captions.

    The pictures are the states as the codec shows them (its levels back to 8 bits), named
    ``SPLIT-0000.png`` ... in the split's order, so reading the folder back (``evaluate``,
    ``inpaint``, ``train``) gives the same states in the same order. ``captions.json`` is the
    file ``train --captions`` reads (file name -> list of captions): each caption as the model
    read it (its known words, lower case, cut to its length; a word it did not know is ``<unk>``).

    Args:
        checkpoint: a loaded NADE checkpoint.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        out: the folder to write; it appears whole, or not at all.
        overwrite: replace a folder that is not empty (only one holding PNG files and captions.json).
        progress: a progress bar over the images written.
    """
    part = check_split(split)
    states = checkpoint.data.get(part)
    if states is None or len(states) == 0:
        raise UsageError(f"checkpoint {checkpoint.path} keeps no {split} images")
    out = Path(out)
    check_export_target(out, overwrite, folder=True)
    pixels = _pixels(checkpoint.codec, states)
    width = max(4, len(str(len(pixels) - 1)))  # names sort in the split's order
    names = [f"{split}-{i:0{width}d}.png" for i in range(len(pixels))]
    captions = {}
    table = checkpoint.data.get(f"captions.{part}")
    if has_captions(checkpoint.model) and table is not None:
        vocabulary = checkpoint.model.caption_vocabulary
        for name, rows in zip(names, table.tolist()):
            texts = [vocabulary.decode(ids) for ids in rows if any(ids)]  # rows of padding only: no caption
            if texts:
                captions[name] = texts
    with atomic_folder(out) as staged, progress_bar(len(names), f"exporting {split}", enabled=progress) as advance:
        for name, image in zip(names, pixels):
            write_image(staged / name, image)
            advance()
        if captions:
            atomic_write_text(staged / CAPTIONS_FILE, json.dumps(captions, ensure_ascii=False, indent=1) + "\n")
    return Exported(path=out, split=split, count=len(names), outputs="images", captioned=len(captions))


# ==== training ========================================================================================

DIGITS_TEST_SIZE = 297  # the 1,500 / 297 split of the likelihood literature


@dataclass
class ImageOptions:
    """How images become training data (saved in the checkpoint's codec and "data_source" entry)."""

    levels: int | None = None  # K intensity levels per channel (2..256); None: 17 for builtin:digits, else 256
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: as the files are
    size: int | None = None  # builtin:shapes and builtin:emoji: image side in pixels (None: its default)
    count: int | None = None  # builtin:shapes and builtin:emoji: number of images (None: its default)
    emoji_font: str | None = None  # builtin:emoji only: the colour emoji font file (None: the system's)
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
    "precision",
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
    "precision",
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
    (``data``, ``dataset``, ``codec``, ``splits`` {name: count}, ``vocabulary``: before training),
    ``"captions_ignored"`` (``data``, ``path``: the folder has a captions.json but ``captions`` is
    False) and ``"changes"`` ({name: (old, new)}: a resume continues with them). The result's ``summary``
    judges the validation loss for ``still_improving``.
    """
    started = time.perf_counter()
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
                data, given_model, given_training, given_images, event, _defaults_of(model, training), progress
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
                result.summary = _summary(trainer, trainer.epoch, started)
                return result
        first_epoch = trainer.epoch

        def saved(t):
            saving = time.perf_counter()
            save_nade_trainer(t, out, codec, splits, source)
            t.timings.saving += time.perf_counter() - saving
            if on_epoch is not None:
                on_epoch(t)

        trainer.fit(progress=progress, on_save=saved)
        result.epochs = trainer.epoch
        result.summary = _summary(trainer, first_epoch, started)
        if where.active:
            torch.distributed.destroy_process_group()
        return result


def _summary(trainer: NADETrainer, first_epoch: int, started: float) -> TrainingSummary:
    return summarize(
        trainer.history,
        ("validation_loss",),
        higher_is_better=False,
        seconds=time.perf_counter() - started,
        timings=trainer.timings,
        first_epoch=first_epoch,
        epochs=trainer.epoch,
        target_epochs=trainer.config.epochs,
        stopped_by_time=trainer.stopped_by_time,
        monitoring={"every": 1, "auto": False, "images": len(trainer.validation)},
    )


def _defaults_of(model, training) -> set:
    """The caption settings a caller did not really give: those of a dataclass left at their defaults."""
    unset = set()
    for given, cls in ((model, NADEConfig), (training, NADETrainConfig)):
        if given is not None and not isinstance(given, Mapping):
            defaults = cls()
            unset |= {n for n in CAPTION_SETTINGS if hasattr(defaults, n) and getattr(given, n) == getattr(defaults, n)}
    return unset


def _fresh(data, given_model, given_training, given_images, event, unset, progress):
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
    font = {} if options.emoji_font is None else {"emoji_font": options.emoji_font}  # a path: not saved
    dataset = load_images(
        data, options.levels, channels=options.channels, captions=captions, progress=progress, **extra, **font
    )
    codec = dataset.codec
    found = None if captions else captions_file(data)
    if found is not None:
        event("captions_ignored", {"data": data, "path": found})
    if options.test_size is None:
        held = DIGITS_TEST_SIZE if data == "builtin:digits" else 0.1
    else:
        held = options.test_size  # a count or a fraction in [0, 1)
    # Split image numbers rather than images, so that captions follow their images; images of one
    # group (the skin tones of one emoji) stay on one side of both splits.
    groups = dataset.groups
    train_all, test = split_images(torch.arange(len(dataset.states)), held, config.seed, groups=groups)
    train, validation = split_images(
        train_all,
        float(config.validation_fraction),
        config.seed + 1,
        setting="validation_fraction",
        groups=None if groups is None else groups[train_all],
    )
    if len(train) == 0 or len(validation) == 0:
        raise UsageError(f"{data} has only {len(dataset.states)} images: too few to split into training and validation")
    parts = {"train": train, "validation": validation, "test": test}
    splits = {name: dataset.states[rows] for name, rows in parts.items()}
    vocabulary = None
    if captions:
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
    checkpoint = load_checkpoint(out, device="cpu", family="nade")
    saved = checkpoint.config
    if not isinstance(saved.get("training"), dict) or "epoch" not in (saved.get("trainer") or {}):
        raise ConfigError(
            f"{out} was not written by `gibbsdream train nade`, so it cannot be resumed; train into a new out folder",
            "out",
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


FAMILY = register(
    Family(
        train=train,
        train_options="images",
        name="nade",
        title="an Orderless NADE (image) model",
        label="image (NADE)",
        outputs="images",
        prepare=prepare,
        generate=generate,
        evaluate=evaluate,
        inpaint=inpaint,
        export_split=export_split,
        generate_options=("sampler", "block", "caption", "block_select", "mask_schedule", "choice_temperature"),
        evaluate_options=("method", "orders", "masks", "batch_size", "max_images", "caption"),
        sweep_defaults={
            "temperature": "1",
            "anneal": "geometric",
            "steps": DEFAULT_STEPS,
            "block": DEFAULT_BLOCK,
            "sampler": "gibbs",
            "caption": None,
        },
    )
)
