"""Training Orderless NADE on random masks, on one process or many (DistributedDataParallel).

Every update draws a fresh known-mask for each image from the mask distribution, predicts the
unknown variables at once and takes the loss over them (:func:`unknown_loss`). Adam, with the
learning rate cut when the validation loss stops improving (``ReduceLROnPlateau``).

Runs unchanged under ``torchrun``: when ``WORLD_SIZE`` > 1 each process trains on its share of
every epoch's shuffled images and DDP averages the gradients (gloo on CPU, NCCL on CUDA). Rank 0
alone writes checkpoints and draws the progress bar.

Resuming is exact: the epoch's shuffle comes from ``(seed, epoch)`` and each batch's masks from
``(seed, rank, epoch, batch)``, and a run stopped by ``max_time`` in the middle of an epoch
records the batch to continue from.

With captions (``train_captions``, a ``(N, M, T)`` table of every image's captions as token ids),
every example draws one of its captions each time it is seen, from its own
``(seed, rank, epoch, batch)`` generator, and trains without it with probability
``caption_dropout``, so one model inpaints with or without a caption.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import distributed as dist

from ..checkpoint import save_checkpoint
from ..data.captions import draw_captions
from ..data.masks import training_masks
from ..errors import ConfigError, UsageError, check_finite
from ..models.nade import CAPTION_FIELDS, NADEConfig
from ..progress import progress_bar
from ..randomness import check_seed, make_generator
from ..sampling.api import check_count
from .legacy import accepts_model_fields
from .losses import LOSSES, unknown_loss
from .runs import Timings

PRECISIONS = ("float32", "bfloat16")  # of the network's forward pass while training
# The batch size when none is given, by the size of an image: at 64x64 RGB (12,288 values) batch 8
# reached a validation loss of 28,954 nats in 195 s where batch 64 was at 41,536 after 201 s, on 2
# CPU cores (docs/benchmarks.md); smaller images keep the batch of 64 they were tuned with.
DEFAULT_BATCH_SIZE = 64
LARGE_IMAGE_VALUES = 4096  # above this many values per image (32x32 RGB has 3,072) ...
LARGE_IMAGE_BATCH_SIZE = 8  # ... the default batch is this


def default_batch_size(values: int) -> int:
    """The images per update when none are given, for images of ``values`` values (C x H x W)."""
    return LARGE_IMAGE_BATCH_SIZE if values > LARGE_IMAGE_VALUES else DEFAULT_BATCH_SIZE


# The model fields NADETrainConfig held before they moved to NADEConfig (see training.legacy).
MOVED_TO_MODEL = ("width", "depth", "kernel_size", "dilations", "residual", *CAPTION_FIELDS)


@accepts_model_fields(NADEConfig, MOVED_TO_MODEL)
@dataclass
class NADETrainConfig:
    """Hyper-parameters of Orderless NADE training (all have working defaults); the model's shape is
    its :class:`~gibbsdream.models.nade.NADEConfig` (the model fields are still accepted here, for
    :meth:`model_config`)."""

    epochs: int = 200
    max_time: float | None = None  # seconds; stop cleanly and save when reached
    batch_size: int | None = None  # None: by the images' size (default_batch_size), fixed when training starts
    learning_rate: float = 1e-3
    lr_factor: float = 0.5  # the learning rate is multiplied by this on a plateau
    lr_patience: int = 5  # epochs without validation improvement before a cut
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 10.0  # max gradient norm; 0 = no clipping
    masks: str = "orderless"
    loss: str = "ce"
    rescale: bool = True  # Uria et al.'s D / (D - d + 1) weighting
    # "bfloat16": the network's forward pass under autocast (its convolutions and readout in
    # bfloat16), the loss and the weights in float32; validation stays float32 (docs/benchmarks.md)
    precision: str = "float32"
    validation_fraction: float = 0.1
    seed: int = 0
    # captions (used when the data has them; see gibbsdream.models.captions)
    captions: bool = False
    caption_dropout: float = 0.2  # chance that an example trains without its caption
    caption_min_count: int = 2  # rarer words become the unknown token
    caption_max_length: int = 24  # words read per caption

    def check(self) -> NADETrainConfig:
        """Raise a ConfigError naming the first impossible field; returns self."""
        # NaN passes every comparison (nan < 0 is False), so non-finite numbers are refused first.
        check_finite(self, [f.name for f in fields(self)])
        check_seed(self.seed, f"{type(self).__name__}.seed")
        if self.model_fields:  # given the old way: checked (and dilations made a tuple) as the model's config
            self.model_fields["dilations"] = self._model_config().check().dilations
        check_count("epochs", self.epochs)
        if self.batch_size is not None:
            check_count("batch_size", self.batch_size)
        check_count("lr_patience", self.lr_patience, least=0)
        for name in ("learning_rate", "min_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}", name)
        if not 0 < self.lr_factor < 1:
            raise ConfigError(f"lr_factor must lie in (0, 1), got {self.lr_factor}", "lr_factor")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0", "weight_decay", "grad_clip")
        if self.max_time is not None and (
            isinstance(self.max_time, bool) or not isinstance(self.max_time, (int, float)) or not self.max_time > 0
        ):
            raise ConfigError(f"max_time must be a positive number of seconds, got {self.max_time!r}", "max_time")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}", "precision")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}", "loss")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must lie in (0, 1), got {self.validation_fraction}", "validation_fraction"
            )
        training_masks(self.masks)  # raises a UsageError naming the valid kinds
        if not 0 <= self.caption_dropout < 1:
            raise ConfigError(f"caption_dropout must lie in [0, 1), got {self.caption_dropout}", "caption_dropout")
        for name in ("caption_min_count", "caption_max_length"):
            check_count(name, getattr(self, name))
        return self

    def _model_config(self, channels: int = 1, levels: int = 17, caption_vocab_size: int = 0) -> NADEConfig:
        fields_given = {name: getattr(self, name) for name in MOVED_TO_MODEL}
        return NADEConfig(channels, levels, caption_vocab_size=caption_vocab_size, **fields_given)

    def model_config(self, channels: int, levels: int, caption_vocab_size: int = 0) -> dict:
        """The model config built from the model fields given to this config (the form of the versions
        where they lived here), as the dict a checkpoint saves: ``OrderlessNADE(**config.model_config(...))``."""
        return self._model_config(channels, levels, caption_vocab_size).to_dict()


def parse_duration(text: str) -> float:
    """``"8m"``, ``"90s"``, ``"1h30m"``, ``"2.5h"`` or plain seconds -> seconds."""
    text = str(text).strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise UsageError(f"cannot read the duration {text!r}; write e.g. 90s, 8m, 1h30m or 2.5h")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise UsageError(f"the duration {text!r} must be positive")
    return total


def split_images(
    states: torch.Tensor,
    holdout: int | float,
    seed: int,
    setting: str = "test_size",
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``(N, C, H, W)`` with ``seed`` and hold out ``holdout`` images (a count, or a fraction
    < 1); too many is a ConfigError about ``setting``, the setting that asked for them.

    ``groups``: ``(N,)`` ids of images that must stay together (the skin tones of one emoji). Then
    whole groups are held out, shuffled with ``seed``: as near ``holdout`` images as group
    boundaries allow, at least one group on each side when ``holdout`` asks for any; each side is
    then shuffled so that a group's images are not all next to each other. Without ``groups`` the
    split is what it always was for the same seed.
    """
    n = states.shape[0]
    count = round(holdout * n) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 <= count < n:
        raise ConfigError(f"cannot hold out {count} of {n} images; make {setting} smaller", setting)
    generator = make_generator(seed, "cpu")
    if groups is None:
        order = torch.randperm(n, generator=generator)
        return states[order[: n - count]], states[order[n - count :]]
    _, group = torch.unique(torch.as_tensor(groups).reshape(-1), return_inverse=True)
    if group.shape[0] != n:
        raise ConfigError(f"groups has {group.shape[0]} ids for {n} images; give one per image", "groups")
    place = torch.randperm(int(group.max()) + 1 if n else 0, generator=generator)  # each group's place
    order = torch.argsort(place[group], stable=True)  # images by their group's place
    sizes = torch.bincount(place[group], minlength=place.shape[0])  # by place
    ends = torch.cumsum(sizes, 0)  # the training side can end after any whole group
    cut = n
    if count:
        inside = ends[ends < n]
        if not len(inside):
            raise ConfigError(
                f"cannot hold out any of {n} images without splitting their one group; make {setting} 0", setting
            )
        cut = int(inside[torch.argmin((inside - (n - count)).abs())])
    train, held = order[:cut], order[cut:]
    train = train[torch.randperm(len(train), generator=generator)]
    held = held[torch.randperm(len(held), generator=generator)]
    return states[train], states[held]


