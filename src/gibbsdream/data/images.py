"""Images <-> states of intensity levels, image files and folders, and built-in image sets.

An image state is a ``(B, C, H, W)`` long tensor of *levels* in ``[0, K)``: every channel of every
pixel is one categorical variable with ``K`` categories (``C = 1`` for grayscale, 3 for RGB). An
:class:`ImageCodec` maps 8-bit pixels to levels and back; level ``q`` is shown as the 8-bit value
``round(q * 255 / (K - 1))``, so level 0 is black and level ``K - 1`` is full intensity.

Two layouts meet here, and every function says which it takes:

- **states and pixel tensors** are channel-first, like PyTorch: ``(B, C, H, W)``;
- **numpy pixel arrays** are channel-last, like Pillow: ``(N, H, W, C)`` (``(N, H, W)`` is
  accepted for grayscale).

Loading is two steps. :func:`load_image_file` and :func:`load_image_folder` return ``uint8``
numpy pixels ``(N, H, W, C)`` and file names; :func:`load_images` takes a path or ``builtin:NAME``
and returns an :class:`ImageDataset` of states, codec, names and (for built-ins) labels and
attributes. Sizes are written ``WIDTHxHEIGHT``, as image tools do.

The built-in sets (:data:`BUILTIN_IMAGES`): ``builtin:digits`` (scikit-learn's 8x8 digits),
``builtin:shapes`` (generated coloured shapes) and ``builtin:emoji`` (every emoji of the system's
colour emoji font, 64x64 RGB by default, with CLDR names and skin-tone groups that a split keeps
together; see :mod:`gibbsdream.data.emoji`).

Nothing here ever unpickles: a folder laid out as in the seed's class project (JPEGs in
subfolders beside a ``*.pkl`` captions dict) is read by file suffix, and only image files are
opened. Captions, when asked for, come from :mod:`gibbsdream.data.captions`, whose pickle reader
loads plain data only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, UsageError, check_whole_number
from ..progress import progress_bar
from ..viz import CHANNEL_WORDS, pixels_nchw, upscale, write_png
from .captions import load_captions
from .emoji import EMOJI_DEFAULT_SIDE, base_emoji, emoji_attributes, emoji_id, emoji_set

MIN_LEVELS, MAX_LEVELS = 2, 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_KINDS = "PNG, JPEG, BMP or GIF"
# Pillow modes whose pixels are one intensity per pixel (an alpha band, if any, is dropped).
GRAY_MODES = ("1", "L", "LA", "La")
# 16- and 32-bit integer grayscale (16-bit PNGs open as one of these); scaled from 0..65535.
WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Folders with at least this many images show a progress bar while they load (when asked to).
PROGRESS_FROM = 500


def check_levels(levels: int) -> int:
    """Return ``levels`` if it is an int in 2..256, else raise UsageError."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not MIN_LEVELS <= levels <= MAX_LEVELS:
        raise UsageError(
            f"levels must be a whole number from {MIN_LEVELS} to {MAX_LEVELS} (intensity levels per "
            f"channel), got {levels!r}; 256 keeps 8-bit images exact"
        )
    return int(levels)


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


def _channel_words(channels: int) -> str:
    return CHANNEL_WORDS.get(channels, f"{channels}-channel")


# ---- the codec ------------------------------------------------------------------------------------


