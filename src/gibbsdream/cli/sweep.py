"""``gibbsdream sweep``: every combination of a grid of sampling settings, as a report folder.

The work is in :mod:`gibbsdream.sweep` (cells) and :mod:`gibbsdream.report` (the folder's page,
plots and ``results.json``); this file is the command line around them.
"""

from __future__ import annotations

# The sweep options that apply to one kind of outputs only.
import os
import shlex
import sys
from pathlib import Path

import click

from ..api import family_of
from ..checkpoint import _read_config
from ..errors import Terminated, UsageError
from ..resources import check_memory, image_sampling_bytes, product_text, rbm_sampling_bytes
from ..sweep import SweepSpec, frame_every, load_cells, run_sweep
from .common import (
    DEVICE_HELP,
    _check_output,
    _only_for,
    _options_by_family,
    _positive,
    _say,
    app,
)
from .params import option

SWEEP_OPTIONS = {"strings": ("chains",), "images": ("problems", "mask", "image", "samples", "caption", "every")}

GRID_HELP = (
    "NAME=V1,V2,... (repeatable): a setting and the values to try. Names: temperature (1, 0.5, 1.5:0.2), anneal, "
    "steps and, for string models, init and final; for image models, block, sampler and caption (none = no "
    "caption). Separate values with ';' when they contain commas: block=0.5;yao:0.9,0.1,0.7. A single value "
    "fixes that setting for every row."
)


def _check_memory(spec, workers: int) -> None:
    """Refuse, before the first cell, a sweep whose cells cannot fit in the memory free here (each of
    the ``workers`` processes runs a cell at a time, so their needs add up)."""

    config = _read_config(Path(spec.checkpoint))
    model, steps = config.get("model", {}), max(cell["steps"] for cell in spec.cells)
    try:
        if spec.family == "rbm":  # the memory model of each built-in family; others are not pre-flighted
            V, H, K = (int(model[k]) for k in ("num_visible", "num_hidden", "num_categories"))
            needed = rbm_sampling_bytes(spec.chains, V, K, H, steps, threads=os.cpu_count() or 1)
            base = rbm_sampling_bytes(spec.chains, V, K, H, 0, threads=os.cpu_count() or 1)
            what, remedy = (
                product_text(("--chains", spec.chains), (V, "positions"), (K, "categories")),
                "lower --chains",
            )
        elif spec.family == "nade":
            codec = config.get("codec", {})
            C, H, W, K = (int(codec[k]) for k in ("channels", "height", "width", "levels"))
            images = spec.problems * spec.samples
            needed = image_sampling_bytes(
                images, C, H, W, K, int(model["width"]), steps, steps // frame_every(spec, steps) + 2
            )
            base = image_sampling_bytes(images, C, H, W, K, int(model["width"]), 0, 0)
            what = product_text(("--problems", spec.problems), ("--samples", spec.samples)) + f" images of {C}x{H}x{W}"
            remedy = "lower --problems or --samples (or raise --every)"
        else:
            return
    except (KeyError, TypeError, ValueError):
        return  # an unusual config: loading the checkpoint says what is wrong with it
    if needed - base > needed / 2:  # the per-step trace and frames dominate
        remedy = "lower the steps in --grid (the trace keeps every step of every chain)"
    check_memory(
        needed * workers,
        f"{what}, {steps:,} steps" + (f", --workers {workers}" if workers > 1 else ""),
        remedy + (" or --workers" if workers > 1 else ""),
    )


