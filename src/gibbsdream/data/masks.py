"""Masks for image states: which variables are known, for training and for inpainting.

A mask is a bool tensor ``known`` with the shape of the state, True = given/known (clamped, never
resampled), False = unknown (to be predicted or inpainted). For images a state is ``(C, H, W)``;
one *variable* is one pixel in one channel, so ``D = C * H * W``.

Training masks
--------------
:func:`training_masks` turns a text spec into a :class:`MaskDistribution`, which draws
``known: (B, C, H, W)`` for a batch, every example independently. ``str(dist)`` gives back a
canonical spec that parses to an equal distribution. The kinds (:data:`MASK_KINDS`):

=================  ==============================================================================
text               distribution of the hidden (unknown) variables of one example
=================  ==============================================================================
``orderless``      Uria et al. (2014): the number of KNOWN variables d is uniform on
                   ``{0, ..., D-1}``, then the known set is a uniformly random subset of size d.
                   Per variable (channels independently).
``squares``        one square hole, side uniform on ``{1, ..., min(H, W)}``, position uniform
                   among the places where it lies fully inside the image. All channels.
``contiguish``     a union of random squares covering exactly ``n`` pixels, ``n`` uniform on
                   ``{1, ..., H*W}`` (so the hidden fraction is uniform on ``(0, 1]``); see
                   :class:`Contiguish`. All channels.
``centre[:F]``     the centred rectangle of ``round(F*H)`` rows by ``round(F*W)`` columns
                   (``F`` in (0, 1], default 0.5); see :class:`Centre`. All channels.
``bernoulli[:P]``  each variable hidden independently with probability ``P`` (default 0.5); an
                   example that would hide nothing hides one uniformly random variable instead.
=================  ==============================================================================

Kinds mix: ``"orderless+contiguish"`` (equal weights) or ``"orderless=0.7,contiguish=0.3"``
(weights are normalised); each example draws its kind from the mixture. ``center`` is accepted
for ``centre``. Every kind hides at least
one variable of every example; ``orderless`` (and ``centre:1``, ``bernoulli:1``, ``contiguish``)
may hide all of them.

Inpainting masks
----------------
:func:`inpaint_mask` turns the command line's ``--mask`` into ``known: (C, H, W)`` for one image:
``centre``, ``centre:F``, ``box:x,y,w,h``, ``random:P`` or the path of a mask image (white =
hole, as in OpenCV's ``inpaint``). :func:`mask_from_array` does the same for an ``(H, W)`` array of
hole flags, e.g. drawn in a web page.

All randomness comes from the ``generator`` (a ``torch.Generator`` or an int seed), and random
numbers are drawn on the generator's device, so a fixed seed gives the same masks on that device.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError

MASK_KINDS = ("orderless", "squares", "contiguish", "centre", "bernoulli")

_TRAINING_FORMS = (
    "orderless, squares, contiguish, centre[:F] (hole side fraction, default 0.5), "
    "bernoulli[:P] (hide probability, default 0.5), or a mix such as 'orderless+contiguish' or "
    "'orderless=0.7,contiguish=0.3'"
)
_INPAINT_FORMS = (
    "centre, centre:F (hole side fraction in (0, 1]), box:x,y,w,h (hole rectangle in pixels, x = "
    "left column, y = top row), random:P (hide each pixel with probability P), or the path of a "
    "mask image (white = hole, black = keep)"
)


# ---- small helpers ------------------------------------------------------------------------------


def _number_text(x: float) -> str:
    """Short text for a float that parses back to exactly the same float."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _parse_float(text: str, what: str, forms: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r} as a number; valid forms: {forms}") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} {text!r} must be a finite number; valid forms: {forms}")
    return value


def _check_fraction(value: float, what: str) -> float:
    if not 0 < value <= 1:
        raise UsageError(f"{what} must lie in (0, 1], got {_number_text(value)}; use e.g. 0.5")
    return float(value)


