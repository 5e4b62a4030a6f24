"""Image codec, image files and folders, built-in image sets, PNG/GIF output."""

import builtins
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gibbsdream import UsageError
from gibbsdream.data import (
    BUILTIN_IMAGES,
    ImageCodec,
    load_image_file,
    load_image_folder,
    load_images,
    save_png,
)
from gibbsdream.data.images import SHAPE_COLOURS, generate_shapes
from gibbsdream.viz import chain_gif, image_grid, save_grid_png

# ---- codec round trips ------------------------------------------------------------------------------


def test_every_level_survives_decode_then_encode_for_every_k():
    # Exhaustive (33k values), so no K or level can slip through a sample.
    for k in range(2, 257):
        codec = ImageCodec(levels=k, channels=1, height=1, width=k)
        q = torch.arange(k).view(1, 1, 1, k)
        shown = codec.decode(q)
        assert shown.dtype == torch.uint8
        assert int(shown[0, 0, 0, 0]) == 0 and int(shown[0, 0, 0, -1]) == 255
        assert torch.equal(codec.encode(shown), q)
        assert torch.equal(codec.decode(codec.encode(shown)), shown)  # levels are fixed points


@settings(max_examples=200, deadline=None)
@given(k=st.integers(2, 256), values=st.lists(st.integers(0, 255), min_size=1, max_size=40))
def test_encode_is_rounding_to_the_nearest_level(k, values):
    codec = ImageCodec(levels=k, channels=1, height=1, width=len(values))
    p = np.array(values, dtype=np.uint8).reshape(1, 1, len(values))  # numpy (B, H, W)
    q = codec.encode(p)
    assert q.shape == (1, 1, 1, len(values)) and q.dtype == torch.long
    for value, level in zip(values, q.flatten().tolist()):
        # exact rational arithmetic: the level is the nearest to value (K-1)/255 (never a tie)
        assert abs(2 * value * (k - 1) - 2 * 255 * level) < 255
    # decoding then re-encoding gives the same levels; the shown pixel is the nearest level's
    assert torch.equal(codec.encode(codec.decode(q)), q)
    shown = codec.decode(q).flatten().tolist()
    for level, pixel in zip(q.flatten().tolist(), shown):
        assert abs(2 * level * 255 - 2 * (k - 1) * pixel) <= k - 1  # round(q 255 / (K-1)), halves up


@settings(max_examples=100, deadline=None)
@given(k=st.integers(2, 256), data=st.data())
def test_decode_encode_decode_is_decode_rgb(k, data):
    codec = ImageCodec(levels=k, channels=3, height=2, width=3)
    q = torch.tensor(data.draw(st.lists(st.integers(0, k - 1), min_size=18, max_size=18))).view(1, 3, 2, 3)
    shown = codec.decode(q)
    assert torch.equal(codec.decode(codec.encode(shown)), shown)
    # channel-last numpy gives the same states as the channel-first tensor
    assert torch.equal(codec.encode(shown.permute(0, 2, 3, 1).numpy()), q)


def test_decode_rounds_halves_up():
    codec = ImageCodec(levels=3, channels=1, height=1, width=3)
    assert codec.decode(torch.tensor([0, 1, 2]).view(1, 1, 1, 3)).flatten().tolist() == [0, 128, 255]


def test_codec_rejects_bad_settings_and_inputs():
    for levels in (1, 257, 0, 2.5, True):
        with pytest.raises(UsageError, match="levels"):
            ImageCodec(levels=levels, channels=1, height=8, width=8)
    with pytest.raises(UsageError, match="channels"):
        ImageCodec(levels=4, channels=2, height=8, width=8)
    with pytest.raises(UsageError, match="height"):
        ImageCodec(levels=4, channels=1, height=0, width=8)
    codec = ImageCodec(levels=4, channels=1, height=2, width=2)
    with pytest.raises(UsageError, match="uint8"):
        codec.encode(np.zeros((1, 2, 2), dtype=np.float32))
    with pytest.raises(UsageError, match="uint8"):
        codec.encode(torch.zeros(1, 1, 2, 2))
    with pytest.raises(UsageError, match="levels from 0 to 4"):
        codec.decode(torch.tensor([0, 1, 2, 4]).view(1, 1, 2, 2))


