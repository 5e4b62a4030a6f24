"""Checkpoints: a folder of safetensors files plus ``config.json`` and ``history.jsonl``.

Layout of a checkpoint folder (format 2)::

    config.json                      format, library version, model family and config, codec,
                                     training config, trainer position, and the name, size and
                                     SHA-256 of every file it vouches for; for a captioned model
                                     also its caption vocabulary (``"captions"``)
    model.<sha256[:16]>.safetensors  the model's parameters
    data.<sha256[:16]>.safetensors   the encoded training (and validation) data
    trainer.<sha256[:16]>.safetensors  optimizer buffers, persistent chains and RNG states (--resume)
    history.jsonl                    one JSON object per epoch (config.json vouches for a prefix)
    .lock                            held (flock) by the process writing the folder

Use :func:`checkpoint_file` for a tensor file's path. Nothing is pickled, so loading never runs
code.

**Saving is one atomic commit.** Tensor files are written under names derived from their content,
so a save never overwrites a file the current ``config.json`` names: each new file is written to a
temporary name, flushed, fsynced and renamed; ``history.jsonl`` only ever grows by whole rows, and
``config.json`` records how many bytes of it belong to the checkpoint; then ``config.json`` itself
is replaced by one rename, which is the commit point, and the folder is fsynced. Only then are the
files no longer named removed. A process killed at any instant (or a full disk) leaves either the
old checkpoint or the new one, plus leftovers that loading ignores and the next save removes.
Ctrl+C and SIGTERM during a save are held until it is done (a second one abandons it).

**Loading trusts nothing.** ``config.json`` is read with a size bound and validated before
anything is allocated; the model is first built on PyTorch's ``meta`` device (no memory), and each
tensor file's header (names, shapes, dtypes) is checked against it before the data is read; files
must be regular files inside the folder (no symbolic links, devices or FIFOs); checksums, value
ranges of stored states and finiteness of weights are checked before any model code sees them.
Every failure is a :class:`~gibbsdream.errors.UsageError` saying what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from . import __version__
from .data.captions import CaptionVocabulary
from .data.images import ImageCodec
from .data.strings import StringCodec
from .errors import ConfigError, UsageError
from .files import _fault_point, atomic_write_bytes, atomic_write_text, finite_json, remove_leftovers, writer_lock
from .models.nade import OrderlessNADE
from .models.rbm import RBM
from .models.shapes import shapes_only
from .signals import signals_held

FORMAT = "gibbsdream-checkpoint"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1: fixed tensor file names, "checksums" in config.json
TENSOR_FILES = ("model", "data", "trainer")
HISTORY_NAME = "history.jsonl"
_MANAGED = re.compile(r"^(model|data|trainer)(\.[0-9a-f]{16})?\.safetensors$")
MAX_BYTES_VARIABLE = "GIBBSDREAM_MAX_CHECKPOINT_BYTES"


# ---- fault injection (tests) ------------------------------------------------------------------


# ---- writing ----------------------------------------------------------------------------------


def _folder_of(path: Path) -> Path:
    """The checkpoint folder, given the folder or its config.json."""
    return path.parent if path.name == "config.json" and path.is_file() else path


def checkpoint_file(folder, name: str) -> Path:
    """The path of tensor file ``name`` (``"model"``, ``"data"``, ``"trainer"``) of a checkpoint."""
    folder = _folder_of(Path(folder))
    config = _read_config(folder)
    entry = _file_entries(folder, config).get(name)
    if entry is None:
        raise UsageError(f"checkpoint {folder} has no {name} tensors")
    return folder / entry["file"]


def save_checkpoint(
    folder,
    model,
    *,
    codec=None,
    data: dict | None = None,
    trainer: dict | None = None,
    extra: dict | None = None,
    history: list | None = None,
) -> Path:
    """Write a checkpoint folder as one atomic commit (see the module's docstring).

    On a write error (a full disk, a read-only folder) the previous checkpoint stays as it was and
    a UsageError says what failed.
    """
    folder = Path(folder)
    try:
        with writer_lock(folder), signals_held():
            _commit(folder, model, codec, data, trainer, extra, history)
    except OSError as err:
        where = err.filename or folder
        raise ConfigError(
            f"could not save the checkpoint in {folder} ({where}: {err.strerror or err}); the previous checkpoint "
            "there, if any, is intact: free space or fix the folder, then run again (with resume=True to continue)",
            "resume",
        ) from None
    return folder


def _commit(folder: Path, model, codec, data, trainer, extra, history) -> None:
    weights = model.state_dict()
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            # Loading refuses such weights, so they are not saved over the last good state.
            raise UsageError(
                f"the weights became NaN or infinite ({name}): training diverged, so it was stopped; "
                f"{folder} keeps its last good state. Lower the learning rate (or the weight cost) and "
                "train again, or resume from there"
            )
    files, written = {}, []
    text = None
    try:
        for name, tensors in (("model", weights), ("data", data), ("trainer", trainer)):
            if not tensors:
                continue
            payload = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
            digest = hashlib.sha256(payload).hexdigest()
            entry = {"file": f"{name}.{digest[:16]}.safetensors", "bytes": len(payload), "sha256": digest}
            target = folder / entry["file"]
            # Named by content: a file already there under this name holds these bytes (it was renamed
            # into place only once complete), so unchanged tensors (the data) are not written again.
            if not (target.is_file() and not target.is_symlink() and target.stat().st_size == len(payload)):
                atomic_write_bytes(target, payload)
                written.append(target)
            files[name] = entry
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "family": model.family,
            "model": model.config.to_dict(),
            "codec": codec.to_dict() if codec is not None else None,
            "files": files,
            **finite_json(extra or {}),
        }
        if history is not None:
            # Rows are only ever appended, so the file written here starts with the rows the current
            # config.json vouches for: a crash before the commit below leaves that checkpoint whole.
            rows = "".join(_json_text(finite_json(row)) + "\n" for row in history).encode("utf-8")
            history_created = not (folder / HISTORY_NAME).exists()
            atomic_write_bytes(folder / HISTORY_NAME, rows)
            if history_created:
                written.append(folder / HISTORY_NAME)
            config["history"] = {"rows": len(history), "bytes": len(rows), "sha256": hashlib.sha256(rows).hexdigest()}
        vocabulary = getattr(model, "caption_vocabulary", None)
        if vocabulary is not None:  # a captioned model's tokenizer travels as JSON, beside its config
            config["captions"] = vocabulary.to_dict()
        text = _json_text(config, indent=2)
        atomic_write_text(folder / "config.json", text)  # the commit
    except BaseException:
        # Not committed (a full disk, a second Ctrl+C): the files this save added go again, unless
        # the rename of config.json happened just before the interruption.
        if not _holds(folder / "config.json", text):
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
        raise
    # Committed. What the new config does not name is an older generation or a leftover.
    named = {entry["file"] for entry in files.values()}
    for entry in os.scandir(folder):
        if _MANAGED.match(entry.name) and entry.name not in named:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            _fault_point()
    remove_leftovers(folder)


def _json_text(value, indent: int | None = None) -> str:
    """JSON that is valid UTF-8: non-ASCII text as itself, but escaped (``\\udcff``) where it cannot be
    written as UTF-8 (a path given in another encoding, which Python holds as lone surrogates)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=indent, ensure_ascii=True, allow_nan=False)
    return text


