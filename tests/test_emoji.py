"""``builtin:emoji``: names and captions from the CLDR names, skin-tone groups that a split keeps on
one side, the cache (read back, never re-drawn; a damaged file drawn again), the errors without a
font or without the ``emoji`` package, and a tiny captioned training run end to end.

Tests that draw need a colour emoji font (Debian and Ubuntu: ``fonts-noto-color-emoji``, which
``.ci/run`` installs where it can) and skip without one. They draw few emoji at 16 px: the whole set
is drawn only from a short stand-in list (``all_emoji`` patched)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_harness import assert_clean_error, assert_ok, gibbsdream_here
from gibbsdream.data import emoji as E
from gibbsdream.data.captions import emoji_captions, tokenize
from gibbsdream.data.images import load_images
from gibbsdream.errors import ConfigError, UsageError
from gibbsdream.training import split_images

pytest.importorskip("emoji")

run = gibbsdream_here


def _font() -> Path | None:
    try:
        return E.find_emoji_font()
    except ConfigError:
        return None


FONT = _font()
needs_font = pytest.mark.skipif(
    FONT is None, reason="no colour emoji font (Debian/Ubuntu: apt install fonts-noto-color-emoji)"
)
# A short stand-in for the whole list: one skin-tone group of 6, one of 26 (a couple), a flag, a
# keycap, hair, and an emoji newer than the font where the font is Noto Color Emoji 2.042.
FEW = [
    "\U0001f34e",  # red apple
    "\U0001f44d",
    "\U0001f44d\U0001f3fb",
    "\U0001f44d\U0001f3fc",
    "\U0001f44d\U0001f3fd",
    "\U0001f44d\U0001f3fe",
    "\U0001f44d\U0001f3ff",  # thumbs up and its five tones
    "\U0001f1ef\U0001f1f5",  # flag: Japan
    "#\ufe0f\u20e3",  # keycap: #
    "\U0001f468\u200d\U0001f9b0",  # man: red hair
    "\u2b1b",  # black large square
    "\u25aa\ufe0f",  # black small square
    "\U0001fae9",  # face with bags under eyes (Emoji 16)
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gibbsdream" / "emoji"


# ---- names, captions and groups (no font needed) --------------------------------------------------


@pytest.mark.parametrize(
    "e, name",
    [
        ("\U0001f9b8\U0001f3fe\u200d\u2642\ufe0f", "man superhero: medium-dark skin tone"),
        ("\U0001f34e", "red apple"),
        ("\U0001f1ef\U0001f1f5", "flag: Japan"),
        ("#\ufe0f\u20e3", "keycap: #"),
        ("\U0001f468\u200d\U0001f9b0", "man: red hair"),
        ("\U0001f9d4\U0001f3fd\u200d\u2640\ufe0f", "woman: medium skin tone, beard"),
        (
            "\U0001f469\U0001f3fe\u200d\U0001f91d\u200d\U0001f469\U0001f3fc",
            "women holding hands: medium-dark skin tone, medium-light skin tone",
        ),
        ("\U0001f45e", "man's shoe"),
        ("\U0001f44d\U0001f3fb", "thumbs up: light skin tone"),
    ],
)
def test_names_read_as_cldr_names(e, name):
    assert E.emoji_name(e).text == name


def test_every_emoji_has_a_distinct_name_and_tones_share_their_base():
    chars = E.all_emoji()
    assert len(chars) > 3000 and chars == sorted(chars)
    names = [E.emoji_name(e).text for e in chars]
    assert len(set(names)) == len(chars)
    assert all("_" not in n and ":" not in n.replace(": ", "") for n in names)
    thumbs = [e for e in chars if E.base_emoji(e) == "\U0001f44d"]
    assert len(thumbs) == 6
    couple = "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f468"  # couple with heart: woman, man
    assert len([e for e in chars if E.base_emoji(e) == couple]) == 26
    # Hair stays part of the base: a man with red hair is not a skin tone of a man.
    assert E.base_emoji("\U0001f468\u200d\U0001f9b0") != E.base_emoji("\U0001f468")


def test_emoji_captions_state_the_name_in_varied_wording_reproducibly():
    chars = E.all_emoji()
    attributes = [E.emoji_attributes(e) for e in chars]
    captions = emoji_captions(attributes, per_image=4, seed=0)
    assert captions == emoji_captions(attributes, per_image=4, seed=0)
    assert captions != emoji_captions(attributes, per_image=4, seed=1)
    for a, texts in zip(attributes, captions):
        assert len(texts) == 4 and len(set(texts)) == 4
        for text in texts:
            words = tokenize(text)
            for modifier in a["modifiers"]:  # every wording states the skin tones and hair
                assert set(tokenize(modifier)) <= set(words), text
            assert set(tokenize(a["subject"])) <= set(words), text
    by_name = {a["name"]: a for a in attributes}
    for name, expected in (
        ("red apple", "an emoji of a red apple"),
        ("red apple", "red apple"),
        ("man superhero: medium-dark skin tone", "a man superhero with medium-dark skin tone"),
        ("man superhero: medium-dark skin tone", "man superhero emoji, medium-dark skin tone"),
        ("flag: Japan", "the flag of Japan"),
        ("man: red hair", "a man with red hair"),
        ("man: bald", "an emoji of a man with a bald head"),
        ("ear: light skin tone", "an emoji of an ear with light skin tone"),
        ("people hugging", "an emoji of people hugging"),
    ):
        assert expected in emoji_captions([by_name[name]], per_image=5)[0], (name, expected)
    # Typed quotes, so that the tokenizer keeps "man's" one word.
    assert "man's" in tokenize(by_name["man's shoe"]["name"])


def test_choose_emoji_takes_whole_groups_exactly_count_and_follows_the_seed():
    chars = E.all_emoji()
    chosen = E.choose_emoji(chars, 40, seed=0)
    assert len(chosen) == 40 and chosen == [e for e in chars if e in set(chosen)]
    assert chosen == E.choose_emoji(chars, 40, seed=0)
    assert chosen != E.choose_emoji(chars, 40, seed=1)
    bases = {E.base_emoji(e) for e in chosen}
    assert [e for e in chars if E.base_emoji(e) in bases] == chosen  # whole groups only
    assert E.choose_emoji(chars, None) == chars
    assert E.choose_emoji(chars[:10], 1000) == chars[:10]
    # Emoji the font cannot draw are left out and the count is still met.
    undrawable = set(chosen[:5])
    again = E.choose_emoji(chars, 40, seed=0, drawable=lambda e: e not in undrawable)
    assert len(again) == 40 and not undrawable & set(again)


def test_grouped_split_keeps_every_group_on_one_side():
    rng = np.random.default_rng(0)
    groups = torch.as_tensor(np.repeat(np.arange(300), rng.choice([1, 1, 1, 6, 26], 300)))
    n = len(groups)
    ids = torch.arange(n)
    for holdout, seed in ((0.1, 0), (0.2, 5), (37, 2), (1, 3)):
        train, held = split_images(ids, holdout, seed, groups=groups)
        assert sorted(torch.cat([train, held]).tolist()) == list(range(n))
        assert not set(groups[train].tolist()) & set(groups[held].tolist())
        target = round(holdout * n) if isinstance(holdout, float) else holdout
        assert len(held) >= 1 and abs(len(held) - target) <= 26
        again = split_images(ids, holdout, seed, groups=groups)
        assert torch.equal(train, again[0]) and torch.equal(held, again[1])
    assert len(split_images(ids, 0, 0, groups=groups)[1]) == 0
    # Without groups the split is the one it always was.
    plain = split_images(ids, 0.1, 4)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(4))
    assert torch.equal(plain[1], order[n - round(0.1 * n) :])
    with pytest.raises(ConfigError, match="without splitting their one group"):
        split_images(torch.arange(6), 2, 0, groups=torch.zeros(6, dtype=torch.long))


# ---- errors (no font needed) ----------------------------------------------------------------------


@pytest.fixture
def no_font(monkeypatch):
    monkeypatch.setattr(E, "EMOJI_FONT_PATHS", ())
    monkeypatch.setattr(E, "EMOJI_FONT_GLOBS", ())


def test_without_a_font_the_library_names_the_package_and_the_argument(no_font):
    with pytest.raises(ConfigError) as caught:
        load_images("builtin:emoji", count=5, size=16)
    message = str(caught.value)
    assert "fonts-noto-color-emoji" in message and 'emoji_font="PATH"' in message and "--" not in message
    assert caught.value.field == "emoji_font"


def test_without_a_font_the_command_says_so_in_one_line(no_font, tmp_path):
    line = assert_clean_error(
        run("train", "nade", "--data", "builtin:emoji", "--count", 5, "--size", 16, "--out", tmp_path / "m")
    )
    assert "apt install fonts-noto-color-emoji" in line and "--emoji-font PATH" in line
    assert not (tmp_path / "m" / "config.json").exists()


def test_emoji_font_that_is_not_a_font_is_one_error_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a font\n")
    for given, expected in (
        (notes, "is not a font Pillow can open"),
        (tmp_path / "missing.ttf", "does not exist"),
        (tmp_path, "is not a file"),
    ):
        line = assert_clean_error(
            run(
                "train", "nade", "--data", "builtin:emoji", "--emoji-font", given, "--count", 5, "--out", tmp_path / "m"
            )
        )
        assert expected in line and "--emoji-font" in line and "emoji_font" not in line.replace(str(given), ""), line


def test_a_font_without_colour_emoji_is_refused(tmp_path):
    plain = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not plain.is_file():
        pytest.skip("no DejaVuSans.ttf to stand for a font without colour emoji")
    with pytest.raises(ConfigError, match="does not draw emoji in colour"):
        load_images("builtin:emoji", count=5, size=16, emoji_font=str(plain))


def test_emoji_options_apply_only_where_they_belong(tmp_path):
    line = assert_clean_error(
        run("train", "nade", "--data", "builtin:shapes", "--emoji-font", "x.ttf", "--out", tmp_path / "m")
    )
    assert "builtin:shapes takes no --emoji-font option; --emoji-font applies to builtin:emoji" in line
    line = assert_clean_error(run("train", "nade", "--data", "builtin:digits", "--size", 16, "--out", tmp_path / "m"))
    assert "--size applies to builtin:shapes and builtin:emoji" in line
    with pytest.raises(ConfigError, match="emoji_font only works with built-in images \\(builtin:emoji\\)"):
        load_images(str(tmp_path), emoji_font="x.ttf")
    for bad in ({"size": 8}, {"size": 129}, {"count": 0}, {"size": 16.0}):
        with pytest.raises(ConfigError, match="builtin:emoji (size|count) must be a whole number"):
            load_images("builtin:emoji", **bad)


def test_without_the_emoji_package_one_line_says_pip_install_emoji(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "emoji", None)  # import emoji now raises ImportError
    with pytest.raises(UsageError, match="`pip install emoji`"):
        load_images("builtin:emoji", count=5)
    line = assert_clean_error(run("train", "nade", "--data", "builtin:emoji", "--out", tmp_path / "m"))
    assert "pip install emoji" in line


# ---- drawing and the cache ------------------------------------------------------------------------


@needs_font
def test_a_few_emoji_load_as_rgb_images_on_white_with_captions_and_groups():
    data = load_images("builtin:emoji", count=20, size=16, captions=True)
    assert data.states.shape == (20, 3, 16, 16) and data.codec.levels == 256
    assert data.codec.describe() == "16x16 RGB images with 256 levels"
    pixels = data.pixels()
    corners = pixels[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners >= 250).float().mean() > 0.8  # drawn on white
    assert (pixels < 200).flatten(1).any(1).all()  # and every one shows something
    assert len(data.captions) == 20 and all(len(c) == 4 for c in data.captions)
    assert all(n.startswith("emoji#") for n in data.names) and len(set(data.names)) == 20
    bases = [a["base"] for a in data.attributes]
    assert data.groups.shape == (20,)
    assert all((data.groups[i] == data.groups[j]) == (bases[i] == bases[j]) for i in range(20) for j in range(20))
    again = load_images("builtin:emoji", count=20, size=16, captions=True)
    assert torch.equal(again.states, data.states) and again.captions == data.captions
    other = load_images("builtin:emoji", count=20, size=16, seed=1)
    assert other.names != data.names
    gray = load_images("builtin:emoji", count=20, size=16, levels=4, channels=1)
    assert gray.states.shape == (20, 1, 16, 16) and int(gray.states.max()) <= 3
    assert load_images("builtin:emoji", count=3, size=24).states.shape == (3, 3, 24, 24)


@needs_font
def test_the_whole_set_is_drawn_once_and_then_read_from_the_cache(monkeypatch, cache):
    monkeypatch.setattr(E, "all_emoji", lambda: sorted(FEW))
    pixels, drawn = E.emoji_set(size=16)
    assert pixels.shape == (len(drawn), 16, 16, 3) and pixels.dtype == np.uint8
    assert set(drawn) <= set(FEW) and "\U0001f34e" in drawn and "\U0001f1ef\U0001f1f5" in drawn
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    name = files[0].name
    assert (
        "-16px-" in name
        and f"font{E.file_sha256(FONT)[:16]}" in name
        and f"emoji{E.emoji_package().__version__}" in name
    )

    def fail(*args, **kwargs):
        raise AssertionError("drew the emoji again")

    monkeypatch.setattr(E, "render_emoji", fail)
    monkeypatch.setattr(E.EmojiDrawer, "draw", fail)
    cached_pixels, cached = E.emoji_set(size=16)
    assert cached == drawn and np.array_equal(cached_pixels, pixels)
    # A subset comes from the cached set too, the same as when drawn alone.
    some, chosen = E.emoji_set(count=3, size=16, seed=2)
    assert np.array_equal(some, pixels[[drawn.index(e) for e in chosen]])
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent.parent / "elsewhere"))
    monkeypatch.setattr(E, "all_emoji", lambda: sorted(FEW))
    alone, chosen_alone = E.emoji_set(count=3, size=16, seed=2)
    assert chosen_alone == chosen and np.array_equal(alone, some)
    assert not (cache.parent.parent / "elsewhere").exists()  # a small set drawn alone is not cached


@needs_font
@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_cache_is_drawn_again_and_replaced(monkeypatch, cache, capsys, damage):
    monkeypatch.setattr(E, "all_emoji", lambda: sorted(FEW))
    pixels, drawn = E.emoji_set(size=16)
    (path,) = cache.iterdir()
    payload = path.read_bytes()
    damaged = {
        "truncate": payload[: len(payload) - 100],
        "flip": payload[:-50] + bytes([payload[-50] ^ 0xFF]) + payload[-49:],
        "garbage": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + payload[30:],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    capsys.readouterr()
    again, drawn_again = E.emoji_set(size=16)
    assert drawn_again == drawn and np.array_equal(again, pixels)
    assert "is damaged; rendering the emoji again" in capsys.readouterr().err
    fixed = E.read_cache(path, 16)  # replaced by a good copy
    assert fixed is not None and fixed[1] == drawn and np.array_equal(fixed[0], pixels)


@needs_font
def test_a_cache_that_cannot_be_written_is_a_notice(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(E, "all_emoji", lambda: sorted(FEW))
    pixels, drawn = E.emoji_set(size=16)
    assert len(drawn) == len(pixels) > 0
    assert "cannot keep the rendered emoji" in capsys.readouterr().err


@needs_font
def test_small_emoji_keep_their_size_and_tones_differ():
    font = E.open_emoji_font(FONT)
    images, shown = E.render_emoji(font, ["\u2b1b", "\u25aa\ufe0f", "\U0001f44d\U0001f3fb", "\U0001f44d\U0001f3ff"], 32)
    assert len(shown) == 4
    ink = (images.astype(int).min(-1) < 200).sum((1, 2))
    assert ink[1] < ink[0] / 4  # ▪️ stays small beside ⬛, which fills the image
    assert ink[0] > 0.8 * 32 * 32
    assert images[2].astype(int).mean() > images[3].astype(int).mean() + 20  # light vs dark skin


# ---- end to end ---------------------------------------------------------------------------------


@needs_font
def test_a_tiny_captioned_run_on_emoji_end_to_end(tmp_path):
    out = tmp_path / "model"
    args = ["--data", "builtin:emoji", "--count", 40, "--size", 16, "--epochs", 1, "--captions"]
    small = ["--width", 8, "--depth", 1, "--caption-hidden", 6, "--caption-embedding", 5, "--batch-size", 16]
    result = run("train", "nade", *args, *small, "--test-size", 0.25, "--seed", 0, "--device", "cpu", "--out", out)
    assert_ok(result)
    assert "builtin:emoji: 40 images, 16x16 RGB images with 256 levels" in result.stderr + result.stdout
    from gibbsdream import load

    ckpt = load(out, device="cpu")
    dataset = load_images("builtin:emoji", count=40, size=16)
    flat = dataset.states.flatten(1)
    side = {}
    for split in ("train", "validation", "test"):
        states = ckpt.data[split].flatten(1)
        assert len(states) > 0
        for row in states:
            (match,) = torch.nonzero((flat == row).all(1))[:, 0].tolist()
            side[match] = split
    assert sorted(side) == list(range(40))
    by_group: dict[int, set] = {}
    for i, split in side.items():
        by_group.setdefault(int(dataset.groups[i]), set()).add(split)
    assert all(len(sides) == 1 for sides in by_group.values()), by_group
    assert max(int((dataset.groups == g).sum()) for g in by_group) > 1  # a real group was kept together
    assert ckpt.model.caption_vocabulary is not None and "emoji" in ckpt.model.caption_vocabulary.words

    exported = tmp_path / "test-split"
    assert_ok(run("export-split", out, "test", "--out", exported))
    captions = json.loads((exported / "captions.json").read_text())
    assert len(captions) == len(ckpt.data["test"])
    word = ckpt.model.caption_vocabulary.words[0]
    filled = tmp_path / "filled"
    assert_ok(
        run("inpaint", out, "--image", "heldout:1", "--steps", 2, "--caption", word, "--device", "cpu", "--out", filled)
    )
