"""The one picture writer (gibbsdream.viz): exact PNG and GIF pixels, atomic files, and no other
module encoding pictures with Pillow."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gibbsdream
from gibbsdream.viz import WRITE_FORMATS, gif_bytes, image_bytes, png_bytes, write_gif, write_image, write_png

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (9, 7, 1), dtype=np.uint8)
RGB = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)


def decoded(payload: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(payload)))


@pytest.mark.parametrize("pixels", [GRAY, GRAY[..., 0], RGB], ids=["gray", "gray-2d", "rgb"])
def test_png_bytes_keep_every_pixel(pixels):
    back = decoded(png_bytes(pixels))
    expected = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    assert back.dtype == np.uint8 and np.array_equal(back, expected)
    assert png_bytes(pixels) == image_bytes(pixels, "PNG")


def test_write_png_is_atomic_and_makes_the_folder(tmp_path):
    path = write_png(tmp_path / "new" / "a.png", RGB)
    assert path.read_bytes() == png_bytes(RGB)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary file left behind


def test_every_format_is_readable_and_an_unknown_one_is_refused(tmp_path):
    for fmt in WRITE_FORMATS:
        path = write_image(tmp_path / f"x.{fmt.lower()}", RGB, fmt)
        assert Image.open(path).format == fmt and Image.open(path).size == (7, 9)
    lossless = np.asarray(Image.open(tmp_path / "x.bmp"))
    assert np.array_equal(lossless, RGB)
    with pytest.raises(ValueError, match="TIFF"):
        image_bytes(RGB, "TIFF")


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_frames_keep_their_pixels_and_durations(tmp_path, channels):
    levels = np.array([0, 85, 170, 255], dtype=np.uint8)  # few colours: the palette is exact
    movie = levels[RNG.integers(0, 4, (3, 5, 6, channels))]
    colours = movie.reshape(-1, 3) if channels == 3 else None
    path = write_gif(tmp_path / "m.gif", movie, [40, 50, 300], colours)
    assert path.read_bytes() == gif_bytes(movie, [40, 50, 300], colours)
    gif = Image.open(path)
    frames, durations = [], []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
        durations.append(gif.info["duration"])
    expected = np.repeat(movie, 3, axis=-1) if channels == 1 else movie
    assert np.array_equal(np.stack(frames), expected) and durations == [40, 50, 300]


def test_no_other_module_encodes_pictures():
    """PNG/GIF/JPEG bytes are made in viz alone (report's matplotlib figures excepted: savefig)."""
    root = Path(gibbsdream.__file__).parent
    encoders = re.compile(r"\.save\(\s*(buffer|path|out|f)\b|format=\"(PNG|GIF|JPEG|BMP)\"")
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "viz.py" and encoders.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