def _holds(path: Path, text: str | None) -> bool:
    try:
        return text is not None and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadLimits:
    """How much a checkpoint may make loading read or allocate. The tensor budget can be raised
    with the environment variable ``GIBBSDREAM_MAX_CHECKPOINT_BYTES`` (bytes, e.g. ``64e9``)."""

    config_bytes: int = 64 * 2**20
    history_bytes: int = 256 * 2**20
    tensor_bytes: int = 16 * 2**30  # all tensor files together, and the model built from config.json

    @classmethod
    def from_environment(cls) -> LoadLimits:
        text = os.environ.get(MAX_BYTES_VARIABLE)
        if not text:
            return cls()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value >= 1):
            raise UsageError(f"{MAX_BYTES_VARIABLE} must be a number of bytes (e.g. 64e9), got {text!r}")
        return cls(tensor_bytes=int(value))


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def _open_plain_file(path: Path, folder: Path, what: str) -> int:
    """Open ``path`` for reading if it is a regular file (not a symbolic link, folder or FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _Missing(path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UsageError(
                f"checkpoint {folder}: {path.name} is a symbolic link; a checkpoint holds plain files only "
                "(copy the file into the folder)"
            ) from None
        raise UsageError(
            f"checkpoint {folder}: cannot read {path.name} ({err.strerror}); check its permissions"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"checkpoint {folder}: {path.name} is not a regular file; restore the checkpoint's {what}")
    return fd


def _read_bounded(path: Path, folder: Path, limit: int, what: str, *, prefix: int | None = None) -> bytes:
    """The bytes of a plain file (or its first ``prefix`` bytes), refused beyond ``limit`` bytes."""
    fd = _open_plain_file(path, folder, what)
    try:
        size = os.fstat(fd).st_size
        want = size if prefix is None else prefix
        if want > limit:
            raise UsageError(
                f"checkpoint {folder}: {path.name} is {_gb(want)}, more than a {what} may be "
                f"({_gb(limit)}); it is not a gibbsdream checkpoint or it is damaged"
            )
        chunks, left = [], want
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _Missing(Exception):
    """A file named by config.json is not there (perhaps removed by a save that committed since)."""

    def __init__(self, path: Path):
        self.path = path


def _read_config(folder: Path, limits: LoadLimits | None = None) -> dict:
    return _parse_config(folder, _config_bytes(folder, limits or LoadLimits.from_environment()))


WHERE_CHECKPOINTS_COME_FROM = "pass the folder that `gibbsdream train --out` (or gibbsdream.train) wrote"


def _config_bytes(folder: Path, limits: LoadLimits) -> bytes:
    if not folder.exists():
        raise UsageError(f"checkpoint {folder} does not exist; {WHERE_CHECKPOINTS_COME_FROM}")
    config_path = folder / "config.json" if folder.is_dir() else folder
    if config_path.name != "config.json" or not config_path.parent.is_dir():
        raise UsageError(f"{folder} is not a gibbsdream checkpoint (no config.json); {WHERE_CHECKPOINTS_COME_FROM}")
    try:
        return _read_bounded(config_path, folder, limits.config_bytes, "config.json")
    except _Missing:
        raise UsageError(
            f"{folder} is not a gibbsdream checkpoint (no config.json); {WHERE_CHECKPOINTS_COME_FROM}"
        ) from None


def _parse_config(folder: Path, payload: bytes) -> dict:
    config_path = folder / "config.json" if folder.is_dir() else folder
    try:
        config = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UsageError(f"{config_path} is corrupt (not valid JSON); retrain or restore the checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UsageError(f"{folder} is not a gibbsdream checkpoint (its config.json is from something else)")
    try:  # a lone surrogate (\ud800) in what becomes output (the alphabet, the caption words) parses,
        # but cannot be printed or written; in a path (a file name in another encoding) it is fine
        json.dumps([config.get(k) for k in ("family", "model", "codec", "captions")], ensure_ascii=False).encode(
            "utf-8"
        )
    except (UnicodeEncodeError, RecursionError, ValueError):
        raise UsageError(
            f"{config_path} is corrupt (it holds text that is not valid Unicode); restore the checkpoint"
        ) from None
    if config.get("format_version") not in READABLE_FORMATS:
        raise UsageError(
            f"{folder} uses checkpoint format {config.get('format_version')!r} (library "
            f"{config.get('library_version')!r}); this gibbsdream {__version__} reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: install a matching version"
        )
    return config


def _file_entries(folder: Path, config: dict) -> dict:
    """name -> {"file", "sha256"[, "bytes"]} for the tensor files config.json vouches for."""
    corrupt = f"checkpoint {folder} is corrupt: config.json's list of files is damaged; retrain or restore it"
    if config.get("format_version") == 1:
        checksums = config.get("checksums", {})
        if not isinstance(checksums, dict):
            raise UsageError(corrupt)
        entries = {name: {"file": f"{name}.safetensors", "sha256": digest} for name, digest in checksums.items()}
    else:
        entries = config.get("files")
        if not isinstance(entries, dict):
            raise UsageError(corrupt)
    for name, entry in entries.items():
        if (
            name not in TENSOR_FILES
            or not isinstance(entry, dict)
            or not isinstance(entry.get("file"), str)
            or not _MANAGED.match(entry["file"])
            or not entry["file"].startswith(name + ".")
            or not isinstance(entry.get("sha256"), str)
            or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
            or not isinstance(entry.get("bytes", 0), int)
        ):
            raise UsageError(corrupt)
    return entries


def checkpoint_identity(folder) -> str:
    """A hash of the tensors a checkpoint vouches for (the same for format 1 and 2 of one save)."""
    config = _read_config(Path(folder))
    digests = {name: entry["sha256"] for name, entry in _file_entries(Path(folder), config).items()}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def checkpoint_family(folder) -> str:
    """The model family (``"rbm"``, ``"nade"``) of a checkpoint folder, read from its config."""
    return str(_read_config(Path(folder)).get("family"))


@dataclass
class Checkpoint:
    """Everything a checkpoint folder holds, loaded."""

    model: torch.nn.Module
    config: dict
    codec: object | None = None
    data: dict = field(default_factory=dict)  # name -> tensor
    trainer: dict = field(default_factory=dict)  # name -> tensor
    history: list = field(default_factory=list)
    path: Path | None = None

    @property
    def family(self) -> str:
        return self.config["family"]


FAMILY_NAMES = {"rbm": "an RBM (string) model", "nade": "an Orderless NADE (image) model"}
# Model classes of families beyond the built-in two, by family name (gibbsdream.families.register
# adds them): loading builds a checkpoint's model from the class its "family" names.
_MODEL_CLASSES: dict[str, type] = {}


def register_model_class(family: str, model_class: type, title: str) -> None:
    """Let checkpoints of ``family`` load: ``model_class(**config["model"])`` builds the model (it
    must build on the meta device; see :mod:`gibbsdream.models.shapes`), ``title`` names it in messages."""
    _MODEL_CLASSES[family] = model_class
    FAMILY_NAMES[family] = title


def load_checkpoint(folder, device: str | torch.device = "cpu", family: str | None = None) -> Checkpoint:
    """Load a checkpoint folder. ``family`` (e.g. ``"rbm"``) refuses other model families.

    A save committed by another process while this one reads is tolerated: when a file named by
    the config.json just read has gone, the folder is read again from its new config.json.
    """
    folder = _folder_of(Path(folder))
    limits = LoadLimits.from_environment()
    previous = None
    for _ in range(5):
        payload = _config_bytes(folder, limits)
        try:
            return _load(folder, _parse_config(folder, payload), limits, device, family)
        except _Missing as missing:
            if payload == previous or _config_bytes(folder, limits) == payload:
                raise UsageError(
                    f"checkpoint {folder} is incomplete: {missing.path.name} is missing; retrain or restore it"
                ) from None
            previous = payload
    raise UsageError(f"checkpoint {folder} kept changing while it was read; stop the run writing it, or try again")


def _model_class(family: str):
    return {"rbm": RBM, "nade": OrderlessNADE, **_MODEL_CLASSES}.get(family)


def _load(folder: Path, config: dict, limits: LoadLimits, device, family: str | None) -> Checkpoint:
    held = config.get("family")
    builder = _model_class(held) if isinstance(held, str) else None
    if builder is None:
        raise UsageError(
            f"{folder} holds an unknown model family {held!r}; upgrade gibbsdream (or restore its config.json)"
        )
    if family is not None and held != family:
        raise UsageError(
            f"{folder} holds {FAMILY_NAMES[held]}, but this command needs {FAMILY_NAMES.get(family, family)}"
        )
    if not isinstance(config.get("model"), dict):
        raise UsageError(f"checkpoint {folder} is corrupt: config.json has no model settings; retrain or restore it")
    # The model is built on the meta device first: its sizes are checked (against the limits and
    # the tensor file's header) before a byte is allocated for them.
    try:
        with shapes_only():
            skeleton = builder(**config["model"])
    except UsageError as err:  # the model's own check: says which setting is wrong
        raise UsageError(f"checkpoint {folder} has an unreadable model config: {err}; retrain or restore it") from None
    except (TypeError, ValueError, OverflowError, RuntimeError) as err:  # torch's messages can run to many lines
        text = str(err).strip()
        detail = (
            "a size too large to build"
            if "overflow" in text.lower()
            else (text.splitlines() or [type(err).__name__])[0][:200]
        )
        raise UsageError(
            f"checkpoint {folder} has an unreadable model config ({detail}); retrain or restore it"
        ) from None
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    needed = sum(math.prod(shape) * 4 for shape, _ in expected.values())
    if needed > limits.tensor_bytes:
        raise UsageError(
            f"checkpoint {folder}: its model config asks for {_gb(needed)} of weights, more than the "
            f"{_gb(limits.tensor_bytes)} allowed; raise {MAX_BYTES_VARIABLE} if you trust it"
        )
    _check_trainer_position(folder, config)
    entries = _file_entries(folder, config)
    if "model" not in entries:
        raise UsageError(f"checkpoint {folder} is corrupt: config.json names no model weights; retrain or restore it")
    codec = _codec(folder, config, skeleton)
    budget = [limits.tensor_bytes]
    state = _read_tensors(folder, entries, "model", budget, _weights_rule(expected))
    model = builder(**config["model"])
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UsageError(
                f"checkpoint {folder} is corrupt: its weights hold NaN or infinite values ({name}); "
                "the run diverged or the file is damaged: retrain or restore an earlier copy"
            )
    model.load_state_dict(state)
    if getattr(model, "caption_encoder", None) is not None:
        if not isinstance(config.get("captions"), dict):
            raise UsageError(
                f"checkpoint {folder} is corrupt: its model reads captions but it has no caption vocabulary; "
                "retrain or restore it"
            )
        try:
            model.caption_vocabulary = CaptionVocabulary.from_dict(config["captions"])
        except (TypeError, ValueError, KeyError, AttributeError):
            raise UsageError(
                f"checkpoint {folder} is corrupt: its caption vocabulary is unreadable; retrain or restore it"
            ) from None
        if model.caption_vocabulary.size != model.config.caption_vocab_size:
            raise UsageError(
                f"checkpoint {folder} is corrupt: its caption vocabulary does not fit its model config; "
                "retrain or restore it"
            )
    data = {k: v.long() for k, v in _read_tensors(folder, entries, "data", budget, _data_rule(model, codec)).items()}
    trainer = _read_tensors(folder, entries, "trainer", budget, _trainer_rule(expected, model))
    return Checkpoint(
        model=model.to(device),
        config=config,
        codec=codec,
        data=data,
        trainer=trainer,
        history=_read_history(folder, config, limits),
        path=folder,
    )


def _check_trainer_position(folder: Path, config: dict) -> None:
    """The training settings and position (read by --resume) are objects; the position's counters are
    whole numbers >= 0 and its elapsed time a finite number of seconds >= 0."""
    corrupt = f"checkpoint {folder} is corrupt: config.json's"
    for key in ("training", "trainer", "corpus", "data_source", "codec"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise ConfigError(
                f"{corrupt} {key!r} entry is not an object; restore it, or train into a new out folder", "out"
            )
    position = config.get("trainer") or {}
    for key in ("epoch", "batch"):
        value = position.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{corrupt} trainer {key} is {value!r}, not a whole number >= 0; restore it, "
                "or train into a new out folder",
                "out",
            )
    elapsed = position.get("elapsed", 0.0)
    if (
        isinstance(elapsed, bool)
        or not isinstance(elapsed, (int, float))
        or not (math.isfinite(elapsed) and elapsed >= 0)
    ):
        raise ConfigError(
            f"{corrupt} trainer elapsed time is {elapsed!r}, not a number of seconds; restore it, "
            "or train into a new out folder",
            "out",
        )


def _codec(folder: Path, config: dict, model):
    """The codec saved with the model, checked to describe the model's variables."""
    codec_config = config.get("codec")
    codecs = {"string": StringCodec, "image": ImageCodec}
    if not (
        isinstance(codec_config, dict) and isinstance(codec_config.get("kind"), str) and codec_config["kind"] in codecs
    ):
        return None
    try:
        codec = codecs[codec_config["kind"]].from_dict(codec_config)
    except (TypeError, ValueError, KeyError, AttributeError):
        raise UsageError(
            f"checkpoint {folder} is corrupt: its codec settings are unreadable; retrain or restore it"
        ) from None
    # What a codec needs of a model is its sizes, whatever its family: a string codec, one
    # position per visible unit; an image codec, its channels and levels.
    if codec_config["kind"] == "string":
        fits = codec.num_categories == getattr(model, "num_categories", None) and codec.max_length == getattr(
            model, "num_visible", None
        )
    else:
        fits = (
            codec.channels == getattr(model, "channels", None)
            and codec.levels == model.num_categories
            and 1 <= codec.height <= 2**14
            and 1 <= codec.width <= 2**14
        )
    if not fits:
        raise UsageError(
            f"checkpoint {folder} is corrupt: its codec does not describe its model "
            f"({codec_config['kind']} codec on {FAMILY_NAMES.get(model.family, model.family)}); restore it"
        )
    return codec