@app.command("sweep")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@option("--grid", "grid", multiple=True, help=GRID_HELP)
@option(
    "--steps",
    type=int,
    default=None,
    help="Steps per chain in every row: the same as --grid steps=N.  [default: 1000 for strings, 200 for images]",
)
@option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Report folder (index.html, results.json, plots, cells/); rerun the same command to resume it.",
)
@option(
    "--chains", default=100, help="String models: parallel chains per combination (all start from the same states)."
)
@option("--problems", default=6, help="Image models: how many images to fill (held-out test images unless --image).")
@option(
    "--mask",
    default="centre",
    help="Image models: the hole: centre[:F], box:x,y,w,h, random:P, MASK.png, "
    "or blank (generate from an empty canvas).",
)
@option("--image", default=None, help="Image models: an image file or folder to fill instead of the held-out images.")
@option("--samples", default=2, help="Image models: chains per problem (2 or more measure diversity).")
@option(
    "--caption",
    default=None,
    help="Image models with a caption encoder: one caption for every row (or use --grid caption=...).",
)
@option("--every", type=int, default=None, help="Image models: a GIF frame every this many steps.  [default: steps/50]")
@option("--seed", default=0, help="Random seed, the same in every row.")
@option("--workers", default=1, help="Processes running combinations at once (results do not depend on it).")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.pass_context
def sweep_command(
    ctx,
    checkpoint,
    grid,
    steps,
    out,
    chains,
    problems,
    mask,
    image,
    samples,
    caption,
    every,
    seed,
    workers,
    device,
    quiet,
):
    """Run the same problems under every combination of a grid of sampling settings, into a report folder.

    \b
    Examples:
      gibbsdream sweep runs/regions --grid temperature=1,0.5,1.5:0.2 --grid anneal=geometric,linear \\
          --chains 200 --out sweeps/regions
      gibbsdream sweep runs/digits --grid temperature=1,0.9,0.5,0 \\
          --grid "block=yao:0.5,0.1,0.7;yao:0.5,0.01,0.1" --problems 6 --mask centre --out sweeps/digits
    """
    from ..report import best_cells, ranking, write_report  # with its plotting, only for `sweep`

    family = family_of(checkpoint)
    _only_for(ctx, family.name, _options_by_family("outputs", SWEEP_OPTIONS))
    for name, value in (("chains", chains), ("problems", problems), ("samples", samples), ("workers", workers)):
        _positive(name, value)
    if every is not None:
        _positive("every", every)
    if image is not None and mask == "blank":
        raise UsageError("--mask blank generates from empty canvases, so --image has nothing to do; drop one of them")
    if image is not None and not Path(image).exists():
        raise UsageError(f"--image {image} does not exist; pass an image file or a folder of images")
    entries = list(grid)
    if steps is not None:
        _positive("steps", steps)
        if any(e.partition("=")[0].strip() == "steps" for e in entries):
            raise UsageError("give the steps either by --steps or by --grid steps=..., not both")
        entries.append(f"steps={steps}")
    if caption is not None:
        if any(e.partition("=")[0].strip() == "caption" for e in entries):
            raise UsageError("give the caption either by --caption or by --grid caption=..., not both")
        entries.append(f"caption={caption.replace(';', ',')}")
    _check_output(out, "--out", folder=True)
    options = dict(seed=seed, device=device, every=every)
    if family.outputs == "strings":
        options.update(chains=chains)
    else:
        options.update(problems=problems, mask=mask, image=image, samples=samples)
    spec = SweepSpec.create(checkpoint, entries, **options)
    _check_memory(spec, workers)

    def on_start(todo, total):
        if not quiet:
            resumed = f" (resuming: {total - todo} already done)" if todo < total else ""
            _say(f"sweep: {total} combinations of {', '.join(spec.grid)} -> {out}{resumed}")

    def on_cell(record, done, total):
        if not quiet and not sys.stderr.isatty():
            _say(f"  [{done}/{total}] {record['label']}: {record['row']['seconds']:.1f}s")

    command = "gibbsdream " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["sweep"] else None
    try:
        run_sweep(spec, out, workers=workers, progress=not quiet, on_start=on_start, on_cell=on_cell)
    except KeyboardInterrupt as err:
        _say(f"interrupted: the finished combinations are kept in {out}; run the same command again to resume")
        sys.exit(143 if isinstance(err, Terminated) else 130)
    cells = load_cells(spec, out)
    write_report(spec, cells, out, command=command)
    if not quiet:
        files = sum(1 for path in Path(out).rglob("*") if path.is_file() and not path.name.startswith("."))
        _say(f"wrote {files} files to {out}; open {Path(out) / 'index.html'}")
        best, rank = best_cells(spec, cells), ranking(spec, cells)
        if best:
            value = best[0]["row"][rank[0]]
            shown = "the truth itself" if value is None else f"{value:.3f}"
            _say(f"best {rank[1]}: {shown} ({', '.join(c['label'] for c in best)})")