# ---- distributed --------------------------------------------------------------------------------


@dataclass
class Distributed:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device, init_method: str | None = None) -> Distributed:
    """Join the process group that ``torchrun`` (or the caller) describes through the environment.

    ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` come from torchrun. ``init_method`` (or the
    ``GIBBSDREAM_INIT_METHOD`` variable, e.g. ``file:///shared/rendezvous``) overrides the default
    ``env://`` rendezvous. A world of one needs no process group at all.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=init_method or os.environ.get("GIBBSDREAM_INIT_METHOD", "env://"),
            rank=rank,
            world_size=world_size,
        )
    return Distributed(rank, world_size, local_rank)


def _all_reduce_sum(values: torch.Tensor, where: Distributed) -> torch.Tensor:
    if where.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


# ---- the trainer --------------------------------------------------------------------------------


@dataclass
class NADETrainer:
    """Trains ``model`` on ``train`` images, watching the loss on ``validation``.

    Args:
        model: an :class:`~gibbsdream.models.nade.OrderlessNADE`, already on its device.
        train, validation: ``(N, C, H, W)`` long level indices (on any device).
        train_captions, validation_captions: for a captioned model, ``(N, M, T)`` long token ids
            of every image's captions (:func:`gibbsdream.data.captions.caption_table`).
    """

    model: torch.nn.Module
    config: NADETrainConfig
    train: torch.Tensor
    validation: torch.Tensor
    where: Distributed = field(default_factory=Distributed)
    history: list = field(default_factory=list)
    train_captions: torch.Tensor | None = None
    validation_captions: torch.Tensor | None = None

    def __post_init__(self):
        self.device = next(self.model.parameters()).device
        self.masks = training_masks(self.config.masks)
        self.shape = tuple(self.train.shape[1:])
        if self.config.batch_size is None:  # saved with the run as the number it became
            self.config.batch_size = default_batch_size(math.prod(self.shape))
        self._channels_last(True)  # before DDP lays its buckets out as the parameters are
        self.network = self.model
        if self.where.active:
            ids = [self.where.local_rank] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=self.config.lr_factor, patience=self.config.lr_patience, min_lr=self.config.min_lr
        )
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch (non-zero only after a timed stop)
        self.elapsed = 0.0  # training seconds over all sessions
        self.stopped_by_time = False
        self.partial_loss = (0.0, 0)  # (loss sum, images) of an epoch interrupted by max_time
        self.timings = Timings()  # this session's seconds of updates and validation (not saved)

    def _channels_last(self, on: bool) -> None:
        """Lay the model's 4-D weights out channels-last (``on``) or contiguous.

        The convnet's activations are channels-last (:meth:`OrderlessNADE._embed`), so its convolutions
        return their weights' gradients channels-last; while training, the weights are laid out so too,
        so that every gradient has its parameter's strides, as DDP's gradient buckets (laid out as the
        parameters) need. With contiguous weights the 1x1 convolutions' gradients did not match, and
        DDP warned "Grad strides do not match bucket view strides" once per process and copied them.
        The readout is the exception: training reads it out as a matrix at the unknown variables only
        (:meth:`OrderlessNADE.logits_at`), and that gradient comes out contiguous.
        After training the weights are contiguous again: ``model.state_dict()`` saves anywhere.
        """
        self.model.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        readout = self.model.readout.weight
        readout.data = readout.data.clone(memory_format=torch.contiguous_format)

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's images for ``epoch``: a (seed, epoch) shuffle, split between ranks."""
        order = torch.randperm(self.train.shape[0], generator=make_generator(self.config.seed * 100003 + epoch, "cpu"))
        usable = order.shape[0] - order.shape[0] % self.where.world_size  # equal shares keep DDP in step
        return order[:usable][self.where.rank :: self.where.world_size]

    def _mask_generator(self) -> torch.Generator:
        """A fresh generator for this (seed, rank, epoch, batch): masks never depend on where a run was resumed."""
        key = f"{self.config.seed}/{self.where.rank}/{self.epoch}/{self.batch}".encode()
        return make_generator(int.from_bytes(hashlib.blake2b(key, digest_size=7).digest(), "little"), self.device)

    def _caption_generator(self) -> torch.Generator:
        """Like :meth:`_mask_generator`, for drawing (and dropping) this batch's captions."""
        key = f"{self.config.seed}/{self.where.rank}/{self.epoch}/{self.batch}/captions".encode()
        return make_generator(int.from_bytes(hashlib.blake2b(key, digest_size=7).digest(), "little"), "cpu")

    def _loss(self, network, x: torch.Tensor, known: torch.Tensor, context=None, precision="float32") -> torch.Tensor:
        # The logits of the unknown variables only: the known ones' would be computed and thrown away.
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            logits = network(x, known, context, where=~known)
        return unknown_loss(logits.float(), x, known, self.config.loss, self.config.rescale)

    @torch.no_grad()
    def validation_loss(self, batch_size: int = 256) -> float:
        """Mean validation loss under masks from a fixed seed (comparable across epochs)."""
        if self.validation.shape[0] == 0:
            return float("nan")
        generator = make_generator(self.config.seed + 424242, self.device)
        self.model.eval()
        total = torch.zeros(2, device=self.device, dtype=torch.float64)
        shard = torch.arange(self.validation.shape[0])[self.where.rank :: self.where.world_size]
        for start in range(0, shard.shape[0], batch_size):
            rows = shard[start : start + batch_size]
            x = self.validation[rows].to(self.device).long()
            known = self.masks(x.shape[0], self.shape, generator, self.device)
            # every image with its first caption: the same question every epoch
            context = None if self.validation_captions is None else self.validation_captions[rows, 0].to(self.device)
            losses = self._loss(self.model, x, known, context)
            total += torch.stack(
                [losses.sum().double(), torch.tensor(float(x.shape[0]), device=self.device, dtype=torch.float64)]
            )
        self.model.train()
        total = _all_reduce_sum(total, self.where)
        return (total[0] / total[1]).item()

    def _out_of_time(self, started: float) -> bool:
        if self.config.max_time is None:
            return False
        flag = torch.tensor(
            [float(self.elapsed + time.perf_counter() - started >= self.config.max_time)], device=self.device
        )
        return bool(_all_reduce_sum(flag, self.where).item() > 0)  # every rank stops at the same batch

    def fit(self, progress: bool = True, on_save=None) -> NADETrainer:
        """Train until ``config.epochs`` or ``config.max_time``; ``on_save(self)`` after every epoch and at a
        timed stop. ``timings`` adds up the seconds of the updates and of the validation passes."""
        self._channels_last(True)
        try:
            return self._fit(progress, on_save)
        finally:
            self._channels_last(False)

    def _fit(self, progress: bool, on_save) -> NADETrainer:
        self.model.train()
        started = time.perf_counter()
        self.stopped_by_time = False
        while self.epoch < self.config.epochs and not self.stopped_by_time:
            order = self._epoch_order(self.epoch)
            num_batches = -(-order.shape[0] // self.config.batch_size)
            epoch_started = time.perf_counter()
            # A resumed epoch starts from the (all-ranks) loss sum of the batches run before the stop.
            loss_sum = torch.tensor(
                self.partial_loss[0] if self.where.is_main else 0.0, device=self.device, dtype=torch.float64
            )
            seen = self.partial_loss[1] if self.where.is_main else 0
            self.partial_loss = (0.0, 0)
            with progress_bar(
                num_batches - self.batch, f"epoch {self.epoch + 1}", enabled=progress and self.where.is_main
            ) as advance:
                while self.batch < num_batches:
                    if self._out_of_time(started):
                        self.stopped_by_time = True
                        break
                    rows = order[self.batch * self.config.batch_size : (self.batch + 1) * self.config.batch_size]
                    x = self.train[rows].to(self.device, non_blocking=True).long()
                    known = self.masks(x.shape[0], self.shape, self._mask_generator(), self.device)
                    context = None
                    if self.train_captions is not None:
                        context = draw_captions(
                            self.train_captions[rows], self.config.caption_dropout, self._caption_generator()
                        ).to(self.device)
                    loss = self._loss(self.network, x, known, context, self.config.precision).mean()
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.config.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                    self.optimizer.step()
                    loss_sum += loss.detach().double() * x.shape[0]
                    seen += x.shape[0]
                    self.batch += 1
                    advance(status=f"loss {loss.item():.3f}" if self.batch % 10 == 0 else "")
            self.timings.training += time.perf_counter() - epoch_started
            if self.stopped_by_time and self.batch < num_batches:
                partial = _all_reduce_sum(
                    torch.stack([loss_sum, torch.tensor(float(seen), device=self.device, dtype=torch.float64)]),
                    self.where,
                )
                self.partial_loss = (partial[0].item(), int(partial[1].item()))
                self.elapsed += time.perf_counter() - started
                started = time.perf_counter()
                if on_save is not None and self.where.is_main:
                    on_save(self)
                break
            train_stats = _all_reduce_sum(
                torch.stack([loss_sum, torch.tensor(float(seen), device=self.device, dtype=torch.float64)]), self.where
            )
            validating = time.perf_counter()
            validation = self.validation_loss()
            self.timings.monitoring += time.perf_counter() - validating
            self.timings.checks += 1
            self.scheduler.step(
                validation if math.isfinite(validation) else train_stats[0].item() / max(train_stats[1].item(), 1)
            )
            self.epoch += 1
            self.batch = 0
            self.elapsed += time.perf_counter() - started
            started = time.perf_counter()
            self.history.append(
                {
                    "epoch": self.epoch,
                    "seconds": round(time.perf_counter() - epoch_started, 3),
                    "elapsed": round(self.elapsed, 3),
                    "learning_rate": self.learning_rate,
                    "train_loss": train_stats[0].item() / max(train_stats[1].item(), 1),
                    "validation_loss": validation,
                }
            )
            if on_save is not None and self.where.is_main:
                on_save(self)
        return self

    # ---- checkpoint state -----------------------------------------------------------------------

    def state_tensors(self) -> dict:
        """Optimizer moments and the mask generator, for ``trainer.safetensors``."""
        tensors = {}
        for index, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                tensors[f"adam.{index}.{name}"] = torch.as_tensor(value)
        return tensors

    def state_json(self) -> dict:
        groups = self.optimizer.state_dict()["param_groups"]
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "elapsed": self.elapsed,
            "partial_loss": list(self.partial_loss),
            "optimizer_groups": json.loads(json.dumps(groups, default=list)),
            "scheduler": {
                k: v
                for k, v in self.scheduler.state_dict().items()
                if isinstance(v, (int, float, str, list, type(None)))
            },
        }

    def apply_settings(self) -> None:
        """Push the config's optimizer and plateau-schedule settings into the optimizer and scheduler
        (after :meth:`load_state` restored the saved ones, to continue with changed settings)."""
        for group in self.optimizer.param_groups:
            group["lr"], group["weight_decay"] = self.config.learning_rate, self.config.weight_decay
        self.scheduler.factor, self.scheduler.patience = self.config.lr_factor, self.config.lr_patience
        self.scheduler.min_lrs = [self.config.min_lr] * len(self.optimizer.param_groups)

    def load_state(self, tensors: dict, saved: dict) -> None:
        """Restore what :meth:`state_tensors` and :meth:`state_json` saved (a damaged state is a UsageError)."""
        if not isinstance(saved, dict):
            raise _damaged("its trainer entry")
        saved = {"partial_loss": [0.0, 0], **saved}
        epoch, batch, elapsed, partial = (saved.get(k) for k in ("epoch", "batch", "elapsed", "partial_loss"))
        if not (
            _same_kind(0, epoch)
            and epoch >= 0
            and _same_kind(0, batch)
            and batch >= 0
            and _same_kind(0.0, elapsed)
            and elapsed >= 0
        ):
            raise _damaged("its epoch, batch or elapsed time")
        if not (_same_kind([0.0, 0], partial) and partial[1] >= 0):
            raise _damaged("partial_loss")
        fresh = self.optimizer.state_dict()["param_groups"]
        groups = saved.get("optimizer_groups")
        if not isinstance(groups, list) or len(groups) != len(fresh):
            raise _damaged("optimizer_groups")
        groups = [_restored(f, g, "optimizer_groups") for f, g in zip(fresh, groups)]
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(self.device) if name != "step" else value
        moments = {"step", "exp_avg", "exp_avg_sq"} | (
            {"max_exp_avg_sq"} if any(g.get("amsgrad") for g in groups) else set()
        )
        parameters = sum(len(g["params"]) for g in fresh)
        if state and (set(state) != set(range(parameters)) or any(not moments <= set(s) for s in state.values())):
            raise _damaged("the Adam moments of some weights are missing")
        scheduler_state = self.scheduler.state_dict()
        # Non-finite numbers are saved as null (JSON has none); null then keeps the fresh default
        # (the plateau scheduler's "best" starts at infinity).
        scheduler_state = _restored(scheduler_state, saved.get("scheduler", {}), "scheduler")
        try:
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            self.scheduler.load_state_dict(scheduler_state)
        except (ValueError, TypeError, KeyError, RuntimeError):
            raise _damaged("the optimizer or scheduler settings") from None
        self.epoch, self.batch, self.elapsed = saved["epoch"], saved["batch"], float(saved["elapsed"])
        self.partial_loss = (float(saved["partial_loss"][0]), saved["partial_loss"][1])