def test_check_names_the_image_and_what_the_model_takes():
    codec = ImageCodec(levels=17, channels=1, height=8, width=8)
    with pytest.raises(UsageError) as err:
        codec.check(torch.zeros(1, 3, 16, 16, dtype=torch.long), name="x.png")
    message = str(err.value)
    assert "image x.png is 16x16 RGB" in message
    assert "this model takes 8x8 grayscale images" in message
    assert "resize it to 8x8 and convert it to grayscale" in message
    with pytest.raises(UsageError, match="resize it to 8x8 first"):
        codec.check(torch.zeros(1, 1, 8, 9, dtype=torch.long), name="x.png")
    with pytest.raises(UsageError, match="17 levels"):
        codec.check(torch.full((1, 1, 8, 8), 17), name="x.png")
    codec.check(torch.full((2, 1, 8, 8), 16))  # fits: no error


def test_codec_to_dict_from_dict():
    codec = ImageCodec(levels=17, channels=3, height=32, width=24)
    d = json.loads(json.dumps(codec.to_dict()))
    assert d["kind"] == "image"
    assert ImageCodec.from_dict(d) == codec
    assert codec.shape == (3, 32, 24) and codec.num_categories == 17
    with pytest.raises(UsageError, match="image codec"):
        ImageCodec.from_dict({"kind": "string", "alphabet": "ab", "max_length": 3})
    with pytest.raises(UsageError, match="lack 'width'"):
        ImageCodec.from_dict({"kind": "image", "levels": 4, "channels": 1, "height": 2})


# ---- files and folders -----------------------------------------------------------------------------


def _write(path, array, mode=None, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, **save)
    return path


def _gray(seed, h=8, w=8):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(seed, h=8, w=8):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grayscale_folder_sorted_exact_and_other_files_ignored(tmp_path):
    for i in (2, 0, 1):
        _write(tmp_path / f"img{i}.png", _gray(i))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "data.npy").write_bytes(b"\x93NUMPY")
    (tmp_path / ".hidden.png").write_bytes(b"junk")  # hidden files are skipped, never opened
    pixels, names = load_image_folder(tmp_path)
    assert names == ["img0.png", "img1.png", "img2.png"]
    assert pixels.shape == (3, 8, 8, 1) and pixels.dtype == np.uint8
    for i in range(3):
        assert np.array_equal(pixels[i, ..., 0], _gray(i))
    data = load_images(str(tmp_path))
    assert data.codec == ImageCodec(levels=256, channels=1, height=8, width=8)
    assert torch.equal(data.states, torch.from_numpy(pixels).permute(0, 3, 1, 2).long())  # K = 256: identity
    assert data.names == names and data.labels is None and data.attributes is None


def test_rgb_folder_and_gray_files_become_rgb(tmp_path):
    _write(tmp_path / "a.png", _rgb(1))
    _write(tmp_path / "b.png", _gray(2))
    _write(tmp_path / "c.bmp", _rgb(3))
    pixels, names = load_image_folder(tmp_path)
    assert names == ["a.png", "b.png", "c.bmp"] and pixels.shape == (3, 8, 8, 3)
    assert np.array_equal(pixels[0], _rgb(1)) and np.array_equal(pixels[2], _rgb(3))
    assert all(np.array_equal(pixels[1, ..., c], _gray(2)) for c in range(3))
    forced, _ = load_image_folder(tmp_path, channels=1)
    assert forced.shape == (3, 8, 8, 1)
    assert np.array_equal(forced[1, ..., 0], _gray(2))
    luma = np.asarray(Image.fromarray(_rgb(1)).convert("L"))
    assert np.array_equal(forced[0, ..., 0], luma)
    data = load_images(str(tmp_path), levels=4, channels=1)
    assert data.states.shape == (3, 1, 8, 8) and int(data.states.max()) <= 3


