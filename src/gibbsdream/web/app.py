"""The local web page: one hand-written HTML page and a small JSON API (FastAPI).

Nothing the page loads comes from elsewhere (no CDN, fonts or analytics): the HTML, script and
style sheet are package files, and every response carries a Content-Security-Policy that lets
the browser talk to this server only, so the page works offline and cannot leak a request.

API (JSON in and out; errors are ``{"error": "one line"}`` with a 4xx status). Every request first
passes :class:`~gibbsdream.web.guard.RequestGuard` (Host, same origin, JSON content type, size);
every field is then checked here, and anything wrong is a 4xx with that one line, never a 500.

* ``GET  /api/models``: the served models, the server's limits, and the samplers (of conditional
  models, from :mod:`gibbsdream.sampling.registry`) and annealing kinds the page offers.
* ``GET  /api/models/{name}/images``: built-in images of an image model (its held-out split).
* ``POST /api/models/{name}/upload``: ``{"data": "data:image/...;base64,..."}`` -> the image
  converted to the model's size, channels and levels, as a PNG data URL.
* ``POST /api/models/{name}/mask``: ``{"spec": "centre"|"box:x,y,w,h"|"random:P", "seed"}`` ->
  ``{"hole": H x W list of 0/1}``.
* ``POST /api/jobs``: start a job (an inpainting or a string sampling run) -> ``{"id"}``.
* ``GET  /api/jobs/{id}?since=K``: state, step, trace rows from step K on, the current frame
  (image jobs) or samples (string jobs); ``result`` when done.
* ``POST /api/jobs/{id}/cancel``; ``GET /api/jobs/{id}/result.png``; ``GET /api/jobs/{id}/chain.gif``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import tempfile
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import generate, inpaint, load
from ..data.captions import has_captions
from ..data.images import _pil_to_array
from ..data.masks import inpaint_mask, mask_from_array
from ..errors import UsageError
from ..families import get_family
from ..families.nade import ORDERS_UP_TO_VARIABLES, caption_ids, default_steps
from ..files import json_numbers
from ..randomness import MAX_SEED, make_generator
from ..sampling.diagnostics import diagnostics_text
from ..sampling.init import INITS
from ..sampling.registry import sampler_names, samplers, trace_kind_of
from ..sampling.replica_exchange import DEFAULT_REPLICAS, cold_temperature
from ..sampling.schedules import (
    ANNEAL_KINDS,
    BLOCK_SELECTIONS,
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_SELECT,
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_MASK_SCHEDULE,
    MASK_SCHEDULES,
    block_schedule,
    mask_schedule,
    schedule_values,
    temperature_schedule,
)
from ..summary import training_strings as summary_training_strings
from ..viz import chain_gif, png_bytes
from .guard import CSP, SECURITY_HEADERS, RequestGuard, host_key, is_json_type  # noqa: F401 (CSP: its old home)
from .jobs import Job, JobManager, ServerBusy

STATIC = Path(__file__).parent / "static"
FINALS = ("sample", "argmax")
GALLERY_SIZE = 24  # built-in images offered per image model
# The mh sampler costs a network row per hidden variable per step: above this many (where the
# likelihood, too, stops using orders) a job would run for hours.
MH_MAX_HOLE = ORDERS_UP_TO_VARIABLES
MAX_DIGITS = 30  # digits of a whole number in a request (seeds have 19); Python reads 4300 slowly
# Replica exchange runs R chains for each one asked for: R and the chains x R it sweeps are bounded.
MAX_REPLICAS = 32
MAX_CHOICE_TEMPERATURE = 100.0  # far past where confidence decoding's choice is already uniform
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # decoded from uploads; no TIFF, EPS (Ghostscript), ...
_WHOLE = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")  # ASCII digits only: str.isdigit() takes "²"


class NotFound(Exception):
    """An unknown model or job (HTTP 404)."""


@dataclass
class Limits:
    """What one request may ask for; beyond these a request is refused with a message."""

    max_jobs: int = 2  # jobs running or queued at once, over all visitors
    max_steps: int = 2000  # Gibbs steps or sweeps (and model calls of ancestral sampling)
    max_chains: int = 256  # parallel chains of a string job
    max_upload_bytes: int = 8 * 2**20  # size of an uploaded image file
    max_upload_side: int = 4096  # width and height of an uploaded image, in pixels
    max_prefix: int = 200  # characters of a clamped prefix (longer never fits a model anyway)

    @property
    def max_request_bytes(self) -> int:
        """The most bytes of request body read: an image as base64, and the settings."""
        return self.max_upload_bytes * 4 // 3 + 65536


@dataclass
class ServedModel:
    """A loaded checkpoint under the name the page shows."""

    name: str
    checkpoint: object  # gibbsdream.checkpoint.Checkpoint
    _corpus: set | None = None  # training and validation strings, made on first use

    @property
    def family(self) -> str:
        return self.checkpoint.family

    @property
    def outputs(self) -> str:
        """``"strings"`` or ``"images"``: which page and which jobs the model gets."""
        return get_family(self.family).outputs

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def codec(self):
        return self.checkpoint.codec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def takes(self) -> tuple[str, ...]:
        """The generating options of the model's family beyond the common ones."""
        return get_family(self.family).generate_options

    def has_caption(self) -> bool:
        return has_captions(self.model)

    def gallery(self) -> tuple[str, torch.Tensor]:
        """``(split name, (M, C, H, W) states)``: the images offered to start from."""
        for split in ("test", "validation", "train"):
            states = self.checkpoint.data.get(split)
            if states is not None and len(states):
                return split, states
        return "test", torch.zeros((0, *self.codec.shape), dtype=torch.long)

    def gallery_captions(self, split: str, count: int) -> list[list[str]] | None:
        """The first ``count`` images' captions of ``split`` as the model reads them (lower case,
        unknown words as ``<unk>``), or None for a model without captions."""
        table = self.checkpoint.data.get(f"captions.{split}")
        vocabulary = getattr(self.model, "caption_vocabulary", None)
        if not self.has_caption() or table is None or vocabulary is None:
            return None
        return [
            list(dict.fromkeys(text for text in (vocabulary.decode(ids) for ids in rows) if text))
            for rows in table[:count]
        ]

    def describe(self) -> dict:
        about = {"name": self.name, "family": self.family, "path": str(self.checkpoint.path)}
        if self.outputs == "images":
            c = self.codec
            split, states = self.gallery()
            about.update(
                kind="image",
                channels=c.channels,
                height=c.height,
                width=c.width,
                levels=c.levels,
                description=c.describe(),
                caption=self.has_caption(),
                gallery=min(len(states), GALLERY_SIZE),
                gallery_split=split,
            )
        else:
            c = self.codec
            about.update(
                kind="strings",
                positions=c.max_length,
                alphabet=c.alphabet,
                pad_side=c.pad_side,
                clamp="prefix" if c.pad_side == "right" else "suffix",
                inits=list(INITS) if "init" in self.takes else [],
                hidden=getattr(self.model, "num_hidden", None),
            )
        return about


