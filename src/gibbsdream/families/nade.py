"""The Orderless NADE family: convnets over images (``C`` channels of ``K`` levels), optionally
reading a caption, that generate and inpaint by the conditional samplers (blocked Gibbs, ancestral).

Its checkpoints hold the model, an :class:`~gibbsdream.ImageCodec` (the size it was trained on) and
the held-out test images (with their captions, for captioned models).
"""

from __future__ import annotations

import math
import time

import torch

from ..errors import UsageError
from .base import Evaluation, Family, Generated, register

DEFAULT_STEPS = 200  # Gibbs steps when none are asked for
DEFAULT_BLOCK = "yao:0.9,0.1,0.7"  # Yao et al.'s schedule of the share of the hole redrawn per step


def prepare(checkpoint) -> None:
    """Refuse a checkpoint without the image codec its samples need."""
    if checkpoint.codec is None or getattr(checkpoint.codec, "height", None) is None:
        raise UsageError(f"checkpoint {checkpoint.path} has no image codec; retrain it with `gibbsdream train nade`")


def frame_every(steps: int, every: int | None) -> int:
    """Frames every ``every`` steps; by default about 50 frames per animation."""
    return every if every is not None else max(1, steps // 50)


def caption_ids(checkpoint, caption):
    """A caption -> the model's caption context (None without one); bad captions are UsageErrors.

    ``caption`` may also be token ids already made by :func:`~gibbsdream.data.captions.caption_context`
    (a ``(1, T)`` or ``(N, T)`` long tensor), e.g. by a front end that checks a caption before
    reading its images.
    """
    from ..data.captions import caption_context

    if isinstance(caption, torch.Tensor):
        return caption.to(_device(checkpoint))
    return caption_context(checkpoint, None if caption is None else [caption], _device(checkpoint))


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
    seed=0,
    every=None,
    progress=False,
    context=None,
    on_step=None,
):
    """One conditional sampler run over ``x`` ``(N, C, H, W)`` with ``known`` clamped; the block
    schedule goes to the samplers that take one (the registry says which)."""
    from ..sampling import sample
    from ..sampling.registry import applicable

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
        **applicable("conditional", sampler, block=block),
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
    caption: str | None = None,
    every: int | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step=None,
) -> Generated:
    """Generate ``num_samples`` images from a blank canvas.

    Args:
        checkpoint: a loaded NADE checkpoint (:func:`gibbsdream.load`).
        num_samples: images ``N``.
        sampler: a conditional sampler of the registry (``gibbs``, ``ancestral``, ...).
        steps: Gibbs steps (default 200; ancestral samplers ignore it).
        temperature, anneal: a constant or annealed temperature and how it goes.
        block: share of the canvas redrawn per Gibbs step (a number or ``yao:a_max,a_min,eta``).
        caption: what the image should show (captioned models only; text, or token ids).
        every: keep frames every this many steps (for an animation).
        seed: same seed, same device: same images.
        on_step: called as ``on_step(n, states, trace)`` after every step (a live view).

    Returns:
        :class:`Generated` with ``outputs`` the ``(N, H, W, C)`` uint8 pixels and the chain (its
        trace: mean log-probability of the redrawn variables, higher is likelier).
    """
    steps = DEFAULT_STEPS if steps is None else steps
    context = caption_ids(checkpoint, caption)
    codec = checkpoint.codec
    x = torch.zeros((num_samples, *codec.shape), dtype=torch.long, device=_device(checkpoint))
    known = torch.zeros_like(x, dtype=torch.bool)
    started = time.perf_counter()
    chain = run_sampler(
        checkpoint.model,
        x,
        known,
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
        seed=seed,
        every=every,
        progress=progress,
        context=context,
        on_step=on_step,
    )
    return Generated(chain=chain, outputs=_pixels(codec, chain.samples), seconds=time.perf_counter() - started)


