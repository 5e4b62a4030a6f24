"""The image half of the command line: ``train nade``, ``inpaint``, and the image branches of
``sample`` and ``evaluate`` (which :mod:`gibbsdream.cli` dispatches here by model family).

Same rules as the rest of the CLI: bad input is a one-line ``error:`` and exit code 2, and
every output file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..api import evaluate, generate, inpaint, load
from ..data.images import images_to_fill
from ..errors import UsageError
from ..families.nade import (
    ImageOptions,
    auto_batch_size,
    caption_ids,
    default_steps,
    frame_every,
    held_out_images,
    likelihood_method,
)
from ..files import atomic_write_text, json_numbers
from ..models.nade import NADEConfig
from ..resources import check_memory, image_sampling_bytes, order_likelihood_bytes, product_text
from ..sampling.schedules import (
    ANNEAL_KINDS,
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_SELECT,
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_MASK_SCHEDULE,
    block_schedule,
    schedule_values,
)
from ..training import PRECISIONS, NADETrainConfig, parse_duration
from ..viz import chain_gif, inpaint_comparison, save_grid_png, write_image, write_png
from .common import (
    DEVICE_HELP,
    IMAGE_SAMPLER_HELP,
    IMAGE_SAMPLERS,
    _all_or_nothing,
    _check_output,
    _library_settings,
    _positive,
    _say,
    _still_improving_note,
    _train,
    _training_summary,
    app,
    check_confidence_options,
    image_sampler_options,
    say_diagnostics,
    train_app,
)
from .params import CountOrFraction, Duration, WholeList, option

COMPARISON_NAME = "comparison.png"  # beside inpaint's fills in a folder: originals, holes and fills side by side
IMAGE_SUFFIX_FORMATS = {".png": "PNG", ".bmp": "BMP", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG"}
# A dilation pads the feature maps by that many pixels on each side; one wider than any image only
# adds zero padding, and a huge one asks for memory without end (and overflows the convolution).
MAX_DILATION = 1024
DILATION_WHY = " (a dilation wider than the image only pads it with zeros)"


def _write_image(path: Path, hwc) -> None:
    """Write ``(H, W, C)`` uint8 pixels in the format the file name asks for (PNG by default)."""

    write_image(path, hwc, IMAGE_SUFFIX_FORMATS.get(path.suffix.lower(), "PNG"))


def _check_block(block: str) -> None:

    schedule_values(block_schedule(block), 2)  # raises a UsageError for a fraction outside (0, 1]


def _check_sampling_memory(ckpt, images: int, steps: int, frames: int, what: str, remedy: str) -> None:
    """Refuse, before sampling, more images than the memory free here can hold."""

    C, H, W = ckpt.codec.shape
    sizes = (images, C, H, W, ckpt.codec.levels, ckpt.model.settings.width)
    needed = image_sampling_bytes(*sizes, steps, frames)
    if needed - image_sampling_bytes(*sizes, 0, 0) > needed / 2:  # the per-step trace and frames dominate
        remedy = (
            "lower --steps" + (" or raise --every" if frames else "") + " (the trace keeps every step of every chain)"
        )
    check_memory(needed, f"{what} of {C}x{H}x{W} at {ckpt.codec.levels} levels, {steps:,} steps", remedy)


CAPTION_HELP = (
    'Condition on this caption (models trained with --captions), e.g. "a red square"; '
    "without it the model fills in as it sees fit."
)


def _trace_json(chain) -> str:
    """The per-step trace: mean log-probability of the variables redrawn at each step, per image.

    ``"trace"`` names the quantity and its direction; the rows keep their old key ``"mean_log_prob"``.
    """

    rows = chain.trace.T.tolist()  # (N, S+1)
    record = {"settings": chain.settings, "trace": chain.trace_kind.to_json()}
    return json.dumps({**record, "mean_log_prob": [json_numbers(row, 6) for row in rows]}) + "\n"


# ---- train nade ----------------------------------------------------------------------------------


@train_app.command("nade")
@option(
    "--data",
    required=True,
    help="Images: builtin:digits, builtin:shapes, builtin:emoji (needs a colour emoji font), or a folder "
    "of PNG/JPEG files (subfolders are read when it has none at the top).",
)
@option(
    "--out", required=True, type=click.Path(path_type=Path), help="Checkpoint folder to write (created if missing)."
)
@option(
    "--levels",
    type=int,
    default=None,
    help="K intensity levels per channel (2..256); p -> round(p(K-1)/255).  [default: 17 for digits, else 256]",
)
@option(
    "--channels",
    type=click.Choice(["1", "3"]),
    default=None,
    help="Force grayscale (1) or RGB (3).  [default: as the files are]",
)
@option(
    "--size",
    type=int,
    default=None,
    help="builtin:shapes and builtin:emoji: image side in pixels (shapes 16..64, emoji 16..128).  "
    "[default: 32 for shapes, 64 for emoji]",
)
@option(
    "--count",
    type=int,
    default=None,
    help="builtin:shapes and builtin:emoji: number of images (emoji: at most this many, whole "
    "skin-tone groups).  [default: 2000 shapes, every emoji]",
)
@option(
    "--emoji-font",
    default=None,
    metavar="PATH",
    help="builtin:emoji only: the colour emoji font to draw with.  "
    "[default: the system's, e.g. Noto Color Emoji from fonts-noto-color-emoji]",
)
@option("--width", default=64, help="Feature maps per layer.")
@option("--depth", default=6, help="Residual blocks.")
@option("--kernel-size", default=3, help="Convolution kernel size (odd).")
@option(
    "--dilations",
    default="1,2,1,4",
    type=WholeList(1, MAX_DILATION, DILATION_WHY),
    help="Dilations the blocks cycle through (comma-separated).",
)
@option("--residual/--no-residual", default=True, help="Skip connections around every block.")
@option(
    "--masks",
    default="orderless",
    help="Training masks: orderless, squares, contiguish, centre[:F], bernoulli[:P], "
    "or a mix like orderless+contiguish or orderless=0.7,contiguish=0.3.",
)
@option(
    "--loss",
    type=click.Choice(["ce", "emd2"]),
    default="ce",
    help="Cross-entropy, or the squared earth mover's distance over ordered levels.",
)
@option(
    "--rescale/--no-rescale",
    default=True,
    help="Weight each example's loss by D/(D-d+1) (Uria et al.): the loss then estimates nats per image.",
)
@option("--epochs", default=200, help="Maximum epochs (with --resume: the total to reach).")
@option(
    "--max-time",
    default=None,
    type=Duration(),
    help="Stop cleanly and save when this much training time has passed (e.g. 90s, 8m, 1h30m).",
)
@option(
    "--batch-size",
    type=int,
    default=None,
    help="Images per update (per process under torchrun).  [default: 64; 8 for images of more than 4,096 values]",
)
@option("--lr", "learning_rate", default=1e-3, help="Adam learning rate.")
@option("--lr-factor", default=0.5, help="The learning rate is multiplied by this when the validation loss plateaus.")
@option("--lr-patience", default=5, help="Epochs without validation improvement before the learning rate is cut.")
@option("--min-lr", default=1e-5, help="The learning rate never goes below this.")
@option("--weight-decay", default=0.0, help="Adam weight decay.")
@option("--grad-clip", default=10.0, help="Clip the gradient norm to this (0: no clipping).")
@option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    help="bfloat16: the network's forward pass in bfloat16 (autocast), the loss and weights in float32; "
    "faster where the processor does bfloat16 (recent x86 CPUs, GPUs).",
)
@option(
    "--test-size",
    default=None,
    type=CountOrFraction(),
    help="Images held out for `evaluate` (a count, or a fraction < 1).  [default: 297 for digits, else 0.1]",
)
@option("--validation-fraction", default=0.1, help="Share of the remaining images used for the plateau schedule.")
@option("--seed", default=0, help="Random seed (the split, the initial weights, the shuffles and the masks).")
@option(
    "--captions",
    is_flag=True,
    help="Condition on captions: builtin:digits, builtin:shapes and builtin:emoji (CLDR names) write their own; "
    "a folder needs a captions.json (file name -> list of captions) "
    "or the class project's captions pickle beside the images.",
)
@option(
    "--caption-dropout",
    default=0.2,
    help="With --captions: chance that an example trains without its caption (so the model also works without one).",
)
@option(
    "--caption-min-count",
    default=2,
    help="With --captions: words seen fewer times in the training captions become the unknown word.",
)
@option("--caption-max-length", default=24, help="With --captions: words read per caption (longer ones are cut).")
@option("--caption-embedding", default=32, help="With --captions: word embedding size.")
@option("--caption-hidden", default=64, help="With --captions: QRNN states per direction.")
@option("--caption-kernel", default=2, help="With --captions: QRNN convolution width over the words.")
@option("--caption-layers", default=1, help="With --captions: stacked QRNN layers.")
@option(
    "--caption-bidirectional/--caption-unidirectional",
    default=True,
    help="With --captions: read the caption both ways.",
)
@option(
    "--caption-merge",
    type=click.Choice(["attention", "concat"]),
    default="attention",
    help="With --captions: attention over the caption's words, "
    "or a tiled mean caption vector concatenated to the features.",
)
@option(
    "--caption-merge-every",
    default=2,
    help="With --captions: merge the caption into the convnet after every this many blocks.",
)
@option("--device", default="auto", help=DEVICE_HELP)
@option("--resume", is_flag=True, help="Continue the run saved in --out (up to --epochs / --max-time more).")
@option(
    "--apply-changes",
    is_flag=True,
    help="With --resume: continue with the optimizer, schedule, mask, loss and "
    "caption-dropout options given, where they differ from the checkpoint's (refused otherwise).",
)
@option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
def train_nade(
    data,
    out,
    levels,
    channels,
    size,
    count,
    emoji_font,
    width,
    depth,
    kernel_size,
    dilations,
    residual,
    masks,
    loss,
    rescale,
    epochs,
    max_time,
    batch_size,
    learning_rate,
    lr_factor,
    lr_patience,
    min_lr,
    weight_decay,
    grad_clip,
    precision,
    test_size,
    validation_fraction,
    seed,
    captions,
    caption_dropout,
    caption_min_count,
    caption_max_length,
    caption_embedding,
    caption_hidden,
    caption_kernel,
    caption_layers,
    caption_bidirectional,
    caption_merge,
    caption_merge_every,
    device,
    resume,
    quiet,
    apply_changes=False,
):
    """Train an Orderless NADE convnet on images with random masks (runs under torchrun too).

    \b
    Examples:
      gibbsdream train nade --data builtin:digits --max-time 8m --out runs/digits
      gibbsdream train nade --data builtin:digits --captions --max-time 20m --out runs/digits-captions
      gibbsdream train nade --data builtin:emoji --captions --max-time 30m --out runs/emoji
      torchrun --nproc-per-node 2 -m gibbsdream train nade --data builtin:shapes --out runs/shapes
    """

    ctx = click.get_current_context()
    # On resume the run keeps its epochs target unless --epochs says otherwise, as before: the
    # option's value (its default too) is the total to reach.
    model, training, options = _library_settings(
        ctx, "train nade", NADEConfig, NADETrainConfig, ImageOptions, always=("epochs",)
    )
    if training.get("max_time") is not None:  # --max-time is a duration (on resume: the time to add)
        training["max_time"] = parse_duration(training["max_time"])
    if options.get("channels") is not None:
        options["channels"] = int(options["channels"])

    def on_epoch(t):
        if not quiet and t.history and not t.stopped_by_time:
            row = t.history[-1]
            _say(
                f"epoch {row['epoch']:>4}  {row['seconds']:.1f}s  lr {row['learning_rate']:.2g}  "
                f"train {row['train_loss']:.3f}  validation {row['validation_loss']:.3f}"
            )

    settings = [model, training, options]
    result = _train(ctx, "train nade", "nade", data, out, settings, resume, apply_changes, device, quiet, on_epoch)
    trainer = result.trainer
    if not result.trained:
        _say(f"{out} already has {result.epochs} epochs; pass a larger --epochs to continue")
        return
    if not result.writer:  # under torchrun rank 0 speaks for the run
        return
    if not quiet:
        passes, images = result.summary.timings.checks, result.summary.monitoring["images"]
        _say(
            _training_summary(
                result.summary, "validation", f"{passes} pass{'es' if passes != 1 else ''} over {images} images"
            )
        )
        why = "time limit reached" if trainer.stopped_by_time else "done"
        _say(
            f"wrote {out} (a checkpoint; {why}: {trainer.epoch} epochs, {trainer.elapsed:.0f}s); "
            f"try: gibbsdream inpaint {out} --image heldout:8 --mask centre --gif chain.gif --out inpainted"
        )
    note = _still_improving_note(result.summary, max_time)
    if note:
        _say(note)


# ---- inpaint ------------------------------------------------------------------------------------


@app.command("inpaint")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option(
    "--image",
    required=True,
    help="An image file, a folder of images (one result per image), "
    "or heldout:N (the checkpoint's held-out test images).",
)
@option("--mask", default="centre", help="What to fill: centre[:F], box:x,y,w,h, random:P, or MASK.png (white = hole).")
@option("--sampler", type=click.Choice(IMAGE_SAMPLERS), default="gibbs", help=IMAGE_SAMPLER_HELP)
@option(
    "--block",
    default=DEFAULT_BLOCK,
    help="Fraction of the hole redrawn per Gibbs step: a number in (0, 1] or yao:alpha_max,alpha_min,eta.",
)
@image_sampler_options
@option(
    "--temperature",
    "-t",
    default="1.0",
    help="Temperature of every categorical: constant (0.9), or annealed start:end (1.5:0.5); 0 is argmax.",
)
@option(
    "--anneal",
    type=click.Choice(ANNEAL_KINDS),
    default="geometric",
    help="How an annealed temperature goes from start to end.",
)
@option(
    "--steps",
    type=int,
    default=None,
    help="Sampler steps (ignored by --sampler ancestral).  [default: 200; 16 with --sampler confidence]",
)
@option("--samples", default=1, help="Completions per image (written as NAME-k.png when more than one).")
@option("--seed", default=0, help="Random seed (the random mask and the sampler).")
@option(
    "--gif",
    type=click.Path(path_type=Path),
    default=None,
    help="Write an animated GIF of the chains (all images tiled, the last frame held).",
)
@option("--every", type=int, default=None, help="A GIF frame every this many steps.  [default: steps/50]")
@option(
    "--trace",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the per-step trace (mean log-probability of the redrawn variables) as JSON.",
)
@option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output image file, or a folder (required when --image is a folder, heldout:N or --samples > 1).",
)
@option("--caption", default=None, help=CAPTION_HELP)
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def inpaint_command(
    checkpoint,
    image,
    mask,
    sampler,
    block,
    block_select,
    mask_schedule,
    choice_temperature,
    temperature,
    anneal,
    steps,
    samples,
    seed,
    gif,
    every,
    trace,
    out,
    caption,
    device,
    quiet,
):
    """Fill the hole of images with an Orderless NADE model (known pixels never change)."""

    steps = _positive("steps", default_steps(sampler) if steps is None else steps)
    _positive("samples", samples)
    if every is not None:
        _positive("every", every)
    _check_block(block)
    check_confidence_options(mask_schedule, choice_temperature)
    _check_output(gif, "--gif", folder=False)
    _check_output(trace, "--trace", folder=False)
    ckpt = load(checkpoint, device, family="nade")
    context = caption_ids(ckpt, caption)  # a bad caption is refused before the images are read
    states, names, many = images_to_fill(ckpt, image, progress=not quiet)
    many = many or samples > 1
    if many and out.suffix.lower() in IMAGE_SUFFIX_FORMATS:
        raise UsageError(
            f"--out {out} looks like one image file, but this run makes {len(states) * samples} images; pass a folder"
        )
    if not many and out.exists() and out.is_dir():
        out = out / names[0]
    _check_output(out, "--out", folder=many)
    frames = steps // frame_every(steps, every) + 2 if gif else 0
    _check_sampling_memory(
        ckpt,
        len(states) * samples,
        steps,
        frames,
        f"{len(states):,} images x --samples {samples:,}",
        "lower --samples, or fill fewer images at a time" + (" (or raise --every)" if gif else ""),
    )
    # Only now, with the count known to fit: one path per fill.
    targets = [  # image i's fills are rows i*samples ... of the result
        out / (f"{Path(name).stem}-{k}{Path(name).suffix or '.png'}" if samples > 1 else name) if many else out
        for name in names
        for k in range(samples)
    ]
    comparison = out / COMPARISON_NAME if many else out.with_name(f"{out.stem}-comparison.png")
    if comparison in targets:
        raise UsageError(
            f"an image to fill is named {comparison.name}, the name of the comparison picture written beside the "
            "fills; rename it"
        )
    filled = inpaint(
        ckpt,
        states,
        mask,
        samples=samples,
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
        block_select=block_select,
        mask_schedule=mask_schedule,
        choice_temperature=choice_temperature,
        caption=context,
        every=frame_every(steps, every) if gif else None,
        seed=seed,
        progress=not quiet,
    )
    chain, known = filled.chain, filled.extra["known"].cpu()
    with _all_or_nothing() as stage:  # a full disk half-way leaves no images, GIF or trace behind
        for target, hwc in zip(targets, filled.outputs):
            _write_image(stage(target), hwc)
        picture = inpaint_comparison(ckpt.codec.decode(states.cpu()), known[::samples], filled.outputs)
        write_png(stage(comparison), picture)
        if gif:
            chain_gif(chain.frames.cpu(), ckpt.codec, stage(gif), known=known)
        if trace:
            atomic_write_text(stage(trace), _trace_json(chain))
    if not quiet:
        final = chain.final_trace.nanmean().item()
        _say(
            f"inpainted {len(states)} image(s) x {samples} with {sampler} ({chain.settings['steps']} steps, "
            f"T {chain.settings['temperature']}) in {filled.seconds:.1f}s; mean log-prob of the last redraw "
            f"{final:.3f}"
        )
        _say(f"wrote {len(targets)} files to {out}" if many else f"wrote {out}")
        _say(f"wrote {comparison} (per image: the original, its hole in magenta, then the fills)")
        for path in (gif, trace):
            if path:
                _say(f"wrote {path}")


# ---- sample / evaluate (image branches) ----------------------------------------------------------


def sample_images(
    ckpt,
    *,
    num_samples,
    sampler,
    steps,
    temperature,
    anneal,
    block,
    seed,
    gif,
    every,
    trace,
    out,
    quiet,
    caption=None,
    block_select=DEFAULT_BLOCK_SELECT,
    mask_schedule=DEFAULT_MASK_SCHEDULE,
    choice_temperature=DEFAULT_CHOICE_TEMPERATURE,
    diagnostics=False,
):
    """``gibbsdream sample`` for an image model: generate from a blank canvas into a folder."""

    if out is None:
        raise UsageError("sampling an image model needs --out FOLDER (the images are written there)")
    if out.suffix.lower() in IMAGE_SUFFIX_FORMATS:
        raise UsageError(f"--out {out} looks like an image file; pass a folder for the samples")
    _check_output(out, "--out", folder=True)
    _check_output(gif, "--gif", folder=False)
    _check_output(trace, "--trace", folder=False)
    _check_block(block)
    check_confidence_options(mask_schedule, choice_temperature)
    frames = steps // frame_every(steps, every) + 2 if gif else 0
    _check_sampling_memory(
        ckpt,
        num_samples,
        steps,
        frames,
        f"--chains {num_samples:,} images",
        "lower --chains" + (" (or raise --every)" if gif else ""),
    )
    dream = generate(
        ckpt,
        num_samples=num_samples,
        sampler=sampler,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        block=block,
        block_select=block_select,
        mask_schedule=mask_schedule,
        choice_temperature=choice_temperature,
        caption=caption,
        every=frame_every(steps, every) if gif else None,
        seed=seed,
        progress=not quiet,
    )
    chain, codec = dream.chain, ckpt.codec
    with _all_or_nothing() as stage:  # a full disk half-way leaves no images, grid, GIF or trace behind
        for i, image in enumerate(dream.outputs):
            _write_image(stage(out / f"sample-{i:04d}.png"), image)
        save_grid_png(stage(out / "grid.png"), codec.decode(chain.samples.cpu()), scale=max(1, 64 // codec.height))
        if gif:
            chain_gif(chain.frames.cpu(), codec, stage(gif))
        if trace:
            atomic_write_text(stage(trace), _trace_json(chain))
    if not quiet:
        _say(
            f"{num_samples} samples with {sampler} "
            f"({chain.settings['steps']} steps, T {chain.settings['temperature']}) in {dream.seconds:.1f}s"
        )
        _say(f"wrote {num_samples} files to {out} (sample-0000.png ...)")
        _say(f"wrote {out / 'grid.png'} (all the samples in one picture)")
        for path in (gif, trace):
            if path:
                _say(f"wrote {path}")
    if diagnostics:
        say_diagnostics(chain)


def evaluate_images(ckpt, *, data, method, orders, masks, batch_size, max_images, seed, as_json, quiet, caption=None):
    """``gibbsdream evaluate`` for an image model: NLL by the chain rule over an ensemble of orders
    or from random masks (:func:`gibbsdream.families.nade.evaluate`), after a memory pre-flight
    worded in flags."""

    states, _, _ = held_out_images(ckpt, data, progress=not quiet)
    if max_images is not None:
        states = states[: _positive("max-images", max_images)]
    C, H, W = ckpt.codec.shape
    method = likelihood_method(method, C * H * W)
    batch_size = batch_size or auto_batch_size(C * H * W, ckpt.codec.levels)
    per_image, flag = (orders, "--orders") if method == "orders" else (masks, "--masks")
    check_memory(
        order_likelihood_bytes(
            len(states), per_image, batch_size, C, H, W, ckpt.codec.levels, ckpt.model.settings.width
        ),
        product_text((len(states), "images"), (flag, per_image)) + f", --batch-size {batch_size:,}",
        f"lower {flag} or --batch-size" + ("" if max_images else ", or pass --max-images"),
    )
    scores = evaluate(
        ckpt,
        data,
        method=method,
        orders=orders,
        masks=masks,
        batch_size=batch_size,
        max_images=max_images,
        caption=caption,
        seed=seed,
        progress=not quiet,
    )
    click.echo(json.dumps(scores.values) if as_json else scores.text())
    sys.stdout.flush()
