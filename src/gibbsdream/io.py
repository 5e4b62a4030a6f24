"""Checkpoints: a folder of safetensors files plus ``config.json`` and ``history.jsonl``.

Layout of a checkpoint folder::

    config.json        format, library version, model family and config, codec, training
                       config, trainer position, and the SHA-256 of every tensor file; for a
                       captioned model also its caption vocabulary (``"captions"``)
    model.safetensors  the model's parameters
    data.safetensors   the encoded training (and validation) data, for inits and novelty checks
    trainer.safetensors  optimizer buffers, persistent chains and RNG states, for --resume
    history.jsonl      one JSON object per epoch

Nothing is pickled, so loading a checkpoint never runs code. Every file is written to a
temporary name and renamed into place, and ``config.json`` (written last) records the checksums
of the tensor files, so a crash mid-save is detected on load rather than silently mixing states.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import __version__
from .errors import UsageError

FORMAT = "gibbsdream-checkpoint"
FORMAT_VERSION = 1
TENSOR_FILES = ("model", "data", "trainer")


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def json_numbers(values, digits: int) -> list:
    """Numbers rounded to ``digits`` places for JSON, with NaN, infinities and None as null."""
    return [None if v is None or not math.isfinite(v) else round(v, digits) for v in values]


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
    """Write a checkpoint folder (atomically, file by file; ``config.json`` last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, tensors in (("model", model.state_dict()), ("data", data), ("trainer", trainer)):
        if not tensors:
            continue
        payload = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
        atomic_write_bytes(folder / f"{name}.safetensors", payload)
        checksums[name] = hashlib.sha256(payload).hexdigest()
    if history is not None:
        atomic_write_text(folder / "history.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "family": model.family,
        "model": model.config(),
        "codec": codec.to_dict() if codec is not None else None,
        "checksums": checksums,
        **(extra or {}),
    }
    vocabulary = getattr(model, "caption_vocabulary", None)
    if vocabulary is not None:  # a captioned model's tokenizer travels as JSON, beside its config
        config["captions"] = vocabulary.to_dict()
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
    return folder


def _read_config(folder: Path) -> dict:
    if not folder.exists():
        raise UsageError(f"checkpoint {folder} does not exist; pass the --out folder of `gibbsdream train`")
    config_path = folder / "config.json" if folder.is_dir() else folder
    if not config_path.exists() or config_path.name != "config.json":
        raise UsageError(
            f"{folder} is not a gibbsdream checkpoint (no config.json); pass the --out folder of `gibbsdream train`"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{config_path} is corrupt (not valid JSON); retrain or restore the checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UsageError(f"{folder} is not a gibbsdream checkpoint (its config.json is from something else)")
    if config.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{folder} uses checkpoint format {config.get('format_version')} (library "
            f"{config.get('library_version')}); this gibbsdream {__version__} reads format {FORMAT_VERSION}: "
            "install a matching version"
        )
    return config


def _read_tensors(folder: Path, name: str, config: dict) -> dict:
    path = folder / f"{name}.safetensors"
    expected = config.get("checksums", {}).get(name)
    if expected is None:
        return {}
    if not path.exists():
        raise UsageError(f"checkpoint {folder} is incomplete: {path.name} is missing; retrain or restore it")
    payload = path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != expected:
        raise UsageError(f"checkpoint {folder} is corrupt: {path.name} does not match config.json; retrain or restore it")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError):
        raise UsageError(f"checkpoint {folder} is corrupt: cannot read {path.name}") from None


def checkpoint_family(folder) -> str:
    """The model family (``"rbm"``, ``"nade"``) of a checkpoint folder, read from its config."""
    return str(_read_config(Path(folder)).get("family"))


def load_checkpoint(folder, device: str | torch.device = "cpu", family: str | None = None) -> Checkpoint:
    """Load a checkpoint folder. ``family`` (e.g. ``"rbm"``) refuses other model families."""
    from .data.images import ImageCodec
    from .data.strings import StringCodec
    from .models.nade import OrderlessNADE
    from .models.rbm import RBM

    folder = Path(folder)
    config = _read_config(folder)
    if family is not None and config.get("family") != family:
        names = {"rbm": "an RBM (string) model", "nade": "an Orderless NADE (image) model"}
        held = names.get(config.get("family"), f"a {config.get('family')!r} model")
        raise UsageError(f"{folder} holds {held}, but this command needs {names.get(family, family)}")
    builders = {"rbm": RBM, "nade": OrderlessNADE}
    if config.get("family") not in builders:
        raise UsageError(f"{folder} holds an unknown model family {config.get('family')!r}; upgrade gibbsdream")
    if not isinstance(config.get("model"), dict):
        raise UsageError(f"checkpoint {folder} is corrupt: config.json has no model settings; retrain or restore it")
    try:
        model = builders[config["family"]](**config["model"])
    except (TypeError, ValueError) as err:  # UsageError is a ValueError
        raise UsageError(f"checkpoint {folder} has an unreadable model config: {err}") from None
    state = _read_tensors(folder, "model", config)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UsageError(f"checkpoint {folder} is corrupt: its weights do not fit its model config") from None
    if getattr(model, "caption_encoder", None) is not None:
        from .data.captions import CaptionVocabulary

        if "captions" not in config:
            raise UsageError(f"checkpoint {folder} is corrupt: its model reads captions but it has no caption vocabulary")
        model.caption_vocabulary = CaptionVocabulary.from_dict(config["captions"])
        if model.caption_vocabulary.size != model.settings.caption_vocab_size:
            raise UsageError(f"checkpoint {folder} is corrupt: its caption vocabulary does not fit its model config")
    codec_config = config.get("codec")
    codecs = {"string": StringCodec, "image": ImageCodec}
    codec = None
    if isinstance(codec_config, dict) and codec_config.get("kind") in codecs:
        try:
            codec = codecs[codec_config["kind"]].from_dict(codec_config)
        except (TypeError, ValueError, KeyError):
            raise UsageError(f"checkpoint {folder} is corrupt: its codec settings are unreadable; retrain or restore it") from None
    history_path = folder / "history.jsonl"
    history = []
    if history_path.exists():
        history = [json.loads(line) for line in history_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Checkpoint(
        model=model.to(device),
        config=config,
        codec=codec,
        data={k: v.long() for k, v in _read_tensors(folder, "data", config).items()},
        trainer=_read_tensors(folder, "trainer", config),
        history=history,
        path=folder,
    )
