"""``builtin:emoji``: every fully qualified emoji, rendered from the system's colour emoji font, with
its English CLDR name, grouped by base emoji.

The emoji and their names come from the ``emoji`` package (``EMOJI_DATA``, status
``fully_qualified``: about 3,900 in emoji 2.16); the pictures from a colour emoji font found where
Linux and macOS keep one (:data:`EMOJI_FONT_PATHS`, :data:`EMOJI_FONT_GLOBS`) or given as
``emoji_font``. Debian and Ubuntu ship Noto Color Emoji as ``fonts-noto-color-emoji``.

Rendering (:func:`render_emoji`): each emoji is drawn with Pillow at the font's bitmap size (109 px
for Noto Color Emoji, the only size it loads at) in its own colours on white, cut to its ink,
centred on a white square and resized to ``size`` x ``size`` with a Lanczos filter. The square's
side is the larger of the ink's extent and that of ⬛ (black large square), so an emoji as large
as ⬛ fills the image, a smaller one (▪️) keeps its size relative to it, and a larger one is
shrunk to fit. An emoji the font cannot draw as one glyph (newer than the font, or a sequence that
falls apart into its parts) is left out: the set is what this font shows.

The rendered set is cached once per font, size and ``emoji`` version (:func:`emoji_cache_folder`:
``$XDG_CACHE_HOME/gibbsdream/emoji``, else ``~/.cache/gibbsdream/emoji``) as one safetensors file
of ``uint8`` pixels ``(N, size, size, 3)`` whose metadata lists the emoji and the pixels' SHA-256;
a file that does not load or whose checksum differs is rendered again and replaced. A few emoji
(``count`` below :data:`DRAW_CHOSEN_BELOW`, for tests and quick runs) are drawn alone while the
whole set is not cached yet, and not cached: the same pictures, chosen the same way.

Groups (:func:`base_emoji`): an emoji's group is its base emoji, the emoji with its skin-tone
modifiers (U+1F3FB..U+1F3FF) taken out, so the six tones of 👍 (or the 26 of a couple) share a
group and a split keeps them on one side. Hair (red, curly, white, bald) and gender stay part of
the base: 👨‍🦰 and 👨 are different groups, whose captions say what differs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UsageError, check_whole_number
from ..files import atomic_write_bytes, user_cache_folder
from ..progress import progress_bar
from .captions import notice

EMOJI_MIN_SIDE, EMOJI_MAX_SIDE, EMOJI_DEFAULT_SIDE = 16, 128, 64
# Where colour emoji fonts are installed, most likely first: Debian/Ubuntu, Fedora, Arch and
# others, a user's own fonts, macOS, Windows. "~" is the user's home.
EMOJI_FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto-emoji/NotoColorEmoji.ttf",
    "~/.local/share/fonts/NotoColorEmoji.ttf",
    "~/.fonts/NotoColorEmoji.ttf",
    "/System/Library/Fonts/Apple Color Emoji.ttc",
    "C:/Windows/Fonts/seguiemj.ttf",
)
# Anywhere else under the usual font folders (fc-match is not asked: fontconfig may be missing).
EMOJI_FONT_GLOBS = (
    "/usr/share/fonts/**/NotoColorEmoji*.ttf",
    "/usr/local/share/fonts/**/NotoColorEmoji*.ttf",
    "~/.local/share/fonts/**/NotoColorEmoji*.ttf",
)
FONT_PACKAGE = "fonts-noto-color-emoji"
# Pixel sizes tried in turn: a bitmap colour font loads only at a size it has. Noto Color Emoji has
# 109 only; Apple Color Emoji has 160, 96, 64, 48 and others; outline (COLR) fonts take any.
FONT_SIZES = (109, 160, 96, 64, 48)
REFERENCE = "\u2b1b"  # ⬛ black large square: an emoji as large as this fills the image
COLOUR_CHECK = "\U0001f34e"  # 🍎 red apple: red in every colour emoji font, no colour in others
NOT_A_CHARACTER = "\U0010fffd"  # a private-use code point no font draws: shows the font's .notdef
SKIN_TONES = {
    "\U0001f3fb": "light skin tone",
    "\U0001f3fc": "medium-light skin tone",
    "\U0001f3fd": "medium skin tone",
    "\U0001f3fe": "medium-dark skin tone",
    "\U0001f3ff": "dark skin tone",
}
# Bump when the pictures change for the same font, size and emoji version (the cache's key).
RENDER_VERSION = 1
CACHE_FORMAT = f"gibbsdream-emoji-{RENDER_VERSION}"

_TONE = re.compile(r"\b(?:medium-light|medium-dark|light|medium|dark) skin tone\b")
# What follows "man", "woman" or "person" in the names of the hair and beard variants (CLDR writes
# "man: red hair", "woman: medium skin tone, beard").
_PERSON_FEATURE = re.compile(r"^(person|man|woman) (red hair|curly hair|white hair|blond hair|bald|beard)$")


# ---- the emoji and their names ------------------------------------------------------------------


def emoji_package():
    """The ``emoji`` module, or a UsageError saying how to install it."""
    try:
        import emoji  # the emoji list and its names, only for builtin:emoji
    except ImportError:
        raise UsageError(
            "builtin:emoji needs the emoji package for the list of emoji and their names; "
            "install it with `pip install emoji`"
        ) from None
    if not hasattr(emoji, "EMOJI_DATA") or not hasattr(emoji, "STATUS"):
        raise UsageError(
            f"builtin:emoji needs emoji 2.10 or later, found {getattr(emoji, '__version__', 'an older one')}; "
            "upgrade it with `pip install -U emoji`"
        )
    return emoji


def all_emoji() -> list[str]:
    """Every fully qualified emoji of the ``emoji`` package, in code-point order (a base before its
    skin tones)."""
    emoji = emoji_package()
    qualified = emoji.STATUS["fully_qualified"]
    return sorted(e for e, entry in emoji.EMOJI_DATA.items() if entry.get("status") == qualified)


def base_emoji(e: str) -> str:
    """``e`` without its skin-tone modifiers: the group that a split keeps together."""
    return "".join(c for c in e if c not in SKIN_TONES)


def is_flag(e: str) -> bool:
    """A country or region flag: two regional indicators, or a black flag with tag characters."""
    return any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in e) or any(0xE0020 <= ord(c) <= 0xE007F for c in e)


def _plain(text: str) -> str:
    """Typographic quotes as typed ones, so that the caption tokenizer reads "woman's" as one word."""
    return text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')


@dataclass(frozen=True)
class EmojiName:
    """An emoji's English CLDR name, taken apart for captions.

    Attributes:
        subject: what it shows, e.g. ``"man superhero"``, ``"red apple"``, ``"Japan"`` (a flag's
            country), ``"keycap 1"``.
        modifiers: what the CLDR name adds after a colon: skin tones, hair, a beard, in order.
        kind: ``"flag"``, ``"keycap"`` or ``"emoji"``.
    """

    subject: str
    modifiers: tuple[str, ...] = ()
    kind: str = "emoji"

    @property
    def text(self) -> str:
        """The CLDR form: ``"man superhero: medium-dark skin tone"``, ``"flag: Japan"``."""
        if self.kind == "flag":
            return f"flag: {self.subject}"
        if self.kind == "keycap":
            return f"keycap: {self.subject.removeprefix('keycap ')}"
        return f"{self.subject}: {', '.join(self.modifiers)}" if self.modifiers else self.subject


def emoji_name(e: str) -> EmojiName:
    """The CLDR name of the fully qualified emoji ``e``, from the ``emoji`` package's short name
    (``:man_superhero_medium-dark_skin_tone:`` -> subject ``"man superhero"``, modifiers
    ``("medium-dark skin tone",)``)."""
    short = emoji_package().EMOJI_DATA[e]["en"]
    words = _plain(short.strip(":").replace("_", " "))
    if is_flag(e):
        return EmojiName(words, (), "flag")  # the package drops CLDR's "flag: " before the country
    if words.startswith("keycap "):
        return EmojiName(words, (), "keycap")
    tones = _TONE.findall(words)
    rest = " ".join(_TONE.sub(" ", words).split())
    feature = _PERSON_FEATURE.match(rest)
    if feature:
        return EmojiName(feature[1], (*tones, feature[2]))
    return EmojiName(rest, tuple(tones))


def emoji_attributes(e: str) -> dict:
    """What :func:`gibbsdream.data.captions.emoji_captions` writes captions from: the emoji, its
    CLDR name (``name``), ``subject``, ``modifiers``, ``kind`` and ``base`` (its group)."""
    name = emoji_name(e)
    return {
        "emoji": e,
        "name": name.text,
        "subject": name.subject,
        "modifiers": list(name.modifiers),
        "kind": name.kind,
        "base": base_emoji(e),
    }


def emoji_id(e: str) -> str:
    """An image name for ``e``: its code points, e.g. ``emoji#1f9b8-1f3fd-200d-2642-fe0f``."""
    return "emoji#" + "-".join(f"{ord(c):x}" for c in e)