_FLOATS = {torch.float32, torch.float64, torch.float16, torch.bfloat16}
_INTEGERS = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _weights_rule(expected: dict):
    def rule(name, shape, dtype):
        if name not in expected:
            return f"holds an unexpected tensor {name!r}"
        if shape != expected[name][0]:
            return f"{name} has shape {list(shape)} where the model config needs {list(expected[name][0])}"
        if dtype not in _FLOATS:
            return f"{name} has dtype {dtype}, not a float type"
        return None

    rule.complete = set(expected)
    return rule


def _data_rule(model, codec):
    """Encoded states: integer tensors of one state per row, values checked after loading."""
    shape = (
        (model.channels, codec.height, codec.width)
        if getattr(codec, "height", None)
        else tuple(model.shape)
        if hasattr(model, "shape") and not hasattr(model, "channels")
        else None
    )

    def rule(name, tensor_shape, dtype):
        if dtype not in _INTEGERS:
            return f"{name} has dtype {dtype}, not an integer type"
        if name.startswith("captions."):
            ok = len(tensor_shape) == 3 and min(tensor_shape[1:]) >= 1
            return None if ok else f"{name} has shape {list(tensor_shape)}, not (images, captions >= 1, words >= 1)"
        if shape is not None and tuple(tensor_shape[1:]) != shape:
            return f"{name} has shape {list(tensor_shape)} where the model needs (N, {', '.join(map(str, shape))})"
        if shape is None and len(tensor_shape) < 2:
            return f"{name} has shape {list(tensor_shape)}, not one state per row"
        if name == "train" and tensor_shape[0] == 0:
            return "train holds no states"
        return None

    def values(name, tensor):
        captions = getattr(getattr(model, "settings", None), "caption_vocab_size", 0)
        top = captions if name.startswith("captions.") else model.num_categories
        if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= max(top, 1)):
            return f"{name} holds values outside [0, {top})"
        return None

    def together(header):
        for name, tensor_shape in header.items():  # a caption table has a row for each image of its split
            images = header.get(name.removeprefix("captions."))
            if name.startswith("captions.") and (images is None or images[0] != tensor_shape[0]):
                return f"{name} does not match the images of {name.removeprefix('captions.')}"
        return None

    rule.complete = {"train", "validation"}  # what both trainers write, and --resume reads
    rule.values = values
    rule.together = together
    return rule


