"""Sweeps: the same problems sampled under every combination of a grid of sampling settings.

A sweep is what the seeds show as tables: a few inpainting problems (image models) or a set of
chains (string models), run once per combination of, say, temperature x block schedule, with
the same seed each time, so that rows differ only by their settings. Each finished combination
(a *cell*) is written to ``OUT/cells/NNN.json`` at once, which makes an interrupted sweep
resumable: a rerun of the same sweep skips the cells already on disk.

    spec = SweepSpec.create(checkpoint, ["temperature=1,0.5", "steps=100"], problems=4)
    rows = run_sweep(spec, out)           # results.json, index.html and plots come from report.py

The grid is parsed and every value checked before any sampling starts, so a typo fails fast.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .api import generate, inpaint, load
from .checkpoint import _read_config, checkpoint_identity
from .data.captions import caption_context as encode_caption
from .data.images import images_to_fill
from .data.masks import inpaint_masks
from .devices import resolve_device
from .errors import UsageError
from .families import family_names, get_family
from .files import atomic_write_text, is_leftover, json_numbers, remove_leftovers, writer_lock
from .progress import progress_bar
from .randomness import make_generator
from .sampling.init import INITS
from .sampling.rbm_gibbs import FINALS
from .sampling.registry import sampler_names
from .sampling.schedules import ANNEAL_KINDS, block_schedule, schedule_values, temperature_schedule
from .summary import summarize_records
from .viz import chain_gif

# Every grid name, with an example of its values (each Family.sweep_defaults says which names it takes).
GRID_NAMES = {
    "temperature": "1,0.5,1.5:0.2",
    "anneal": "geometric,linear",
    "steps": "100,1000",
    "init": "uniform,train",
    "final": "sample,argmax",
    "block": "0.5;yao:0.9,0.1,0.7",
    "sampler": "gibbs,ancestral",
    "caption": "none;a red square",
}
NO_CAPTION = ("none", "")


def valid_names(family: str) -> list[str]:
    return list(get_family(family).sweep_defaults)


def _families_taking(name: str) -> list:
    return [get_family(f) for f in family_names() if name in get_family(f).sweep_defaults]


def _split_values(text: str) -> list[str]:
    """``a,b,c`` -> three values; when any ``;`` appears the values are split on ``;`` instead,
    so values that contain commas (``yao:0.9,0.1,0.7;yao:0.5,0.01,0.1``) stay whole."""
    separator = ";" if ";" in text else ","
    return [part.strip() for part in text.split(separator)]


def parse_grid(entries: list[str], family: str) -> dict[str, list]:
    """``["temperature=1,0.5", "steps=100"]`` -> ``{"temperature": ["1", "0.5"], "steps": [100]}``.

    Raises UsageError for an unknown name, a name that does not apply to ``family``, a repeated
    name, an empty value list or a value that does not parse.
    """
    names = valid_names(family)
    if not entries:
        raise UsageError(
            f"the grid is empty; give at least one --grid NAME=V1,V2,... with NAME one of {', '.join(names)}"
        )
    grid: dict[str, list] = {}
    for entry in entries:
        name, sep, text = entry.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(
                f"cannot read --grid {entry!r}: expected NAME=V1,V2,... with NAME one of {', '.join(names)}"
            )
        taking = _families_taking(name)
        if name not in GRID_NAMES or not taking:
            raise UsageError(f"unknown grid name {name!r}; choose one of {', '.join(names)}")
        if name not in names:
            raise UsageError(
                f"grid name {name!r} applies to "
                f"{' and '.join(f.label for f in taking)} models, and this "
                f"checkpoint holds a {get_family(family).label} model; choose one of {', '.join(names)}"
            )
        if name in grid:
            raise UsageError(f"--grid {name}=... is given twice; put all its values in one list")
        values = _split_values(text)
        if not text.strip() or (any(v == "" for v in values) and name != "caption"):
            raise UsageError(f"--grid {entry!r} has an empty value; give values like {name}={_example(name)}")
        try:
            grid[name] = [check_value(name, v) for v in values]
        except UsageError as err:
            raise UsageError(f"--grid {name}: {err} (e.g. {name}={_example(name)})") from None
    return grid


def _example(name: str) -> str:
    return GRID_NAMES[name]


def check_value(name: str, text: str):
    """One grid value, checked and in its canonical form (``steps`` as an int; ``caption`` None for none)."""
    choices = {"anneal": ANNEAL_KINDS, "init": tuple(INITS), "final": FINALS, "sampler": sampler_names("conditional")}
    if name in choices:
        if text not in choices[name]:
            raise UsageError(f"unknown {name} {text!r}; choose one of {', '.join(choices[name])}")
        return text
    if name == "temperature":
        temperature_schedule(text)
        return text
    if name == "block":
        schedule_values(block_schedule(text), 2)  # a fraction outside (0, 1] fails here
        return text
    if name == "steps":
        try:
            steps = int(text)
        except ValueError:
            raise UsageError(f"steps {text!r} is not a whole number") from None
        if steps < 1:
            raise UsageError(f"steps must be >= 1, got {steps}")
        return steps
    # caption: "none" (or nothing) means sampling without one
    return None if text.strip().lower() in NO_CAPTION else text


def combinations(grid: dict[str, list], family: str) -> list[dict]:
    """Every combination of the grid, in row-major order, with the defaults filled in."""
    names = list(grid)

    defaults = get_family(family).sweep_defaults
    return [{**defaults, **dict(zip(names, values))} for values in itertools.product(*grid.values())]


def label(settings: dict, varying: list[str]) -> str:
    """A short label of the settings that vary across the sweep, e.g. ``T=1.5:0.2 anneal=linear``."""
    parts = []
    for name in varying:
        value = settings[name]
        shown = {"temperature": "T"}.get(name, name)
        parts.append(f"{shown}={'none' if value is None else value}")
    return " ".join(parts) or "default settings"


@dataclass
class SweepSpec:
    """What a sweep runs: the checkpoint, the grid, the problems and the seed (JSON-able).

    Two runs with equal specs compute the same cells, which is what makes resuming safe.
    """

    checkpoint: str
    checkpoint_sha256: str
    family: str
    grid: dict
    seed: int = 0
    chains: int = 100  # string models: parallel chains per cell
    problems: int = 6  # image models: images to fill
    mask: str = "centre"
    image: str | None = None
    samples: int = 2  # image models: chains (completions) per problem
    every: int | None = None
    device: str = "auto"
    cells: list = field(default_factory=list)

    @classmethod
    def create(cls, checkpoint, grid_entries: list[str], **options) -> SweepSpec:
        config = _read_config(Path(checkpoint))
        family = str(config.get("family"))

        if family not in family_names():
            raise UsageError(f"{checkpoint} holds a {family!r} model, which sweeps do not know; upgrade gibbsdream")
        grid = parse_grid(grid_entries, family)
        identity = checkpoint_identity(checkpoint)
        spec = cls(checkpoint=str(checkpoint), checkpoint_sha256=identity, family=family, grid=grid, **options)
        spec.cells = combinations(grid, family)
        return spec

    def to_dict(self) -> dict:
        return asdict(self)

    def same_work(self, other: dict) -> bool:
        """Whether a saved spec describes the same cells. The device may differ (results are per
        seed), and so may the spelling of the checkpoint's path: its checksum says which model it is."""
        mine, theirs = dict(self.to_dict()), dict(other)
        for key in ("device", "checkpoint"):
            mine.pop(key, None), theirs.pop(key, None)
        return mine == theirs

    @property
    def outputs(self) -> str:
        """``"strings"`` or ``"images"``: what the family's samples are (how cells are run and shown)."""
        return get_family(self.family).outputs

    @property
    def varying(self) -> list[str]:
        return [name for name, values in self.grid.items() if len(values) > 1]


