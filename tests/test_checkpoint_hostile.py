"""Hostile checkpoints: every way a damaged or malicious checkpoint folder was thought to break the
loader, each tried on a copy of a real checkpoint and used by the commands that read it.

The promise under test (``gibbsdream.checkpoint``): config.json is read with a size and a nesting bound and
validated before anything is allocated; tensor files' headers are checked against the config before
their data is read; stored states are range-checked and weights checked finite before any compiled
code sees them; only plain files inside the folder are read; and every failure is ONE line
``error: ...`` with exit code 2, no traceback, never a signal.

Three tiny checkpoints are trained once per module, in this process: a persistent-CD RBM over
strings, an Orderless NADE over 6x6 images, and a captioned NADE. Each case of ``CASES`` copies one,
damages the copy, and runs ``sample`` (and ``train --resume``, ``evaluate`` or ``inpaint`` where the
damage is in what those read) in this process; the cases that could exhaust memory, hang, or crash
native code also run as real subprocesses under an address-space limit (``SUBPROCESS_CASES``). A
hypothesis test edits config.json at random, and format 1 (the previous layout) is shown to load.
"""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file, save

from cli_harness import ENV, Result, assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.checkpoint import TENSOR_FILES, checkpoint_file, checkpoint_identity, load_checkpoint
from gibbsdream.errors import UsageError

EXACT = np.array([0, 85, 170, 255], dtype=np.uint8)  # the 8-bit values of 4 levels
NADE_ARGS = ["--levels", 4, "--width", 8, "--depth", 2, "--seed", 0, "--quiet", "--device", "cpu"]
CAPTION_ARGS = ["--captions", "--caption-hidden", 6, "--caption-embedding", 5, "--caption-min-count", 1]
RBM_ARGS = ["--hidden", 16, "--persistent", "--quiet", "--device", "cpu"]
MEMORY_LIMIT = 4 * 2**30  # address space of the subprocess runs: a 10**9-unit model would need far more


# ---- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    rng = np.random.default_rng(1234)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = ["".join(rng.choice(list(letters), rng.integers(3, 9))) for _ in range(200)]
    path = work / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def images(work) -> Path:
    """30 6x6 grayscale images of the four exact levels, captioned "a dark/light square"."""
    folder = work / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    captions = {}
    for i in range(30):
        light = i % 2
        Image.fromarray(EXACT[rng.integers(2 * light, 2 * light + 2, (6, 6))]).save(folder / f"im{i:02d}.png")
        captions[f"im{i:02d}.png"] = [f"a {'light' if light else 'dark'} square", "a square"]
    (folder / "captions.json").write_text(json.dumps(captions))
    return folder


@pytest.fixture(scope="module")
def bases(work, corpus, images) -> dict:
    """The three pristine checkpoints, by name: "rbm", "nade", "captioned"."""
    out = {"rbm": work / "rbm", "nade": work / "nade", "captioned": work / "captioned"}
    assert_ok(gibbsdream_here("train", "rbm", "--data", corpus, *RBM_ARGS, "--epochs", 2, "--out", out["rbm"]))
    assert_ok(gibbsdream_here("train", "nade", "--data", images, *NADE_ARGS, "--epochs", 1, "--out", out["nade"]))
    assert_ok(
        gibbsdream_here(
            "train", "nade", "--data", images, *NADE_ARGS, *CAPTION_ARGS, "--epochs", 1, "--out", out["captioned"]
        )
    )
    return out


class Copies:
    """Private copies of the base checkpoints, and the command lines that use them."""

    def __init__(self, root: Path, bases: dict, corpus: Path, images: Path):
        self.root, self.bases, self.corpus, self.images = root, bases, corpus, images
        root.mkdir(exist_ok=True)

    def copy(self, base: str, name: str) -> Path:
        return Path(shutil.copytree(self.bases[base], self.root / name, symlinks=True))

    def commands(self, base: str, folder: Path, kinds) -> dict:
        out = self.root / f"{folder.name}-out"
        rbm = base == "rbm"
        table = {
            "sample": ["sample", folder, "--chains", 2, "--steps", 3, "--quiet", "--device", "cpu"]
            + ([] if rbm else ["--out", out / "sample"]),
            "resume": ["train", "rbm", "--data", self.corpus, *RBM_ARGS, "--epochs", 3, "--out", folder, "--resume"]
            if rbm
            else ["train", "nade", "--data", self.images, *NADE_ARGS, "--epochs", 2, "--out", folder, "--resume"]
            + (CAPTION_ARGS if base == "captioned" else []),
            "evaluate": ["evaluate", folder, "--device", "cpu", "--json"]
            + (
                ["--data", self.corpus, "--method", "ais", "--ais-runs", 4, "--ais-betas", 10]
                if rbm
                else ["--orders", 1, "--max-images", 2]
            ),
            "inpaint": [
                "inpaint",
                folder,
                "--image",
                "heldout:2",
                "--steps",
                2,
                "--out",
                out / "inpaint",
                "--device",
                "cpu",
                "--quiet",
            ],
        }
        table["resume-max-time"] = [*table["resume"], "--max-time", "1h"]
        return {kind: table[kind] for kind in kinds}


# ---- editing a checkpoint ----------------------------------------------------------------------------


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def write_config(folder: Path, config) -> None:
    path = folder / "config.json"
    path.unlink()  # it may be a link or a FIFO left by an earlier edit
    path.write_text(json.dumps(config), encoding="utf-8")  # NaN and Infinity are written as such


def edit_config(change):
    """A mutation: ``change(config)`` edits the parsed config.json in place."""

    def mutate(folder: Path):
        config = read_config(folder)
        change(config)
        write_config(folder, config)

    return mutate