# ---- the font -----------------------------------------------------------------------------------


def find_emoji_font(emoji_font=None) -> Path:
    """The colour emoji font to draw with: ``emoji_font`` when given (it must exist), else the first
    of :data:`EMOJI_FONT_PATHS` and :data:`EMOJI_FONT_GLOBS` that does. Raises ConfigError about
    ``emoji_font`` naming the package to install when there is none."""
    if emoji_font is not None:
        path = Path(os.path.expanduser(str(emoji_font)))
        if not path.is_file():
            why = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(
                f'emoji_font="{emoji_font}" {why}; give the path of a colour emoji font such as NotoColorEmoji.ttf',
                "emoji_font",
            )
        return path
    for candidate in EMOJI_FONT_PATHS:
        path = Path(os.path.expanduser(candidate))
        if path.is_file():
            return path
    for pattern in EMOJI_FONT_GLOBS:
        found = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))
        if found:
            return Path(found[0])
    raise ConfigError(
        f"builtin:emoji needs a colour emoji font and none was found; install one (Debian and Ubuntu: "
        f'`apt install {FONT_PACKAGE}`) or give its file as emoji_font="PATH"',
        "emoji_font",
    )


def open_emoji_font(path: Path, given: bool = False):
    """``path`` as a Pillow font at the first of :data:`FONT_SIZES` it loads at, checked to draw
    🍎 in colour. ``given``: the path was the caller's ``emoji_font`` (so the message names it)."""
    from PIL import ImageFont  # PIL only where images are made (start-up time)

    what = f'emoji_font="{path}"' if given else f"the emoji font {path}"
    fix = "give a colour emoji font such as NotoColorEmoji.ttf" if given else 'reinstall it or give emoji_font="PATH"'
    first = None
    for pixels in FONT_SIZES:
        try:
            font = ImageFont.truetype(str(path), pixels)
            break
        except (OSError, ValueError) as err:  # not a font at all, or a bitmap font without this size
            first = first or err
    else:
        raise ConfigError(f"{what} is not a font Pillow can open ({first}); {fix}", "emoji_font")
    apple = _draw(font, COLOUR_CHECK)
    if apple is None or not _has_colour(apple):
        raise ConfigError(f"{what} does not draw emoji in colour (🍎 has no red); {fix}", "emoji_font")
    return font


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- drawing ------------------------------------------------------------------------------------