# ---- problems ---------------------------------------------------------------------------------


@dataclass
class Problems:
    """What every cell of one sweep samples from: the loaded checkpoint and the fixed inputs."""

    ckpt: object
    x: torch.Tensor | None = None  # images: (N * samples, C, H, W); strings: None
    known: torch.Tensor | None = None
    names: list = field(default_factory=list)
    training_keys: set = field(
        default_factory=set
    )  # images: bytes of every training image (strings: the family checks)


def load_problems(spec: SweepSpec) -> Problems:
    """Load the checkpoint and build the sweep's fixed problems (the same in every cell and process)."""
    device = resolve_device(spec.device)
    ckpt = load(spec.checkpoint, device=device, family=spec.family)
    for caption in spec.grid.get("caption", []):
        caption_context(ckpt, caption)  # refuse a bad caption before any sampling
    if spec.outputs == "strings":  # generating marks the samples already in the training data itself
        return Problems(ckpt=ckpt)
    return _image_problems(spec, ckpt, device)


def _image_problems(spec: SweepSpec, ckpt, device) -> Problems:
    codec = ckpt.codec
    if spec.mask == "blank":  # generation from an empty canvas: nothing is known
        states = torch.zeros((spec.problems, *codec.shape), dtype=torch.long)
        known = torch.zeros_like(states, dtype=torch.bool)
        names = [f"canvas-{i:02d}" for i in range(spec.problems)]
    else:
        states, names, _ = images_to_fill(ckpt, spec.image or f"heldout:{spec.problems}")
        states, names = states[: spec.problems], list(names)[: spec.problems]
        known = inpaint_masks(spec.mask, codec.shape, len(states), make_generator(spec.seed, "cpu"))
    training = {bytes(image.to(torch.uint8).numpy()) for k in ("train", "validation") for image in ckpt.data.get(k, ())}
    return Problems(
        ckpt=ckpt,
        x=states.repeat_interleave(spec.samples, 0).to(device),
        known=known.repeat_interleave(spec.samples, 0).to(device),
        names=[Path(n).stem for n in names],
        training_keys=training,
    )


