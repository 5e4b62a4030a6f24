"""``gibbsdream train rbm``, ``sample``, ``evaluate`` and ``demo``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..api import evaluate, export_split, family_of, generate, load, train
from ..checkpoint import load_checkpoint
from ..errors import UsageError
from ..families import SPLITS
from ..families.nade import default_steps
from ..families.rbm import CorpusOptions
from ..files import atomic_write_text
from ..likelihood import resolve_method
from ..models.rbm import RBMConfig
from ..resources import ais_bytes, check_memory, product_text, rbm_sampling_bytes
from ..sampling import sample
from ..sampling.replica_exchange import DEFAULT_REPLICAS
from ..sampling.schedules import ANNEAL_KINDS, DEFAULT_BLOCK
from ..summary import SAMPLE_ORDERS, distinct_records, string_records, summarize_records, training_strings
from ..training import RBMTrainConfig
from .common import (
    DEVICE_HELP,
    IMAGE_SAMPLER_HELP,
    IMAGE_SAMPLERS,
    INIT_NAMES,
    PRESENTATION_OPTIONS,
    STRING_SAMPLERS,
    _check_output,
    _library_settings,
    _only_for,
    _options_by_family,
    _positive,
    _say,
    _seconds,
    _still_improving_note,
    _train,
    _training_summary,
    app,
    image_sampler_options,
    say_diagnostics,
    train_app,
)
from .images import evaluate_images, sample_images
from .params import WholeOrAuto, option

# ---- train ---------------------------------------------------------------------------------


@train_app.command("rbm")
@option(
    "--data",
    required=True,
    help="Corpus: a UTF-8 text file with one string per line, or builtin:regions|countries|languages|words.",
)
@option(
    "--out", required=True, type=click.Path(path_type=Path), help="Checkpoint folder to write (created if missing)."
)
@option("--hidden", default=128, help="Number of hidden units.")
@option("--epochs", default=20, help="Total number of epochs (with --resume: the total to reach).")
@option("--batch-size", default=64, help="Strings per mini-batch.")
@option("--lr", "learning_rate", default=0.1, help="SGD learning rate.")
@option("--lr-decay", default=0.98, help="The learning rate is multiplied by this after every epoch.")
@option("--momentum", default=0.9, help="SGD momentum, in [0, 1).")
@option("--weight-cost", default=1e-3, help="L2 penalty on the weights; larger values help chains mix.")
@option("--cd-steps", default=1, help="Gibbs sweeps per update (the k of CD-k).")
@option(
    "--persistent/--no-persistent", default=False, help="Persistent CD: negative chains carry over between updates."
)
@option(
    "--max-length",
    type=int,
    default=None,
    help="Positions per string; longer lines are skipped.  [default: the longest line]",
)
@option("--case-fold/--keep-case", default=False, help="Fold case before learning the alphabet.")
@option("--pad-side", type=click.Choice(["right", "left"]), default="right", help="Where padding goes.")
@option("--min-char-count", default=1, help="Characters seen fewer times than this are rare.")
@option(
    "--rare",
    type=click.Choice(["skip", "replace", "keep"]),
    default="skip",
    help="Rare characters: skip their lines, replace them with '?', or keep them.",
)
@option("--validation-fraction", default=0.05, help="Share of lines held out for monitoring.")
@option(
    "--monitor-every",
    default="auto",
    type=WholeOrAuto(0),
    help="Epochs between checks of the pseudo-likelihood, free-energy gap and fantasies (the last epoch is "
    "checked too); 0: never; auto: as often as keeps them within a tenth of the updates' time (by an estimate "
    "from the corpus size).",
)
@option("--seed", default=0, help="Random seed (same seed, same device: same model).")
@option("--device", default="auto", help=DEVICE_HELP)
@option(
    "--engine",
    type=click.Choice(["auto", "torch", "numba"]),
    default="auto",
    help="How updates run: numba (a compiled loop on several CPU threads, for categorical models on the "
    "CPU; needs numba and a PyTorch built with MKL), torch (any device), or auto (numba where it can "
    "run). Same random numbers; results differ only by float rounding.",
)
@option("--resume", is_flag=True, help="Continue the run saved in --out up to --epochs.")
@option(
    "--apply-changes",
    is_flag=True,
    help="With --resume: continue with the learning-rate, momentum, weight-cost, "
    "CD-steps and monitoring options given, where they differ from the checkpoint's (refused otherwise).",
)
@option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines.")
def train_rbm(
    data,
    out,
    hidden,
    epochs,
    batch_size,
    learning_rate,
    lr_decay,
    momentum,
    weight_cost,
    cd_steps,
    persistent,
    max_length,
    case_fold,
    pad_side,
    min_char_count,
    rare,
    validation_fraction,
    monitor_every,
    seed,
    device,
    engine,
    resume,
    quiet,
    apply_changes=False,
):
    """Train a restricted Boltzmann machine with categorical visible units on a corpus of strings."""

    ctx = click.get_current_context()
    # On resume the run keeps its epochs target unless --epochs says otherwise, as before: the
    # option's value (its default too) is the total to reach.
    settings = _library_settings(ctx, "train rbm", RBMConfig, RBMTrainConfig, CorpusOptions, always=("epochs",))

    def on_epoch(t):
        if not quiet:
            row = t.history[-1]
            parts = [f"epoch {row['epoch']:>3}", f"{row['seconds']:.1f}s"]
            if "train_pseudo_log_likelihood" in row:
                parts.append(f"pseudo-LL train {row['train_pseudo_log_likelihood']:.2f}")
            if "validation_pseudo_log_likelihood" in row:
                parts.append(f"val {row['validation_pseudo_log_likelihood']:.2f}")
                parts.append(f"free-energy gap {row['free_energy_gap']:+.2f}")
            if row.get("fantasy"):
                parts.append("e.g. " + ", ".join(repr(s) for s in row["fantasy"][:4]))
            _say("  ".join(parts))

    result = _train(ctx, "train rbm", "rbm", data, out, settings, resume, apply_changes, device, quiet, on_epoch)
    if not result.trained:
        _say(f"{out} already has {result.epochs} epochs; pass a larger --epochs to continue")
        return
    if not quiet:
        _say(_training_summary(result.summary, "monitoring"))
        _say(_monitoring_line(result.summary))
        _say(f"wrote {out} (a checkpoint, {result.epochs} epochs); try: gibbsdream sample {out} --temperature 0.8")
    note = _still_improving_note(result.summary, None)
    if note:
        _say(note)


def _monitoring_line(summary) -> str:
    """How `train rbm` checked the model, and what that cost."""
    settings, times = summary.monitoring, summary.timings
    if not settings["every"]:
        if not settings["auto"]:
            return "monitoring: none (--monitor-every 0)"
        return (
            f"monitoring: none (auto): one check of {settings['strings']} + {settings['validation_strings']} "
            f"strings costs about {settings['check_cost_in_epochs']:.1f} epochs of updates, more than a tenth of "
            f"{summary.target_epochs}; --monitor-every N checks every N epochs anyway"
        )
    every = settings["every"]
    when = (
        "every epoch"
        if every == 1
        else "after the last epoch"
        if every >= summary.target_epochs
        else f"every {every} epochs and after the last"
    )
    scored = f"{settings['strings']} training" + (
        f" + {settings['validation_strings']} validation strings" if settings["validation_strings"] else " strings"
    )
    chosen = " (auto: at most a tenth of the updates; --monitor-every N to choose)" if settings["auto"] else ""
    checks = f"{times.checks} check{'s' if times.checks != 1 else ''}"
    return (
        f"monitoring: {when} on {scored}{chosen}; {checks}, {_seconds(times.monitoring)} of {_seconds(summary.seconds)}"
    )


# ---- sample ---------------------------------------------------------------------------------


def _check_string_sampling_memory(model, chains: int, steps: int, every: int | None) -> None:
    """Refuse, before sampling, chains whose tensors cannot fit in the memory free here."""

    frames = 0 if every is None else steps // every + 2
    sizes = (chains, model.num_visible, model.num_categories, model.num_hidden)
    threads = os.cpu_count() or 1
    needed = rbm_sampling_bytes(*sizes, steps, frames, threads=threads)
    per_step = needed - rbm_sampling_bytes(*sizes, 0, 0, threads=threads)  # the trace and the frames
    what = product_text(("--chains", chains), (model.num_visible, "positions"), (model.num_categories, "categories"))
    remedy = (
        f"lower --steps{' or raise --every' if frames else ''} (the trace keeps every step of every chain)"
        if per_step > needed / 2
        else "lower --chains"
    )
    check_memory(needed, f"{what}, {model.num_hidden:,} hidden units, {steps:,} steps", remedy)


IN_TRAINING = "   (in training data)"


def _samples_text(rows: list[dict], order: str) -> str:
    """The text form of :func:`~gibbsdream.summary.distinct_records`: ``"  12×  london  -38.21"`` per
    distinct string (its count, the string, its energy), or, in chain order, ``"   -38.21  london"``
    per sample (the form this command has always written, which scripts may read)."""

    if order == "chain":
        return "".join(f"{r['energy']:9.2f}  {r['text']}{IN_TRAINING if r['in_training_data'] else ''}\n" for r in rows)
    if not rows:
        return ""
    counts = max(len(str(r["count"])) for r in rows)
    texts = max(len(r["text"]) for r in rows)
    energies = max(len(f"{r['energy']:.2f}") for r in rows)
    return "".join(
        f"{r['count']:>{counts + 2}}×  {r['text']:<{texts}}  {r['energy']:>{energies}.2f}"
        f"{IN_TRAINING if r['in_training_data'] else ''}\n"
        for r in rows
    )


@app.command("sample")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option(
    "--chains", "--num-samples", "chains", default=20, help="Number of parallel chains (strings or images) to sample."
)
@option(
    "--steps",
    default=None,
    type=int,
    help="Gibbs sweeps (string models) or sampler steps (image models).  "
    "[default: 1000 / 200, 16 with --sampler confidence]",
)
@option("--temperature", "-t", default="1.0", help="Constant (1.0) or annealed start:end (1.5:0.2); 0 is argmax.")
@option(
    "--anneal",
    type=click.Choice(ANNEAL_KINDS),
    default="geometric",
    help="How an annealed temperature goes from start to end.",
)
@option("--init", type=click.Choice(INIT_NAMES), default="uniform", help="String models: where chains start.")
@option(
    "--final",
    type=click.Choice(["sample", "argmax"]),
    default="sample",
    help="String models: argmax takes the most likely character at the last sweep.",
)
@option("--prefix", default=None, help="String models: clamp the start of every string (right-padded models).")
@option("--suffix", default=None, help="String models: clamp the end of every string (left-padded models).")
@option(
    "--every",
    type=int,
    default=None,
    help="String models: also report each chain's state every this many steps (not the starting state). "
    "Image models: a GIF frame every this many steps.",
)
@option("--dedupe", is_flag=True, help="String models, with --every: drop a string already seen in the same chain.")
@option(
    "--engine",
    type=click.Choice(["auto", "torch", "numba"]),
    default="auto",
    help="String models: numba (a compiled loop on several CPU threads; categorical models on the CPU, "
    "not with --every), torch (any device), or auto (numba where it applies). Same random numbers; "
    "samples differ only where float rounding flips a draw.",
)
@option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    help="String models: text (aligned lines) or jsonl (one JSON object per sample, in chain order).",
)
@option(
    "--order",
    type=click.Choice(SAMPLE_ORDERS),
    default="energy",
    help="String models, text: one line per distinct string with its count, likeliest first (energy) or "
    "most repeated first (count); or one line per sample as the chains gave them (chain).",
)
@option(
    "--sampler",
    type=click.Choice(list(dict.fromkeys([*IMAGE_SAMPLERS, *STRING_SAMPLERS]))),
    default="gibbs",
    help="String models: gibbs, or replica-exchange (each chain the coldest of --replicas replicas on an "
    "adaptive temperature ladder: a low constant temperature without stuck chains). Image models: "
    + IMAGE_SAMPLER_HELP,
)
@option("--replicas", default=DEFAULT_REPLICAS, help="String models, --sampler replica-exchange: replicas per chain.")
@option(
    "--block",
    default=DEFAULT_BLOCK,
    help="Image models: fraction redrawn per Gibbs step, a number in (0, 1] or yao:alpha_max,alpha_min,eta.",
)
@image_sampler_options
@option(
    "--gif", type=click.Path(path_type=Path), default=None, help="Image models: write an animated GIF of the chains."
)
@option(
    "--trace", type=click.Path(path_type=Path), default=None, help="Image models: write the per-step trace as JSON."
)
@option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="String models: a file for the samples (default stdout). Image models: the folder for the PNGs (required).",
)
@option(
    "--caption",
    default=None,
    help='Image models trained with --captions: generate what this caption says, e.g. "the digit seven".',
)
@option(
    "--diagnostics",
    is_flag=True,
    help="Say whether the chains mixed: R-hat, effective sample size and autocorrelation time of the trace "
    "over the last half of the steps (a warning when R-hat > 1.05).",
)
@option("--seed", default=0, help="Random seed.")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.pass_context
def sample_command(
    ctx,
    checkpoint,
    chains,
    steps,
    temperature,
    anneal,
    init,
    final,
    prefix,
    suffix,
    every,
    dedupe,
    engine,
    output_format,
    order,
    sampler,
    replicas,
    block,
    block_select,
    mask_schedule,
    choice_temperature,
    gif,
    trace,
    out,
    caption,
    diagnostics,
    seed,
    device,
    quiet,
):
    """Dream: run many chains with temperature or annealing (strings from an RBM, images from a NADE).

    \b
    Examples:
      gibbsdream sample runs/regions --chains 50 --temperature 1.5:0.2 --init silhouettes
      gibbsdream sample runs/digits --num-samples 16 --steps 300 --gif dream.gif --out samples/
    """

    _positive("chains", chains)
    family = family_of(checkpoint)
    _only_for(ctx, family.name, _options_by_family("generate_options", PRESENTATION_OPTIONS["sample"]))
    if family.outputs == "images":
        if sampler not in IMAGE_SAMPLERS:
            raise UsageError(f"--sampler {sampler} is for string models; image models take {', '.join(IMAGE_SAMPLERS)}")
        steps = _positive("steps", default_steps(sampler) if steps is None else steps)
        if every is not None:
            _positive("every", every)
        sample_images(
            load(checkpoint, device, family=family.name),
            num_samples=chains,
            sampler=sampler,
            steps=steps,
            temperature=temperature,
            anneal=anneal,
            block=block,
            block_select=block_select,
            mask_schedule=mask_schedule,
            choice_temperature=choice_temperature,
            seed=seed,
            gif=gif,
            every=every,
            trace=trace,
            out=out,
            quiet=quiet,
            caption=caption,
            diagnostics=diagnostics,
        )
        return
    steps = _positive("steps", 1000 if steps is None else steps)
    _check_output(out, "--out", folder=False)
    if every is not None:
        _positive("every", every)
    if dedupe and every is None:
        raise UsageError("--dedupe needs --every (it drops repeats among the states recorded along a chain)")
    if prefix is not None and suffix is not None:
        raise UsageError("give --prefix or --suffix, not both")
    if output_format == "jsonl" and ctx.get_parameter_source("order") == click.core.ParameterSource.COMMANDLINE:
        raise UsageError(
            "--order arranges the text output; --format jsonl writes one record per sample, in chain order"
        )
    if sampler != "replica-exchange" and ctx.get_parameter_source("replicas") == click.core.ParameterSource.COMMANDLINE:
        raise UsageError("--replicas applies to --sampler replica-exchange only")
    ckpt = load(checkpoint, device, family=family.name)
    if hasattr(ckpt.model, "num_hidden"):  # the memory an RBM's chains take (other families: not pre-flighted)
        _check_string_sampling_memory(ckpt.model, chains, steps, every)
    dream = generate(
        ckpt,
        num_samples=chains,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        every=every,
        seed=seed,
        progress=not quiet,
        # the family's own options (an RBM takes them all; _only_for refused any given to a family without)
        **{
            name: value
            for name, value in dict(
                init=init,
                final=final,
                prefix=prefix,
                suffix=suffix,
                dedupe=dedupe,
                engine=engine,
                sampler=sampler,
                replicas=_positive("replicas", replicas),
            ).items()
            if name in family.generate_options
        },
    )
    records = dream.records
    if output_format == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = _samples_text(distinct_records(records, dream.chain.higher_is_better, order), order)
    if out is not None:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
    if not quiet:
        s = summarize_records(records)
        _say(
            f"{s['samples']} samples, T {dream.chain.settings['temperature']}, {steps} steps: "
            f"mean {dream.chain.trace_name} {s['mean_energy']:.2f} ({dream.chain.trace_kind.direction}), "
            f"unique {s['unique_share']:.0%}, already in training data {s['in_training_share']:.0%}"
        )
        found = dream.extra.get("yield")
        if found is not None:
            _say(
                f"yield {found['yield']}: new distinct strings at least as plausible as the median held-out one "
                f"(character trigrams), {found['per_1000_chain_sweeps']:.2f} per 1,000 chain-sweeps, "
                f"{found['per_second']:.1f} per second"
            )
        if out is not None:
            _say(f"wrote {out}")
    if diagnostics:
        say_diagnostics(dream.chain)


# ---- evaluate -------------------------------------------------------------------------------


@app.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option(
    "--data",
    default=None,
    help="heldout (the checkpoint's held-out split: a string model's validation strings, an image model's "
    "test images), or for string models a UTF-8 file with one string per line or builtin:NAME, for image "
    "models a folder or file of images (naming the images it was trained on means heldout). "
    "`gibbsdream export-split` writes the held-out split as such a file or folder.  [default: heldout]",
)
@option(
    "--method",
    type=click.Choice(["auto", "exact", "ais", "orders", "masks"]),
    default="auto",
    help="String models: log Z by exact enumeration (exact) or annealed importance sampling (ais). "
    "Image models: the chain rule in random orders (orders, D network calls per order) or an estimate "
    "from random masks (masks, one call each). auto: exact when feasible, else ais; orders up to "
    "1,024 variables per image, else masks.",
)
@option("--ais-runs", default=100, help="String models: parallel AIS runs.")
@option("--ais-betas", default=10000, help="String models: intermediate distributions in AIS.")
@option("--skip-invalid", is_flag=True, help="String models: skip lines the model cannot encode instead of stopping.")
@option("--orders", default=8, help="Image models: random orders per image (the NLL is their log-mean-exp ensemble).")
@option("--masks", default=32, help="Image models, --method masks: random masks per image.")
@option(
    "--batch-size",
    type=int,
    default=None,
    help="Image models: images x orders (or masks) per network call.  [default: up to 1024, fewer for large images]",
)
@option("--max-images", type=int, default=None, help="Image models: evaluate only the first this many images.")
@option(
    "--caption",
    default=None,
    help="Image models trained with --captions: evaluate every image with this caption, and without one.  "
    "[default for held-out images: each image's own first caption]",
)
@option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@option("--seed", default=0, help="Random seed (AIS, or the orders or masks).")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar (log Z's work for strings, the network calls for images).")
@click.pass_context
def evaluate_command(
    ctx,
    checkpoint,
    data,
    method,
    ais_runs,
    ais_betas,
    skip_invalid,
    orders,
    masks,
    batch_size,
    max_images,
    caption,
    as_json,
    seed,
    device,
    quiet,
):
    """Test likelihood: exact or AIS log Z for string RBMs; an order ensemble or a mask estimate for
    image NADEs.

    \b
    Examples:
      gibbsdream evaluate runs/names                      # its held-out validation strings
      gibbsdream evaluate runs/names --data held-out.txt --json
      gibbsdream evaluate runs/digits --orders 16        # its held-out test images
      gibbsdream evaluate runs/emoji --method masks --masks 64
    """

    family = family_of(checkpoint)
    _only_for(ctx, family.name, _options_by_family("evaluate_options"))
    if family.outputs == "images":
        if method in ("exact", "ais"):
            raise UsageError(f"--method {method} applies to string models; for images use orders or masks (or auto)")
        evaluate_images(
            load(checkpoint, device, family=family.name),
            data=data,
            method=method,
            orders=_positive("orders", orders),
            masks=_positive("masks", masks),
            batch_size=batch_size if batch_size is None else _positive("batch-size", batch_size),
            max_images=max_images,
            caption=caption,
            seed=seed,
            as_json=as_json,
            quiet=quiet,
        )
        return
    if method in ("orders", "masks"):
        raise UsageError(f"--method {method} applies to image models; for strings use exact or ais (or auto)")
    _positive("ais-runs", ais_runs)
    _positive("ais-betas", ais_betas)
    ckpt = load(checkpoint, device, family=family.name)
    if resolve_method(ckpt.model, method) == "ais":
        model = ckpt.model
        check_memory(
            ais_bytes(ais_runs, ais_betas, model.num_visible, model.num_categories, model.num_hidden),
            product_text(
                ("--ais-runs", ais_runs), (model.num_visible, "positions"), (model.num_categories, "categories")
            )
            + f", {model.num_hidden:,} hidden units, "
            f"--ais-betas {ais_betas:,}",
            "lower --ais-runs or --ais-betas",
        )
    scores = evaluate(
        ckpt,
        data,
        method=method,
        ais_runs=ais_runs,
        ais_betas=ais_betas,
        skip_invalid=skip_invalid,
        seed=seed,
        progress=not quiet,
    )
    scores.values["checkpoint"] = str(checkpoint)  # as the user spelled it
    click.echo(json.dumps(scores.values) if as_json else scores.text())


# ---- export-split -------------------------------------------------------------------------


@app.command("export-split")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("split", metavar="SPLIT", type=click.Choice(list(SPLITS)))
@option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="String models: a text file (one string a line). Image models: a folder (PNG files, and captions.json "
    "for a captioned model).",
)
@option(
    "--force",
    is_flag=True,
    help="Replace an --out that exists and is not empty (a folder only when it holds PNG files and captions.json).",
)
@option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def export_split_command(checkpoint, split, out, force, quiet):
    """Write a data split the checkpoint keeps as files the other commands read.

    String models keep train and valid, image models train, valid and test; the held-out split
    that `evaluate` scores by default is valid for strings and test for images. Strings are written
    as the model saw them (case folded, rare characters replaced, where training did so); images as
    the model's levels show them, named SPLIT-0000.png ... in the split's order.

    \b
    Examples:
      gibbsdream export-split runs/names valid --out held-out.txt
      gibbsdream evaluate runs/names --data held-out.txt
      gibbsdream export-split runs/digits test --out digits-test/
    """

    family = family_of(checkpoint)
    _check_output(out, "--out", folder=family.outputs == "images")
    done = export_split(checkpoint, split, out, overwrite=force, progress=not quiet)
    if not quiet:
        what = f"{done.count} {done.outputs}" + (f" ({done.captioned} with captions)" if done.captioned else "")
        _say(f"wrote {what} of the {split} split of {checkpoint} to {out}")


# ---- demo -----------------------------------------------------------------------------------


@app.command("demo")
@option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo-regions"),
    help="Where to keep the demo's checkpoint.",
)
@option("--epochs", default=60, help="Training epochs.")
@option("--chains", default=12, help="Chains per sampling setting.")
@option("--steps", default=1000, help="Gibbs sweeps per chain.")
@option("--seed", default=0, help="Random seed.")
def demo_command(out, epochs, chains, steps, seed):
    """Train a small RBM on built-in region names, then show plain and annealed samples side by side."""

    if not (out / "config.json").exists():
        _say(f"training an RBM on builtin:regions ({epochs} epochs) into {out} ...")

        train(
            "rbm",
            "builtin:regions",
            out,
            model={"num_hidden": 256},
            training={"epochs": epochs, "monitor_every": 0, "seed": seed},
            options={"max_length": 20, "case_fold": True, "min_char_count": 20},
        )
        _say(f"wrote {out} (the demo's checkpoint)")
    else:
        _say(f"reusing the model in {out} (delete it to retrain)")

    ckpt = load_checkpoint(out, family="rbm")
    corpus = training_strings(ckpt)
    columns = []
    for label, temperature in (("plain Gibbs, T = 1", "1.0"), ("annealed, T 1.5 -> 0.2", "1.5:0.2")):
        chain = sample(ckpt.model, num_chains=chains, steps=steps, temperature=temperature, init="uniform", seed=seed)
        records = string_records(chain, ckpt.codec, corpus)
        columns.append((label, records, summarize_records(records)))

    table = Table(title=f"{chains} chains x {steps} Gibbs sweeps from uniform noise (* = a real region name)")
    for label, _, s in columns:
        table.add_column(
            f"{label}\nmean free energy {s['mean_energy']:.1f}, unique {s['unique_share']:.0%}", no_wrap=True
        )
    for row in zip(*(records for _, records, _ in columns)):
        table.add_row(
            *(f"{r['text']}{' *' if r['in_training_data'] else ''}  [dim]{r['energy']:.1f}[/dim]" for r in row)
        )
    Console().print(table)