def _damaged(what: str) -> UsageError:
    return ConfigError(
        f"the checkpoint's training state is damaged ({what}), so it cannot be resumed; restore it, "
        "or train into a new out folder",
        "out",
    )


def _same_kind(fresh, value) -> bool:
    """Whether a value read from config.json has the kind of ``fresh`` (the value a new trainer has)."""
    if isinstance(fresh, bool):
        return isinstance(value, bool)
    if isinstance(fresh, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(fresh, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(fresh, str):
        return isinstance(value, str)
    if isinstance(fresh, (list, tuple)):
        return isinstance(value, list) and len(value) == len(fresh) and all(map(_same_kind, fresh, value))
    return False  # None: only None (skipped by _restored) fits


def _restored(fresh: dict, saved, what: str) -> dict:
    """``fresh`` (a new optimizer group or scheduler state) with the values ``saved`` holds for its
    keys, each checked to be of the same kind; a null keeps the fresh value, unknown keys are dropped."""
    if not isinstance(saved, dict):
        raise _damaged(what)
    restored = dict(fresh)
    for key, value in saved.items():
        if key == "params" or key not in fresh or value is None:
            continue
        if not _same_kind(fresh[key], value):
            raise _damaged(f"{what}: {key} is {value!r}")
        restored[key] = tuple(value) if isinstance(fresh[key], tuple) else value
    return restored


def save_nade_trainer(trainer: NADETrainer, folder: Path, codec, data: dict, source: dict) -> None:
    """Write the model, data splits, optimizer state and history into a checkpoint folder."""
    save_checkpoint(
        folder,
        trainer.model,
        codec=codec,
        # levels <= 256 fit a byte; caption token ids do not
        data={
            name: tensor.to(torch.int32 if name.startswith("captions.") else torch.uint8)
            for name, tensor in data.items()
        },
        trainer=trainer.state_tensors(),
        extra={
            "training": asdict(trainer.config),
            "trainer": trainer.state_json(),
            "data_source": source,
        },
        history=trainer.history,
    )