def _draw(font, e: str):
    """``e`` drawn on white at the font's size, cut to its ink: ``(h, w, 3)`` uint8, or None when
    nothing shows."""
    from PIL import Image, ImageChops, ImageDraw  # PIL only where images are made (start-up time)

    left, top, right, bottom = font.getbbox(e)
    margin = 8  # room for ink outside the layout box (some fonts draw a little past it)
    width, height = max(right - left, 1) + 2 * margin, max(bottom - top, 1) + 2 * margin
    # Drawn straight on white as the issue measured it: drawn on a transparent canvas and then
    # composited, Pillow darkens the antialiased edges (it blends the colours with the transparent
    # black).
    canvas = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(canvas).text((margin - left, margin - top), e, font=font, embedded_color=True)
    ink = ImageChops.difference(canvas, Image.new("RGB", canvas.size, "white")).getbbox()
    if ink is None:
        return None
    return np.asarray(canvas.crop(ink))


def _has_colour(pixels: np.ndarray) -> bool:
    channels = pixels.astype(np.int16)
    return bool((channels.max(-1) - channels.min(-1) > 64).any())


def _square(crop: np.ndarray, side: int, size: int) -> np.ndarray:
    """``crop`` ``(h, w, 3)`` centred on a white ``side`` x ``side`` square, resized to ``size``."""
    from PIL import Image  # PIL only where images are made (start-up time)

    h, w = crop.shape[:2]
    square = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = crop
    image = Image.fromarray(square, mode="RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


class EmojiDrawer:
    """Draws emoji with ``font`` as ``(size, size, 3)`` uint8 images, one at a time (:meth:`draw`).

    An emoji is not drawn (None) when the font does not show it as one glyph: its advance is longer
    than one emoji's (a sequence that falls apart into its parts), or it shows nothing or the font's
    .notdef box.
    """

    def __init__(self, font, size: int):
        self.font, self.size = font, size
        reference = _draw(font, REFERENCE)
        self.side = max(reference.shape[:2]) if reference is not None else int(font.size)
        self.advance = font.getlength(REFERENCE)
        self.notdef = _draw(font, NOT_A_CHARACTER)

    def draw(self, e: str) -> np.ndarray | None:
        if self.advance and self.font.getlength(e) > 1.5 * self.advance:
            return None
        crop = _draw(self.font, e)
        if crop is None or (self.notdef is not None and np.array_equal(crop, self.notdef)):
            return None
        return _square(crop, max(self.side, *crop.shape[:2]), self.size)


def render_emoji(font, chars: list[str], size: int, progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """Draw ``chars`` with ``font`` (see :class:`EmojiDrawer`): (pixels ``(N, size, size, 3)``
    uint8, the N emoji drawn, in the order of ``chars``)."""
    drawer = EmojiDrawer(font, size)
    pixels, drawn = [], []
    with progress_bar(len(chars), f"rendering {len(chars)} emoji", enabled=progress) as advance:
        for e in chars:
            advance()
            image = drawer.draw(e)
            if image is not None:
                pixels.append(image)
                drawn.append(e)
    out = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), dtype=np.uint8)
    return out, drawn


