"""Pictures of images and sampling chains: grids, PNGs and animated GIFs, and the one place that
encodes and writes picture files.

Pixel layouts: tensors are channel-first ``(N, C, H, W)``, numpy arrays channel-last
``(N, H, W, C)`` (``(N, H, W)`` for grayscale), and what these functions return is a numpy
``(H', W', C)`` picture. Every picture file gibbsdream writes goes through :func:`image_bytes`
(PNG, JPEG, BMP, one-frame GIF) or :func:`gif_bytes` (animations), and every file is written
atomically (temporary file, then rename) by :func:`write_image` / :func:`write_png` /
:func:`write_gif`. Codecs (:class:`gibbsdream.data.images.ImageCodec`) are only called here,
never imported, so :mod:`gibbsdream.data` can write through this module without a cycle.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import UsageError
from .files import atomic_write_bytes

if TYPE_CHECKING:  # annotations only: data.images writes its PNGs through this module
    from .data.images import ImageCodec

CHANNEL_WORDS = {1: "grayscale", 3: "RGB"}  # the channel counts a picture may have
WRITE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # what image_bytes encodes (Pillow's format names)
JPEG_QUALITY = 95

DEFAULT_PAD_VALUE = 128  # mid gray: visible between black digits' backgrounds and light shapes'
DEFAULT_HOLE_COLOR = (255, 0, 255)  # magenta: none of the built-in shape colours or backgrounds
MIN_GIF_SIDE = 64  # default upscaling makes each image at least this many pixels tall
GIF_PALETTE_SIZE = 256


def pixels_nchw(pixels) -> torch.Tensor:
    """``uint8`` pixels as a ``(B, C, H, W)`` tensor (a view where possible).

    Takes a ``uint8`` tensor ``(B, C, H, W)`` or numpy array ``(B, H, W)`` / ``(B, H, W, C)``
    with ``C`` in (1, 3); anything else raises UsageError.
    """
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8:
            raise UsageError(f"pixels must be uint8 (0..255), got a {pixels.dtype} array; convert them first")
        if pixels.ndim == 3:
            pixels = pixels[..., None]
        if pixels.ndim != 4 or pixels.shape[-1] not in CHANNEL_WORDS:
            raise UsageError(
                f"a numpy batch of images must be (N, H, W) or (N, H, W, C) with C = 1 or 3, got {pixels.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    pixels = torch.as_tensor(pixels)
    if pixels.dtype != torch.uint8:
        raise UsageError(f"pixels must be uint8 (0..255), got a {pixels.dtype} tensor; convert them first")
    if pixels.dim() != 4 or pixels.shape[1] not in CHANNEL_WORDS:
        raise UsageError(f"a tensor batch of images must be (B, C, H, W) with C = 1 or 3, got {tuple(pixels.shape)}")
    return pixels


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(..., H, W, C)`` by an integer ``scale`` (>= 1)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise UsageError(f"scale must be a whole number >= 1, got {scale!r}")
    if scale == 1:
        return pixels
    return np.repeat(np.repeat(pixels, scale, axis=-3), scale, axis=-2)


# ---- picture files ---------------------------------------------------------------------------------


def image_bytes(pixels: np.ndarray, format: str = "PNG") -> bytes:
    """Encode one picture as a file's bytes.

    Args:
        pixels: ``uint8`` numpy ``(H, W, C)`` with ``C`` = 1 or 3, or ``(H, W)`` (grayscale).
        format: one of :data:`WRITE_FORMATS`; JPEG is written at quality :data:`JPEG_QUALITY`.
    """
    from PIL import Image  # imported on the first picture written, not with the module (start-up time)

    if format not in WRITE_FORMATS:
        raise ValueError(f"cannot write {format!r} pictures; one of {', '.join(WRITE_FORMATS)}")
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    img = Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB")
    buffer = io.BytesIO()
    img.save(buffer, format=format, **({"quality": JPEG_QUALITY} if format == "JPEG" else {}))
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode ``(H, W, C)`` (C = 1 or 3) or ``(H, W)`` ``uint8`` pixels as a PNG file's bytes."""
    return image_bytes(pixels, "PNG")