def load_models(paths, device="auto") -> list[ServedModel]:
    """Load checkpoint folders (image NADEs and string RBMs) under distinct short names."""
    served, names = [], set()
    for path in paths:
        path = Path(path)
        checkpoint = load(path, device)
        base = path.resolve().name or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        served.append(ServedModel(name, checkpoint))
    return served


# ---- request checking ---------------------------------------------------------------------------


def _shown(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line messages about any JSON value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _whole(body: dict, key: str, default: int, low: int, high: int | None, what: str) -> int:
    value = body.get(key, default)
    if value is None:
        value = default
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number, got {_shown(value)}")
    if value < low:
        raise UsageError(f"{what} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(f"{what} is {value}, above this server's limit of {high}; ask for fewer")
    return value


def _text(body: dict, key: str, default: str, what: str, limit: int = 200) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise UsageError(f"{what} must be text, got {_shown(value)}")
    value = str(value).strip()
    if len(value) > limit:
        raise UsageError(f"{what} is {len(value)} characters long; the limit is {limit}")
    return value


def _real(body: dict, key: str, default: float, low: float, high: float, what: str) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise UsageError(f"{what} must be a number, got {_shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{what} must be a number, got {_shown(value)}")
    if not low <= value <= high:
        raise UsageError(f"{what} must lie in [{low:g}, {high:g}], got {value:g}")
    return float(value)


def _choice(body: dict, key: str, default: str, choices, what: str) -> str:
    value = _text(body, key, default, what)
    if value not in choices:
        raise UsageError(f"unknown {what} {_shown(value)}; choose one of {', '.join(choices)}")
    return value


def _schedules(body: dict, steps: int | None):
    """Check the temperature (and block) settings; returns ``(temperature, anneal, block)``."""
    temperature = _text(body, "temperature", "1.0", "temperature", 100) or "1.0"
    anneal = _choice(body, "anneal", "geometric", ANNEAL_KINDS, "anneal")
    temperature_schedule(temperature, anneal)
    block = _text(body, "block", DEFAULT_BLOCK, "block schedule", 100) or DEFAULT_BLOCK
    schedule_values(block_schedule(block), 2)
    return temperature, anneal, block


def parse_json_object(raw: bytes) -> dict:
    """A request body -> the JSON object it holds, or a :class:`UsageError` saying what is wrong.

    Stricter than :func:`json.loads`: NaN and Infinity (which JSON does not have), numbers that
    overflow a float, and whole numbers of more than :data:`MAX_DIGITS` digits are refused, and so
    is nesting too deep to parse.
    """

    def constant(name):
        raise UsageError(f"the request holds {name}, which is not a JSON number; send a finite number")

    def whole(text):
        if len(text.lstrip("-")) > MAX_DIGITS:
            raise UsageError(
                f"the request holds a number of {len(text.lstrip('-'))} digits; the most taken is {MAX_DIGITS}"
            )
        return int(text)

    def real(text):
        value = float(text)
        if not math.isfinite(value):
            raise UsageError(f"the request holds the number {text[:40]}, which is too large for a float")
        return value

    try:
        body = json.loads(raw or b"{}", parse_constant=constant, parse_int=whole, parse_float=real)
    except UsageError:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise UsageError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    return body


def _amount(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 1024:.0f} KB"


def decode_data_url(data, limits: Limits) -> bytes:
    """The bytes of a ``data:...;base64,...`` URL (or bare base64), within the upload limit."""
    if not isinstance(data, str) or not data:
        raise UsageError(
            "the image must be a data URL (data:image/png;base64,...) of a PNG, JPEG, GIF, BMP or WebP file"
        )
    _, comma, payload = data.partition(",") if data.startswith("data:") else ("", ",", data)
    if not comma:
        raise UsageError("the image data URL has no comma; expected data:image/png;base64,...")
    if len(payload) > limits.max_upload_bytes * 4 // 3 + 4:
        raise UsageError(
            f"the image file is larger than this server's limit of {_amount(limits.max_upload_bytes)}; shrink it first"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the image data is not valid base64") from None


def image_to_states(payload: bytes, codec, limits: Limits) -> tuple[torch.Tensor, str]:
    """An image file's bytes -> ``((1, C, H, W) states, note)`` in the model's size and levels.

    The picture is cropped about its centre to the model's aspect ratio, resized (Lanczos) and
    converted to the model's channels; ``note`` says what was done, for the page. Only the
    formats of :data:`IMAGE_FORMATS` are decoded (Pillow would open dozens, some through outside
    programs), and the size is checked from the header, before the pixels are decoded.
    """
    try:
        with Image.open(io.BytesIO(payload), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if max(width, height) > limits.max_upload_side:
                raise UsageError(
                    f"the image is {width}x{height} pixels; this server takes at most {limits.max_upload_side} "
                    "on a side: shrink it first"
                )
            # Pillow only warns below twice its bomb limit; warnings filters are not thread-safe, so ask here.
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width}x{height} pixels")
            img.load()
            img = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise UsageError("that file is not an image this server can read (PNG, JPEG, GIF, BMP or WebP)") from None
    except Image.DecompressionBombError:
        raise UsageError("that image is too large to open; shrink it first") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise UsageError(f"cannot read that image ({err}); it may be damaged: re-save it") from None

    # The same reading as `gibbsdream inpaint --image FILE` (16-bit gray scaled, alpha dropped, ...).
    array = _pil_to_array(img, codec.channels)
    img = Image.fromarray(array[..., 0] if codec.channels == 1 else array)
    notes = []
    if img.size != (codec.width, codec.height):
        notes.append(f"resized from {img.width}x{img.height} to {codec.width}x{codec.height}")
        img = ImageOps.fit(img, (codec.width, codec.height), method=Image.Resampling.LANCZOS)
    array = np.array(img, dtype=np.uint8)
    array = array[None, ..., None] if array.ndim == 2 else array[None]
    states = codec.encode(array)
    if not np.array_equal(codec.decode(states).permute(0, 2, 3, 1).numpy(), array):
        notes.append(f"rounded to {codec.levels} levels per channel")
    return states, "; ".join(notes) or "used as it is"


def png_data_url(hwc: np.ndarray) -> str:
    """``(H, W, C)`` uint8 pixels -> a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(hwc)).decode("ascii")


def states_png(codec, states: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` states -> ``(H, W, C)`` uint8 pixels."""
    return codec.decode(states.detach().cpu()[None])[0].permute(1, 2, 0).numpy()


def _hole(served: ServedModel, body: dict, seed: int) -> torch.Tensor:
    """The request's mask -> ``known: (C, H, W)`` bool (True = keep)."""
    codec = served.codec
    mask = body.get("mask", "centre")
    if isinstance(mask, list):
        rows = mask
        if len(rows) != codec.height or not all(isinstance(r, list) and len(r) == codec.width for r in rows):
            raise UsageError(f"the painted mask must be {codec.height} rows of {codec.width} zeros and ones (1 = hole)")
        if not all(v in (0, 1) and not isinstance(v, float) for r in rows for v in r):
            raise UsageError("the painted mask must hold only 0 (keep) and 1 (hole)")
        return mask_from_array(torch.tensor(rows, dtype=torch.bool), codec.shape)
    if not isinstance(mask, str):
        raise UsageError("mask must be a spec (centre, box:x,y,w,h, random:P) or rows of 0/1 (1 = hole)")
    spec = mask.strip()
    if spec.partition(":")[0].strip().lower() not in ("centre", "center", "box", "random") or len(spec) > 100:
        raise UsageError(f"unknown mask {_shown(mask)}; give centre[:F], box:x,y,w,h, random:P or paint one")
    # files=False: a spec that is none of the forms (such as a bare "random") is refused, never
    # looked up as a file in the server's working directory.
    return inpaint_mask(spec, codec.shape, make_generator(seed, "cpu"), files=False)


# ---- jobs ---------------------------------------------------------------------------------------


def start_image_job(served: ServedModel, body: dict, limits: Limits, jobs: JobManager) -> Job:
    """Check an inpainting request and queue it."""
    codec = served.codec
    seed = _whole(body, "seed", 0, 0, MAX_SEED, "seed")
    sampler = _choice(body, "sampler", "gibbs", sampler_names("conditional"), "sampler")
    # Ancestral sampling ignores steps: the size of the hole sets its length (checked below).
    steps = _whole(
        body, "steps", default_steps(sampler), 1, None if sampler == "ancestral" else limits.max_steps, "steps"
    )
    temperature, anneal, block = _schedules(body, steps)
    # the Gibbs samplers' block choice and confidence decoding's schedule and choice noise
    block_select = _choice(body, "block_select", DEFAULT_BLOCK_SELECT, BLOCK_SELECTIONS, "block selection")
    schedule = _text(body, "mask_schedule", DEFAULT_MASK_SCHEDULE, "mask schedule", 40) or DEFAULT_MASK_SCHEDULE
    mask_schedule(schedule)  # a bad one is refused now (a 400), not when the job runs
    choice_temperature = _real(
        body, "choice_temperature", DEFAULT_CHOICE_TEMPERATURE, 0.0, MAX_CHOICE_TEMPERATURE, "choice temperature"
    )
    caption = _text(body, "caption", "", "caption", 500)
    if caption and not served.has_caption():
        raise UsageError(f"model {served.name} has no caption encoder; leave the caption empty")
    image = body.get("image")
    if isinstance(image, str) and ":" in image and not image.startswith("data:"):
        split, _, index = image.partition(":")
        states = served.checkpoint.data.get(split) if split in ("test", "validation", "train") else None
        if states is None or not _WHOLE.fullmatch(index) or not 0 <= int(index) < len(states):
            raise UsageError(f"no built-in image {_shown(image)}; pick one from the gallery or upload one")
        x = states[int(index)][None]
    elif image is None:
        raise UsageError("no image: pick a built-in image or upload one")
    else:
        with jobs.slot():  # decoding an upload is work too: it counts against max_jobs
            x, _ = image_to_states(decode_data_url(image, limits), codec, limits)
    known = _hole(served, body, seed)[None]
    if sampler == "ancestral":
        calls = int((~known).sum())
        if calls > limits.max_steps:
            raise UsageError(
                f"ancestral sampling of this hole takes {calls} model calls, above this server's limit of "
                f"{limits.max_steps}; make the hole smaller or use the gibbs sampler"
            )
        steps = calls
    if sampler == "mh" and int((~known).sum()) > MH_MAX_HOLE:
        raise UsageError(
            f"the mh sampler scores the whole hole by the chain rule at every step (a network row per hidden "
            f"variable); this hole has {int((~known).sum()):,} hidden variables, above {MH_MAX_HOLE:,}: make it "
            "smaller or use the gibbs sampler"
        )
    every = max(1, steps // 50)  # about 50 GIF frames, as the command line makes
    job = Job("image", served.name, steps, inputs={"x": x, "known": known, "seed": seed})
    context = None
    if caption:  # refused now (a 400), not when the job runs
        context = caption_ids(served.checkpoint, caption)

    def work(job: Job) -> dict:
        filled = inpaint(
            served.checkpoint,
            x,
            known,
            sampler=sampler,
            steps=steps,
            temperature=temperature,
            anneal=anneal,
            block=block,
            caption=context,
            every=every,
            seed=seed,
            on_step=job.on_step,
            block_select=block_select,
            mask_schedule=schedule,
            choice_temperature=choice_temperature,
        )
        chain = filled.chain
        return {
            "samples": chain.samples.cpu(),
            "frames": chain.frames.cpu(),
            "settings": chain.settings,
            "diagnostics": chain.diagnostics(),
        }

    return jobs.submit(job, work)


def start_string_job(served: ServedModel, body: dict, limits: Limits, jobs: JobManager) -> Job:
    """Check a string-sampling request and queue it."""
    codec = served.codec
    seed = _whole(body, "seed", 0, 0, MAX_SEED, "seed")
    chains = _whole(body, "chains", 20, 1, limits.max_chains, "chains")
    steps = _whole(body, "steps", 1000, 1, limits.max_steps, "steps")
    temperature, anneal, _ = _schedules(body, steps)
    init = _choice(body, "init", "uniform", tuple(INITS), "init")
    final = _choice(body, "final", "sample", FINALS, "final")
    sampler = _choice(body, "sampler", "gibbs", sampler_names("energy"), "sampler")
    replicas = DEFAULT_REPLICAS
    if sampler == "replica-exchange":
        replicas = _whole(body, "replicas", DEFAULT_REPLICAS, 2, MAX_REPLICAS, "replicas")
        if chains * replicas > DEFAULT_REPLICAS * limits.max_chains:
            raise UsageError(
                f"replica exchange sweeps chains x replicas = {chains * replicas:,} chains, above this server's limit "
                f"of {DEFAULT_REPLICAS * limits.max_chains:,}; ask for fewer chains or replicas"
            )
        if final != "sample":
            raise UsageError("replica exchange ends on a sample; choose the last sweep 'sample', not 'argmax'")
        cold_temperature(temperature_schedule(temperature, anneal), steps)  # refused now, not in the job
    if _text(body, "caption", "", "caption"):
        raise UsageError(f"model {served.name} is a string model; it takes no caption")
    prefix, suffix = (_text(body, what, "", what, limits.max_prefix) for what in ("prefix", "suffix"))
    for text, clamp in ((prefix, codec.clamp_prefix), (suffix, codec.clamp_suffix)):
        if text:
            clamp(text)  # a string the codec cannot clamp is refused now, not in the job
    if prefix and suffix:
        raise UsageError("give a prefix or a suffix, not both")
    train = served.checkpoint.data.get("train", ())
    if "init" in served.takes and init in ("train", "silhouettes") and not len(train):
        raise UsageError(f"model {served.name} keeps no training strings, so init {init!r} cannot be used")
    job = Job("strings", served.name, steps, inputs={"seed": seed})
    # what this family takes of the page's fields (an RBM all of them)
    options = {"init": init, "final": final, "prefix": prefix or None, "suffix": suffix or None}
    if sampler != "gibbs":
        options.update(sampler=sampler, replicas=replicas)

    def work(job: Job) -> dict:
        chain = generate(
            served.checkpoint,
            num_samples=chains,
            steps=steps,
            temperature=temperature,
            anneal=anneal,
            seed=seed,
            on_step=job.on_step,
            **{k: v for k, v in options.items() if k in served.takes},
        ).chain
        return {
            "samples": chain.samples.cpu(),
            "energy": chain.final_trace.cpu(),
            "settings": chain.settings,
            "diagnostics": chain.diagnostics(),
        }

    return jobs.submit(job, work)


def training_strings(served: ServedModel) -> set:
    """The strings a string model was trained (and validated) on, to mark samples it memorised."""
    if served._corpus is None:
        served._corpus = summary_training_strings(served.checkpoint)
    return served._corpus


def job_status(job: Job, served: ServedModel, since: int) -> dict:
    """What a poll sees: state, progress, trace rows from ``since`` on, and the current picture."""
    status = {
        "id": job.id,
        "kind": job.kind,
        "model": job.model,
        "state": job.state,
        "step": max(job.step, 0),
        "steps": job.steps,
        "seconds": job.seconds,
        "error": job.error,
    }
    rows = job.trace[since:]
    # What the trace holds and which way is better, so the page sorts samples and names its plot.
    kind = trace_kind_of(served.model).to_json()
    if rows:
        table = torch.stack(rows).float().cpu()  # (R, N)
        status["trace"] = {
            **kind,
            "start": since,
            "mean": json_numbers(table.nanmean(1).tolist(), 5),
            "low": json_numbers(table.nan_to_num(float("inf")).min(1).values.tolist(), 5),
            "high": json_numbers(table.nan_to_num(float("-inf")).max(1).values.tolist(), 5),
        }
    else:
        status["trace"] = {**kind, "start": since, "mean": [], "low": [], "high": []}
    latest = job.latest
    if job.state == "done":
        states, values = job.result["samples"], job.result.get("energy")
    elif latest is not None:
        states, values = latest[0].cpu(), latest[1].cpu()
    else:
        states = values = None
    if states is not None and job.kind == "image":
        status["frame"] = png_data_url(states_png(served.codec, states[0]))
    elif states is not None:
        corpus = training_strings(served)
        texts = served.codec.decode(states)
        status["samples"] = [
            {"chain": i, "text": t, "energy": json_numbers([float(e)], 5)[0], "in_training_data": t in corpus}
            for i, (t, e) in enumerate(zip(texts, values.tolist()))
        ]
    if job.state == "done":
        figures = job.result["diagnostics"]
        status["result"] = {
            "settings": job.result["settings"],
            # have the chains mixed? (Chain.diagnostics over the last half of the trace)
            "diagnostics": {**figures, "text": diagnostics_text(figures)},
        }
        if job.kind == "image":
            status["result"].update(png=f"/api/jobs/{job.id}/result.png", gif=f"/api/jobs/{job.id}/chain.gif")
    return status


def chain_gif_bytes(job: Job, served: ServedModel) -> bytes:
    if "gif" not in job.cache:
        with tempfile.TemporaryDirectory(prefix="gibbsdream-") as folder:
            path = Path(folder) / "chain.gif"
            chain_gif(job.result["frames"], served.codec, path, known=job.inputs["known"])
            job.cache["gif"] = path.read_bytes()
    return job.cache["gif"]


# ---- the app ------------------------------------------------------------------------------------


def create_app(models: list[ServedModel], limits: Limits | None = None, allowed_hosts=()):
    """The FastAPI application serving ``models`` (see the module docstring for the API).

    ``allowed_hosts``: host names or addresses, besides the loopback ones, that a request's
    ``Host`` header may name (the address the server listens on, a name it is reached by); a
    request for any other host is refused, which is what stops DNS rebinding.
    """
    limits = limits or Limits()
    allowed_hosts = tuple(host_key(h) for h in allowed_hosts)  # a bad name fails here, not per request
    jobs = JobManager(limits.max_jobs)
    by_name = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()

    # No /docs or /openapi.json: FastAPI's docs pages load their scripts from a CDN.
    app = FastAPI(title="gibbsdream", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.jobs, app.state.limits, app.state.models = jobs, limits, by_name
    app.add_middleware(
        RequestGuard,
        allowed_hosts=allowed_hosts,
        max_body_bytes=limits.max_request_bytes,
        too_large=f"the request is larger than this server's limit ({_amount(limits.max_upload_bytes)} of image)",
    )

    def error(status: int, message: str) -> JSONResponse:
        # The headers are set here too: a 500 is answered outside the guard (by Starlette's
        # outermost middleware), and it must carry them as well.
        return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)

    @app.exception_handler(Exception)
    async def server_error(request, err):
        # A bug, not bad input; the terminal gets the traceback (Starlette re-raises), the page one line.
        return error(500, f"the server failed on this request ({type(err).__name__}); see the server's terminal")

    @app.exception_handler(UsageError)
    async def usage_error(request, err):
        return error(400, str(err))

    @app.exception_handler(ServerBusy)
    async def busy(request, err):
        return error(429, str(err))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request, err):
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg', 'invalid')}"
            for e in err.errors()
        ]
        return error(400, "bad request parameter " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err):
        return error(err.status_code, str(err.detail))

    def model(name: str) -> ServedModel:
        if name not in by_name:
            raise NotFound(f"no model named {name!r}; this server has {', '.join(by_name) or 'none'}")
        return by_name[name]

    def job_of(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise NotFound("no such job (finished jobs are forgotten after a while, and when the server restarts)")
        return job

    @app.exception_handler(NotFound)
    async def not_found(request, err):
        return error(404, str(err))

    async def body_of(request: Request) -> dict:
        # The guard refused other content types of requests with a body; this one may have none.
        if not is_json_type(request.headers.get("content-type")):
            raise StarletteHTTPException(415, "the request body must be JSON with Content-Type: application/json")
        return parse_json_object(await request.body())  # at most max_request_bytes: the guard counts

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/api/models")
    def list_models():
        return {
            "models": [m.describe() for m in models],
            "limits": asdict(limits),
            "samplers": [{"name": s.name, "summary": s.summary} for s in samplers("conditional")],
            "string_samplers": [{"name": s.name, "summary": s.summary} for s in samplers("energy")],
            "anneals": list(ANNEAL_KINDS),
            "block": DEFAULT_BLOCK,
            "block_selects": list(BLOCK_SELECTIONS),
            "mask_schedules": list(MASK_SCHEDULES),
            "defaults": {
                "block_select": DEFAULT_BLOCK_SELECT,
                "mask_schedule": DEFAULT_MASK_SCHEDULE,
                "choice_temperature": DEFAULT_CHOICE_TEMPERATURE,
                "replicas": DEFAULT_REPLICAS,
                "steps": {name: default_steps(name) for name in sampler_names("conditional")},
            },
        }

    @app.get("/api/models/{name}/images")
    def gallery(name: str):
        served = model(name)
        if served.outputs != "images":
            raise UsageError(f"model {name} is a string model; it has no images")
        split, states = served.gallery()
        count = min(len(states), GALLERY_SIZE)
        images = [
            {"id": f"{split}:{i}", "png": png_data_url(states_png(served.codec, states[i]))} for i in range(count)
        ]
        captions = served.gallery_captions(split, count)  # offered by the page's caption field
        for image, texts in zip(images, captions or ()):
            image["captions"] = texts
        return {"split": split, "images": images}

    @app.post("/api/models/{name}/upload")
    async def upload(name: str, request: Request):
        served = model(name)
        if served.outputs != "images":
            raise UsageError(f"model {name} is a string model; it takes no images")
        body = await body_of(request)
        with jobs.slot():  # a decoding upload holds a job place: eight 4096x4096 images at once would not fit
            payload = decode_data_url(body.get("data"), limits)
            states, note = await run_in_threadpool(image_to_states, payload, served.codec, limits)
        return {"png": png_data_url(states_png(served.codec, states[0])), "note": note}

    @app.post("/api/models/{name}/mask")
    async def mask(name: str, request: Request):
        served = model(name)
        if served.outputs != "images":
            raise UsageError(f"model {name} is a string model; it takes no mask")
        body = await body_of(request)
        seed = _whole(body, "seed", 0, 0, MAX_SEED, "seed")
        known = _hole(served, {"mask": body.get("spec", "centre")}, seed)
        return {"hole": (~known).any(0).int().tolist()}

    @app.post("/api/jobs")
    async def start(request: Request):
        body = await body_of(request)
        served = model(_text(body, "model", "", "model"))
        start_job = start_image_job if served.outputs == "images" else start_string_job
        job = await run_in_threadpool(start_job, served, body, limits, jobs)
        return {"id": job.id, "steps": job.steps}

    @app.get("/api/jobs/{job_id}")
    def poll(job_id: str, since: int = 0):
        job = job_of(job_id)
        return job_status(job, by_name[job.model], max(0, since))

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        job_of(job_id)
        job = jobs.cancel(job_id)
        return {"id": job.id, "state": job.state}

    def finished(job_id: str) -> Job:
        job = job_of(job_id)
        if job.kind != "image":
            raise UsageError("only image jobs have pictures to download")
        if job.state != "done":
            raise UsageError(f"the job is {job.state}; its picture is ready when it is done")
        return job

    @app.get("/api/jobs/{job_id}/result.png")
    def result_png(job_id: str):
        job = finished(job_id)
        pixels = states_png(by_name[job.model].codec, job.result["samples"][0])
        headers = {"Content-Disposition": f'inline; filename="inpainted-{job.inputs["seed"]}.png"'}
        return Response(png_bytes(pixels), media_type="image/png", headers=headers)

    @app.get("/api/jobs/{job_id}/chain.gif")
    def result_gif(job_id: str):
        job = finished(job_id)
        headers = {"Content-Disposition": f'inline; filename="chain-{job.inputs["seed"]}.gif"'}
        return Response(chain_gif_bytes(job, by_name[job.model]), media_type="image/gif", headers=headers)

    return app