# ---- the cache ----------------------------------------------------------------------------------


def emoji_cache_folder() -> Path:
    """``$XDG_CACHE_HOME/gibbsdream/emoji``, else the platform's user cache (:func:`user_cache_folder`)."""
    return user_cache_folder("emoji")


def _layout() -> str:
    """Pillow's text layout: with libraqm it shapes sequences (ZWJ, flags) into one glyph; without it,
    they fall apart and are left out, so the set differs and is cached apart."""
    from PIL import features  # PIL only where images are made (start-up time)

    return "raqm" if features.check("raqm") else "basic"


def cache_path(font_sha256: str, size: int, emoji_version: str) -> Path:
    name = f"emoji-r{RENDER_VERSION}-{size}px-font{font_sha256[:16]}-emoji{emoji_version}-{_layout()}.safetensors"
    return emoji_cache_folder() / name


def _header(payload: bytes) -> dict:
    (length,) = np.frombuffer(payload[:8], dtype="<u8")
    if len(payload) < 8 + int(length):
        raise ValueError("truncated header")
    return json.loads(payload[8 : 8 + int(length)])


def read_cache(path: Path, size: int) -> tuple[np.ndarray, list[str]] | None:
    """The rendered set in ``path``, or None when it is missing or does not check out (it does not
    load, its metadata is not ours, or its pixels' SHA-256 differs)."""
    from safetensors.numpy import load  # only where the cache is read

    try:
        payload = path.read_bytes()
    except OSError:
        return None
    try:
        meta = _header(payload).get("__metadata__") or {}
        pixels = load(payload)["pixels"]
        chars = json.loads(meta["emoji"])
        ok = (
            meta.get("format") == CACHE_FORMAT
            and pixels.dtype == np.uint8
            and pixels.shape == (len(chars), size, size, 3)
            and all(isinstance(e, str) for e in chars)
            and hashlib.sha256(pixels.tobytes()).hexdigest() == meta.get("pixels_sha256")
        )
    except Exception:  # any damage at all (a truncated file, bad JSON, a missing key) means: render again
        ok = False
    if not ok:
        notice(f"the emoji cache {path} is damaged; rendering the emoji again")
        return None
    return np.ascontiguousarray(pixels), chars


def write_cache(path: Path, pixels: np.ndarray, chars: list[str], info: dict) -> bool:
    """Write the rendered set to ``path`` atomically; False (with a notice) when it cannot be written."""
    from safetensors.numpy import save  # only where the cache is written

    meta = {
        "format": CACHE_FORMAT,
        "emoji": json.dumps(chars, ensure_ascii=False),
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        **{k: str(v) for k, v in info.items()},
    }
    try:
        atomic_write_bytes(path, save({"pixels": np.ascontiguousarray(pixels)}, metadata=meta))
    except OSError as err:
        notice(f"cannot keep the rendered emoji in {path.parent} ({err.strerror or err}); they are rendered each time")
        return False
    return True


# ---- the set ------------------------------------------------------------------------------------