def write_image(path, pixels: np.ndarray, format: str = "PNG") -> Path:
    """Write one picture (as in :func:`image_bytes`) to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, image_bytes(pixels, format))
    return path


def write_png(path, pixels: np.ndarray) -> Path:
    """Write ``(H, W, C)`` / ``(H, W)`` ``uint8`` pixels as a PNG, atomically; returns the path."""
    return write_image(path, pixels, "PNG")


def gif_bytes(movie: np.ndarray, durations_ms: list[int], colours: np.ndarray | None = None) -> bytes:
    """Encode an animation that loops forever as a GIF file's bytes.

    Args:
        movie: ``(F, H, W, C)`` ``uint8`` frames, ``C`` = 1 or 3.
        durations_ms: ``F`` frame durations in milliseconds.
        colours: for RGB, ``(M, 3)`` every colour the movie uses (see :func:`_palette_frames`).
    """
    images = _palette_frames(movie, colours)
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=list(durations_ms),
        loop=0,
        optimize=False,  # keep the whole palette, so colours never shift between frames
    )
    return buffer.getvalue()


def write_gif(path, movie: np.ndarray, durations_ms: list[int], colours: np.ndarray | None = None) -> Path:
    """Write :func:`gif_bytes` to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(movie, durations_ms, colours))
    return path


# ---- grids -----------------------------------------------------------------------------------------