def _trainer_rule(expected: dict, model):
    """Training state: momentum (RBM) or Adam (NADE) buffers shaped like the weights, persistent
    chains of the model's states, generator states."""
    parameters = [shape for shape, _ in expected.values()]  # the models have no persistent buffers

    def rule(name, shape, dtype):
        if name.startswith("velocity."):
            parameter = name.removeprefix("velocity.")
            ok = parameter in expected and shape == expected[parameter][0] and dtype in _FLOATS
            return None if ok else f"{name} does not fit the weights"
        if name.startswith("adam."):
            _, index, kind = ([*name.split(".", 2), "", ""])[:3]
            if not index.isdigit() or int(index) >= len(parameters):
                return f"{name} names no weight of the model"
            wanted = () if kind == "step" else parameters[int(index)]
            return None if shape == wanted and dtype in _FLOATS else f"{name} does not fit the weights"
        if name in ("generator_state", "shuffle_generator_state"):
            ok = dtype == torch.uint8 and len(shape) == 1 and shape[0] <= 1 << 20
            return None if ok else f"{name} is not a generator state"
        if name == "persistent_chains":
            ok = dtype in _INTEGERS and len(shape) == 2 and shape[0] >= 1 and tuple(shape[1:]) == tuple(model.shape)
            return (
                None
                if ok
                else f"{name} has shape {list(shape)} and dtype {dtype}, not (chains >= 1, positions) integers"
            )
        return f"holds an unexpected tensor {name!r}"

    def values(name, tensor):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return f"{name} holds NaN or infinite values"
        if (
            name == "persistent_chains"
            and tensor.numel()
            and (int(tensor.min()) < 0 or int(tensor.max()) >= model.num_categories)
        ):
            return f"{name} holds values outside [0, {model.num_categories})"
        if name.startswith("adam.") and name.endswith(".step") and not (tensor >= 0 and tensor == tensor.floor()):
            return f"{name} is not a whole number of steps >= 0"
        if name.startswith("adam.") and name.endswith("_sq") and tensor.numel() and bool((tensor < 0).any()):
            return f"{name} holds negative second moments"
        return None

    rule.values = values
    return rule