def inpaint(
    checkpoint,
    images: torch.Tensor,
    mask="centre",
    *,
    samples: int = 1,
    sampler: str = "gibbs",
    steps: int = DEFAULT_STEPS,
    temperature="1.0",
    anneal: str = "geometric",
    block: str = DEFAULT_BLOCK,
    caption: str | None = None,
    every: int | None = None,
    seed: int = 0,
    progress: bool = False,
    on_step=None,
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
    from ..data.masks import inpaint_masks
    from ..randomness import make_generator

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
    started = time.perf_counter()
    chain = run_sampler(
        checkpoint.model,
        x,
        known,
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
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


def held_out_images(checkpoint, data) -> tuple[torch.Tensor, str, bool]:
    """``data`` -> (states ``(N, C, H, W)``, label, whether they are the checkpoint's own test split).

    ``None``, ``"heldout"`` or the source the model was trained on mean the held-out split.
    """
    from ..data.images import load_images
    from ..files import same_file

    source = checkpoint.config.get("data_source", {}).get("source")
    if isinstance(data, torch.Tensor):
        return data, f"{len(data)} images", False
    if data in (None, "heldout") or data == source or same_file(data, source):
        states = checkpoint.data.get("test")
        if states is None or len(states) == 0:
            raise UsageError(f"checkpoint {checkpoint.path} keeps no held-out images; pass --data FOLDER")
        return states, f"held-out test split of {source}", True
    return load_images(data, codec=checkpoint.codec).states, str(data), False


def evaluate(
    checkpoint,
    data=None,
    *,
    orders: int = 8,
    batch_size: int = 1024,
    max_images: int | None = None,
    caption: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Evaluation:
    """Negative log-likelihood by the chain rule over an ensemble of random orders.

    A captioned model is scored twice with the same orders, with captions (``caption`` for every
    image, else each held-out image's own first caption) and without, so the difference is what
    the caption is worth in nats per image.

    Args:
        checkpoint: a loaded NADE checkpoint.
        data: None or ``"heldout"`` (the checkpoint's test split), a folder or file of images, or
            ``(N, C, H, W)`` states.
        orders: random orders per image (the NLL is their log-mean-exp ensemble).
        batch_size: images x orders per network call.
        max_images: score only the first this many.
        seed: the orders.

    Returns:
        :class:`Evaluation` with ``images``, ``dimensions``, ``orders``, ``caption``, ``nll_nats``
        (± ``nll_nats_stderr``), ``bits_per_dim``, ``single_order_nll_nats``, with a caption also
        ``nll_nats_without_caption`` and ``caption_gain_nats`` (± stderr), and ``seconds``.
    """
    from ..data.captions import has_captions
    from ..likelihood import ensemble_log_likelihood, order_log_likelihoods
    from ..randomness import make_generator

    states, label, held_out = held_out_images(checkpoint, data)
    if max_images is not None:
        states = states[:max_images]
    device = _device(checkpoint)
    context, caption_label = None, None
    if caption is not None:
        context, caption_label = caption_ids(checkpoint, caption), caption
    elif has_captions(checkpoint.model) and held_out and "captions.test" in checkpoint.data:
        context = checkpoint.data["captions.test"][: len(states), 0].to(device)  # (N, T): each image's first caption
        caption_label = "each image's own first caption"

    def log_likelihoods(context):
        return order_log_likelihoods(
            checkpoint.model,
            states.to(device),
            num_orders=orders,
            generator=make_generator(seed, device),
            batch_size=batch_size,
            context=context,
            progress=progress,
        ).cpu()

    def stderr(values):
        return (values.std() / len(values) ** 0.5).item() if len(values) > 1 else 0.0

    started = time.perf_counter()
    values = log_likelihoods(context)
    ensemble = ensemble_log_likelihood(values)
    dims = math.prod(states.shape[1:])
    nll = -ensemble.mean().item()
    result = {
        "checkpoint": str(checkpoint.path),
        "data": label,
        "images": len(states),
        "dimensions": dims,
        "orders": orders,
        "caption": caption_label,
        "nll_nats": nll,
        "nll_nats_stderr": stderr(ensemble),
        "bits_per_dim": nll / (dims * math.log(2)),
        "single_order_nll_nats": -values.mean().item(),
    }
    if context is not None:
        # The same seed gives the same orders, so the two runs differ only by the caption.
        plain = ensemble_log_likelihood(log_likelihoods(None))
        result.update(
            nll_nats_without_caption=-plain.mean().item(),
            caption_gain_nats=(ensemble - plain).mean().item(),
            caption_gain_nats_stderr=stderr(ensemble - plain),
        )
    result["seconds"] = round(time.perf_counter() - started, 3)
    lines = [
        f"{result['images']} images ({label}), {orders} random orders each"
        + (f"; caption: {caption_label}" if caption_label else ""),
        f"NLL (order ensemble)  {nll:.3f} ± {result['nll_nats_stderr']:.3f} nats per image",
        f"bits per dimension    {result['bits_per_dim']:.4f}",
        f"single-order NLL      {result['single_order_nll_nats']:.3f} nats per image (mean over orders)",
    ]
    if context is not None:
        lines.append(
            f"without a caption     {result['nll_nats_without_caption']:.3f} nats per image: the caption is worth "
            f"{result['caption_gain_nats']:.3f} ± {result['caption_gain_nats_stderr']:.3f} nats per image"
        )
    return Evaluation(values=result, lines=lines)


FAMILY = register(
    Family(
        name="nade",
        title="an Orderless NADE (image) model",
        label="image (NADE)",
        outputs="images",
        prepare=prepare,
        generate=generate,
        evaluate=evaluate,
        inpaint=inpaint,
        generate_options=("sampler", "block", "caption"),
        evaluate_options=("orders", "batch_size", "max_images", "caption"),
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