def _whole(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{what} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _layout(n: int, columns: int | None) -> tuple[int, int]:
    """``(rows, columns)`` for ``n`` tiles; by default as square as possible."""
    cols = math.ceil(math.sqrt(n)) if columns is None else _whole(columns, "columns", 1)
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def _grid(tiles: np.ndarray, columns: int | None, pad: int, pad_value) -> np.ndarray:
    """``(N, h, w, C)`` uint8 -> ``(rows (h + pad) + pad, cols (w + pad) + pad, C)`` uint8."""
    n, h, w, c = tiles.shape
    rows, cols = _layout(n, columns)
    slots = np.empty((rows * cols, h, w, c), dtype=np.uint8)
    slots[:n] = tiles
    slots[n:] = pad_value  # empty places in the last row look like padding
    canvas = np.empty((rows, h + pad, cols, w + pad, c), dtype=np.uint8)
    canvas[...] = pad_value
    # (rows, cols, h, w, C) -> (rows, h, cols, w, C): tile rows interleave with pixel rows.
    canvas[:, :h, :, :w] = slots.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    grid = canvas.reshape(rows * (h + pad), cols * (w + pad), c)
    top_left = np.empty((grid.shape[0] + pad, grid.shape[1] + pad, c), dtype=np.uint8)
    top_left[...] = pad_value
    top_left[pad:, pad:] = grid
    return top_left


def image_grid(
    images, columns: int | None = None, pad: int = 1, scale: int = 1, pad_value: int = DEFAULT_PAD_VALUE
) -> np.ndarray:
    """Tile images into one picture.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)`` or numpy ``(N, H, W, C)`` / ``(N, H, W)``.
        columns: images per row (default: ``ceil(sqrt(N))``, a square-ish grid).
        pad: pixels of ``pad_value`` gray between images and around the grid (after scaling).
        scale: integer nearest-neighbour enlargement of every image.

    Returns:
        ``(rows (H scale + pad) + pad, columns (W scale + pad) + pad, C)`` ``uint8`` numpy array.
    """
    tiles = pixels_nchw(images).detach().cpu().permute(0, 2, 3, 1).numpy()
    if tiles.shape[0] == 0:
        raise UsageError("there are no images to put in a grid")
    pad, pad_value = _whole(pad, "pad", 0), _pad_value(pad_value)
    return _grid(upscale(tiles, scale), columns, pad, pad_value)


def _pad_value(value) -> int:
    value = _whole(value, "pad value", 0)
    if value > 255:
        raise UsageError(f"pad value must be a gray level 0..255, got {value}")
    return value


def save_grid_png(
    path,
    images,
    codec: ImageCodec | None = None,
    *,
    columns: int | None = None,
    pad: int = 1,
    scale: int = 1,
    pad_value: int = DEFAULT_PAD_VALUE,
) -> Path:
    """Write a grid of images as one PNG, atomically; returns the path.

    ``images`` are ``uint8`` pixels as in :func:`image_grid`, or ``(N, C, H, W)`` integer states
    with their ``codec``.
    """
    if isinstance(images, torch.Tensor) and images.dtype != torch.uint8:
        if codec is None:
            raise UsageError("these are image states (levels, not 8-bit pixels); pass the codec to decode them")
        codec.check(images)
        images = codec.decode(images)
    return write_png(path, image_grid(images, columns=columns, pad=pad, scale=scale, pad_value=pad_value))


def _hole_mask(known, shape: tuple) -> np.ndarray:
    """``(B, C, H, W)`` bool ``known`` -> ``(B, H, W)`` numpy bool, True where any channel is unknown."""
    known = torch.as_tensor(known)
    if tuple(known.shape) != tuple(shape) or known.dtype != torch.bool:
        raise UsageError(
            f"known must be a bool tensor of shape {tuple(shape)} (one per image), "
            f"got {known.dtype} {tuple(known.shape)}"
        )
    return (~known).any(dim=1).cpu().numpy()


def _rgb(tiles: np.ndarray) -> np.ndarray:
    """``(..., C)`` uint8 with C = 1 or 3 -> ``(..., 3)``."""
    return np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles


def inpaint_comparison(
    originals,
    known,
    fills,
    *,
    scale: int | None = None,
    pad: int = 1,
    hole_color: tuple[int, int, int] = DEFAULT_HOLE_COLOR,
    pad_value: int = DEFAULT_PAD_VALUE,
) -> np.ndarray:
    """A picture that compares fills with what they filled: one row per image, holding the original,
    the image with its hole painted ``hole_color``, then each of its fills.

    Args:
        originals: ``(N, C, H, W)`` uint8 pixels (or numpy ``(N, H, W, C)``): the images before filling.
        known: ``(N, C, H, W)`` bool, True where a pixel was given; a pixel is shown as hole where
            any of its channels was not.
        fills: ``N * S`` fills as uint8 pixels, image ``i``'s in rows ``i*S ... i*S+S-1`` (as
            :func:`gibbsdream.inpaint` returns them with ``samples=S``).
        scale: integer nearest-neighbour enlargement (default: enough for ``H`` >= 64 pixels, so an
            8x8 digit is visible).
        pad, pad_value: gray lines between the pictures, as in :func:`image_grid`.

    Returns:
        ``(N (H scale + pad) + pad, (S + 2) (W scale + pad) + pad, 3)`` uint8 numpy array.
    """
    originals = pixels_nchw(originals).detach().cpu()
    fills = pixels_nchw(fills).detach().cpu()
    n = originals.shape[0]
    if n == 0 or fills.shape[0] % n or tuple(fills.shape[1:]) != tuple(originals.shape[1:]):
        raise UsageError(
            f"fills must be a whole number of fills per image, each shaped like the originals; got "
            f"{tuple(fills.shape)} fills of {tuple(originals.shape)} originals"
        )
    per_image = fills.shape[0] // n
    hole = _hole_mask(known, originals.shape)
    if len(hole_color) != 3 or not all(0 <= int(v) <= 255 for v in hole_color):
        raise UsageError(f"hole colour must be three values 0..255 (R, G, B), got {hole_color!r}")
    height = originals.shape[2]
    scale = max(1, math.ceil(MIN_GIF_SIDE / height)) if scale is None else _whole(scale, "scale", 1)
    before = _rgb(originals.permute(0, 2, 3, 1).numpy())  # (N, H, W, 3)
    holed = before.copy()
    holed[hole] = np.array(hole_color, dtype=np.uint8)
    after = _rgb(fills.permute(0, 2, 3, 1).numpy()).reshape(n, per_image, *before.shape[1:])
    tiles = np.concatenate([before[:, None], holed[:, None], after], axis=1)  # (N, S + 2, H, W, 3)
    pad, pad_value = _whole(pad, "pad", 0), _pad_value(pad_value)
    return _grid(upscale(tiles.reshape(-1, *tiles.shape[2:]), scale), per_image + 2, pad, pad_value)


# ---- animated GIFs ---------------------------------------------------------------------------------


def _rgb_keys(pixels: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 -> ``(...)`` int64 ``0xRRGGBB``."""
    p = pixels.astype(np.int64)
    return (p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]


def _palette_frames(movie: np.ndarray, colours: np.ndarray | None) -> list:
    """``(F, H, W, C)`` uint8 pictures -> Pillow ``P`` images that all share one palette.

    GIF frames hold at most 256 colours. ``colours`` (``(M, 3)``, None for grayscale) are all
    the colours an RGB movie uses; when there are at most 256 the palette is exactly them
    (grayscale content always fits: the palette is then the 256 grays, index = gray value), so
    every pixel is kept exactly.
    Otherwise one median-cut palette is fitted to a sample of the colours and every frame is
    mapped to its nearest entries, without dithering: dithering would make the frames of a
    converging chain flicker.
    """
    from PIL import Image  # PIL on the first picture written, not with the module (start-up time)

    if movie.shape[-1] == 1:
        palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
        indices = movie[..., 0]
        return [_p_image(frame, palette) for frame in indices]
    keys = np.unique(_rgb_keys(colours))
    if len(keys) <= GIF_PALETTE_SIZE:
        palette = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)
        indices = np.searchsorted(keys, _rgb_keys(movie)).astype(np.uint8)
        return [_p_image(frame, palette) for frame in indices]
    rng = np.random.default_rng(0)  # a fixed sample, so the same chain gives the same GIF
    sample = colours[rng.integers(len(colours), size=min(len(colours), 1 << 20))]
    fitted = Image.fromarray(np.ascontiguousarray(sample[None]), mode="RGB").quantize(
        colors=GIF_PALETTE_SIZE, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    return [Image.fromarray(frame, mode="RGB").quantize(palette=fitted, dither=Image.Dither.NONE) for frame in movie]


def _p_image(indices: np.ndarray, palette: np.ndarray):
    from PIL import Image  # PIL on the first picture written, not with the module (start-up time)

    img = Image.fromarray(np.ascontiguousarray(indices), mode="P")
    img.putpalette(palette.reshape(-1).tolist())
    return img


def chain_gif(
    frames: torch.Tensor,
    codec: ImageCodec,
    path,
    known: torch.Tensor | None = None,
    *,
    duration_ms: int = 100,
    hold_last_ms: int = 1500,
    scale: int | None = None,
    columns: int | None = None,
    pad: int = 1,
    show_hole: bool = True,
    hole_color: tuple[int, int, int] = DEFAULT_HOLE_COLOR,
    pad_value: int = DEFAULT_PAD_VALUE,
    reference: torch.Tensor | None = None,
) -> Path:
    """Write an animated GIF of sampling chains (one frame per recorded step), atomically.

    Args:
        frames: ``(F, B, C, H, W)`` long states, e.g. ``Chain.frames``; every frame tiles the
            ``B`` chains in a grid.
        codec: the :class:`ImageCodec` of the states.
        path: where to write the ``.gif``.
        known: ``(B, C, H, W)`` bool, True where a pixel was given (e.g. ``Chain.known``); with
            ``show_hole`` the first frame paints the pixels with any unknown channel in
            ``hole_color``, to show what was to be filled in. Later frames show the states.
        duration_ms: how long each frame shows; ``hold_last_ms``: how long the last one does.
            GIFs count in 10 ms steps (values are rounded down to them), and most viewers show
            delays under 20 ms slower.
        scale: integer nearest-neighbour enlargement (default: enough for ``H`` >= 64 pixels).
        columns: chains per row of the grid (default: a square-ish grid).
        pad, pad_value: gray lines between the chains, as in :func:`image_grid`.
        reference: ``(R, C, H, W)`` long states shown, unchanging, before the chains in every
            frame: e.g. the true image that inpainting chains try to recover (it is the answer, so
            its pixels are not painted as a hole). ``columns`` counts them as tiles too.

    The GIF loops forever. Its colours are exact when the movie uses at most 256 (any grayscale
    codec, or RGB with few levels); see :func:`_palette_frames`. Pillow merges consecutive
    identical frames into one longer frame, which looks the same: a chain that stops changing
    gives fewer GIF frames than ``F``.
    """
    frames = torch.as_tensor(frames)
    if frames.dim() != 5:
        raise UsageError(
            f"chain frames must be (frames, chains, channels, height, width), got shape {tuple(frames.shape)}; "
            "sample with frames recorded (record_every)"
        )
    num_frames, batch = frames.shape[:2]
    if num_frames == 0 or batch == 0:
        raise UsageError("the chain has no frames to animate; sample with frames recorded (record_every)")
    codec.check(frames[0])  # every frame has frame 0's shape; decode checks the levels of all
    duration_ms = _whole(duration_ms, "frame duration (ms)", 10)
    hold_last_ms = _whole(hold_last_ms, "last-frame hold (ms)", 10)
    scale = max(1, math.ceil(MIN_GIF_SIDE / codec.height)) if scale is None else _whole(scale, "scale", 1)
    pad = _whole(pad, "pad", 0)
    hole = None
    if known is not None and show_hole:
        hole = _hole_mask(known, frames.shape[1:])  # (B, H, W): a pixel is a hole if any channel is
        if not hole.any():
            hole = None
    if len(hole_color) != 3 or not all(0 <= int(v) <= 255 for v in hole_color):
        raise UsageError(f"hole colour must be three values 0..255 (R, G, B), got {hole_color!r}")

    # (F, B, H, W, C) uint8, the decoded chains.
    pixels = codec.decode(frames.detach().cpu().flatten(0, 1)).view(frames.shape).permute(0, 1, 3, 4, 2).numpy()
    channels = 3 if hole is not None else codec.channels  # a coloured hole needs RGB frames
    if channels == 3 and codec.channels == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    first = pixels[0].copy()
    if hole is not None:
        first[hole] = np.array(hole_color, dtype=np.uint8)
    if reference is not None:
        reference = torch.as_tensor(reference).detach().cpu()
        if reference.dim() != 4 or tuple(reference.shape[1:]) != tuple(frames.shape[2:]):
            raise UsageError(
                f"reference images must be (R, {', '.join(map(str, frames.shape[2:]))}) states, "
                f"got shape {tuple(reference.shape)}"
            )
        shown = codec.decode(reference).permute(0, 2, 3, 1).numpy()  # (R, H, W, C)
        shown = np.repeat(shown, 3, axis=-1) if channels == 3 and codec.channels == 1 else shown
        pixels = np.concatenate([np.broadcast_to(shown, (num_frames, *shown.shape)), pixels], axis=1)
        first = np.concatenate([shown, first])
    movie = np.stack(
        [_grid(upscale(first if f == 0 else pixels[f], scale), columns, pad, pad_value) for f in range(num_frames)]
    )  # (F, H', W', C)
    colours = None
    if channels == 3:  # grayscale needs no colour census: its palette is the 256 grays
        pad_colour = np.full((1, 3), pad_value, dtype=np.uint8)
        colours = np.concatenate([pixels.reshape(-1, 3), first.reshape(-1, 3), pad_colour])
    return write_gif(path, movie, [duration_ms] * (num_frames - 1) + [hold_last_ms], colours)


# ---- piano rolls -----------------------------------------------------------------------------------

VOICE_COLOURS = ((220, 50, 47), (38, 139, 210), (133, 153, 0), (108, 113, 196))  # soprano, alto, tenor, bass
ROLL_BACKGROUND = (250, 250, 247)
ROLL_C_LINE = (215, 215, 210)  # a faint row at every C, to read the octaves by


def piano_roll(
    pitches: np.ndarray,
    low: int,
    high: int,
    *,
    known: np.ndarray | None = None,
    cell: tuple[int, int] = (4, 3),
) -> np.ndarray:
    """A picture of voice x time pitches: one row per pitch from ``high`` (top) to ``low``, one
    column per time step, each voice in its colour (:data:`VOICE_COLOURS`), a faint line at every C.

    Args:
        pitches: ``(V, T)`` MIDI pitches, 0 where a voice is silent (at most 4 voices).
        low, high: the pitches of the bottom and top rows (notes outside are clipped to them).
        known: ``(V, T)`` bool or None; given, notes that were given (clamped) are drawn dark and
            the ones a sampler chose in their colour.
        cell: ``(width, height)`` in pixels of one time step and pitch.

    Returns:
        ``((high - low + 1) cell_h, T cell_w, 3)`` uint8 numpy array.
    """
    pitches = np.asarray(pitches)
    if pitches.ndim != 2 or not 1 <= pitches.shape[0] <= len(VOICE_COLOURS):
        raise UsageError(f"pitches must be (voices, time) with 1 to {len(VOICE_COLOURS)} voices, got {pitches.shape}")
    if not 1 <= low <= high <= 127:
        raise UsageError(f"the roll's pitches must satisfy 1 <= low <= high <= 127, got {low} and {high}")
    width, height = (_whole(c, "cell size", 1) for c in cell)
    rows, T = high - low + 1, pitches.shape[1]
    roll = np.empty((rows, T, 3), dtype=np.uint8)
    roll[:] = ROLL_BACKGROUND
    for pitch in range(low, high + 1):
        if pitch % 12 == 0:
            roll[high - pitch] = ROLL_C_LINE
    for voice in range(pitches.shape[0] - 1, -1, -1):  # the soprano drawn last, on top
        sounding = np.nonzero(pitches[voice] > 0)[0]
        row = high - np.clip(pitches[voice, sounding], low, high)
        colour = np.array(VOICE_COLOURS[voice], dtype=np.uint8)
        roll[row, sounding] = colour
        if known is not None:
            given = np.asarray(known)[voice, sounding]
            roll[row[given], sounding[given]] = colour // 3  # given notes: the voice's colour, darkened
    return roll.repeat(height, 0).repeat(width, 1)