def test_gif_first_frame_gray_palette_and_rgba(tmp_path):
    frames = [Image.fromarray(_gray(i), mode="L").convert("P") for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    array = load_image_file(tmp_path / "anim.gif")
    assert array.shape == (8, 8, 1)  # a palette of grays is grayscale
    assert np.array_equal(array[..., 0], _gray(0))
    rgba = np.concatenate([_rgb(4), np.full((8, 8, 1), 7, np.uint8)], axis=-1)
    _write(tmp_path / "alpha.png", rgba, mode="RGBA")
    assert np.array_equal(load_image_file(tmp_path / "alpha.png"), _rgb(4))  # alpha dropped
    _write(tmp_path / "photo.jpg", _rgb(5), quality=95)
    assert load_image_file(tmp_path / "photo.jpg").shape == (8, 8, 3)


def test_folder_problems_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_images(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(UsageError, match="no images"):
        load_images(str(empty))
    mixed = tmp_path / "mixed"
    _write(mixed / "a.png", _gray(0, 8, 8))
    _write(mixed / "b.png", _gray(1, 16, 16))
    with pytest.raises(UsageError, match=r"different sizes \(8x8 in a.png, 16x16 in b.png\); resize"):
        load_images(str(mixed))
    wide = tmp_path / "wide"
    _write(wide / "a.png", _gray(0, 8, 8))
    _write(wide / "b.png", _gray(1, 8, 12))  # 12 wide, 8 tall: sizes are WIDTHxHEIGHT
    with pytest.raises(UsageError, match="12x8 in b.png"):
        load_images(str(wide))
    corrupt = tmp_path / "corrupt"
    _write(corrupt / "good.png", _gray(0))
    (corrupt / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    with pytest.raises(UsageError, match="bad.png"):
        load_images(str(corrupt))
    truncated = tmp_path / "truncated"
    data = (_write(tmp_path / "whole.png", _rgb(0, 32, 32))).read_bytes()
    truncated.mkdir()
    (truncated / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="cut.png"):
        load_images(str(truncated))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="not an image file"):
        load_images(str(tmp_path / "notes.txt"))
    with pytest.raises(UsageError, match="channels"):
        load_images(str(mixed), channels=2)
    with pytest.raises(UsageError, match="levels"):
        load_images(str(mixed), levels=1)


def test_images_must_fit_a_model_codec(tmp_path):
    _write(tmp_path / "x.png", _rgb(0, 16, 16))
    codec = ImageCodec(levels=17, channels=1, height=8, width=8)
    with pytest.raises(UsageError) as err:
        load_images(str(tmp_path / "x.png"), codec=codec)
    assert "image x.png is 16x16 RGB; this model takes 8x8 grayscale images: resize it to 8x8" in str(err.value)
    _write(tmp_path / "g.png", _gray(0, 8, 8))
    rgb_codec = ImageCodec(levels=5, channels=3, height=8, width=8)
    data = load_images(str(tmp_path / "g.png"), codec=rgb_codec)  # gray -> RGB loses nothing: allowed
    assert data.codec is rgb_codec and data.states.shape == (1, 3, 8, 8)
    with pytest.raises(UsageError, match="differ from the model's 5"):
        load_images(str(tmp_path / "g.png"), levels=4, codec=rgb_codec)


class _Trap:
    """Unpickling this creates a file: evidence that something unpickled the captions."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_class_project_layout_reads_subfolders_and_never_opens_the_pickle(tmp_path, monkeypatch):
    root = tmp_path / "project"
    marker = tmp_path / "UNPICKLED"
    _write(root / "train2014" / "COCO_train_1.jpg", _rgb(1, 64, 64), quality=95)
    _write(root / "train2014" / "COCO_train_2.jpg", _gray(2, 64, 64), quality=95)  # some are grayscale
    _write(root / "val2014" / "COCO_val_1.jpg", _rgb(3, 64, 64), quality=95)
    (root / "dict_key_imgID_value_caps_train_and_valid.pkl").write_bytes(pickle.dumps({"x": _Trap(str(marker))}))
    (root / "train2014" / "captions.pkl").write_bytes(pickle.dumps(_Trap(str(marker))))

    opened = []
    real_open = builtins.open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("the image loader must never unpickle")

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)

    data = load_images(str(root))
    assert data.names == ["train2014/COCO_train_1.jpg", "train2014/COCO_train_2.jpg", "val2014/COCO_val_1.jpg"]
    assert data.states.shape == (3, 3, 64, 64)  # the majority is RGB: the gray JPEG is made RGB
    assert torch.equal(data.states[1, 0], data.states[1, 1]) and torch.equal(data.states[1, 1], data.states[1, 2])
    with pytest.raises(UsageError, match="not an image file"):
        load_images(str(root / "dict_key_imgID_value_caps_train_and_valid.pkl"))
    with pytest.raises(UsageError, match="no images"):
        load_image_folder(root, recursive=False)
    assert not any(name.endswith(".pkl") for name in opened)
    assert not marker.exists()


# ---- built-in image sets ---------------------------------------------------------------------------


def test_builtin_digits():
    from sklearn.datasets import load_digits

    data = load_images("builtin:digits")
    assert data.states.shape == (1797, 1, 8, 8)
    assert data.codec.levels == 17 and int(data.states.min()) == 0 and int(data.states.max()) == 16
    raw = torch.from_numpy(load_digits().images).long()
    assert torch.equal(data.states[:, 0], raw)  # with K = 17, level v is the value v
    assert data.labels.shape == (1797,) and set(data.labels.tolist()) == set(range(10))
    assert data.names[3] == "digits#3" and data.source == "builtin:digits"
    assert torch.equal(data.pixels()[:, 0].long(), (raw * 510 + 16) // 32)  # round(v 255 / 16)
    eight = load_images("builtin:digits", levels=256)
    assert eight.codec.levels == 256 and torch.equal(eight.states, data.pixels().long())
    with pytest.raises(UsageError, match="builtin:digits takes no size option; size applies to builtin:shapes"):
        load_images("builtin:digits", size=16)


def test_unknown_builtin_lists_the_valid_names():
    with pytest.raises(UsageError) as err:
        load_images("builtin:mnist")
    assert all(f"builtin:{name}" in str(err.value) for name in BUILTIN_IMAGES)


def test_builtin_shapes_deterministic_and_shaped():
    a = load_images("builtin:shapes", count=300, seed=5)
    b = load_images("builtin:shapes", count=300, seed=5)
    c = load_images("builtin:shapes", count=300, seed=6)
    assert a.states.shape == (300, 3, 32, 32) and a.codec.levels == 256
    assert torch.equal(a.states, b.states) and a.attributes == b.attributes
    assert not torch.equal(a.states, c.states)
    assert len(a.attributes) == len(a.names) == 300 and a.labels is None
    assert set(a.attributes[0]) == {"shape", "colour", "size", "position", "background"}
    # every value of every attribute occurs
    for key in ("shape", "colour", "size", "position", "background"):
        assert len({attrs[key] for attrs in a.attributes}) > 1
    default = load_images("builtin:shapes")
    assert default.states.shape == (2000, 3, 32, 32)
    assert load_images("builtin:shapes", count=4, size=64).states.shape == (4, 3, 64, 64)
    for bad in ({"size": 65}, {"size": 8}, {"count": 0}):
        with pytest.raises(UsageError, match="builtin:shapes"):
            load_images("builtin:shapes", **bad)


def test_shapes_pixels_match_their_attributes():
    raw = generate_shapes(count=400, size=32, seed=0)
    for pixels, attrs in zip(raw.pixels, raw.attributes):
        colour = np.array(SHAPE_COLOURS[attrs["colour"]], dtype=np.uint8)
        mask = (pixels == colour).all(axis=-1)
        background = pixels[~mask]
        assert mask.any() and (background == background[0]).all()  # one shape on a plain background
        assert (background.mean() > 128) == (attrs["background"] == "light")
        ys, xs = np.nonzero(mask)
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2  # bounding-box centre
        where = attrs["position"]
        if where == "left":
            assert cx < 14
        elif where == "right":
            assert cx > 18
        elif where == "top":
            assert cy < 14
        elif where == "bottom":
            assert cy > 18
        else:
            assert 12 < cx < 20 and 12 < cy < 20
        extent = max(np.ptp(xs), np.ptp(ys)) + 1
        assert (extent >= 14) if attrs["size"] == "large" else (extent <= 11)
    reds = [p for p, attrs in zip(raw.pixels, raw.attributes) if attrs["colour"] == "red"]
    assert reds
    for pixels in reds:
        shape = pixels[(pixels != pixels[0, 0]).any(axis=-1)]  # corners are background
        r, g, b = shape.astype(int).mean(axis=0)
        assert r > 180 and g < 80 and b < 80


# ---- PNG and GIF output ----------------------------------------------------------------------------


def test_save_png_states_scaled_and_atomic(tmp_path):
    codec = ImageCodec(levels=17, channels=1, height=8, width=8)
    states = torch.randint(0, 17, (1, 8, 8), generator=torch.Generator().manual_seed(0))
    path = save_png(tmp_path / "out" / "digit.png", states, codec, scale=4)
    with Image.open(path) as img:
        assert img.mode == "L" and img.size == (32, 32)
        back = np.asarray(img)
    expected = codec.decode(states[None])[0, 0].numpy().repeat(4, 0).repeat(4, 1)
    assert np.array_equal(back, expected)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["digit.png"]  # no temporary file left
    rgb = _rgb(0)
    save_png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb)
    with pytest.raises(UsageError, match="pass the codec"):
        save_png(tmp_path / "x.png", states)
    with pytest.raises(UsageError, match="scale"):
        save_png(tmp_path / "x.png", rgb, scale=0)


def test_image_grid_layout():
    images = torch.stack([torch.full((1, 2, 3), 10 * i, dtype=torch.uint8) for i in range(1, 6)])
    grid = image_grid(images, columns=3, pad=1, pad_value=0, scale=2)
    assert grid.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 1)
    assert (grid[1:5, 1:7] == 10).all() and (grid[1:5, 8:14] == 20).all() and (grid[6:10, 1:7] == 40).all()
    assert (grid[0] == 0).all() and (grid[:, 7] == 0).all() and (grid[6:10, 15:21] == 0).all()  # pads, empty slot
    assert image_grid(images).shape == (2 * 3 + 1, 3 * 4 + 1, 1)  # default: ceil(sqrt(5)) = 3 columns


def _read_gif(path):
    with Image.open(path) as img:
        frames, durations = [], []
        for i in range(img.n_frames):
            img.seek(i)
            durations.append(img.info["duration"])
            frames.append(np.asarray(img.convert("RGB")))
        return frames, durations, img.info.get("loop")


def test_chain_gif_grayscale_digits_exact(tmp_path):
    codec = ImageCodec(levels=17, channels=1, height=8, width=8)
    frames = torch.randint(0, 17, (4, 3, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    path = chain_gif(frames, codec, tmp_path / "chain.gif", duration_ms=120, hold_last_ms=1500, columns=2)
    decoded, durations, loop = _read_gif(path)
    assert len(decoded) == 4 and loop == 0
    assert durations == [120, 120, 120, 1500]
    assert decoded[0].shape == (2 * 65 + 1, 2 * 65 + 1, 3)  # default scale 8: 64 px tall
    for f in range(4):
        expected = image_grid(codec.decode(frames[f]), columns=2, scale=8)[..., 0]
        assert all(np.array_equal(decoded[f][..., c], expected) for c in range(3))
    assert [p.name for p in tmp_path.iterdir()] == ["chain.gif"]


def test_chain_gif_rgb_hole_in_first_frame_only(tmp_path):
    codec = ImageCodec(levels=4, channels=3, height=6, width=6)
    frames = torch.randint(0, 4, (3, 2, 3, 6, 6), generator=torch.Generator().manual_seed(2))
    known = torch.ones(2, 3, 6, 6, dtype=torch.bool)
    known[:, 1, 2:4, 2:4] = False  # one channel unknown is enough to be a hole
    path = chain_gif(frames, codec, tmp_path / "rgb.gif", known, scale=1, columns=2, pad=0)
    decoded, durations, _ = _read_gif(path)
    assert len(decoded) == 3 and durations[-1] == 1500
    hole = np.zeros((6, 12), dtype=bool)
    hole[2:4, 2:4] = hole[2:4, 8:10] = True
    assert (decoded[0][hole] == (255, 0, 255)).all()
    expected0 = image_grid(codec.decode(frames[0]), columns=2, pad=0)
    assert np.array_equal(decoded[0][~hole], expected0[~hole])
    for f in (1, 2):  # later frames show the states, exactly (64 colours fit a GIF palette)
        assert np.array_equal(decoded[f], image_grid(codec.decode(frames[f]), columns=2, pad=0))
    gray = ImageCodec(levels=17, channels=1, height=6, width=6)
    gray_frames = torch.randint(0, 17, (2, 2, 1, 6, 6), generator=torch.Generator().manual_seed(3))
    gray_known = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    gray_known[0, 0, 0, 0] = False
    decoded, _, _ = _read_gif(chain_gif(gray_frames, gray, tmp_path / "g.gif", gray_known, scale=1, pad=0, columns=2))
    assert tuple(decoded[0][0, 0]) == (255, 0, 255) and tuple(decoded[1][0, 0]) != (255, 0, 255)
    with pytest.raises(UsageError, match="known must be a bool tensor"):
        chain_gif(frames, codec, tmp_path / "x.gif", known[:1])


def test_chain_gif_many_colours_one_palette(tmp_path):
    codec = ImageCodec(levels=256, channels=3, height=16, width=16)
    frames = torch.randint(0, 256, (3, 4, 3, 16, 16), generator=torch.Generator().manual_seed(4))
    decoded, durations, loop = _read_gif(chain_gif(frames, codec, tmp_path / "many.gif", scale=1, pad=0))
    assert len(decoded) == 3 and loop == 0 and durations == [100, 100, 1500]
    expected = image_grid(codec.decode(frames[2]), pad=0).astype(int)
    assert np.abs(decoded[2].astype(int) - expected).mean() < 24  # 3,072 colours in 256: close, not exact


def test_chain_gif_identical_frames_keep_the_total_time(tmp_path):
    codec = ImageCodec(levels=2, channels=1, height=4, width=4)
    first = torch.zeros(1, 1, 1, 4, 4, dtype=torch.long)
    frames = torch.cat([first, first + 1, first + 1])  # the chain stops changing
    _, durations, _ = _read_gif(chain_gif(frames, codec, tmp_path / "still.gif", duration_ms=100, hold_last_ms=1000))
    assert sum(durations) == 100 + 100 + 1000 and durations[-1] >= 1000


def test_save_grid_png_of_states(tmp_path):
    data = load_images("builtin:shapes", count=6, size=16)
    path = save_grid_png(tmp_path / "grid.png", data.states, data.codec, columns=3)
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (3 * 17 + 1, 2 * 17 + 1)
        assert np.array_equal(np.asarray(img), image_grid(data.pixels(), columns=3))