def _check_shape(shape) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` as three positive ints, or a UsageError."""
    try:
        dims = tuple(int(n) for n in shape)
        exact = all(int(n) == n for n in shape)
    except (TypeError, ValueError):
        dims, exact = (), False
    if len(dims) != 3 or not exact or min(dims) < 1:
        raise UsageError(f"image shape must be three positive integers (channels, height, width), got {shape!r}")
    return dims


def _generator(generator, device) -> tuple[torch.Generator | None, torch.device]:
    """The generator to draw from (a seed becomes one) and the device its numbers live on."""
    if generator is None:
        return None, torch.device(device if device is not None else "cpu")
    if isinstance(generator, int) and not isinstance(generator, bool):
        # A seed makes a generator on the target device: the same seed, the same masks there.
        where = torch.device(device if device is not None else "cpu")
        return torch.Generator(device=where).manual_seed(generator), where
    if isinstance(generator, torch.Generator):
        return generator, generator.device
    raise UsageError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


def _rand(size, generator, where, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(size, generator=generator, device=where, dtype=dtype)


def _below(high: torch.Tensor, generator, where) -> torch.Tensor:
    """One uniform integer in ``[0, high)`` per entry of ``high`` (long, >= 1); same shape.

    float64 noise keeps the rounding bias negligible; the clamp guards the ``u * high == high``
    rounding case.
    """
    u = _rand(high.shape, generator, where, torch.float64)
    return torch.minimum((u * high).long(), high - 1)


def _boxes(top, left, height, width, size_hw: tuple[int, int]) -> torch.Tensor:
    """Rectangles as masks: ``(B,)`` long corners and sizes -> ``hole: (B, H, W)`` bool."""
    H, W = size_hw
    rows = torch.arange(H, device=top.device)
    cols = torch.arange(W, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def _centre_box(fraction: float, H: int, W: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centred hole; see :class:`Centre`."""
    height = max(1, math.floor(fraction * H + 0.5))
    width = max(1, math.floor(fraction * W + 0.5))
    return (H - height) // 2, (W - width) // 2, height, width


# ---- the kinds ----------------------------------------------------------------------------------
#
# Each kind draws ``hidden`` for n examples on the generator's device: ``(n, C, H, W)`` for
# per-variable kinds, ``(n, H, W)`` for spatial kinds (broadcast over channels by the caller).


@dataclass(frozen=True)
class Orderless:
    """Uria et al.'s training distribution: d ~ U{0..D-1} known variables, a uniform subset.

    The number known, d, is :func:`known_count` of the mask; :func:`orderless_loss_scale` gives
    the matching loss weight.
    """

    spatial = False

    def hidden(self, n: int, shape, generator, where) -> torch.Tensor:
        C, H, W = shape
        D = C * H * W
        known_count = _below(torch.full((n,), D, device=where), generator, where)  # (n,) in [0, D)
        # The d variables with the smallest noise are known: every d-subset is equally likely.
        order = _rand((n, D), generator, where).argsort(dim=1)
        first_d = torch.arange(D, device=where) < known_count[:, None]  # (n, D)
        known = torch.zeros(n, D, dtype=torch.bool, device=where).scatter_(1, order, first_d)
        return ~known.view(n, C, H, W)

    def __str__(self) -> str:
        return "orderless"


@dataclass(frozen=True)
class Squares:
    """One square hole: side ~ U{1..min(H, W)}, then a uniform position fully inside the image."""

    spatial = True

    def hidden(self, n: int, shape, generator, where) -> torch.Tensor:
        _, H, W = shape
        side = 1 + _below(torch.full((n,), min(H, W), device=where), generator, where)
        top = _below(H - side + 1, generator, where)
        left = _below(W - side + 1, generator, where)
        return _boxes(top, left, side, side, (H, W))

    def __str__(self) -> str:
        return "squares"


@dataclass(frozen=True)
class Contiguish:
    """A union of random squares that hides exactly ``n ~ U{1..H*W}`` pixels.

    The distribution, per example:

    1. draw the number of hidden pixels ``n`` uniformly from ``{1, ..., H*W}`` (so the hidden
       fraction ``n / (H*W)`` is uniform on ``(0, 1]``, exactly);
    2. while fewer than ``n`` pixels are hidden (``r = n - hidden`` short):
       pick an *anchor* uniformly among the still-visible pixels; draw a side ``s`` uniformly from
       ``{1, ..., min(H, W, ceil(sqrt(r)))}`` (capped so that a nearly-finished hole gets small
       squares, not a big one cut down to a strip); place an ``s x s`` square containing the
       anchor at a uniformly random offset, shifted to lie inside the image; hide its pixels;
    3. the last square is cut to the ``r`` pixels it was short, in raster order (its top rows
       first), so exactly ``n`` pixels are hidden.

    Every round hides at least the anchor, so at most ``H*W`` rounds are needed (a few tens in
    practice); each round handles all the unfinished examples of the batch at once.
    """

    spatial = True

    def hidden(self, n: int, shape, generator, where) -> torch.Tensor:
        _, H, W = shape
        P = H * W
        target = 1 + _below(torch.full((n,), P, device=where), generator, where)  # (n,) in [1, P]
        hidden = torch.zeros(n, P, dtype=torch.bool, device=where)
        # Only the examples still short of their target take part in a round: most finish in a
        # few rounds, a few (large targets, scattered gaps) take tens.
        rows, short = torch.arange(n, device=where), target
        for _ in range(P):
            if rows.numel() == 0:
                break
            k, hid = rows.numel(), hidden[rows]  # (k, P)
            # Argmax of uniform noise over the visible pixels: a uniform visible anchor.
            anchor = _rand((k, P), generator, where).masked_fill_(hid, -1.0).argmax(dim=1)
            cap = torch.ceil(torch.sqrt(short.double())).long().clamp(max=min(H, W))
            side = 1 + _below(cap, generator, where)
            top = (anchor // W - _below(side, generator, where)).clamp(min=0)
            left = (anchor % W - _below(side, generator, where)).clamp(min=0)
            top, left = torch.minimum(top, H - side), torch.minimum(left, W - side)
            new = _boxes(top, left, side, side, (H, W)).view(k, P) & ~hid
            # Cut the square to the pixels still missing, first rows first.
            new &= new.cumsum(dim=1, dtype=torch.int32) <= short[:, None]
            hidden[rows] = hid | new
            short = short - new.sum(dim=1)
            rows, short = rows[short > 0], short[short > 0]
        return hidden.view(n, H, W)

    def __str__(self) -> str:
        return "contiguish"


@dataclass(frozen=True)
class Centre:
    """The centred hole of ``round(fraction * H)`` rows by ``round(fraction * W)`` columns.

    Sizes round half up and are at least 1 (so every example hides something). When the margin
    left over is odd, the hole sits half a pixel towards the top-left: its top (left) margin is
    ``(H - rows) // 2``, one less than its bottom (right) margin. An 8x8 image with fraction 0.5
    hides rows 2..5 and columns 2..5. On a square image the hole is a square.
    """

    fraction: float = 0.5
    spatial = True

    def __post_init__(self):
        _check_fraction(self.fraction, "centre hole side fraction")

    def hidden(self, n: int, shape, generator, where) -> torch.Tensor:
        _, H, W = shape
        top, left, height, width = _centre_box(self.fraction, H, W)
        hole = torch.zeros(H, W, dtype=torch.bool, device=where)
        hole[top : top + height, left : left + width] = True
        return hole.expand(n, H, W)

    def __str__(self) -> str:
        return f"centre:{_number_text(self.fraction)}"


@dataclass(frozen=True)
class Bernoulli:
    """Each variable hidden independently with probability ``p``; at least one hidden per example.

    An example whose draw hides nothing hides one uniformly random variable instead (this matters
    only when ``(1 - p) ** D`` is not negligible).
    """

    p: float = 0.5
    spatial = False

    def __post_init__(self):
        _check_fraction(self.p, "bernoulli hide probability")

    def hidden(self, n: int, shape, generator, where) -> torch.Tensor:
        C, H, W = shape
        D = C * H * W
        hidden = _rand((n, D), generator, where) < self.p
        # Drawn for every example, used only where nothing was hidden, so the stream of random
        # numbers does not depend on the outcome.
        fallback = _below(torch.full((n, 1), D, device=where), generator, where)
        rescue = hidden.gather(1, fallback) | ~hidden.any(dim=1, keepdim=True)
        return hidden.scatter_(1, fallback, rescue).view(n, C, H, W)

    def __str__(self) -> str:
        return f"bernoulli:{_number_text(self.p)}"


_KINDS_WITHOUT_PARAMETER = {"orderless": Orderless, "squares": Squares, "contiguish": Contiguish}
_KINDS_WITH_PARAMETER = {"centre": Centre, "center": Centre, "bernoulli": Bernoulli}

MaskKind = Orderless | Squares | Contiguish | Centre | Bernoulli


# ---- the mixture --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskDistribution:
    """A mixture of mask kinds; each example of a batch draws its kind independently.

    Attributes:
        components: ``((kind, weight), ...)``; weights are positive and sum to 1.

    Call it as ``dist(batch_size, (C, H, W), generator, device) -> known: (B, C, H, W)`` bool.
    """

    components: tuple

    def __call__(self, batch_size: int, shape, generator=None, device=None) -> torch.Tensor:
        """Draw ``known: (batch_size, C, H, W)`` bool on ``device``; True = known.

        Args:
            batch_size: number of examples B (>= 0).
            shape: ``(C, H, W)`` of one image.
            generator: ``torch.Generator`` (random numbers are drawn on its device), an int seed
                (a generator on ``device``), or None (torch's global generator).
            device: where the mask goes; default: the generator's device, else CPU.
        """
        C, H, W = _check_shape(shape)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise UsageError(f"batch size must be a whole number >= 0, got {batch_size!r}")
        generator, where = _generator(generator, device)
        device = torch.device(device) if device is not None else where
        known = torch.empty(batch_size, C, H, W, dtype=torch.bool, device=where)
        if batch_size == 0:
            return known.to(device)
        if len(self.components) == 1:
            picks = [(self.components[0][0], None)]
        else:
            weights = torch.tensor([w for _, w in self.components], dtype=torch.float64, device=where)
            which = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
            picks = [(kind, (which == i).nonzero().squeeze(1)) for i, (kind, _) in enumerate(self.components)]
        for kind, rows in picks:
            n = batch_size if rows is None else rows.numel()
            if n == 0:
                continue
            hidden = kind.hidden(n, (C, H, W), generator, where)
            if kind.spatial:
                hidden = hidden[:, None].expand(n, C, H, W)
            if rows is None:
                known.copy_(~hidden)
            else:
                known[rows] = ~hidden
        return known.to(device)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds' text forms, in order."""
        return tuple(str(kind) for kind, _ in self.components)

    def __str__(self) -> str:
        names = [str(kind) for kind, _ in self.components]
        weights = [w for _, w in self.components]
        if all(w == weights[0] for w in weights):
            return "+".join(names)
        return ",".join(f"{name}={_number_text(w)}" for name, w in zip(names, weights))


def _parse_kind(text: str, whole: str) -> MaskKind:
    name, sep, parameter = text.partition(":")
    name = name.strip().lower()
    if name in _KINDS_WITHOUT_PARAMETER:
        if sep:
            raise UsageError(f"mask kind {name!r} takes no parameter, got {text!r} in {whole!r}")
        return _KINDS_WITHOUT_PARAMETER[name]()
    if name in _KINDS_WITH_PARAMETER:
        if not sep:
            return _KINDS_WITH_PARAMETER[name]()
        value = _parse_float(parameter.strip(), f"{name} parameter", _TRAINING_FORMS)
        return _KINDS_WITH_PARAMETER[name](value)
    raise UsageError(f"unknown mask kind {name or text!r} in {whole!r}; valid kinds and forms: {_TRAINING_FORMS}")


def training_masks(spec) -> MaskDistribution:
    """Parse a training mask spec into a :class:`MaskDistribution`.

    ``spec`` is one kind (``"orderless"``, ``"squares"``, ``"contiguish"``, ``"centre:0.5"``,
    ``"bernoulli:0.3"``), an equal mix ``"orderless+contiguish"``, or a weighted mix
    ``"orderless=0.7,contiguish=0.3"`` (positive weights, normalised). A
    :class:`MaskDistribution` or a single kind object passes through.
    """
    if isinstance(spec, MaskDistribution):
        return spec
    if isinstance(spec, MaskKind):
        return MaskDistribution(((spec, 1.0),))
    if not isinstance(spec, str):
        raise UsageError(f"mask spec must be text, got {spec!r}; valid forms: {_TRAINING_FORMS}")
    whole = spec.strip()
    parts = [part.strip() for part in whole.replace("+", ",").split(",")]
    if not whole or not all(parts):
        raise UsageError(f"mask spec {spec!r} has an empty part; valid forms: {_TRAINING_FORMS}")
    kinds, weights = [], []
    for part in parts:
        kind_text, sep, weight_text = part.partition("=")
        kinds.append(_parse_kind(kind_text.strip(), whole))
        weight = _parse_float(weight_text.strip(), "mask weight", _TRAINING_FORMS) if sep else None
        weights.append(weight)
    if len(set(kinds)) != len(kinds):
        raise UsageError(f"mask spec {spec!r} lists the same kind twice; give each kind once")
    if all(w is None for w in weights):
        weights = [1.0] * len(kinds)
    elif any(w is None for w in weights):
        raise UsageError(
            f"mask spec {spec!r} gives weights to some kinds but not others; weight all of them "
            "(orderless=0.7,contiguish=0.3) or none (orderless+contiguish)"
        )
    if min(weights) <= 0:
        raise UsageError(f"mask weights must be positive, got {spec!r}; e.g. orderless=0.7,contiguish=0.3")
    total = sum(weights)
    if all(w == weights[0] for w in weights):
        weights = [1.0 / len(kinds)] * len(kinds)  # prints as "a+b", which parses to exactly this
    elif abs(total - 1) > 1e-9:
        # Weights that already sum to 1 (up to rounding) stay as written, so that the canonical
        # text parses back to exactly the same weights.
        weights = [w / total for w in weights]
    return MaskDistribution(tuple(zip(kinds, weights)))


def known_count(known: torch.Tensor) -> torch.Tensor:
    """Number of known variables per example: ``known: (B, C, H, W)`` -> ``(B,)`` long.

    For ``orderless`` masks this is Uria et al.'s d, uniform on ``{0, ..., D-1}``.
    """
    return known.flatten(1).sum(dim=1)


def orderless_loss_scale(known: torch.Tensor) -> torch.Tensor:
    """The orderless NADE loss weight ``D / (number unknown)``: ``(B, C, H, W)`` -> ``(B,)`` float.

    Summing the unknown variables' negative log-likelihoods and multiplying by this weight gives
    an unbiased estimate of the negative log-likelihood of the whole image (averaged over
    orderings). Uria et al. (2014) write it ``D / (D - d + 1)`` with d the 1-based position in the
    ordering, i.e. with ``d - 1`` variables known; with ``d = known_count(known)`` it is
    ``D / (D - d)``.
    """
    D = known[0].numel()
    return D / (D - known_count(known)).to(torch.float32)


# ---- inpainting masks ---------------------------------------------------------------------------


def mask_from_array(hole, shape=None) -> torch.Tensor:
    """Hole flags ``(H, W)`` (True / non-zero = fill in) -> ``known: (C, H, W)`` bool on CPU.

    ``shape`` is the image's ``(C, H, W)``: its height and width must match the array's; without
    it, C = 1. A mask that hides no pixel, or every pixel, is refused.
    """
    hole = torch.as_tensor(hole).cpu()
    if hole.dim() != 2:
        raise UsageError(f"a hole mask must be a 2-D (height, width) array, got shape {tuple(hole.shape)}")
    hole = hole != 0
    H, W = hole.shape
    C = 1
    if shape is not None:
        C, image_h, image_w = _check_shape(shape)
        if (image_h, image_w) != (H, W):
            raise UsageError(
                f"the mask is {W}x{H} pixels (width x height) but the image is {image_w}x{image_h}; "
                "make a mask of the image's size"
            )
    if not bool(hole.any()):
        raise UsageError(
            "the mask hides no pixel, so there is nothing to inpaint; mark the hole in white, or "
            "give a box:, centre: or random: mask"
        )
    if bool(hole.all()):
        raise UsageError(
            "the mask hides every pixel, so there is nothing to inpaint from; leave part of the "
            "image visible, or use `gibbsdream sample` to generate from a blank canvas"
        )
    return (~hole)[None].expand(C, H, W).clone()


def _box_hole(text: str, H: int, W: int) -> torch.Tensor:
    pieces = [piece.strip() for piece in text.split(",")]
    try:
        x, y, w, h = (int(piece) for piece in pieces)
    except ValueError:
        raise UsageError(
            f"cannot read box:{text}; expected box:x,y,w,h with four whole numbers of pixels "
            "(x = left column, y = top row, w = width, h = height), e.g. box:8,8,16,16"
        ) from None
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > W or y + h > H:
        raise UsageError(
            f"box:{x},{y},{w},{h} (x,y,w,h) does not fit inside the {W}x{H} (width x height) "
            f"image; need x, y >= 0, w, h >= 1, x + w <= {W} and y + h <= {H}"
        )
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[y : y + h, x : x + w] = True
    return hole


def _file_hole(path: Path, height: int, width: int) -> torch.Tensor:
    """The hole of a mask image, which must be ``width`` x ``height`` pixels: the size is read from
    the file's header and checked before any pixel is decoded, so a small file that would decode
    into gigabytes (a decompression bomb) costs nothing."""
    from PIL import Image, UnidentifiedImageError  # PIL only for a mask read from a file (start-up time)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow only warns at 1x-2x its limit
            with Image.open(path) as image:
                if image.size != (width, height):
                    raise UsageError(
                        f"the mask {str(path)!r} is {image.size[0]}x{image.size[1]} pixels (width x height) but the "
                        f"image is {width}x{height}; make a mask of the image's size"
                    )
                gray = np.asarray(image.convert("L"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(
            f"the mask {str(path)!r} is far larger than the {width}x{height} image (a decompression bomb?); "
            "make a mask of the image's size"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise UsageError(
            f"cannot read mask image {str(path)!r} ({error}); give a PNG with white = hole, black = keep"
        ) from None
    # OpenCV's inpaint convention: bright (>= 128) = hole to fill, dark = keep.
    return torch.from_numpy(gray >= 128)


def inpaint_mask(spec, shape, generator=None, *, files: bool = True) -> torch.Tensor:
    """The ``--mask`` of inpainting -> ``known: (C, H, W)`` bool on CPU (True = keep).

    ``spec`` is one of:

    - ``centre`` / ``centre:F``: the centred hole of :class:`Centre` (F in (0, 1], default 0.5);
    - ``box:x,y,w,h``: the rectangle of ``w`` columns by ``h`` rows whose top-left pixel is at
      column ``x``, row ``y``; it must lie inside the image;
    - ``random:P``: each pixel (all its channels) hidden with probability ``P``, drawn from
      ``generator`` (a ``torch.Generator``, an int seed, or None for torch's global generator);
    - the path of a mask image of the image's height and width: converted to grayscale, pixels
      ``>= 128`` (white) are the hole, darker ones are kept.

    A mask that hides no pixel or every pixel is refused with a :class:`UsageError`. With
    ``files=False`` a spec is never taken for a path (for specs from a web request, which must not
    name files on the server): anything but the forms above is a :class:`UsageError`.
    """
    C, H, W = _check_shape(shape)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise UsageError(f"mask spec must be text, got {spec!r}; valid forms: {_INPAINT_FORMS}")
    text = spec.strip()
    name, sep, rest = text.partition(":")
    name = name.strip().lower()
    if name in ("centre", "center"):
        fraction = _parse_float(rest.strip(), "centre fraction", _INPAINT_FORMS) if sep else 0.5
        fraction = _check_fraction(fraction, "centre hole side fraction")
        top, left, height, width = _centre_box(fraction, H, W)
        hole = torch.zeros(H, W, dtype=torch.bool)
        hole[top : top + height, left : left + width] = True
    elif name == "box" and sep:
        hole = _box_hole(rest, H, W)
    elif name == "random" and sep:
        p = _parse_float(rest.strip(), "random hide probability", _INPAINT_FORMS)
        p = _check_fraction(p, "random hide probability")
        generator, where = _generator(generator, "cpu")
        hole = (_rand((H, W), generator, where) < p).cpu()
    elif not files:
        raise UsageError(f"cannot read mask spec {spec!r}; valid forms: centre[:F], box:x,y,w,h, random:P")
    elif text and Path(text).is_file():
        hole = _file_hole(Path(text), H, W)
    elif text and (Path(text).suffix or "/" in text or "\\" in text):
        raise UsageError(
            f"mask file {text!r} does not exist; give the path of a mask image or one of: {_INPAINT_FORMS}"
        )
    else:
        raise UsageError(f"cannot read mask spec {spec!r}; valid forms: {_INPAINT_FORMS}")
    return mask_from_array(hole, (C, H, W))


def inpaint_masks(spec, shape, count: int, generator=None) -> torch.Tensor:
    """One :func:`inpaint_mask` per image -> ``known: (count, C, H, W)``.

    ``random:P`` draws a fresh mask for every image (in turn, from ``generator``); every other
    spec gives the same mask for all, so it is parsed (and a mask file read) once.
    """
    first = inpaint_mask(spec, shape, generator)
    if str(spec).strip().partition(":")[0].strip().lower() != "random":
        return first.expand(count, *first.shape)
    return torch.stack([first] + [inpaint_mask(spec, shape, generator) for _ in range(count - 1)])


__all__ = [
    "MASK_KINDS",
    "Bernoulli",
    "Centre",
    "Contiguish",
    "MaskDistribution",
    "Orderless",
    "Squares",
    "inpaint_mask",
    "inpaint_masks",
    "known_count",
    "mask_from_array",
    "orderless_loss_scale",
    "training_masks",
]