def _read_tensors(folder: Path, entries: dict, name: str, budget: list, rule) -> dict:
    """Read one tensor file: plain file, size within ``budget``, header within ``rule``, checksum,
    then the data, then the values within ``rule``. Raises UsageError naming the problem."""
    entry = entries.get(name)
    if entry is None:
        return {}
    path = folder / entry["file"]
    damaged = f"checkpoint {folder} is corrupt: {path.name}"
    fd = _open_plain_file(path, folder, f"{name} tensors")
    try:
        size = os.fstat(fd).st_size
        if size > budget[0]:
            raise UsageError(
                f"checkpoint {folder}: {path.name} is {_gb(size)}, more than the {_gb(budget[0])} left of "
                f"the loading budget; raise {MAX_BYTES_VARIABLE} if you trust it"
            )
        if "bytes" in entry and size != entry["bytes"]:
            raise UsageError(f"{damaged} does not match config.json (its size differs); retrain or restore it")
        budget[0] -= size
        # Read through the open descriptor where the system allows (Linux): a save committed by
        # another process may remove the file's name meanwhile, but not what this one opened.
        through = f"/proc/self/fd/{fd}" if os.path.exists(f"/proc/self/fd/{fd}") else str(path)
        try:  # the header alone (safetensors maps the file; nothing is read until a tensor is asked for)
            with safe_open(through, framework="pt") as f:
                # safe_open handles are not iterable: .keys() is needed
                names = f.keys()
                header = {key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in names}
        except (SafetensorError, OSError, ValueError, RuntimeError):
            raise UsageError(f"{damaged} cannot be read as safetensors; retrain or restore it") from None
        for key, (shape, dtype_name) in header.items():
            dtype = _SAFETENSORS_DTYPES.get(dtype_name)
            problem = "has an unknown dtype" if dtype is None else rule(key, shape, dtype)
            if problem:
                raise UsageError(f"{damaged} {problem}; retrain or restore it")
        missing = getattr(rule, "complete", set()) - set(header)
        if missing:
            raise UsageError(f"{damaged} lacks {', '.join(sorted(missing))}; retrain or restore it")
        problem = (
            rule.together({key: shape for key, (shape, _) in header.items()}) if hasattr(rule, "together") else None
        )
        if problem:
            raise UsageError(f"{damaged}: {problem}; retrain or restore it")
        digest = hashlib.sha256()
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise UsageError(f"{damaged} does not match config.json; retrain or restore it")
        try:
            tensors = load_file(through)
        except (SafetensorError, OSError, ValueError, RuntimeError):
            raise UsageError(f"{damaged} cannot be read; retrain or restore it") from None
    finally:
        os.close(fd)
    # Where the file had to be opened again by its name, it must still be what the header check passed.
    if {k: (tuple(t.shape), t.dtype) for k, t in tensors.items()} != {
        k: (shape, _SAFETENSORS_DTYPES[dtype]) for k, (shape, dtype) in header.items()
    }:
        raise UsageError(
            f"checkpoint {folder}: {path.name} changed while it was read; stop whatever writes the "
            "folder, then try again"
        )
    check = getattr(rule, "values", None)
    for key, tensor in tensors.items():
        problem = check(key, tensor) if check else None
        if problem:
            raise UsageError(f"{damaged}: {problem}; retrain or restore it")
    return tensors


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_history(folder: Path, config: dict, limits: LoadLimits) -> list:
    """The rows of history.jsonl that config.json vouches for (format 2), or all of them (format 1)."""
    path = folder / HISTORY_NAME
    vouched = config.get("history")
    damaged = f"checkpoint {folder} is corrupt: {HISTORY_NAME}"
    if config.get("format_version") == 1:
        try:
            payload = _read_bounded(path, folder, limits.history_bytes, "training history")
        except _Missing:
            return []
    elif vouched is None:
        return []
    else:
        if not (
            isinstance(vouched, dict)
            and isinstance(vouched.get("bytes"), int)
            and vouched["bytes"] >= 0
            and isinstance(vouched.get("rows"), int)
            and isinstance(vouched.get("sha256"), str)
        ):
            raise UsageError(f"checkpoint {folder} is corrupt: config.json's history entry is damaged; restore it")
        payload = _read_bounded(path, folder, limits.history_bytes, "training history", prefix=vouched["bytes"])
        if len(payload) != vouched["bytes"] or hashlib.sha256(payload).hexdigest() != vouched["sha256"]:
            raise UsageError(
                f"{damaged} does not match config.json; restore it (or delete it and the "
                '"history" entry of config.json to keep the model without its history)'
            )
    rows = []
    try:  # rows end at "\n" only: a row's strings may hold other line separators (U+2028, U+0085)
        for number, raw in enumerate(payload.split(b"\n"), 1):  # noqa: B007 (named in the error below)
            line = raw.decode("utf-8")
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError
                rows.append(row)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(
            f"{damaged} (line {number}) is not a JSON object per line; restore it, or delete the file "
            "to keep the model without its history"
        ) from None
    if vouched is not None and len(rows) != vouched["rows"]:
        raise UsageError(f"{damaged} does not match config.json; restore it")
    return rows