# Below this many emoji asked for, and without the whole set in the cache, only the emoji chosen are
# drawn (tests and quick runs: 20 emoji take a fraction of a second, the whole set a few seconds).
DRAW_CHOSEN_BELOW = 256


def emoji_set(
    count: int | None = None,
    size: int = EMOJI_DEFAULT_SIDE,
    seed: int = 0,
    emoji_font=None,
    progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """The fully qualified emoji this font draws at ``size`` (all, or ``count`` of them as
    :func:`choose_emoji` picks them): (pixels ``(N, size, size, 3)`` uint8, the N emoji in
    code-point order).

    The whole set comes from the cache when it holds it; otherwise it is drawn and cached, except
    for fewer than :data:`DRAW_CHOSEN_BELOW` emoji, which are drawn alone (the same pictures and
    the same choice as from the whole set).
    """
    check_emoji_options(count, size)
    emoji = emoji_package()
    chars = all_emoji()
    path = find_emoji_font(emoji_font)
    font_sha = file_sha256(path)
    cached = cache_path(font_sha, size, emoji.__version__)
    whole = read_cache(cached, size) if cached.exists() else None
    if whole is None and (count is None or count >= DRAW_CHOSEN_BELOW):
        font = open_emoji_font(path, given=emoji_font is not None)
        started = time.perf_counter()
        pixels, drawn = render_emoji(font, chars, size, progress=progress)
        if not drawn:
            raise ConfigError(f"the font {path} draws none of the emoji; give a colour emoji font", "emoji_font")
        skipped = [e for e in chars if e not in set(drawn)]
        info = {
            "font": path,
            "font_sha256": font_sha,
            "font_pixels": font.size,
            "size": size,
            "emoji_version": emoji.__version__,
            "layout": _layout(),
            "skipped": json.dumps(skipped, ensure_ascii=False),
            "seconds": f"{time.perf_counter() - started:.2f}",
        }
        write_cache(cached, pixels, drawn, info)
        if skipped:
            notice(
                f"{path.name} draws {len(drawn):,} of the {len(chars):,} fully qualified emoji of emoji "
                f"{emoji.__version__}; the other {len(skipped):,} (newer than the font, or sequences it shows "
                "only in parts) are left out"
            )
        whole = pixels, drawn
    if whole is not None:
        pixels, drawn = whole
        row = {e: i for i, e in enumerate(drawn)}
        chosen = choose_emoji(chars, count, seed, row.__contains__)
        return pixels[[row[e] for e in chosen]].reshape(-1, size, size, 3), chosen
    drawer = EmojiDrawer(open_emoji_font(path, given=emoji_font is not None), size)
    images: dict[str, np.ndarray | None] = {}

    def drawable(e: str) -> bool:
        if e not in images:
            images[e] = drawer.draw(e)
        return images[e] is not None

    chosen = choose_emoji(chars, count, seed, drawable)
    if not chosen:
        raise ConfigError(f"the font {path} draws none of the emoji; give a colour emoji font", "emoji_font")
    return np.stack([images[e] for e in chosen]), chosen


def choose_emoji(chars: list[str], count: int | None, seed: int = 0, drawable=lambda e: True) -> list[str]:
    """The emoji of ``chars`` that ``drawable`` accepts: all of them (``count`` None), else ``count``
    of them (or all, if fewer) in whole groups (:func:`base_emoji`): the groups of ``chars`` are taken
    in an order shuffled by ``seed``, and one whose drawable emoji do not fit in what is left is
    skipped. ``drawable`` is asked only about the groups visited, and the choice depends on the
    font only through it. Returns the emoji in the order of ``chars``."""
    if count is None:
        return [e for e in chars if drawable(e)]
    members: dict[str, list[str]] = {}
    for e in chars:
        members.setdefault(base_emoji(e), []).append(e)
    bases = sorted(members)
    kept: set[str] = set()
    for g in np.random.default_rng(seed).permutation(len(bases)):
        group = [e for e in members[bases[g]] if drawable(e)]
        if len(kept) + len(group) <= count:
            kept.update(group)
            if len(kept) == count:
                break
    return [e for e in chars if e in kept]


def check_emoji_options(count, size) -> None:
    """Raise ConfigError unless ``count`` (None or >= 1) and ``size`` (16..128) are whole numbers."""
    for what, value, low, high in (("count", count, 1, None), ("size", size, EMOJI_MIN_SIDE, EMOJI_MAX_SIDE)):
        if value is not None:
            check_whole_number(f"builtin:emoji {what}", what, value, low, high)