def set_in(*path, value=None, delete=False):
    """A mutation setting config.json's entry at ``path`` (keys) to ``value`` (or deleting it)."""

    def change(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value

    return edit_config(change)


def tensors_of(folder: Path, name: str) -> dict:
    return load_file(checkpoint_file(folder, name))


def store(folder: Path, name: str, payload) -> None:
    """Replace tensor file ``name`` by ``payload`` (tensors or raw bytes) under its content name, with
    config.json's entry (file name, size, SHA-256) updated, so that only the checks past the checksum
    can refuse it."""
    if isinstance(payload, dict):
        payload = save(payload)
    digest = hashlib.sha256(payload).hexdigest()
    checkpoint_file(folder, name).unlink()
    entry = {"file": f"{name}.{digest[:16]}.safetensors", "bytes": len(payload), "sha256": digest}
    (folder / entry["file"]).write_bytes(payload)
    config = read_config(folder)
    config["files"][name] = entry
    write_config(folder, config)


def retensor(name: str, change):
    """A mutation: ``change(tensors)`` edits the dict of tensor file ``name`` in place, or returns a new dict."""

    def mutate(folder: Path):
        tensors = tensors_of(folder, name)
        replaced = change(tensors)
        store(folder, name, replaced if isinstance(replaced, dict) else tensors)

    return mutate


def rebytes(name: str, change, *, vouch: bool = True):
    """A mutation: ``change(bytes)`` rewrites tensor file ``name``'s bytes (vouched for by config.json,
    unless ``vouch`` is False: then the file keeps its name and config.json its old checksum)."""

    def mutate(folder: Path):
        path = checkpoint_file(folder, name)
        payload = change(path.read_bytes())
        if vouch:
            store(folder, name, payload)
        else:
            path.write_bytes(payload)

    return mutate


def header(entries: dict, data: bytes = b"") -> bytes:
    """A safetensors file with a hand-written header (no checks)."""
    text = json.dumps(entries).encode()
    return len(text).to_bytes(8, "little") + text + data


def history_text(change, *, vouch: bool = True):
    """A mutation: ``change(bytes)`` rewrites history.jsonl; with ``vouch`` config.json's "history"
    entry is updated to match (rows counted as lines)."""

    def mutate(folder: Path):
        path = folder / "history.jsonl"
        payload = change(path.read_bytes())
        path.write_bytes(payload)
        if vouch:
            config = read_config(folder)
            config["history"] = {
                "rows": payload.count(b"\n"),
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
            write_config(folder, config)

    return mutate


def replace_file(what: str, make):
    """A mutation: the file ``what`` ("config.json", "history.jsonl" or a tensor file's name) is
    removed and ``make(path, folder)`` puts something else in its place."""

    def mutate(folder: Path):
        path = folder / what if what.endswith((".json", ".jsonl")) else checkpoint_file(folder, what)
        path.unlink()
        make(path, folder)

    return mutate


def in_sequence(*mutations):
    def mutate(folder: Path):
        for m in mutations:
            m(folder)

    return mutate


def nested_json(depth: int) -> str:
    return '{"format": "gibbsdream-checkpoint", "format_version": 2, "model": ' + "[" * depth + "]" * depth + "}"


def sparse_config(folder: Path) -> None:
    path = folder / "config.json"
    path.unlink()
    with open(path, "wb") as f:
        f.truncate(100 * 2**20)  # 100 MB of zeros, written in no time


# ---- the cases -----------------------------------------------------------------------------------------


@dataclass
class Case:
    base: str  # "rbm", "nade" or "captioned"
    mutate: object  # folder -> None
    commands: tuple = ("sample",)
    says: str = ""  # a fragment the error line must hold (which check caught it)
    env: dict | None = None
    here: bool = True  # False: only as a subprocess, with a timeout (a FIFO could hang this process)


RBM_STATE = ("sample", "resume")
NADE_STATE = ("sample", "resume")
NADE_DATA = ("sample", "inpaint", "evaluate")


def chains(change):
    return retensor("trainer", lambda t: t.update(persistent_chains=change(t["persistent_chains"])))


def data(name, change):
    return retensor("data", lambda t: t.update({name: change(t[name])}))


def weights(name, change):
    return retensor("model", lambda t: t.update({name: change(t[name])}))


def nan_at_first(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


CASES = {
    # -- sizes in config.json: refused against the budget or a bound, before anything is allocated
    "rbm num_hidden 10**9": Case(
        "rbm", set_in("model", "num_hidden", value=10**9), RBM_STATE, "GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "rbm num_visible 10**12": Case(
        "rbm", set_in("model", "num_visible", value=10**12), says="GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "rbm num_categories 2**40": Case(
        "rbm", set_in("model", "num_categories", value=2**40), says="GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "rbm num_hidden 10**30": Case("rbm", set_in("model", "num_hidden", value=10**30)),
    "rbm num_hidden 10**9 under a raised budget": Case(
        "rbm", set_in("model", "num_hidden", value=10**9), says="shape", env={"GIBBSDREAM_MAX_CHECKPOINT_BYTES": "1e15"}
    ),
    "rbm num_hidden 17 (shape check)": Case("rbm", set_in("model", "num_hidden", value=17), says="shape"),
    "nade width 10**6": Case(
        "nade", set_in("model", "width", value=10**6), NADE_DATA, "GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "nade depth 10**9": Case("nade", set_in("model", "depth", value=10**9), says="depth"),
    "nade dilations [10**9]": Case("nade", set_in("model", "dilations", value=[10**9]), says="dilations"),
    "nade kernel_size 10**5": Case("nade", set_in("model", "kernel_size", value=10**5), says="kernel_size"),
    "nade kernel_size 10**5+1": Case("nade", set_in("model", "kernel_size", value=10**5 + 1), says="kernel_size"),
    "nade channels 10**6": Case("nade", set_in("model", "channels", value=10**6)),
    "nade num_categories 10**9": Case("nade", set_in("model", "num_categories", value=10**9)),
    "captioned caption_vocab_size 10**12": Case(
        "captioned", set_in("model", "caption_vocab_size", value=10**12), says="GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "captioned caption_vocab_size 2**70": Case("captioned", set_in("model", "caption_vocab_size", value=2**70)),
    "captioned caption_hidden 10**6": Case("captioned", set_in("model", "caption_hidden", value=10**6)),
    "captioned caption_layers 10**9": Case("captioned", set_in("model", "caption_layers", value=10**9)),
    # -- wrong types
    **{
        f"rbm num_hidden {value!r}": Case("rbm", set_in("model", "num_hidden", value=value), says="num_hidden")
        for value in ("16", 16.0, [16], None, True, {"n": 16})
    },
    "rbm num_categories 27.0": Case("rbm", set_in("model", "num_categories", value=27.0)),
    "rbm model a list": Case("rbm", set_in("model", value=[8, 16, 27]), says="model settings"),
    "rbm model null": Case("rbm", set_in("model", value=None), says="model settings"),
    "rbm model with an unknown setting": Case("rbm", set_in("model", "bias", value=1)),
    **{
        f"nade width {value!r}": Case("nade", set_in("model", "width", value=value), says="width")
        for value in ("8", 8.0, [8], None, True)
    },
    "nade num_categories 4.0": Case("nade", set_in("model", "num_categories", value=4.0)),
    "nade num_categories '4'": Case("nade", set_in("model", "num_categories", value="4")),
    "nade depth true": Case("nade", set_in("model", "depth", value=True)),
    "nade dilations '12'": Case("nade", set_in("model", "dilations", value="12")),
    "nade dilations [1.5]": Case("nade", set_in("model", "dilations", value=[1.5])),
    "nade dilations null": Case("nade", set_in("model", "dilations", value=None)),
    "nade dilations 3": Case("nade", set_in("model", "dilations", value=3)),
    "nade residual 'yes'": Case("nade", set_in("model", "residual", value="yes")),
    "nade model a list": Case("nade", set_in("model", value=[]), says="model settings"),
    "captioned caption_merge 5": Case("captioned", set_in("model", "caption_merge", value=5)),
    "captioned caption_bidirectional 'no'": Case("captioned", set_in("model", "caption_bidirectional", value="no")),
    "captioned caption_vocab_size '6'": Case("captioned", set_in("model", "caption_vocab_size", value="6")),
    "captioned caption_vocab_size -6": Case("captioned", set_in("model", "caption_vocab_size", value=-6)),
    # -- the list of files
    "files []": Case("rbm", set_in("files", value=[]), says="list of files"),
    "files null": Case("rbm", set_in("files", value=None), says="list of files"),
    "format 1 checksums []": Case("rbm", edit_config(lambda c: c.update(format_version=1, checksums=[]))),
    "files: ../x": Case("rbm", set_in("files", "model", "file", value="../x"), says="list of files"),
    "files: ../model.<hash>.safetensors": Case(
        "rbm",
        edit_config(lambda c: c["files"]["model"].update(file="../" + c["files"]["model"]["file"])),
        says="list of files",
    ),
    "files: absolute path": Case("rbm", set_in("files", "model", "file", value="/etc/passwd"), says="list of files"),
    "files: the data file as the model": Case(
        "rbm", edit_config(lambda c: c["files"]["model"].update(c["files"]["data"])), says="list of files"
    ),
    "files: an unknown entry": Case(
        "rbm", set_in("files", "extra", value={"file": "extra.safetensors"}), says="list of files"
    ),
    "files: no model": Case("rbm", set_in("files", "model", delete=True), says="no model weights"),
    "files: a missing file": Case(
        "rbm", set_in("files", "model", "file", value="model.0123456789abcdef.safetensors"), says="missing"
    ),
    "files: bytes a string": Case("rbm", set_in("files", "model", "bytes", value="14968"), says="list of files"),
    "files: bytes -1": Case("rbm", set_in("files", "model", "bytes", value=-1)),
    "files: sha256 of zeros": Case("rbm", set_in("files", "model", "sha256", value="0" * 64), says="does not match"),
    "files: sha256 a number": Case("rbm", set_in("files", "model", "sha256", value=5), says="list of files"),
    # -- family and format
    "family gan": Case("rbm", set_in("family", value="gan"), says="unknown model family"),
    "family null": Case("rbm", set_in("family", value=None), says="unknown model family"),
    "family 5": Case("rbm", set_in("family", value=5), says="unknown model family"),
    "family missing": Case("rbm", set_in("family", delete=True), says="unknown model family"),
    "nade family rbm": Case("nade", set_in("family", value="rbm")),
    "format_version 99": Case("rbm", set_in("format_version", value=99), says="format"),
    "format_version missing": Case("rbm", set_in("format_version", delete=True), says="format"),
    "format_version '2'": Case("rbm", set_in("format_version", value="2"), says="format"),
    "format missing": Case("rbm", set_in("format", delete=True)),
    # -- NaN, Infinity, nesting, size
    "num_hidden NaN": Case("rbm", set_in("model", "num_hidden", value=float("nan"))),
    "num_visible Infinity": Case("rbm", set_in("model", "num_visible", value=float("inf"))),
    "nade width -Infinity": Case("nade", set_in("model", "width", value=float("-inf"))),
    "files bytes NaN": Case("rbm", set_in("files", "model", "bytes", value=float("nan"))),
    "history bytes Infinity": Case("rbm", set_in("history", "bytes", value=float("inf"))),
    "config.json is NaN": Case("rbm", replace_file("config.json", lambda p, f: p.write_text("NaN"))),
    "config.json nested 100000 deep": Case(
        "rbm", replace_file("config.json", lambda p, f: p.write_text(nested_json(100000))), says="not valid JSON"
    ),
    "config.json of 100 MB": Case("rbm", sparse_config, says="config.json is"),
    "config.json not UTF-8": Case("rbm", replace_file("config.json", lambda p, f: p.write_bytes(b'{"a": "\xff"}'))),
    "config.json empty": Case("rbm", replace_file("config.json", lambda p, f: p.write_bytes(b""))),
    # -- what is in place of a file
    "config.json a link to /dev/zero": Case(
        "rbm", replace_file("config.json", lambda p, f: os.symlink("/dev/zero", p)), says="symbolic link"
    ),
    "config.json a link outside": Case(
        "rbm",
        replace_file(
            "config.json",
            lambda p, f: os.symlink(
                shutil.copyfile(f.parent / "pristine-rbm" / "config.json", f.parent / f"{f.name}-config.json"), p
            ),
        ),
        says="symbolic link",
    ),
    "model file a link": Case(
        "rbm",
        replace_file(
            "model",
            lambda p, f: os.symlink(
                shutil.copyfile(f.parent / "pristine-rbm" / p.name, f.parent / f"{f.name}-{p.name}"), p
            ),
        ),
        says="symbolic link",
    ),
    "trainer file a link to /dev/zero": Case(
        "rbm", replace_file("trainer", lambda p, f: os.symlink("/dev/zero", p)), RBM_STATE, "symbolic link"
    ),
    "history.jsonl a link to /dev/zero": Case(
        "rbm", replace_file("history.jsonl", lambda p, f: os.symlink("/dev/zero", p)), RBM_STATE, "symbolic link"
    ),
    "config.json a folder": Case("rbm", replace_file("config.json", lambda p, f: p.mkdir()), says="not a regular file"),
    "model file a folder": Case("rbm", replace_file("model", lambda p, f: p.mkdir()), says="not a regular file"),
    "history.jsonl a folder": Case(
        "rbm", replace_file("history.jsonl", lambda p, f: p.mkdir()), says="not a regular file"
    ),
    "config.json a FIFO": Case(
        "rbm", replace_file("config.json", lambda p, f: os.mkfifo(p)), says="not a regular file", here=False
    ),
    "data file a FIFO": Case(
        "rbm", replace_file("data", lambda p, f: os.mkfifo(p)), says="not a regular file", here=False
    ),
    "history.jsonl a FIFO": Case(
        "rbm", replace_file("history.jsonl", lambda p, f: os.mkfifo(p)), RBM_STATE, "not a regular file", here=False
    ),
    "history.jsonl missing": Case("rbm", replace_file("history.jsonl", lambda p, f: None), says="history"),
    ".lock a folder": Case("rbm", lambda f: ((f / ".lock").unlink(), (f / ".lock").mkdir()), ("resume",)),
    ".lock a link to /dev/zero": Case(
        "rbm", lambda f: ((f / ".lock").unlink(), os.symlink("/dev/zero", f / ".lock")), ("resume",)
    ),
    # -- truncated and hand-made tensor files
    "model truncated": Case("rbm", rebytes("model", lambda b: b[: len(b) // 2], vouch=False), says="size differs"),
    "model truncated, vouched": Case("rbm", rebytes("model", lambda b: b[: len(b) // 2]), says="cannot be read"),
    "model truncated in the header, vouched": Case("rbm", rebytes("model", lambda b: b[:20]), says="cannot be read"),
    "model of 7 bytes, vouched": Case("rbm", rebytes("model", lambda b: b[:7]), says="cannot be read"),
    "model empty, vouched": Case("rbm", rebytes("model", lambda b: b""), says="cannot be read"),
    "trainer truncated, vouched": Case("rbm", rebytes("trainer", lambda b: b[:-100]), RBM_STATE, "cannot be read"),
    "data truncated, vouched": Case("nade", rebytes("data", lambda b: b[:-10]), NADE_DATA, "cannot be read"),
    "header length 2**60": Case(
        "rbm", rebytes("model", lambda b: (2**60).to_bytes(8, "little") + b[8:]), says="cannot be read"
    ),
    "header not JSON": Case(
        "rbm", rebytes("model", lambda b: (5).to_bytes(8, "little") + b"{not}"), says="cannot be read"
    ),
    "header claims 2**40 floats": Case(
        "rbm",
        rebytes(
            "model",
            lambda b: header({"weight": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}, b"\0" * 64),
        ),
    ),
    "header with overlapping tensors": Case(
        "rbm",
        rebytes(
            "model",
            lambda b: header(
                {
                    "weight": {"dtype": "F32", "shape": [16, 8, 27], "data_offsets": [0, 13824]},
                    "visible_bias": {"dtype": "F32", "shape": [8, 27], "data_offsets": [0, 864]},
                    "hidden_bias": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]},
                },
                b"\0" * 13824,
            ),
        ),
    ),
    # -- headers that disagree with the config (the checksum matches: the header check must refuse them)
    "weight renamed": Case(
        "rbm",
        retensor("model", lambda t: {("weights" if k == "weight" else k): v for k, v in t.items()}),
        says="unexpected tensor",
    ),
    "weight of a wrong shape": Case("rbm", weights("weight", lambda w: w[:, :, :-1].contiguous()), says="shape"),
    "weight of a wrong dtype": Case("rbm", weights("weight", lambda w: w.to(torch.int32)), says="dtype"),
    "weight of dtype bool": Case("rbm", weights("weight", lambda w: w > 0), says="dtype"),
    "weight of dtype float8": Case("rbm", weights("weight", lambda w: w.to(torch.float8_e4m3fn)), says="dtype"),
    "weight float64 is fine but NaN": Case("rbm", weights("weight", lambda w: nan_at_first(w.double())), says="NaN"),
    "an extra weight": Case(
        "rbm", retensor("model", lambda t: t.update(extra=torch.zeros(3))), says="unexpected tensor"
    ),
    "a missing weight": Case("rbm", retensor("model", lambda t: t.pop("hidden_bias")), says="lacks"),
    "nade weight of a wrong shape": Case(
        "nade", retensor("model", lambda t: t.update({"readout.weight": torch.zeros(5, 8, 1, 1)})), says="shape"
    ),
    "captioned caption weight missing": Case(
        "captioned",
        retensor("model", lambda t: t.pop(next(k for k in t if k.startswith("caption_encoder")))),
        says="lacks",
    ),
    # -- values
    "NaN weight": Case("rbm", weights("weight", nan_at_first), RBM_STATE, "NaN"),
    "infinite bias": Case("rbm", weights("visible_bias", lambda b: torch.full_like(b, float("inf"))), says="NaN"),
    "nade NaN weight": Case("nade", weights("readout.bias", nan_at_first), NADE_DATA, "NaN"),
    "NaN velocity": Case(
        "rbm",
        retensor("trainer", lambda t: t.update({"velocity.weight": nan_at_first(t["velocity.weight"])})),
        RBM_STATE,
        "NaN",
    ),
    "velocity of a wrong shape": Case(
        "rbm", retensor("trainer", lambda t: t.update({"velocity.weight": torch.zeros(3)})), RBM_STATE, "does not fit"
    ),
    "velocity missing": Case("rbm", retensor("trainer", lambda t: t.pop("velocity.weight")), ("resume",)),
    "trainer with an unknown tensor": Case(
        "rbm", retensor("trainer", lambda t: t.update(extra=torch.zeros(2))), RBM_STATE, "unexpected tensor"
    ),
    "persistent chains negative": Case("rbm", chains(lambda c: c - 1000), RBM_STATE, "outside"),
    "persistent chains = K": Case("rbm", chains(lambda c: torch.full_like(c, 27)), RBM_STATE, "outside"),
    "persistent chains 2**40": Case(
        "rbm", chains(lambda c: torch.full_like(c, 2**40, dtype=torch.int64)), RBM_STATE, "outside"
    ),
    "persistent chains of int8 -1": Case(
        "rbm", chains(lambda c: torch.full_like(c, -1, dtype=torch.int8)), RBM_STATE, "outside"
    ),
    "persistent chains too wide": Case(
        "rbm", chains(lambda c: torch.zeros(c.shape[0], c.shape[1] + 1, dtype=c.dtype)), RBM_STATE, "persistent_chains"
    ),
    "persistent chains 1-D": Case("rbm", chains(lambda c: c.reshape(-1).contiguous()), RBM_STATE, "persistent_chains"),
    "persistent chains float": Case("rbm", chains(lambda c: c.float()), RBM_STATE, "persistent_chains"),
    "persistent chains empty": Case("rbm", chains(lambda c: c[:0].contiguous()), RBM_STATE),
    "data value = K": Case(
        "rbm", data("train", lambda d: torch.full_like(d, 27)), ("sample", "resume", "evaluate"), "outside"
    ),
    "data value -1": Case("rbm", data("validation", lambda d: torch.full_like(d, -1)), RBM_STATE, "outside"),
    "data float": Case("rbm", data("train", lambda d: d.float()), RBM_STATE, "dtype"),
    "data of a wrong width": Case("rbm", data("train", lambda d: d[:, :-1].contiguous()), RBM_STATE, "shape"),
    "data without train": Case("rbm", retensor("data", lambda t: t.pop("train")), RBM_STATE),
    "data empty": Case("rbm", retensor("data", lambda t: {k: v[:0].contiguous() for k, v in t.items()}), RBM_STATE),
    "nade data level = levels": Case(
        "nade", data("train", lambda d: torch.full_like(d, 4)), (*NADE_DATA, "resume"), "outside"
    ),
    "nade test images of a wrong size": Case(
        "nade", data("test", lambda d: d[..., :-1].contiguous()), NADE_DATA, "shape"
    ),
    "nade data 3-D": Case("nade", data("test", lambda d: d[:, 0].contiguous()), NADE_DATA, "shape"),
    "nade data without train": Case("nade", retensor("data", lambda t: t.pop("train")), NADE_STATE),
    "captioned caption id >= vocabulary": Case(
        "captioned", data("captions.test", lambda d: torch.full_like(d, 6)), NADE_DATA, "outside"
    ),
    "captioned captions of a wrong shape": Case(
        "captioned", data("captions.test", lambda d: d[:, 0].contiguous()), NADE_DATA, "captions"
    ),
    "captioned no captions per image": Case(
        "captioned", data("captions.test", lambda d: d[:, :0].contiguous()), NADE_DATA
    ),
    "captioned captions for fewer images": Case(
        "captioned", data("captions.test", lambda d: d[:1].contiguous()), NADE_DATA
    ),
    "captioned captions without images": Case("captioned", retensor("data", lambda t: t.pop("test")), NADE_DATA),
    # -- generator and optimizer state
    "shuffle generator state of a wrong size": Case(
        "rbm",
        retensor("trainer", lambda t: t.update(shuffle_generator_state=torch.zeros(10, dtype=torch.uint8))),
        ("resume",),
    ),
    "generator state garbage": Case(
        "rbm",
        retensor("trainer", lambda t: t.update(generator_state=torch.full_like(t["generator_state"], 0xFF))),
        ("resume",),
    ),
    "shuffle generator state garbage": Case(
        "rbm",
        retensor("trainer", lambda t: t.update(shuffle_generator_state=torch.zeros_like(t["shuffle_generator_state"]))),
        ("resume",),
    ),
    "generator state of int64": Case(
        "rbm",
        retensor("trainer", lambda t: t.update(generator_state=t["generator_state"].long())),
        RBM_STATE,
        "generator state",
    ),
    "generator state of 2**24 bytes": Case(
        "rbm",
        retensor("trainer", lambda t: t.update(generator_state=torch.zeros(2**24, dtype=torch.uint8))),
        RBM_STATE,
        "generator state",
    ),
    "generator state missing": Case("rbm", retensor("trainer", lambda t: t.pop("generator_state")), ("resume",)),
    "adam moment of a wrong shape": Case(
        "nade", retensor("trainer", lambda t: t.update({"adam.0.exp_avg": torch.zeros(3)})), NADE_STATE, "does not fit"
    ),
    "adam state of a weight that is not there": Case(
        "nade",
        retensor("trainer", lambda t: t.update({"adam.99.exp_avg": torch.zeros(3)})),
        NADE_STATE,
        "names no weight",
    ),
    "adam index not a number": Case(
        "nade", retensor("trainer", lambda t: t.update({"adam.x.step": torch.zeros(())})), NADE_STATE, "names no weight"
    ),
    "adam step NaN": Case(
        "nade", retensor("trainer", lambda t: t.update({"adam.0.step": torch.tensor(float("nan"))})), NADE_STATE, "NaN"
    ),
    "adam step negative": Case(
        "nade", retensor("trainer", lambda t: t.update({"adam.0.step": torch.tensor(-5.0)})), ("resume",)
    ),
    "adam second moment negative": Case(
        "nade",
        retensor("trainer", lambda t: t.update({"adam.0.exp_avg_sq": -torch.ones_like(t["adam.0.exp_avg_sq"])})),
        ("resume",),
    ),
    "adam moment missing": Case("nade", retensor("trainer", lambda t: t.pop("adam.0.exp_avg_sq")), ("resume",)),
    "adam moment int": Case(
        "nade",
        retensor("trainer", lambda t: t.update({"adam.0.exp_avg": t["adam.0.exp_avg"].int()})),
        NADE_STATE,
        "does not fit",
    ),
    # -- the trainer's position and settings in config.json (read by --resume)
    **{
        f"rbm trainer epoch {value!r}": Case("rbm", set_in("trainer", "epoch", value=value), ("resume",))
        for value in ("2", -1, 2.5, None, float("nan"), True)
    },
    "rbm trainer a list": Case("rbm", set_in("trainer", value=["epoch"]), ("resume",)),
    "rbm trainer a string": Case("rbm", set_in("trainer", value="epoch"), ("resume",)),
    "rbm training a list": Case("rbm", set_in("training", value=[]), ("resume",)),
    "rbm training batch_size 10**12": Case("rbm", set_in("training", "batch_size", value=10**12), ("resume",)),
    "rbm training cd_steps 10**9": Case("rbm", set_in("training", "cd_steps", value=10**9), ("resume",)),
    "rbm training fantasy_particles 10**9": Case(
        "rbm", set_in("training", "fantasy_particles", value=10**9), ("resume",)
    ),
    "rbm training seed 'x'": Case("rbm", set_in("training", "seed", value="x"), ("resume",)),
    "rbm training seed 2**70": Case("rbm", set_in("training", "seed", value=2**70), ("resume",)),
    "rbm training weight_cost NaN": Case("rbm", set_in("training", "weight_cost", value=float("nan")), ("resume",)),
    "rbm training cd_steps '1'": Case("rbm", set_in("training", "cd_steps", value="1"), ("resume",)),
    "rbm training persistent 'no'": Case("rbm", set_in("training", "persistent", value="no"), ("resume",)),
    **{
        f"nade trainer {key} {value!r}": Case("nade", set_in("trainer", key, value=value), ("resume",))
        for key, value in (
            ("epoch", "1"),
            ("epoch", -1),
            ("batch", None),
            ("batch", 1.5),
            ("elapsed", "x"),
            ("elapsed", float("nan")),
            ("partial_loss", "x"),
            ("partial_loss", [1]),
            ("optimizer_groups", []),
            ("optimizer_groups", "x"),
            ("optimizer_groups", [1]),
            ("scheduler", "x"),
            ("scheduler", {"best": "x"}),
            ("scheduler", {"num_bad_epochs": None, "last_epoch": "x"}),
        )
    },
    "nade trainer lr 'x'": Case(
        "nade", edit_config(lambda c: c["trainer"]["optimizer_groups"][0].update(lr="x")), ("resume",)
    ),
    "nade trainer betas [1]": Case(
        "nade", edit_config(lambda c: c["trainer"]["optimizer_groups"][0].update(betas=[1])), ("resume",)
    ),
    "nade trainer elapsed 'x' with --max-time": Case(
        "nade", set_in("trainer", "elapsed", value="x"), ("resume-max-time",)
    ),
    "nade training dilations 'x'": Case("nade", set_in("training", "dilations", value="x"), ("resume",)),
    # -- the codec
    "codec alphabet one letter short": Case(
        "rbm",
        edit_config(lambda c: c["codec"].update(alphabet=c["codec"]["alphabet"][:-1])),
        ("sample", "evaluate"),
        "codec",
    ),
    "codec max_length 9": Case("rbm", set_in("codec", "max_length", value=9), ("sample", "evaluate"), "codec"),
    "codec max_length '8'": Case("rbm", set_in("codec", "max_length", value="8"), ("sample", "evaluate")),
    "codec max_length 8.0": Case("rbm", set_in("codec", "max_length", value=8.0), ("sample", "evaluate")),
    "codec alphabet a list of numbers": Case(
        "rbm", set_in("codec", "alphabet", value=list(range(26))), ("sample", "evaluate")
    ),
    "codec alphabet with a repeat": Case("rbm", set_in("codec", "alphabet", value="a" * 26), ("sample", "evaluate")),
    "codec pad_symbol 0": Case("rbm", set_in("codec", "pad_symbol", value=0), ("sample", "evaluate")),
    "codec replacement 5": Case("rbm", set_in("codec", "replacement", value=5), ("sample", "evaluate")),
    "codec case_fold 'yes'": Case("rbm", set_in("codec", "case_fold", value="yes"), ("sample", "evaluate")),
    "codec an unknown setting": Case("rbm", set_in("codec", "extra", value=1), ("sample",)),
    "codec kind image on an RBM": Case(
        "rbm",
        set_in("codec", value={"kind": "image", "levels": 27, "channels": 1, "height": 8, "width": 1}),
        ("sample",),
    ),
    "codec a list": Case("rbm", set_in("codec", value=[]), ("sample",)),
    "codec kind a list": Case("rbm", set_in("codec", "kind", value=[]), ("sample",)),
    "nade codec levels 5": Case("nade", set_in("codec", "levels", value=5), NADE_DATA, "codec"),
    "nade codec channels 3": Case("nade", set_in("codec", "channels", value=3), NADE_DATA, "codec"),
    "nade codec channels true": Case("nade", set_in("codec", "channels", value=True), NADE_DATA),
    "nade codec height 7": Case("nade", set_in("codec", "height", value=7), NADE_DATA, "shape"),
    "nade codec height 10**9": Case("nade", set_in("codec", "height", value=10**9), NADE_DATA),
    "nade codec string": Case("nade", set_in("codec", value="image"), ("sample",)),
    # -- history.jsonl
    "history garbage bytes": Case("rbm", history_text(lambda b: b"\xff\xfe garbage\n"), RBM_STATE, "history.jsonl"),
    "history garbage, not vouched": Case(
        "rbm", history_text(lambda b: b"\xff" * len(b), vouch=False), RBM_STATE, "history.jsonl"
    ),
    "history a JSON list line": Case("rbm", history_text(lambda b: b + b"[1, 2]\n"), RBM_STATE, "history.jsonl"),
    "history nested 100000 deep": Case(
        "rbm", history_text(lambda b: b + b"[" * 100000 + b"]" * 100000 + b"\n"), RBM_STATE, "history.jsonl"
    ),
    "history truncated in the vouched prefix": Case(
        "rbm", history_text(lambda b: b[: len(b) // 2], vouch=False), RBM_STATE, "history.jsonl"
    ),
    "history entry a string": Case("rbm", set_in("history", value="all"), RBM_STATE, "history"),
    "history rows wrong": Case("rbm", set_in("history", "rows", value=7), RBM_STATE, "history.jsonl"),
    "history bytes 10**12": Case("rbm", set_in("history", "bytes", value=10**12), RBM_STATE, "history.jsonl"),
    # -- the caption vocabulary
    "captions one word short": Case(
        "captioned", edit_config(lambda c: c["captions"]["words"].pop()), NADE_DATA, "vocabulary"
    ),
    "captions a string": Case("captioned", set_in("captions", value="words"), NADE_DATA, "vocabulary"),
    "captions missing": Case("captioned", set_in("captions", delete=True), NADE_DATA, "vocabulary"),
    "captions words a dict": Case("captioned", set_in("captions", "words", value={"a": 1}), NADE_DATA, "vocabulary"),
    "captions words numbers": Case("captioned", set_in("captions", "words", value=[1, 2, 3, 4]), NADE_DATA),
    "captions words repeated": Case(
        "captioned", set_in("captions", "words", value=["a", "a", "b", "c"]), NADE_DATA, "vocabulary"
    ),
    "captions max_length Infinity": Case("captioned", set_in("captions", "max_length", value=float("inf")), NADE_DATA),
    "captions max_length '24'": Case("captioned", set_in("captions", "max_length", value="24"), NADE_DATA),
    "captions max_length 0": Case("captioned", set_in("captions", "max_length", value=0), NADE_DATA),
    # -- the environment
    "GIBBSDREAM_MAX_CHECKPOINT_BYTES garbage": Case(
        "rbm", lambda f: None, env={"GIBBSDREAM_MAX_CHECKPOINT_BYTES": "lots"}, says="GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
    "GIBBSDREAM_MAX_CHECKPOINT_BYTES too small": Case(
        "rbm", lambda f: None, env={"GIBBSDREAM_MAX_CHECKPOINT_BYTES": "1000"}, says="GIBBSDREAM_MAX_CHECKPOINT_BYTES"
    ),
}

# Oddities that are harmless, and load and work: the checks above are not stricter than they need be.
ACCEPTED = {
    "caption_merge_every beyond the depth (one merge, after the last block)": Case(
        "captioned", set_in("model", "caption_merge_every", value=10**18), NADE_DATA
    ),
    "data with an unknown part": Case("rbm", retensor("data", lambda t: t.update(extra=t["train"].clone())), RBM_STATE),
    "weights stored as float64": Case("rbm", weights("weight", lambda w: w.double()), RBM_STATE),
    "one persistent chain": Case("rbm", chains(lambda c: c[:1].contiguous()), RBM_STATE),
    "300 persistent chains": Case("rbm", chains(lambda c: c.repeat(5, 1)[:300].contiguous()), RBM_STATE),
    "a generator state of another kind of device (re-seeded, with a note)": Case(
        "rbm", retensor("trainer", lambda t: t.update(generator_state=torch.zeros(16, dtype=torch.uint8))), ("resume",)
    ),
    "trainer epoch far beyond --epochs (nothing to do)": Case(
        "rbm", set_in("trainer", "epoch", value=10**30), ("resume",)
    ),
    "optimizer_groups [{}] (the fresh settings)": Case(
        "nade", set_in("trainer", "optimizer_groups", value=[{}]), ("resume",)
    ),
    "a training batch larger than the data (one batch an epoch)": Case(
        "nade", set_in("training", "batch_size", value=10**12), ("resume",)
    ),
    "huge but finite weights (the compiled loops meet infinite logits)": Case(
        "rbm", weights("weight", lambda w: w.sign() * 3e38), RBM_STATE
    ),
    "huge but finite biases": Case(
        "rbm",
        retensor(
            "model",
            lambda t: t.update(
                visible_bias=torch.full_like(t["visible_bias"], 3e38),
                hidden_bias=torch.full_like(t["hidden_bias"], -3e38),
            ),
        ),
        RBM_STATE,
    ),
    "nade huge but finite weights": Case("nade", weights("readout.weight", lambda w: w.sign() * 3e38), NADE_DATA),
    "no history entry (the model without its history)": Case("rbm", set_in("history", delete=True), RBM_STATE),
}

# Cases that also run as real subprocesses, under an address-space limit and a timeout: the ones that
# could allocate without bound, hang on a read, or crash compiled code (a signal, not an exit code).
# Each runs the commands named here (a subprocess costs seconds: torch is imported afresh).
SUBPROCESS_CASES = {
    "rbm num_hidden 10**9 under a raised budget": ("sample",),
    "nade width 10**6": ("sample",),
    "config.json of 100 MB": ("sample",),
    "config.json a FIFO": ("sample",),
    "history.jsonl a FIFO": ("resume",),
    "persistent chains 2**40": ("resume",),  # unchecked, this kills the compiled training loop (SIGSEGV)
}
SLOW_SUBPROCESS_CASES = {
    "rbm num_hidden 10**9": ("sample", "resume"),
    "rbm num_visible 10**12": ("sample",),
    "rbm num_categories 2**40": ("sample",),
    "nade depth 10**9": ("sample",),
    "nade width 10**6": ("inpaint", "evaluate"),
    "captioned caption_vocab_size 10**12": ("sample",),
    "config.json nested 100000 deep": ("sample",),
    "config.json a link to /dev/zero": ("sample",),
    "history nested 100000 deep": ("sample",),
    "history.jsonl a link to /dev/zero": ("sample",),
    "history.jsonl a FIFO": ("sample",),
    "data file a FIFO": ("sample",),
    "header claims 2**40 floats": ("sample",),
    "header length 2**60": ("sample",),
    "NaN weight": ("sample", "resume"),
    "persistent chains negative": ("sample", "resume"),
    "persistent chains = K": ("sample", "resume"),
    "data value = K": ("resume", "evaluate"),
    "rbm training batch_size 10**12": ("resume",),
    "rbm training cd_steps 10**9": ("resume",),
}


@pytest.fixture(scope="module")
def copies(work, bases, corpus, images) -> Copies:
    copies = Copies(work / "cases", bases, corpus, images)
    for base, folder in bases.items():  # untouched copies outside the cases' folders, for links to point at
        shutil.copytree(folder, copies.root / f"pristine-{base}")
    return copies


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)[:60] + f"-{list(CASES | ACCEPTED).index(name)}"


def prepared(copies: Copies, name: str, prefix: str = "") -> dict:
    """A damaged copy for case ``name``: its command lines, by kind."""
    case = (CASES | ACCEPTED)[name]
    folder = copies.copy(case.base, prefix + slug(name))
    case.mutate(folder)
    return copies.commands(case.base, folder, case.commands)


def check_error(name: str, kind: str, result: Result) -> None:
    assert result.returncode >= 0, f"{name} ({kind}): killed by signal {-result.returncode}\n{result.stderr[-3000:]}"
    try:
        line = assert_clean_error(result)
    except AssertionError as err:
        raise AssertionError(f"{name} ({kind}): {err}") from None
    says = CASES[name].says
    assert says in line, f"{name} ({kind}): expected the error to mention {says!r}: {line}"


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.here])
def test_a_hostile_checkpoint_fails_cleanly(name, copies, monkeypatch):
    for variable, value in (CASES[name].env or {}).items():
        monkeypatch.setenv(variable, value)
    for kind, argv in prepared(copies, name).items():
        check_error(name, kind, gibbsdream_here(*argv))


@pytest.mark.parametrize("name", ACCEPTED)
def test_a_harmless_oddity_still_loads_and_works(name, copies):
    for kind, argv in prepared(copies, name).items():
        result = gibbsdream_here(*argv)
        assert_ok(result)
        assert "error" not in result.stderr, f"{name} ({kind}): {result.stderr}"


def limited(argv: list, env: dict | None = None, timeout: float = 120) -> Result:
    """Run the CLI in a subprocess whose address space is capped at MEMORY_LIMIT."""

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    argv = [str(a) for a in argv]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gibbsdream.cli", *argv],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**ENV, **(env or {})},
            timeout=timeout,
            preexec_fn=cap,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} did not finish in {timeout} s (a read that blocks?)")
    return Result(argv, done.returncode, done.stdout, done.stderr)


def run_in_subprocesses(copies: Copies, cases: dict, prefix: str) -> dict:
    jobs = [
        (name, kind, argv)
        for name, kinds in cases.items()
        for kind, argv in prepared(copies, name, prefix).items()
        if kind in kinds
    ]
    with ThreadPoolExecutor(2) as pool:
        futures = [(name, kind, pool.submit(limited, argv, CASES[name].env)) for name, kind, argv in jobs]
        return {(name, kind): future.result() for name, kind, future in futures}


@pytest.fixture(scope="module")
def subprocess_runs(copies) -> dict:
    return run_in_subprocesses(copies, SUBPROCESS_CASES, "sub-")


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_a_hostile_checkpoint_fails_cleanly_in_a_limited_subprocess(name, subprocess_runs):
    runs = {kind: result for (case, kind), result in subprocess_runs.items() if case == name}
    assert set(runs) == set(SUBPROCESS_CASES[name])
    for kind, result in runs.items():
        check_error(name, kind, result)


@pytest.mark.slow
def test_more_hostile_checkpoints_fail_cleanly_in_limited_subprocesses(copies):
    failures = []
    for (name, kind), result in run_in_subprocesses(copies, SLOW_SUBPROCESS_CASES, "slow-").items():
        try:
            check_error(name, kind, result)
        except AssertionError as err:
            failures.append(str(err)[:2000])
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_a_huge_image_codec_without_data_fails_cleanly(copies):
    # Without data nothing pins the codec's image size; sampling's memory check (or, behind it, the
    # CLI's out-of-memory line) refuses chains of that size.
    folder = copies.copy("nade", "huge-codec")
    in_sequence(
        set_in("codec", "height", value=2**14),
        set_in("codec", "width", value=2**14),
        set_in("files", "data", delete=True),
    )(folder)
    result = limited(["sample", folder, "--chains", 2, "--steps", 2, "--out", folder / "out", "--quiet"])
    assert result.returncode >= 0
    assert_clean_error(result)


def test_the_case_lists_name_real_cases():
    for table in (SUBPROCESS_CASES, SLOW_SUBPROCESS_CASES):
        assert all(set(kinds) <= set(CASES[name].commands) for name, kinds in table.items())
    assert all(
        name in SUBPROCESS_CASES or name in SLOW_SUBPROCESS_CASES for name, case in CASES.items() if not case.here
    )


# ---- random edits of config.json ------------------------------------------------------------------


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2, 3, 4, 6, 8, 16, 27, 255, 256, 2**31, 2**40, 10**9, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
SECTIONS = ("model", "codec", "files", "trainer")


def edit_paths(config: dict, section: str) -> list:
    """Where a random value may go: the section itself, any of its keys (and a new one), and one level
    further down (a file's entry, an optimizer group's setting, an element of a list)."""
    entry = config.get(section)
    paths = [(section,), (section, "unknown")]
    for key, value in entry.items() if isinstance(entry, dict) else ():
        paths.append((section, key))
        if isinstance(value, dict):
            paths += [(section, key, inner) for inner in value]
        if isinstance(value, list):
            paths += [(section, key, i) for i in range(len(value))]
            paths += [(section, key, 0, inner) for inner in (value[0] if value and isinstance(value[0], dict) else ())]
    return paths


def put(config: dict, path: tuple, value) -> None:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def use(ckpt) -> None:
    """A cheap use of a loaded checkpoint: a few sampling steps (strings) or one network call (images)."""
    from gibbsdream.sampling import sample

    model = ckpt.model
    if ckpt.family == "rbm":
        chain = sample(model, num_chains=2, steps=2, seed=0, codec=ckpt.codec, data=ckpt.data.get("train"))
        if ckpt.codec is not None:
            ckpt.codec.decode(chain.samples)
        model.free_energy(ckpt.data["train"][:2])
    else:
        C, H, W = ckpt.codec.shape if ckpt.codec is not None else (model.channels, 4, 4)
        x = torch.zeros(2, C, H, W, dtype=torch.long)
        assert torch.isfinite(model.logits(x, torch.zeros_like(x, dtype=torch.bool))).all()


RANDOM_EDITS = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@settings(max_examples=100, **RANDOM_EDITS)
@given(data=st.data())
def test_random_config_edits_load_or_fail_with_a_usage_error(data, copies):
    random_edit(data, copies)


@pytest.mark.slow
@settings(max_examples=3000, **RANDOM_EDITS)
@given(data=st.data(), salt=st.integers(0, 2**32))  # other draws than the default run's
def test_many_more_random_config_edits(data, salt, copies):
    random_edit(data, copies)


def random_edit(data, copies) -> None:
    """Replace one entry of a base checkpoint's config.json by a random JSON value, then load the copy
    (in this process) and use it: it must load, or raise UsageError, and nothing else; an edit of the
    trainer's entry is also resumed, which must train or end in one clean error line."""
    base = data.draw(st.sampled_from(sorted(copies.bases)), label="base")
    section = data.draw(st.sampled_from(SECTIONS), label="section")
    config = read_config(copies.bases[base])
    path = data.draw(st.sampled_from(edit_paths(config, section)), label="path")
    put(config, path, data.draw(JSON_VALUES, label="value"))
    folder = Path(tempfile.mkdtemp(dir=copies.root, prefix="random-")) / "ckpt"
    shutil.copytree(copies.bases[base], folder)
    write_config(folder, config)
    try:
        ckpt = load_checkpoint(folder)
    except UsageError:
        event(f"{section}: refused")
    else:
        event(f"{section}: loaded")
        use(ckpt)
    if section == "trainer":  # what --resume reads
        argv = copies.commands(base, folder, ["resume"])["resume"]
        result = gibbsdream_here(*argv)
        assert "Traceback" not in result.stderr, result.stderr
        event(f"resume: exit {result.returncode}")
        if result.returncode != 0:
            assert_clean_error(result)
    shutil.rmtree(folder.parent)


# ---- format 1 ---------------------------------------------------------------------------------------------


def to_format_1(folder: Path) -> None:
    """Rewrite a format-2 checkpoint as the previous format wrote it: fixed file names, checksums in
    config.json, no "history" entry (all of history.jsonl belonged to the checkpoint)."""
    config = read_config(folder)
    checksums = {}
    for name, entry in config.pop("files").items():
        (folder / entry["file"]).rename(folder / f"{name}.safetensors")
        checksums[name] = entry["sha256"]
    config.pop("history")
    config.update(format_version=1, checksums=checksums)
    write_config(folder, config)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_format_1_loads_samples_the_same_and_resumes_into_format_2(copies, corpus):
    old, new = copies.copy("rbm", "format-1"), copies.copy("rbm", "format-2")
    to_format_1(old)
    assert sorted(p.name for p in old.glob("*.safetensors")) == [
        "data.safetensors",
        "model.safetensors",
        "trainer.safetensors",
    ]
    a, b = load_checkpoint(old), load_checkpoint(new)
    assert same_tensors(a.model.state_dict(), b.model.state_dict())
    assert same_tensors(a.data, b.data) and same_tensors(a.trainer, b.trainer)
    assert a.history == b.history and len(a.history) == 2
    assert checkpoint_identity(old) == checkpoint_identity(new)
    args = ["--chains", 4, "--steps", 20, "--seed", 3, "--quiet", "--device", "cpu"]
    sampled = [gibbsdream_here("sample", folder, *args) for folder in (old, new)]
    for result in sampled:
        assert_ok(result)
    assert sampled[0].stdout == sampled[1].stdout and sampled[0].stdout

    resumed = [
        gibbsdream_here("train", "rbm", "--data", corpus, *RBM_ARGS, "--epochs", 3, "--out", folder, "--resume")
        for folder in (old, new)
    ]
    for result in resumed:
        assert_ok(result)
    config = read_config(old)
    assert config["format_version"] == 2 and "checksums" not in config and config["history"]["rows"] == 3
    assert sorted(p.name for p in old.glob("*.safetensors")) == sorted(e["file"] for e in config["files"].values())
    assert not any((old / f"{name}.safetensors").exists() for name in TENSOR_FILES)
    a, b = load_checkpoint(old), load_checkpoint(new)  # the same run as the one that never changed format
    assert same_tensors(a.model.state_dict(), b.model.state_dict()) and same_tensors(a.trainer, b.trainer)
    assert [row["epoch"] for row in a.history] == [1, 2, 3]


def test_a_format_1_checkpoint_is_checked_as_format_2_is(copies):
    folder = copies.copy("rbm", "format-1-damaged")
    to_format_1(folder)
    path = folder / "trainer.safetensors"
    tensors = load_file(path)
    tensors["persistent_chains"] = torch.full_like(tensors["persistent_chains"], 27)
    payload = save(tensors)
    path.write_bytes(payload)
    config = read_config(folder)
    config["checksums"]["trainer"] = hashlib.sha256(payload).hexdigest()
    write_config(folder, config)
    line = assert_clean_error(gibbsdream_here("sample", folder, "--steps", 2, "--quiet", "--device", "cpu"))
    assert "outside [0, 27)" in line


# ---- two more loader bugs -------------------------------------------------------------------------


def test_a_tensor_file_swapped_between_the_header_check_and_the_read_is_refused(copies, monkeypatch):
    """The header is checked through one open, the data read through another: a file replaced in
    between (by another process) must not get past the shape checks."""
    from gibbsdream import checkpoint as io

    folder = copies.copy("rbm", "swapped")
    real = io.load_file

    def swapped(path, *args, **kwargs):
        tensors = real(path, *args, **kwargs)
        if "persistent_chains" in tensors:
            tensors["persistent_chains"] = tensors["persistent_chains"][:, :-1]  # narrower than the header said
        return tensors

    monkeypatch.setattr(io, "load_file", swapped)
    with pytest.raises(UsageError, match="changed while it was read"):
        load_checkpoint(folder)


def test_a_history_with_unicode_line_separators_loads(work):
    """history.jsonl rows end at "\\n" only: fantasies drawn from a corpus with U+2028 or U+0085 in it
    (written unescaped, as ensure_ascii=False does) once made the checkpoint unreadable."""
    corpus = work / "separators.txt"
    corpus.write_text(
        "\n".join(["a\u2028b\x85c", "\u2028\u2028a", "b\x85\x85", "ab\u2028"] * 30) + "\n", encoding="utf-8"
    )
    out = work / "separators"
    # --monitor-every 1, the default when this was written: fantasies in every row
    train = ("train", "rbm", "--data", corpus, "--hidden", 8, "--epochs", 2, "--monitor-every", 1)
    assert_ok(gibbsdream_here(*train, "--quiet", "--device", "cpu", "--out", out))
    text = (out / "history.jsonl").read_text(encoding="utf-8")
    assert "\u2028" in text or "\x85" in text  # what the rows hold, unescaped
    assert len(load_checkpoint(out).history) == 2
    assert_ok(gibbsdream_here("sample", out, "--steps", 3, "--chains", 2, "--quiet", "--device", "cpu"))
