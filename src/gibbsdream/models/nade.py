"""Orderless NADE for images: a convnet from (image, known mask) to logits for every variable.

One *variable* is one pixel in one channel, with ``K`` levels. The network sees the one-hot image
times the known mask, concatenated with the mask itself, so an unknown pixel and a known black
pixel look different. It outputs logits over the ``K`` levels for every pixel and channel; only
the unknown ones are used. Trained on random masks (Uria et al. 2014), it is one model of every
conditional ``p(x_unknown_i | x_known)``, which is all the samplers in
:mod:`gibbsdream.sampling.conditional` need.

Architecture::

    one-hot x (B, C, K, H, W) * known, known (B, C, H, W)
      -> 1x1 input projection (written as an embedding lookup; see ``_embed``)
      -> depth x residual block [ReLU, conv k x k (dilation d_i), ReLU, conv 1x1 ] (+ skip)
      -> ReLU, 1x1 conv to C * K logits  -> (B, C, H, W, K)

Dilations cycle through ``dilations`` (e.g. ``(1, 2, 4)``), so the receptive field grows fast
enough to see across a 64x64 image with a dozen blocks.

With ``caption_vocab_size > 0`` the model also reads a caption: a QRNN encodes the token ids
(:mod:`gibbsdream.models.captions`) and, after every ``caption_merge_every``-th block, a merge
(attention, or a tiled pooled vector) adds what the caption says to the features. The
``context`` of :meth:`OrderlessNADE.logits` is then a ``(B, T)`` or ``(1, T)`` long tensor of
token ids (see :func:`gibbsdream.data.captions.caption_context`), or None for no caption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .captions import MERGE_CLASSES, MERGES, CaptionEncoder
from .shapes import row_offsets

MAX_DEPTH = 1024  # residual blocks (and QRNN layers)
MAX_KERNEL = 63
MAX_DILATION = 4096


@dataclass
class NADEConfig:
    """Shape of an :class:`OrderlessNADE` (saved with its checkpoint)."""

    channels: int = 1  # image channels C (1 grayscale, 3 RGB)
    num_categories: int = 17  # levels K per channel
    width: int = 64  # feature maps in every hidden layer
    depth: int = 6  # residual blocks
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 1, 4)  # cycled through by the blocks
    residual: bool = True
    # captions (all unused while caption_vocab_size is 0: a model without captions)
    caption_vocab_size: int = 0  # token ids, specials included
    caption_embedding: int = 32
    caption_hidden: int = 64  # QRNN states per direction
    caption_kernel: int = 2  # QRNN convolution width over time
    caption_layers: int = 1
    caption_bidirectional: bool = True
    caption_merge: str = "attention"  # or "concat"
    caption_merge_every: int = 2  # a merge after every this many blocks

    def check(self) -> NADEConfig:
        """Raise a ConfigError naming the first impossible field; returns self (dilations as a tuple)."""
        for name in ("channels", "width", "depth", "kernel_size"):
            _check_whole(self, name, 1)
        # Bounds on what loops or pads (the sizes of tensors are bounded by the loading budget):
        # a damaged config must not make building the model hang.
        for name, most in (("depth", MAX_DEPTH), ("kernel_size", MAX_KERNEL)):
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)}", name)
        if (
            isinstance(self.num_categories, bool)
            or not isinstance(self.num_categories, int)
            or not 2 <= self.num_categories <= 256
        ):
            raise ConfigError(
                f"num_categories (levels) must lie in 2..256, got {self.num_categories}", "num_categories"
            )
        if self.kernel_size % 2 == 0:
            raise ConfigError(
                f"kernel_size must be odd so outputs stay aligned with pixels, got {self.kernel_size}", "kernel_size"
            )
        if isinstance(self.dilations, (str, bytes)) or not hasattr(self.dilations, "__iter__"):
            raise ConfigError(
                f"dilations must be whole numbers separated by commas, e.g. 1,2,4; got {self.dilations!r}", "dilations"
            )
        self.dilations = tuple(self.dilations)
        if not self.dilations or any(
            isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DILATION for d in self.dilations
        ):
            raise ConfigError(
                f"dilations must be whole numbers in 1..{MAX_DILATION}, got {list(self.dilations)}", "dilations"
            )
        for name in ("residual", "caption_bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}", name)
        _check_whole(self, "caption_vocab_size", 0)
        if self.caption_vocab_size:
            for name in CAPTION_FIELDS[:5]:
                _check_whole(self, name, 1)
            if self.caption_layers > MAX_DEPTH or self.caption_kernel > MAX_KERNEL:
                raise ConfigError(
                    f"caption_layers and caption_kernel must be at most {MAX_DEPTH} and {MAX_KERNEL}",
                    "caption_layers",
                    "caption_kernel",
                )
            if self.caption_merge not in MERGES:
                raise ConfigError(
                    f"caption_merge must be a caption-merge kind ({', '.join(MERGES)}), got {self.caption_merge!r}",
                    "caption_merge",
                )
        return self

    def to_dict(self) -> dict:
        """The JSON a checkpoint saves (and :class:`OrderlessNADE` reads back with ``OrderlessNADE(**d)``)."""
        config = asdict(self)
        config["dilations"] = list(config["dilations"])
        if not self.caption_vocab_size:  # a model without captions keeps the config of the versions before captions
            config = {k: v for k, v in config.items() if k not in CAPTION_FIELDS and k != "caption_vocab_size"}
        return config

    def __call__(self) -> dict:
        """``model.config()``, the form of the versions where ``config`` was a method: the saved dict."""
        return self.to_dict()

    def merge_after(self) -> list[int]:
        """The blocks after which the caption is merged in (at least the last one)."""
        every = self.caption_merge_every
        return [i for i in range(self.depth) if (i + 1) % every == 0] or [self.depth - 1]


# The fields that shape the caption encoder and its merges (unused while caption_vocab_size is 0).
CAPTION_FIELDS = (
    "caption_embedding",
    "caption_hidden",
    "caption_kernel",
    "caption_layers",
    "caption_merge_every",
    "caption_bidirectional",
    "caption_merge",
)


def _check_whole(config, name: str, least: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}", name)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int, dilation: int, residual: bool):
        super().__init__()
        self.spatial = nn.Conv2d(width, width, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)
        self.mix = nn.Conv2d(width, width, 1)
        self.residual = residual

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.mix(F.relu(self.spatial(F.relu(h))))
        return h + out if self.residual else out


class OrderlessNADE(nn.Module):
    """Orderless NADE convnet over ``(B, C, H, W)`` images of category indices in ``[0, K)``.

    Built from a :class:`NADEConfig` (``OrderlessNADE(config)``) or from its fields, positionally
    in the config's order or by keyword (``OrderlessNADE(channels=3, num_categories=256)``);
    :attr:`config` holds the checked config.

    Works for any image size (it is fully convolutional); the checkpoint's codec records the size
    it was trained on.
    """

    family = "nade"

    def __init__(self, *args, **kwargs):
        super().__init__()
        single = len(args) == 1 and not kwargs and isinstance(args[0], NADEConfig)
        self.config = (args[0] if single else NADEConfig(*args, **kwargs)).check()
        channels, num_categories, width = self.config.channels, self.config.num_categories, self.config.width
        depth, kernel_size, residual = self.config.depth, self.config.kernel_size, self.config.residual
        C, K = channels, num_categories
        self.channels, self.num_categories = C, K
        # A 1x1 convolution over the one-hot input is a sum of looked-up columns: one table row per
        # (channel, level), plus one weight per channel for the mask.
        self.level_embedding = nn.Embedding(C * K, width)
        self.mask_weight = nn.Parameter(torch.zeros(C, width))
        self.input_bias = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(
            ResidualBlock(width, kernel_size, self.config.dilations[i % len(self.config.dilations)], residual)
            for i in range(depth)
        )
        self.readout = nn.Conv2d(width, C * K, 1)
        self.caption_encoder = None
        self.caption_vocabulary = None  # the tokenizer's words (set by training or loading; saved as JSON)
        if self.config.caption_vocab_size:
            s = self.config
            self.caption_encoder = CaptionEncoder(
                s.caption_vocab_size,
                s.caption_embedding,
                s.caption_hidden,
                s.caption_kernel,
                s.caption_bidirectional,
                s.caption_layers,
            )
            self._merge_slots = {block: slot for slot, block in enumerate(s.merge_after())}
            self.merges = nn.ModuleList(
                MERGE_CLASSES[s.caption_merge](width, self.caption_encoder.state_size) for _ in self._merge_slots
            )
        self.register_buffer("channel_offsets", row_offsets(C, K), persistent=False)
        nn.init.normal_(self.level_embedding.weight, std=1.0 / (C**0.5))
        nn.init.normal_(self.mask_weight, std=1.0 / (C**0.5))

    @property
    def settings(self) -> NADEConfig:
        """The model's config (the name it had before :attr:`config`)."""
        return self.config

    def _embed(self, x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The 1x1 projection of ``(one_hot(x) * known, known)``: ``(B, width, H, W)``."""
        rows = self.level_embedding(x + self.channel_offsets.view(1, -1, 1, 1))  # (B, C, H, W, width)
        given = known.unsqueeze(-1).to(rows.dtype)
        features = (rows * given).sum(1) + given.squeeze(-1).movedim(1, -1) @ self.mask_weight + self.input_bias
        # A channels-last view (no copy): the convolutions then run channels-last (training steps on a
        # contiguous copy took 1.07-1.35x as long on the CPU; docs/benchmarks.md). NADETrainer lays the
        # weights out channels-last while it trains, so that their gradients match them.
        return features.movedim(-1, 1)

    def features(self, x: torch.Tensor, known: torch.Tensor, context=None) -> torch.Tensor:
        """The last hidden layer, after its ReLU: ``(B, width, H, W)`` (channels-last in memory).

        Arguments as for :meth:`logits`, which is the 1x1 readout of these features.
        """
        h = self._embed(torch.where(known, x, torch.zeros_like(x)), known)
        if self.caption_encoder is not None:
            states, mask = self.caption_encoder(context, batch=x.shape[0])
            if states.shape[0] != x.shape[0]:  # one caption for every example
                states, mask = states.expand(x.shape[0], -1, -1), mask.expand(x.shape[0], -1)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.caption_encoder is not None and i in self._merge_slots:
                h = self.merges[self._merge_slots[i]](h, states, mask)
        return F.relu(h)

    def logits(self, x: torch.Tensor, known: torch.Tensor, context=None) -> torch.Tensor:
        """Logits of every variable given the known ones.

        Args:
            x: ``(B, C, H, W)`` long, levels in ``[0, K)``; values where ``known`` is False are ignored.
            known: ``(B, C, H, W)`` bool, True = given.
            context: for a captioned model, ``(B, T)`` or ``(1, T)`` long caption token ids
                (PAD = 0; one row serves the whole batch), or None for no caption. Ignored by a
                model without captions.

        Returns:
            ``(B, C, H, W, K)`` unnormalised log-probabilities.
        """
        out = self.readout(self.features(x, known, context))  # (B, C*K, H, W)
        B, _, H, W = out.shape
        return out.view(B, self.channels, self.num_categories, H, W).movedim(2, -1)

    def logits_at(self, x: torch.Tensor, known: torch.Tensor, where: torch.Tensor, context=None) -> torch.Tensor:
        """The logits of :meth:`logits` for the variables where ``where`` is True only: ``(R, K)``.

        ``where``: ``(B, C, H, W)`` bool; the R rows follow its row-major order (as
        ``logits(...)[where]``). The readout, a ``width x C*K`` product that at 256 levels is about
        a sixth of a forward pass's arithmetic and all of its 12 MB-per-image output, runs for the
        variables asked for only: a Gibbs step that redraws a tenth of an image pays a tenth of it.
        """
        B, C, H, W = where.shape
        K = self.num_categories
        h = self.features(x, known, context).permute(0, 2, 3, 1).reshape(B * H * W, -1)  # channels-last: no copy
        b, c, i, j = where.nonzero(as_tuple=True)  # row-major: channel by channel within each example
        features = h.index_select(0, (b * H + i) * W + j)  # (R, width), in the order of the rows asked for
        weight, bias = self.readout.weight.view(C, K, -1), self.readout.bias.view(C, K)
        if C == 1:
            return F.linear(features, weight[0], bias[0])
        if torch.is_grad_enabled():  # training: C products on the rows grouped by channel, then put back in order
            order = c.argsort(stable=True)
            grouped = features[order].split(torch.bincount(c, minlength=C).tolist())
            out = torch.cat([F.linear(rows, weight[k], bias[k]) for k, rows in enumerate(grouped)])
            return out[order.argsort()]
        # Each (example, channel) is a run of consecutive rows read out by that channel's weights,
        # straight into its rows of the result: no (pixels x C*K) output to gather from.
        out = features.new_empty(features.shape[0], K)
        start = 0
        for n, count in enumerate(where.view(B * C, -1).sum(1).tolist()):
            if count:
                torch.addmm(
                    bias[n % C], features[start : start + count], weight[n % C].T, out=out[start : start + count]
                )
            start += count
        return out

    def forward(self, x: torch.Tensor, known: torch.Tensor, context=None, where=None) -> torch.Tensor:
        """:meth:`logits`, or with ``where`` :meth:`logits_at` (what a DistributedDataParallel
        wrapper calls, so training can ask for the unknown variables only)."""
        if where is None:
            return self.logits(x, known, context)
        return self.logits_at(x, known, where, context)