# ---- one cell ---------------------------------------------------------------------------------


def frame_every(spec: SweepSpec, steps: int) -> int:
    return spec.every or max(1, steps // 50)


def run_cell(spec: SweepSpec, problems: Problems, index: int, out: Path) -> dict:
    """Sample one combination of the grid; write its GIFs and ``cells/NNN.json``; return the cell record."""
    settings = spec.cells[index]
    started = time.perf_counter()
    if spec.outputs == "strings":
        record = _run_string_cell(spec, problems, settings)
    else:
        record = _run_image_cell(spec, problems, settings, index, out)
    record["row"]["seconds"] = round(time.perf_counter() - started, 3)
    record = {"cell": index, "settings": settings, "label": label(settings, spec.varying), **record}
    record["row"] = {"cell": index, "settings": settings, **record["row"]}

    atomic_write_text(cell_path(out, index), json.dumps(record, ensure_ascii=False) + "\n")
    return record


def cell_path(out: Path, index: int) -> Path:
    return Path(out) / "cells" / f"{index:03d}.json"


def _mean_trace(chain) -> list:
    """``(S + 1,)`` the trace averaged over chains, for the cell record's ``"mean_trace"``."""
    return json_numbers(chain.trace.float().nanmean(1).tolist(), 5)


def _mixing(chain) -> dict:
    """R-hat and bulk ESS of the cell's trace over its last half (None where the chain says nothing,
    e.g. ancestral sampling's one pass); the report marks R-hat above 1.05."""
    figures = chain.diagnostics()
    return {
        "rhat": None if figures["rhat"] is None else round(figures["rhat"], 4),
        "ess_bulk": None if figures["ess_bulk"] is None else round(figures["ess_bulk"], 1),
    }


def _run_string_cell(spec: SweepSpec, problems: Problems, settings: dict) -> dict:
    dream = generate(problems.ckpt, num_samples=spec.chains, seed=spec.seed, **settings)
    records = dream.records
    summary = summarize_records(records)
    energies = [r["energy"] for r in records]
    row = {
        "mean_final_energy": round(summary["mean_energy"], 4),
        "lowest_final_energy": round(min(energies), 4),
        "diversity": round(summary["unique_share"], 4),
        "unique_share": round(summary["unique_share"], 4),
        "in_training_share": round(summary["in_training_share"], 4),
    }
    row.update(_mixing(dream.chain))
    found = dream.extra.get("yield")
    if found is not None:
        row["yield"] = found["yield"]
        row["yield_per_1000_chain_sweeps"] = round(found["per_1000_chain_sweeps"], 4)
    samples = [{"text": r["text"], "energy": r["energy"], "in_training_data": r["in_training_data"]} for r in records]
    return {
        "row": row,
        "mean_trace": _mean_trace(dream.chain),
        "trace_kind": dream.chain.trace_kind.to_json(),
        "samples": samples,
    }


def _run_image_cell(spec: SweepSpec, problems: Problems, settings: dict, index: int, out: Path) -> dict:
    ckpt, codec = problems.ckpt, problems.ckpt.codec
    chain = inpaint(
        ckpt,
        problems.x,
        problems.known,
        seed=spec.seed,
        every=frame_every(spec, settings["steps"]),
        **settings,
    ).chain
    frames, known = chain.frames.cpu(), problems.known.cpu()
    truths = None if spec.mask == "blank" else problems.x.cpu()  # a blank canvas has no true image
    gifs = []
    for p, name in enumerate(problems.names):
        rows = slice(p * spec.samples, (p + 1) * spec.samples)
        relative = Path("cells") / f"{index:03d}" / f"{p:02d}-{name}.gif"
        chain_gif(
            frames[:, rows],
            codec,
            Path(out) / relative,
            known=known[rows],
            duration_ms=60,
            # the true image first, for the chains to be judged against
            reference=None if truths is None else truths[p * spec.samples : p * spec.samples + 1],
            columns=spec.samples + (truths is not None),
        )
        gifs.append(relative.as_posix())
    final = chain.samples.cpu()
    row = {
        "mean_final_log_prob": round(float(chain.final_trace.float().nanmean()), 5),
        "diversity": _image_diversity(final, known, spec.samples),
        "unique_share": round(len({bytes(s.to(torch.uint8).numpy()) for s in final}) / len(final), 4),
        "in_training_share": round(
            sum(bytes(s.to(torch.uint8).numpy()) in problems.training_keys for s in final) / len(final), 4
        ),
    }
    if spec.mask != "blank":
        row["hole_psnr_db"] = _psnr(codec.decode(problems.x.cpu()), codec.decode(final), ~known)
    row.update(_mixing(chain))
    return {
        "row": row,
        "mean_trace": _mean_trace(chain),
        "trace_kind": chain.trace_kind.to_json(),
        "gifs": gifs,
        "problems": problems.names,
    }


def _image_diversity(final: torch.Tensor, known: torch.Tensor, samples: int):
    """Mean share of unknown variables on which two completions of the same problem differ
    (None with one completion per problem: nothing to compare)."""
    if samples < 2:
        return None
    final = final.reshape(-1, samples, *final.shape[1:]).flatten(2)
    free = (~known).reshape(-1, samples, *known.shape[1:]).flatten(2)[:, 0]  # (P, D)
    shares = []
    for a, b in itertools.combinations(range(samples), 2):
        differ = (final[:, a] != final[:, b]) & free
        shares.append(differ.sum(1).float() / free.sum(1).clamp(min=1))
    return round(float(torch.stack(shares).mean()), 4)


def _psnr(original: torch.Tensor, filled: torch.Tensor, hole: torch.Tensor):
    """PSNR in dB over the hole, pooled over all problems, in 8-bit intensities."""
    error = (original.double() - filled.double())[hole].pow(2).mean().item()
    return round(10 * math.log10(255**2 / error), 3) if error > 0 else None


def caption_context(ckpt, caption: str | None):
    """The model's context for ``caption`` (None: no caption); one row serves every chain."""
    return None if caption is None else encode_caption(ckpt, [caption])


# ---- the whole sweep --------------------------------------------------------------------------


def prepare_folder(spec: SweepSpec, out: Path) -> list[int]:
    """Make ``out`` ready and return the cells still to run (all of them for a new sweep).

    A folder that holds this very sweep resumes it; one that holds another sweep is refused.
    """
    out = Path(out)
    saved = out / "sweep.json"
    if saved.exists() or saved.is_symlink():
        previous = _read_record(saved)
        if not isinstance(previous, dict):
            raise UsageError(
                f"{saved} is damaged (not a plain file holding a JSON object); delete {out} or choose another --out"
            )
        if not spec.same_work(previous):
            raise UsageError(
                f"--out {out} holds a different sweep (other checkpoint, grid, problems or seed); "
                "choose another --out, or delete that folder to start over"
            )
    elif out.exists() and not all(is_leftover(p.name) for p in out.iterdir()):
        raise UsageError(f"--out {out} is a folder that holds other files; choose a new or empty folder")
    if out.exists():
        remove_leftovers(out)  # of a killed run (the caller holds the folder's lock)
    atomic_write_text(saved, json.dumps(spec.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return [i for i in range(len(spec.cells)) if not _finished(out, i)]


def _read_record(path: Path, limit: int = 64 * 2**20):
    """The JSON in a file of a sweep folder, or None where it is missing, not a plain file (a link,
    a FIFO that would block) or damaged."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def _finished(out: Path, index: int) -> bool:
    # Cell files are written atomically, so one that is not a whole record was damaged from
    # elsewhere: the cell is run again and its file replaced.
    record = _read_record(cell_path(out, index))
    return (
        isinstance(record, dict)
        and record.get("cell") == index
        and isinstance(record.get("row"), dict)
        and isinstance(record.get("settings"), dict)
        and isinstance(record.get("label"), str)
    )


def load_cells(spec: SweepSpec, out: Path) -> list[dict]:
    return [json.loads(cell_path(out, i).read_text(encoding="utf-8")) for i in range(len(spec.cells))]


# Worker processes keep the loaded problems between cells (loading a checkpoint once per process).
_WORKER: dict = {}


def _worker_start(spec_dict: dict, out: str, threads: int) -> None:
    # Ctrl+C reaches every process of the terminal's group; the parent alone handles it (it
    # stops the workers), so the workers print no tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    spec = SweepSpec(**spec_dict)
    _WORKER.update(spec=spec, out=Path(out), problems=load_problems(spec))


def _worker_run(index: int) -> dict:
    return run_cell(_WORKER["spec"], _WORKER["problems"], index, _WORKER["out"])


def run_sweep(
    spec: SweepSpec, out, *, workers: int = 1, progress: bool = True, on_start=None, on_cell=None
) -> list[dict]:
    """Run every unfinished cell of ``spec`` into ``out`` (``workers`` processes); return all cell records.

    ``on_start(todo, total)`` is called once the inputs are checked and the folder is ready;
    ``on_cell(record, done, total)`` in this process as each cell finishes. Results do not depend
    on ``workers``: each cell is seeded alone.
    """
    out = Path(out)
    problems = load_problems(spec)  # checks the mask, images and captions before the folder is touched
    with writer_lock(out):  # one sweep at a time writes a report folder
        return _run_cells(spec, problems, out, workers, progress, on_start, on_cell)


def _run_cells(spec: SweepSpec, problems, out: Path, workers: int, progress: bool, on_start, on_cell) -> list[dict]:
    todo = prepare_folder(spec, out)
    total = len(spec.cells)
    done = total - len(todo)
    if on_start:
        on_start(len(todo), total)
    with progress_bar(len(todo), "sweep", enabled=progress) as advance:
        if workers <= 1 or len(todo) <= 1:
            for index in todo:
                record = run_cell(spec, problems, index, out)
                done += 1
                advance(status=record["label"])
                if on_cell:
                    on_cell(record, done, total)
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            pool = multiprocessing.get_context("spawn").Pool(
                min(workers, len(todo)),
                initializer=_worker_start,
                initargs=(spec.to_dict(), str(out), threads),
            )
            try:
                for record in pool.imap_unordered(_worker_run, todo):
                    done += 1
                    advance(status=record["label"])
                    if on_cell:
                        on_cell(record, done, total)
                pool.close()
            except BaseException:
                pool.terminate()  # an interrupt or a failed cell: stop the others now (finished cells stay)
                raise
            finally:
                pool.join()
    return load_cells(spec, out)