@dataclass
class ImageCodec:
    """8-bit pixels <-> ``K`` intensity levels per channel, for images of one fixed shape.

    Attributes:
        levels: ``K``, the number of categories of every channel of every pixel (2..256).
        channels: ``C``, 1 (grayscale) or 3 (RGB).
        height, width: ``H`` and ``W`` in pixels.

    The mappings are exact integer arithmetic, rounding halves up:

    - encode: ``p -> floor((2 p (K-1) + 255) / 510) = round(p (K-1) / 255)``. A tie would need
      ``2 p (K-1)`` (even) to equal 255 times an odd number (odd), so encode never meets one.
    - decode: ``q -> floor((510 q + K - 1) / (2 (K-1))) = round(q 255 / (K-1))``, halves up
      (e.g. ``K = 3``: level 1 is 128).

    Every level survives a round trip (``encode(decode(q)) == q`` for every ``K``), so decoded
    images are fixed points of encode-then-decode; with ``K = 256`` both maps are the identity.
    """

    levels: int
    channels: int
    height: int
    width: int

    def __post_init__(self):
        self.levels = check_levels(self.levels)
        if isinstance(self.channels, bool) or self.channels not in CHANNEL_WORDS:
            raise UsageError(f"an image codec needs 1 (grayscale) or 3 (RGB) channels, got {self.channels!r}")
        for what, value in (("height", self.height), ("width", self.width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UsageError(f"an image codec needs a positive whole-number {what}, got {value!r}")
        self.height, self.width = int(self.height), int(self.width)

    @property
    def num_categories(self) -> int:
        """``K``, the number of levels."""
        return self.levels

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``, the shape of one image state."""
        return (self.channels, self.height, self.width)

    def describe(self) -> str:
        """E.g. ``"8x8 grayscale images with 17 levels"``."""
        return f"{_size(self.width, self.height)} {_channel_words(self.channels)} images with {self.levels} levels"

    @classmethod
    def for_pixels(cls, pixels, levels: int) -> ImageCodec:
        """A codec for ``pixels`` (``(N, C, H, W)`` tensor or ``(N, H, W[, C])`` numpy) with ``levels``."""
        c, h, w = pixels_nchw(pixels).shape[1:]
        return cls(levels=levels, channels=c, height=h, width=w)

    # ---- mappings ------------------------------------------------------------------------------

    def encode(self, pixels) -> torch.Tensor:
        """8-bit pixels -> states.

        Args:
            pixels: ``uint8``, either a tensor ``(B, C, H, W)`` or a numpy array ``(B, H, W, C)``
                or ``(B, H, W)`` (grayscale).

        Returns:
            ``(B, C, H, W)`` long levels in ``[0, K)``. Raises UsageError if the pixels are not
            ``uint8`` or do not have this codec's shape.
        """
        x = pixels_nchw(pixels)
        self.check_shape(x.shape[1:])
        k = self.levels - 1
        return (x.long() * (2 * k) + 255) // 510

    def decode(self, states: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` levels in ``[0, K)`` -> ``(B, C, H, W)`` ``uint8`` pixels (same device)."""
        q = torch.as_tensor(states)
        if q.dtype.is_floating_point or q.dtype == torch.bool:
            raise UsageError(f"image states must be integer levels, got a {q.dtype} tensor")
        if q.numel() and (int(q.min()) < 0 or int(q.max()) >= self.levels):
            raise UsageError(
                f"image states hold levels from {int(q.min())} to {int(q.max())}, but this codec has "
                f"levels 0..{self.levels - 1}; decode them with the codec they were encoded with"
            )
        k = self.levels - 1
        return ((q.long() * 510 + k) // (2 * k)).to(torch.uint8)

    # ---- checks ----------------------------------------------------------------------------------

    def problem(self, channels: int, height: int, width: int) -> str | None:
        """What must change for a ``channels`` x ``height`` x ``width`` image to fit, or None."""
        fixes = []
        if (height, width) != (self.height, self.width):
            fixes.append(f"resize it to {_size(self.width, self.height)}")
        if channels != self.channels:
            fixes.append(f"convert it to {_channel_words(self.channels)}")
        return " and ".join(fixes) or None

    def check_shape(self, shape, name: str | None = None, where: str | None = None) -> None:
        """Raise UsageError unless ``shape`` (``(C, H, W)``) is this codec's shape.

        ``name`` (a file name) makes the message point at the image: "image x.png is 16x16 RGB;
        this model takes 8x8 grayscale images: resize it to 8x8 and convert it to grayscale
        first"; ``where`` (a folder) says "the images in DIR are ...".
        """
        c, h, w = (int(s) for s in shape)
        fix = self.problem(c, h, w)
        if fix is None:
            return
        if name:
            subject = f"image {name} is"
        else:
            subject = f"the images in {where} are" if where else "the images are"
            fix = fix.replace(" it ", " them ")
        raise UsageError(
            f"{subject} {_size(w, h)} {_channel_words(c)}; this model takes "
            f"{_size(self.width, self.height)} {_channel_words(self.channels)} images: {fix} first"
        )

    def check(self, states: torch.Tensor, name: str | None = None) -> None:
        """Raise UsageError unless ``states`` is ``(B, C, H, W)`` of this shape with levels in ``[0, K)``."""
        if states.dim() != 4:
            raise UsageError(f"image states must be (batch, channels, height, width), got shape {tuple(states.shape)}")
        self.check_shape(states.shape[1:], name)
        if states.dtype.is_floating_point or states.dtype == torch.bool:
            raise UsageError(f"image states must be integer levels, got a {states.dtype} tensor")
        if states.numel() and (int(states.min()) < 0 or int(states.max()) >= self.levels):
            subject = f"image {name}" if name else "the image states"
            raise UsageError(
                f"{subject} holds levels {int(states.min())}..{int(states.max())}, but this model has "
                f"{self.levels} levels (0..{self.levels - 1}); encode the pixels with the model's codec"
            )

    # ---- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "kind": "image",
            "levels": self.levels,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ImageCodec:
        if not isinstance(d, dict) or d.get("kind") != "image":
            kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise UsageError(f"expected an image codec (kind 'image'), got kind {kind!r}; is this an image model?")
        try:
            return cls(levels=d["levels"], channels=d["channels"], height=d["height"], width=d["width"])
        except KeyError as err:
            raise UsageError(f"the image codec settings lack {err.args[0]!r}; the checkpoint is damaged") from None


# ---- image files ------------------------------------------------------------------------------------


def _pil_to_array(img, channels: int | None) -> np.ndarray:
    """A Pillow image -> ``(H, W, C)`` uint8, C = its own (1 or 3) or ``channels`` when given."""
    from PIL import Image  # PIL only where image files are read (start-up time)

    mode = img.mode
    if mode == "F":
        raise UsageError("floating-point images are not supported; save it as an 8-bit PNG")
    if mode in WIDE_GRAY_MODES:
        # 16-bit grayscale: scale 0..65535 to 0..255 (rounding), as an 8-bit export would.
        wide = np.asarray(img, dtype=np.int64)
        gray = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        img = Image.fromarray(gray, mode="L")
    elif mode in GRAY_MODES:
        img = img.convert("L")  # drops alpha; "1" becomes 0/255
    else:
        if mode in ("P", "PA") and "transparency" in img.info:
            img = img.convert("RGBA")  # Pillow's route for palette transparency, then drop alpha
        img = img.convert("RGB")
        if mode in ("P", "PA"):
            # A palette image is grayscale when its colours are grays (e.g. our own GIFs of digits).
            rgb = np.asarray(img)
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                img = Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L")
    if channels == 1 and img.mode != "L":
        img = img.convert("L")  # ITU-R 601-2 luma, as Pillow converts
    array = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    if array.ndim == 2:
        array = array[..., None]
    if channels == 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _check_channels(channels: int | None) -> None:
    if channels is not None and channels not in CHANNEL_WORDS:
        raise UsageError(f"channels must be 1 (grayscale), 3 (RGB) or None (as the files are), got {channels!r}")


def load_image_file(path, channels: int | None = None, name: str | None = None) -> np.ndarray:
    """Read one image file (PNG, JPEG, BMP; the first frame of a GIF) as ``(H, W, C)`` ``uint8``.

    ``channels=None`` keeps the file's own kind: 1 for grayscale files (modes 1, L, LA, 16-bit
    gray, and palette images whose colours are all grays), else 3. ``channels=1`` converts colour
    to luma; ``channels=3`` repeats gray. Alpha is dropped (the colour under it is kept); EXIF
    rotation is applied. Raises UsageError naming the file (``name``, default the path) if it
    cannot be read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError  # PIL only where image files are read (start-up time)

    _check_channels(channels)
    path = Path(path)
    name = name or str(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"{name} is not a regular file (a pipe, a socket or a device); pass an image file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns about images of 1x to 2x its pixel limit (89 million), then decodes
            # them anyway; a file that size is a decompression bomb here as much as one beyond 2x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _pil_to_array(img, channels)
    except UnidentifiedImageError:
        raise UsageError(f"{name} is not a readable image ({IMAGE_KINDS}); remove it or re-save it") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(
            f"{name} has too many pixels to decode safely (Pillow's limit is about "
            f"{Image.MAX_IMAGE_PIXELS // 10**6} million); resize it first"
        ) from None
    except UsageError as err:
        raise UsageError(f"{name}: {err}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        # Pillow reports truncated or damaged data as OSError, and some decoders as the others.
        raise UsageError(f"cannot read image {name} ({err}); it may be damaged: remove it or re-save it") from None


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def find_image_files(folder, recursive: bool | None = None) -> list[Path]:
    """Image files in ``folder`` by suffix, sorted by their path relative to it.

    ``recursive=None`` looks in subfolders only when ``folder`` itself holds no images (the
    class-project layout: ``train2014/*.jpg`` beside a captions ``*.pkl``). Hidden files and
    folders are skipped. Other files are never opened.
    """
    folder = Path(folder)

    def scan(deep: bool) -> list[Path]:
        candidates = folder.rglob("*") if deep else folder.iterdir()
        return sorted(
            (
                p
                for p in candidates
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _is_hidden(p.relative_to(folder))
            ),
            key=lambda p: p.relative_to(folder).as_posix(),
        )

    files = scan(bool(recursive))
    if recursive is None and not files:
        files = scan(True)
    return files


def load_image_folder(
    folder, channels: int | None = None, recursive: bool | None = None, progress: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Read every image in ``folder``: ``(pixels (N, H, W, C) uint8, names)``.

    Files are taken by suffix ({kinds}) in sorted order; other files are ignored and never
    opened. ``recursive`` is as in :func:`find_image_files` (by default, subfolders are read only
    when the folder itself holds no images). Names are paths relative to ``folder``, with ``/``.

    With ``channels=None`` the images are grayscale (C = 1) if every file is, else RGB (C = 3):
    gray files are repeated into three equal channels, which loses nothing. ``progress``: a bar
    while a folder of :data:`PROGRESS_FROM` images or more is read.

    Raises UsageError if the folder is missing or holds no images, if a file cannot be read
    (naming it), or if the images have different sizes.
    """
    _check_channels(channels)
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass a folder of images ({IMAGE_KINDS})")
    files = find_image_files(folder, recursive)
    if not files:
        where = f"{folder} or its subfolders" if recursive is not False else str(folder)
        raise UsageError(f"no images ({IMAGE_KINDS} files) in {where}; pass a folder that holds some")

    arrays, names = [], []
    with progress_bar(len(files), f"reading {folder}", enabled=progress and len(files) >= PROGRESS_FROM) as advance:
        for path in files:
            name = path.relative_to(folder).as_posix()
            array = load_image_file(path, channels, name=name)
            if arrays and array.shape[:2] != arrays[0].shape[:2]:
                (h0, w0), (h, w) = arrays[0].shape[:2], array.shape[:2]
                raise UsageError(
                    f"images in {folder} have different sizes ({_size(w0, h0)} in {names[0]}, "
                    f"{_size(w, h)} in {name}); resize them to one size"
                )
            arrays.append(array)
            names.append(name)
            advance()
    if channels is None and any(a.shape[-1] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    return np.stack(arrays), names


load_image_folder.__doc__ = load_image_folder.__doc__.format(kinds=IMAGE_KINDS)


def to_hwc_uint8(image, codec: ImageCodec | None = None) -> np.ndarray:
    """One image -> ``(H, W, C)`` ``uint8`` numpy pixels.

    ``image`` is a state ``(C, H, W)`` or ``(1, C, H, W)`` of integer levels (needs ``codec``),
    a ``uint8`` tensor of the same layouts, or a ``uint8`` numpy array ``(H, W)`` / ``(H, W, C)``.
    """
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None]
        return pixels_nchw(image[None]).permute(0, 2, 3, 1)[0].numpy()
    image = torch.as_tensor(image).detach().cpu()
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise UsageError(f"expected one image (C, H, W), got shape {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        if codec is None:
            raise UsageError("these are image states (levels, not 8-bit pixels); pass the codec to decode them")
        codec.check(image)
        image = codec.decode(image)
    return pixels_nchw(image).permute(0, 2, 3, 1)[0].numpy()


def save_png(path, image, codec: ImageCodec | None = None, *, scale: int = 1) -> Path:
    """Write one image as a PNG (grayscale or RGB), atomically; returns the path.

    ``image`` is as in :func:`to_hwc_uint8` (states need ``codec``). ``scale`` enlarges it by an
    integer factor with nearest-neighbour pixels, so that an 8x8 digit is visible.
    """
    return write_png(path, upscale(to_hwc_uint8(image, codec), scale))


# ---- built-in image sets ---------------------------------------------------------------------------


@dataclass
class RawImages:
    """Pixels before encoding, with what a built-in set knows about each image.

    Attributes:
        pixels: ``(N, H, W, C)`` ``uint8``.
        names: one id per image.
        labels: ``(N,)`` int class labels, or None.
        attributes: one dict per image (e.g. shape, colour, size, position), or None.
        native_levels: the levels the data was made with (17 for digits), the default ``K``.
        groups: ``(N,)`` int group ids, or None: images of one group (the skin tones of one emoji)
            fall on the same side of a train/validation/test split.
    """

    pixels: np.ndarray
    names: list[str]
    labels: np.ndarray | None = None
    attributes: list[dict] | None = None
    native_levels: int | None = None
    groups: np.ndarray | None = None


def digits_images() -> RawImages:
    """scikit-learn's 1,797 handwritten digits: 8x8 grayscale, values 0..16, labels 0..9.

    Value ``v`` becomes the pixel ``round(v * 255 / 16)``, which a 17-level codec encodes back to
    exactly ``v`` (so with ``K = 17`` the states are the original values).
    """
    from sklearn.datasets import load_digits  # scikit-learn takes ~1 s to import: only for the builtin digits

    bunch = load_digits()
    values = np.rint(bunch.images).astype(np.int64)  # stored as floats that are whole numbers
    pixels = ((values * 510 + 16) // 32).astype(np.uint8)[..., None]  # round(v*255/16), halves up
    names = [f"digits#{i}" for i in range(len(values))]
    return RawImages(pixels=pixels, names=names, labels=bunch.target.astype(np.int64), native_levels=17)


SHAPE_NAMES = ("square", "circle", "triangle", "cross", "ring")
SHAPE_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 90, 230),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (150, 60, 200),
    "cyan": (40, 200, 220),
}
SHAPE_SIZES = ("small", "large")
SHAPE_POSITIONS = ("centre", "left", "right", "top", "bottom")
BACKGROUNDS = ("dark", "light")
SHAPES_MIN_SIDE, SHAPES_MAX_SIDE = 16, 64


def _shape_masks(shape_ids, cx, cy, r, side: int) -> np.ndarray:
    """``(n, side, side)`` bool masks: shape ``shape_ids[i]`` centred at ``(cx, cy)`` with half-extent ``r``."""
    coords = np.arange(side, dtype=np.float32) + 0.5  # pixel centres
    dx = coords[None, None, :] - cx[:, None, None]  # (n, 1, S)
    dy = coords[None, :, None] - cy[:, None, None]  # (n, S, 1)
    r = r[:, None, None]
    ax, ay = np.abs(dx), np.abs(dy)
    dist2 = dx * dx + dy * dy
    arm = r / 3
    masks = np.stack(
        [
            (ax <= r) & (ay <= r),  # square
            dist2 <= r * r,  # circle
            (ax <= (dy + r) / 2) & (dy <= r),  # triangle, apex up: width grows from 0 at top to 2r at base
            ((ax <= r) & (ay <= arm)) | ((ay <= r) & (ax <= arm)),  # cross (a plus sign)
            (dist2 <= r * r) & (dist2 >= (0.55 * r) ** 2),  # ring
        ]
    )  # (5, n, S, S)
    return masks[shape_ids, np.arange(len(shape_ids))]


def generate_shapes(count: int = 2000, size: int = 32, seed: int = 0) -> RawImages:
    """A seeded set of ``count`` RGB ``size`` x ``size`` images of one coloured shape each.

    Each image has one shape (square, circle, triangle, cross or ring) in one of
    :data:`SHAPE_COLOURS` (exact, unvaried colours), small or large, at the centre, left, right,
    top or bottom, on a plain dark or light background (a slightly tinted gray). ``attributes[i]``
    records ``shape``, ``colour``, ``size``, ``position`` and ``background``; captions are made
    from them. The same ``(count, size, seed)`` always gives the same images.
    """
    for what, value, low, high in (("count", count, 1, None), ("size", size, SHAPES_MIN_SIDE, SHAPES_MAX_SIDE)):
        check_whole_number(f"builtin:shapes {what}", what, value, low, high)
    rng = np.random.default_rng(seed)
    n, s = int(count), int(size)
    # Every random choice is drawn up front, so the images do not depend on the chunking below.
    shape_ids = rng.integers(len(SHAPE_NAMES), size=n)
    colour_ids = rng.integers(len(SHAPE_COLOURS), size=n)
    large = rng.integers(2, size=n).astype(bool)
    position_ids = rng.integers(len(SHAPE_POSITIONS), size=n)
    light = rng.integers(2, size=n).astype(bool)
    r = s * np.where(large, rng.uniform(0.24, 0.30, n), rng.uniform(0.12, 0.16, n))
    margin = s * rng.uniform(0.03, 0.08, n)  # gap between the shape and the edge it sits at
    across = s * (0.5 + rng.uniform(-0.06, 0.06, n))  # position along the edge it sits at
    centre_x, centre_y = s * (0.5 + rng.uniform(-0.05, 0.05, (2, n)))
    near, far = r + margin, s - r - margin
    position = np.array(SHAPE_POSITIONS)[position_ids]
    cx = np.select([position == "left", position == "right", position == "centre"], [near, far, centre_x], across)
    cy = np.select([position == "top", position == "bottom", position == "centre"], [near, far, centre_y], across)
    gray = np.where(light, rng.integers(200, 241, n), rng.integers(15, 56, n))
    background = np.clip(gray[:, None] + rng.integers(-8, 9, (n, 3)), 0, 255).astype(np.uint8)
    colours = np.array(list(SHAPE_COLOURS.values()), dtype=np.uint8)[colour_ids]

    pixels = np.empty((n, s, s, 3), dtype=np.uint8)
    chunk = 512  # bounds the (5, chunk, S, S) mask stack to a few MB
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        mask = _shape_masks(
            shape_ids[part], cx[part].astype(np.float32), cy[part].astype(np.float32), r[part].astype(np.float32), s
        )
        pixels[part] = np.where(mask[..., None], colours[part, None, None, :], background[part, None, None, :])

    colour_names = list(SHAPE_COLOURS)
    attributes = [
        {
            "shape": SHAPE_NAMES[shape_ids[i]],
            "colour": colour_names[colour_ids[i]],
            "size": SHAPE_SIZES[int(large[i])],
            "position": SHAPE_POSITIONS[position_ids[i]],
            "background": BACKGROUNDS[int(light[i])],
        }
        for i in range(n)
    ]
    return RawImages(pixels=pixels, names=[f"shapes#{i}" for i in range(n)], attributes=attributes)


def emoji_images(
    count: int | None = None,
    size: int = EMOJI_DEFAULT_SIDE,
    seed: int = 0,
    emoji_font=None,
    progress: bool = False,
) -> RawImages:
    """Every fully qualified emoji the colour emoji font draws, RGB ``size`` x ``size`` on white
    (see :mod:`gibbsdream.data.emoji`; rendered once per font and size, then read from the cache).

    Args:
        count: keep only this many (whole skin-tone groups, chosen by ``seed``); None: all (about
            3,800 with Noto Color Emoji 2.042 and emoji 2.16).
        size: the image side in pixels, 16..128.
        seed: which emoji ``count`` keeps (the pictures never depend on it).
        emoji_font: the font file; None: found where Linux and macOS keep one.
        progress: a progress bar while the set is rendered (the first time only).

    Returns:
        :class:`RawImages` with ``pixels`` ``(N, size, size, 3)``, ``names`` ``emoji#<code points>``,
        ``attributes`` (the emoji, its CLDR ``name``, ``subject``, ``modifiers``, ``kind``, ``base``)
        and ``groups`` (one id per base emoji).
    """
    pixels, chars = emoji_set(count, size, seed, emoji_font, progress=progress)
    _, groups = np.unique([base_emoji(e) for e in chars], return_inverse=True)
    return RawImages(
        pixels=pixels,
        names=[emoji_id(e) for e in chars],
        attributes=[emoji_attributes(e) for e in chars],
        groups=groups.astype(np.int64).reshape(-1),
    )


@dataclass(frozen=True)
class BuiltinImages:
    """A built-in image set: a description, a loader, the keyword options the loader takes, and
    whether it takes ``progress`` (a bar while it makes the images)."""

    description: str
    load: Callable[..., RawImages]
    options: tuple[str, ...] = ()
    progress: bool = False


BUILTIN_IMAGES: dict[str, BuiltinImages] = {
    "digits": BuiltinImages(
        "1,797 handwritten digits, 8x8 grayscale with 17 levels, labels 0-9 (scikit-learn)", digits_images
    ),
    "shapes": BuiltinImages(
        "generated coloured shapes, RGB, default 2,000 images of 32x32 (size up to 64), with attributes",
        generate_shapes,
        options=("count", "size", "seed"),
    ),
    "emoji": BuiltinImages(
        "every fully qualified emoji of the system's colour emoji font (about 3,800 with Noto Color Emoji), "
        "RGB, default 64x64 (size 16..128), with their CLDR names and skin tones kept on one side of the split",
        emoji_images,
        options=("count", "size", "seed", "emoji_font"),
        progress=True,
    ),
}
# The options of built-in image sets, in the order read_image_source takes them.
BUILTIN_OPTIONS = ("count", "size", "seed", "emoji_font")


# ---- datasets --------------------------------------------------------------------------------------


@dataclass
class ImageDataset:
    """Encoded images and what is known about them.

    Attributes:
        states: ``(N, C, H, W)`` long levels in ``[0, K)``.
        codec: the :class:`ImageCodec` that made them.
        names: one per image: file paths relative to the folder, or built-in ids (``digits#3``).
        labels: ``(N,)`` long class labels (built-in digits), or None.
        attributes: one dict per image (built-in shapes and emoji), or None.
        source: what was loaded (a path or ``builtin:NAME``).
        captions: one list of captions per image (``load_images(..., captions=True)``), or None.
        groups: ``(N,)`` long group ids (built-in emoji: one per base emoji), or None; a split
            keeps each group on one side.
    """

    states: torch.Tensor
    codec: ImageCodec
    names: list[str]
    labels: torch.Tensor | None = None
    attributes: list[dict] | None = None
    source: str = ""
    captions: list[list[str]] | None = None
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.states.shape[0]

    def pixels(self) -> torch.Tensor:
        """``(N, C, H, W)`` ``uint8``: the states as they look (decoded)."""
        return self.codec.decode(self.states)


def _builtin_list() -> str:
    return ", ".join(f"builtin:{n}" for n in BUILTIN_IMAGES)


def _convert_channels(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    """``(N, H, W, C)`` -> ``channels`` channels (luma as Pillow computes it, or repeated gray)."""
    if channels is None or pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    # ITU-R 601-2 luma with Pillow's fixed-point rounding, so built-ins convert like files do.
    rgb = pixels.astype(np.int64)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]


def read_image_source(
    source: str,
    *,
    channels: int | None = None,
    recursive: bool | None = None,
    count: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    emoji_font=None,
    progress: bool = False,
) -> RawImages:
    """Pixels of ``source`` (``builtin:NAME``, an image file or a folder) before encoding.

    ``count``, ``size``, ``seed`` and ``emoji_font`` are options of the built-ins that take them
    (:data:`BUILTIN_IMAGES`: ``builtin:shapes`` and ``builtin:emoji``).
    """
    _check_channels(channels)
    given = {"count": count, "size": size, "seed": seed, "emoji_font": emoji_font}
    options = {k: v for k, v in given.items() if v is not None}
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN_IMAGES:
            raise UsageError(f"unknown built-in image set {name!r}; choose one of {_builtin_list()}")
        builtin = BUILTIN_IMAGES[name]
        extra = sorted(set(options) - set(builtin.options), key=BUILTIN_OPTIONS.index)
        if extra:
            takers = [f"builtin:{n}" for n, b in BUILTIN_IMAGES.items() if set(extra) <= set(b.options)]
            verb = "applies" if len(extra) == 1 else "apply"
            hint = f"; {' and '.join(extra)} {verb} to {' and '.join(takers)}" if takers else ""
            raise ConfigError(f"builtin:{name} takes no {' or '.join(extra)} option{hint}", *extra)
        raw = builtin.load(**options, **({"progress": progress} if builtin.progress else {}))
        raw.pixels = _convert_channels(raw.pixels, channels)
        return raw
    if options:
        names = sorted(options, key=BUILTIN_OPTIONS.index)
        takers = [f"builtin:{n}" for n, b in BUILTIN_IMAGES.items() if set(names) <= set(b.options)]
        raise ConfigError(
            f"{' and '.join(names)} only {'works' if len(names) == 1 else 'work'} with built-in images "
            f"({', '.join(takers)}), not with {source}",
            *names,
        )
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"image file or folder {source} does not exist; pass an image ({IMAGE_KINDS}), a folder of "
            f"them, or {_builtin_list()}"
        )
    if path.is_dir():
        pixels, names = load_image_folder(path, channels=channels, recursive=recursive, progress=progress)
        return RawImages(pixels=pixels, names=names)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        # Never hand an arbitrary file (a captions pickle, say) to a decoder.
        raise UsageError(f"{source} is not an image file ({IMAGE_KINDS}); pass an image or a folder of them")
    return RawImages(pixels=load_image_file(path, channels, name=path.name)[None], names=[path.name])


def load_images(
    source: str,
    levels: int | None = None,
    *,
    channels: int | None = None,
    recursive: bool | None = None,
    codec: ImageCodec | None = None,
    count: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    emoji_font=None,
    captions: bool = False,
    progress: bool = False,
) -> ImageDataset:
    """Load and encode images: ``builtin:NAME``, one image file, or a folder of them.

    Args:
        source: ``builtin:digits``, ``builtin:shapes``, ``builtin:emoji``, a file ({kinds}) or a folder (see
            :func:`load_image_folder`; subfolders are read when the folder itself has no images).
        levels: ``K`` (2..256). Default: the built-in's own (17 for digits), else 256; or the
            ``codec``'s.
        channels: force 1 (grayscale) or 3 (RGB); default: as the files are.
        recursive: for folders; see :func:`find_image_files`.
        codec: a model's codec the images must fit (its levels are used; grayscale files are
            made RGB for an RGB model; any other mismatch raises UsageError naming the image).
        count, size, seed: options of ``builtin:shapes`` (2,000 images, 32x32, seed 0) and
            ``builtin:emoji`` (all of them, 64x64; ``seed`` picks the ``count`` emoji kept).
        emoji_font: ``builtin:emoji``'s font file (default: the system's colour emoji font).
        captions: also read the images' captions (see :func:`gibbsdream.data.captions.load_captions`;
            a folder needs a ``captions.json`` or a captions pickle beside the images, read safely).
        progress: a progress bar while a large folder is read (see :func:`load_image_folder`) or
            the emoji are rendered.

    Returns:
        An :class:`ImageDataset` with ``states`` ``(N, C, H, W)``.
    """
    if levels is not None:
        check_levels(levels)
    if codec is not None:
        if levels is not None and levels != codec.levels:
            raise UsageError(f"levels {levels} differ from the model's {codec.levels}; leave levels unset")
        levels = codec.levels
        if channels is None and codec.channels == 3:
            channels = 3  # gray -> RGB loses nothing; RGB -> gray is left to the user
    raw = read_image_source(
        source,
        channels=channels,
        recursive=recursive,
        count=count,
        size=size,
        seed=seed,
        emoji_font=emoji_font,
        progress=progress,
    )
    if levels is None:
        levels = raw.native_levels or MAX_LEVELS
    if codec is None:
        codec = ImageCodec.for_pixels(raw.pixels, levels)
    else:
        h, w, c = raw.pixels.shape[1:]
        one = len(raw.names) == 1
        codec.check_shape((c, h, w), name=raw.names[0] if one else None, where=None if one else source)
    return ImageDataset(
        states=codec.encode(raw.pixels),
        codec=codec,
        names=raw.names,
        labels=None if raw.labels is None else torch.as_tensor(raw.labels, dtype=torch.long),
        attributes=raw.attributes,
        source=source,
        captions=_captions(source, raw, seed) if captions else None,
        groups=None if raw.groups is None else torch.as_tensor(raw.groups, dtype=torch.long),
    )


def _captions(source: str, raw: RawImages, seed: int | None) -> list[list[str]]:
    return load_captions(source, raw.names, labels=raw.labels, attributes=raw.attributes, seed=seed or 0)


load_images.__doc__ = load_images.__doc__.format(kinds=IMAGE_KINDS)


def images_to_fill(ckpt, image: str, progress: bool = False) -> tuple[torch.Tensor, list[str], bool]:
    """``image`` (``inpaint``'s and ``sweep``'s images to fill): a file, a folder, or ``heldout[:N]``
    (the checkpoint's held-out test images) -> (states ``(N, C, H, W)``, names, whether many)."""
    if image.startswith("heldout"):
        _, _, count = image.partition(":")
        test = ckpt.data.get("test")
        if test is None or len(test) == 0:
            raise ConfigError(
                f"checkpoint {ckpt.path} keeps no held-out images; give image a file or a folder", "image"
            )
        try:
            n = int(count) if count else len(test)
        except ValueError:
            raise ConfigError(f'image="heldout:N" needs a whole number N, got {image!r}', "image") from None
        if n < 1:
            raise ConfigError(f'image="heldout:N" needs N >= 1, got {image!r}', "image")
        n = min(n, len(test))
        return test[:n], [f"heldout-{i:04d}.png" for i in range(n)], True
    path = Path(image)
    if not path.exists():
        raise ConfigError(
            f"image {image} does not exist; give an image file, a folder of images, or heldout:N", "image"
        )
    dataset = load_images(str(path), codec=ckpt.codec, progress=progress)
    return dataset.states, list(dataset.names), path.is_dir()
