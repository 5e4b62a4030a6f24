"""Captions: a word-level tokenizer, its vocabulary, caption sources, and the caption context.

A caption becomes a row of token ids ``(T,)`` with ``T <= max_length``; a batch of captions is a
``(B, T)`` long tensor right-padded with :data:`PAD` (0). That tensor *is* the caption context
that :meth:`gibbsdream.OrderlessNADE.logits` takes (``context=None``, or a row of padding only,
means "no caption"). Id 1 is the unknown word (every word seen fewer than ``min_count`` times in
the training captions); ids from :data:`FIRST_WORD` on are the vocabulary's words.

Words are what :func:`tokenize` finds: Unicode NFKC, case-folded, runs of letters and digits
(with an inner apostrophe, as in "it's"); punctuation separates words and is dropped.

Where captions come from (:func:`load_captions`):

- a folder of images with a ``captions.json`` beside them: ``{"file name": ["caption", ...]}``
  (names as :func:`~gibbsdream.data.images.load_image_folder` gives them, relative with ``/``;
  a single string is one caption);
- the seed's class-project layout: a ``*.pkl`` dict of image id (the file name without its
  suffix) -> captions at the top of the folder. It is read by :class:`_PlainUnpickler`, which
  refuses every global, so only dicts, lists, tuples and strings can load and nothing runs;
- ``builtin:digits`` and ``builtin:shapes``: captions written from the labels and attributes in
  varied wording (seeded), by :func:`digit_captions` and :func:`shape_captions`;
- ``builtin:emoji``: captions written from each emoji's English CLDR name ("man superhero:
  medium-dark skin tone", "flag: Japan") in a few natural wordings (seeded), by
  :func:`emoji_captions`; every wording states the skin tones and hair that the name does.

The one entry point for commands is :func:`caption_context`.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, UsageError

PAD, UNK, FIRST_WORD = 0, 1, 2
SPECIALS = ("<pad>", "<unk>")
DEFAULT_MAX_LENGTH = 24
CAPTIONS_FILE = "captions.json"
# A captions pickle bigger than this is not the class project's (about 30 MB); refuse to read it.
MAX_PICKLE_BYTES = 512 * 2**20
# A pickle can refer to one object many times (its memo), so a small file can stand for a table far
# larger than itself: a list of a thousand references to one long caption, used by a million image
# ids, is a terabyte of text to whatever reads every caption. Without sharing, a pickle holds each
# string's characters and spends at least a byte on each object, so its table, counted out, is no
# bigger than the file. The reader allows this many times that, counting a shared object each time
# it is used, and refuses the rest (so the check costs no more than reading a few such files).
MAX_PICKLE_EXPANSION = 4
PICKLE_EXPANSION_FLOOR = 2**16  # items or characters always allowed, for tiny files

_WORD = re.compile(r"\w+(?:'\w+)*")


def tokenize(text: str) -> list[str]:
    """A caption's words: NFKC-normalised, case-folded runs of letters/digits (``_`` splits too)."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return [w for word in _WORD.findall(text) for w in word.split("_") if w]


def notice(message: str) -> None:
    """A one-line ``notice: ...`` on stderr: something was done to the input, and work goes on."""
    print(f"notice: {message}", file=sys.stderr, flush=True)


@dataclass
class CaptionVocabulary:
    """The words a caption model knows, and how captions become token ids.

    Attributes:
        words: the known words; word ``words[i]`` has id ``FIRST_WORD + i``.
        max_length: captions longer than this many words are cut to their first ``max_length``.
    """

    words: list[str]
    max_length: int = DEFAULT_MAX_LENGTH
    index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise UsageError(f"the caption length limit must be a whole number >= 1, got {self.max_length!r}")
        self.words = [str(w) for w in self.words]
        self.index = {w: FIRST_WORD + i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise UsageError("a caption vocabulary lists a word twice; the checkpoint is damaged")

    @property
    def size(self) -> int:
        """Number of token ids (the specials included): the embedding table's rows."""
        return FIRST_WORD + len(self.words)

    @classmethod
    def fit(
        cls, captions, min_count: int = 2, max_length: int = DEFAULT_MAX_LENGTH, max_words: int | None = None
    ) -> CaptionVocabulary:
        """The words of ``captions`` (an iterable of strings) seen at least ``min_count`` times.

        Rare words become the unknown token. ``max_words`` keeps only the most frequent ones.
        Words are ordered by falling count, ties alphabetically, so the ids are reproducible.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"caption_min_count must be a whole number >= 1, got {min_count!r}", "caption_min_count")
        counts = Counter(w for text in captions for w in tokenize(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_words is not None:
            kept = kept[:max_words]
        if not kept:
            raise ConfigError(
                f"no caption word occurs {min_count} or more times in the training captions; "
                "make caption_min_count smaller or give more captions",
                "caption_min_count",
            )
        return cls(kept, max_length=max_length)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, cut to ``max_length`` (unknown words -> UNK; may be empty)."""
        return [self.index.get(w, UNK) for w in tokenize(text)][: self.max_length]

    def decode(self, ids) -> str:
        """Token ids -> words joined by spaces (padding dropped, unknown words as ``<unk>``)."""
        names = [
            SPECIALS[i] if i < FIRST_WORD else self.words[i - FIRST_WORD] for i in (int(t) for t in ids) if i != PAD
        ]
        return " ".join(names)

    def encode_batch(self, texts) -> torch.Tensor:
        """``B`` captions -> ``(B, T)`` long ids, right-padded with PAD (``T >= 1``)."""
        rows = [self.encode(t) for t in texts]
        out = torch.full((len(rows), max([len(r) for r in rows] + [1])), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def to_dict(self) -> dict:
        return {"kind": "words", "max_length": self.max_length, "specials": list(SPECIALS), "words": self.words}

    @classmethod
    def from_dict(cls, d) -> CaptionVocabulary:
        if not isinstance(d, dict) or d.get("kind") != "words" or not isinstance(d.get("words"), list):
            raise UsageError("the caption vocabulary in the checkpoint is unreadable; retrain or restore it")
        if d.get("specials", list(SPECIALS)) != list(SPECIALS):
            raise UsageError("the checkpoint's caption vocabulary uses other special tokens; upgrade gibbsdream")
        if not all(isinstance(word, str) for word in d["words"]):
            raise UsageError(
                "the caption vocabulary in the checkpoint is unreadable (a word is not a string); retrain or restore it"
            )
        return cls(d["words"], max_length=d.get("max_length", DEFAULT_MAX_LENGTH))


# ---- the caption context of a model ------------------------------------------------------------------


def has_captions(model) -> bool:
    """Whether ``model`` (or a checkpoint's) was built with a caption encoder and its vocabulary."""
    model = getattr(model, "model", model)
    return (
        getattr(model, "caption_encoder", None) is not None and getattr(model, "caption_vocabulary", None) is not None
    )


def caption_context(ckpt_or_model, captions: list[str] | None, device=None) -> torch.Tensor | None:
    """What ``model.logits(..., context=)`` and ``gibbsdream.sample(..., context=)`` take.

    Args:
        ckpt_or_model: a loaded checkpoint or an :class:`~gibbsdream.OrderlessNADE`.
        captions: one caption for the whole batch (``[text]``), one per example, or None.
        device: where the ids go (default: the model's).

    Returns:
        None when ``captions`` is None (no caption), else a ``(len(captions), T)`` long tensor of
        token ids (a single row is used for every example).

    Raises UsageError for a model without a caption encoder, an empty caption, or one whose words
    are all unknown to the model. A caption longer than the model reads is cut, with a notice on
    stderr; so are unknown words (they are read as the unknown token).
    """
    if captions is None:
        return None
    model = getattr(ckpt_or_model, "model", ckpt_or_model)
    if not has_captions(model):
        raise UsageError(
            "this model was trained without captions, so a caption cannot steer it; "
            "train one with `gibbsdream train nade --captions ...`"
        )
    if isinstance(captions, str) or not captions:
        raise UsageError("give the captions as a non-empty list of strings")
    vocabulary: CaptionVocabulary = model.caption_vocabulary
    for text in captions:
        if not isinstance(text, str):
            raise UsageError(f"a caption must be text, got {type(text).__name__}")
        words = tokenize(text)
        if not words:
            raise UsageError(f'the caption {text!r} has no words; write a few, e.g. "a red square"')
        if len(words) > vocabulary.max_length:
            notice(f"the caption has {len(words)} words; the model reads only the first {vocabulary.max_length}")
            words = words[: vocabulary.max_length]
        unknown = [w for w in words if w not in vocabulary.index]
        if len(unknown) == len(words):
            examples = ", ".join(vocabulary.words[:8])
            raise UsageError(
                f"none of the words of the caption {text!r} is known to the model (it knows "
                f"{len(vocabulary.words)} words, e.g. {examples}); use words from its training captions"
            )
        if unknown:
            notice(
                f"the model does not know {', '.join(repr(w) for w in dict.fromkeys(unknown))}; read as unknown words"
            )
    if device is None:
        device = next(model.parameters()).device
    return vocabulary.encode_batch(captions).to(device)


# ---- captions per image, as token ids ----------------------------------------------------------------


def caption_table(
    captions: list[list[str]], vocabulary: CaptionVocabulary, per_image: int | None = None
) -> torch.Tensor:
    """Every image's captions as ids: ``(N, M, T)`` long, padded with PAD.

    ``M`` is the most captions any image has (or ``per_image``, keeping the first ones); ``T``
    the longest caption (at most ``vocabulary.max_length``). Captions without words are left
    out; an image without captions has rows of padding only (it trains without a caption).
    """
    rows = [[ids for ids in (vocabulary.encode(t) for t in texts) if ids][:per_image] for texts in captions]
    M = max([len(r) for r in rows] + [1])
    T = max([len(ids) for r in rows for ids in r] + [1])
    table = torch.full((len(rows), M, T), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        for j, ids in enumerate(row):
            table[i, j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return table


def draw_captions(table: torch.Tensor, dropout: float, generator: torch.Generator) -> torch.Tensor:
    """One caption per image, uniformly among its own, dropped with probability ``dropout``.

    Args:
        table: ``(B, M, T)`` ids (:func:`caption_table`, rows of a batch).
        dropout: the chance that an image trains without its caption.
        generator: on ``table``'s device.

    Returns:
        ``(B, T)`` ids; dropped captions (and images without any) are rows of PAD.
    """
    B, M, _ = table.shape
    counts = (table != PAD).any(-1).sum(-1)  # (B,) captions per image
    u = torch.rand(B, 2, generator=generator, device=table.device)
    pick = (u[:, 0] * counts.clamp(min=1)).long().clamp(max=M - 1)
    chosen = table[torch.arange(B, device=table.device), pick]
    keep = (u[:, 1] >= dropout) & (counts > 0)
    return torch.where(keep.unsqueeze(-1), chosen, torch.full_like(chosen, PAD))


# ---- captions written from labels and attributes -------------------------------------------------------

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_TEMPLATES = (
    "the digit {word}",
    "a handwritten {digit}",
    "{article} {word}",
    "number {digit}",
    "{word}",
    "a drawing of the number {word}",
    "an image of {article} {digit}",
    "the number {word}, written by hand",
    "a hand-written digit {digit}",
    "this is {article} {word}",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeio8" else "a"


def digit_captions(labels, per_image: int = 4, seed: int = 0) -> list[list[str]]:
    """``per_image`` captions for each digit label (0..9) in different wordings (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for label in np.asarray(labels).tolist():
        word, digit = NUMBER_WORDS[int(label)], str(int(label))
        chosen = rng.choice(len(_DIGIT_TEMPLATES), size=min(per_image, len(_DIGIT_TEMPLATES)), replace=False)
        out.append(
            [
                _DIGIT_TEMPLATES[t].format(
                    word=word, digit=digit, article=_article(digit if "{digit}" in _DIGIT_TEMPLATES[t] else word)
                )
                for t in chosen
            ]
        )
    return out


_POSITION_PHRASES = {
    "centre": ("in the centre", "in the middle", "at the centre"),
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "at the top of the picture"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the picture"),
}


def _shape_caption(a: dict, rng: np.random.Generator) -> str:
    size = f"{a['size']} " if rng.random() < 0.5 else ""
    noun = f"{size}{a['colour']} {a['shape']}"
    form = rng.integers(4)
    if form == 0:
        text = f"a {noun}"
    elif form == 1:
        text = noun
    elif form == 2:
        text = f"a {size}{a['shape']} that is {a['colour']}"
    else:
        text = f"there is a {noun}"
    if rng.random() < 0.5:
        text += " " + str(rng.choice(_POSITION_PHRASES[a["position"]]))
    if rng.random() < 0.3:
        text += f" on a {a['background']} background"
    return text


def shape_captions(attributes: list[dict], per_image: int = 4, seed: int = 0) -> list[list[str]]:
    """``per_image`` captions per generated shape: colour and shape always, size, position and
    background sometimes, in varied wording (seeded)."""
    rng = np.random.default_rng(seed)
    return [[_shape_caption(a, rng) for _ in range(per_image)] for a in attributes]


_EMOJI_TEMPLATES = (
    "{name}",
    "an emoji of {a}{subject}{with_}",
    "{a}{subject}{with_}",
    "{subject} emoji{listed}",
    "the {subject} emoji{with_}",
)
_FLAG_TEMPLATES = (
    "flag: {subject}",
    "the flag of {subject}",
    "an emoji of the flag of {subject}",
    "{subject} flag",
    "the {subject} flag emoji",
)
# How a CLDR modifier reads after "with": "a man with red hair", "a woman with a beard".
_WITH = {"bald": "a bald head", "beard": "a beard"}
# Words that begin with a vowel letter but not a vowel sound, and the other way round.
_A_BEFORE = ("one", "once", "uni", "use", "usb", "eu")
_AN_BEFORE = ("hour", "honest")
# Subjects of several things, which take no "a": "people hugging", "family: man, woman, girl".
_PLURAL_START = ("people", "men ", "women ", "family")


_HEAD_ENDS = re.compile(r" (?:with|in|of|on|for|at|from|and) ")


def _indefinite(subject: str) -> str:
    """``"a "``, ``"an "`` or nothing before ``subject``: nothing for names (a capital first letter)
    and for plurals (a head noun in -s that is not -ss, -us or -is: the last word before "with",
    "in", "of" ...), a simple rule that is right for most CLDR names."""
    words = subject.split() or [subject]
    head = _HEAD_ENDS.split(subject)[0].split() or words
    first, last = words[0], head[-1]
    lower = subject.lower()
    if first[:1].isupper() or lower.startswith(_PLURAL_START):
        return ""
    if last.endswith("s") and not last.endswith(("ss", "us", "is", "'s")):
        return ""
    if lower.startswith(_AN_BEFORE) or (lower[:1] in "aeiou8" and not lower.startswith(_A_BEFORE)):
        return "an "
    return "a "


def _emoji_caption(template: str, a: dict) -> str:
    modifiers = [str(m) for m in a.get("modifiers", ())]
    with_ = " with " + " and ".join(_WITH.get(m, m) for m in modifiers) if modifiers else ""
    subject = a["subject"]
    return template.format(
        name=a["name"],
        subject=subject,
        a=_indefinite(subject),
        with_=with_,
        listed=(", " + ", ".join(modifiers)) if modifiers else "",
    )


def emoji_captions(attributes: list[dict], per_image: int = 4, seed: int = 0) -> list[list[str]]:
    """``per_image`` captions per emoji (attributes as :func:`gibbsdream.data.emoji.emoji_attributes`
    gives them), in different wordings of its CLDR name (seeded), e.g. for 🦸🏾‍♂️ "man superhero:
    medium-dark skin tone", "an emoji of a man superhero with medium-dark skin tone", "man superhero
    emoji, medium-dark skin tone"; for 🇯🇵 "flag: Japan", "the flag of Japan"."""
    rng = np.random.default_rng(seed)
    out = []
    for a in attributes:
        templates = _FLAG_TEMPLATES if a.get("kind") == "flag" else _EMOJI_TEMPLATES
        wordings = list(dict.fromkeys(_emoji_caption(t, a) for t in templates))  # some coincide
        chosen = rng.choice(len(wordings), size=min(per_image, len(wordings)), replace=False)
        out.append([wordings[t] for t in chosen])
    return out


# ---- captions from files -------------------------------------------------------------------------------


def _caption_list(value, where: str) -> list[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, bytes):
                item = item.decode("utf-8", errors="replace")
            if not isinstance(item, str):
                raise UsageError(f"{where}: captions must be strings, found a {type(item).__name__}")
            out.append(item)
        return out
    raise UsageError(f"{where}: each image needs a caption or a list of captions, found a {type(value).__name__}")


def read_captions_json(path) -> dict[str, list[str]]:
    """``captions.json``: file name -> list of captions (a single string counts as one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise UsageError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix it"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a JSON object of file name -> list of captions, not a {type(data).__name__}"
        )
    return {str(name): _caption_list(value, f"{path}, {name!r}") for name, value in data.items()}


class _PlainUnpickler(pickle.Unpickler):
    """Loads only plain data: every global (class or function) is refused, so nothing can run."""

    def find_class(self, module, name):
        raise UsageError(
            f"the captions pickle refers to {module}.{name}, which is code, not plain data; "
            "refusing to load it (convert it to captions.json)"
        )

    def persistent_load(self, pid):
        raise UsageError("the captions pickle uses persistent ids; refusing to load it (convert it to captions.json)")


def _check_expansion(data, path: Path, size: int) -> None:
    """Walk what a pickle of ``size`` bytes loaded as the readers after this will, a shared object
    once per use, and refuse it as soon as its items or its characters pass
    :data:`MAX_PICKLE_EXPANSION` times the file's size (so the walk is bounded too, even for a list
    that contains itself)."""
    limit = MAX_PICKLE_EXPANSION * size + PICKLE_EXPANSION_FLOOR
    items = text = 0
    stack = [data]
    while stack:
        value = stack.pop()
        items += 1
        if isinstance(value, (str, bytes, bytearray)):
            text += len(value)
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
        if items > limit or text > limit:
            raise UsageError(
                f"{path} expands to more than {MAX_PICKLE_EXPANSION} times its size once the parts it shares are "
                "counted each time they are used, which a table of captions never does; refusing to read it "
                "(convert it to captions.json)"
            )


def read_captions_pickle(path) -> dict[str, list[str]]:
    """The class project's captions pickle (image id -> captions), read without running code.

    Only dicts, lists, tuples, strings, bytes and numbers can come out of
    :class:`_PlainUnpickler`; any pickle that names a class or function is refused.
    """
    path = Path(path)
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise UsageError(f"{path} is too large to be a captions pickle; convert it to captions.json")
    payload = path.read_bytes()
    try:
        data = _PlainUnpickler(io.BytesIO(payload), encoding="utf-8").load()
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None
    except Exception as err:
        raise UsageError(
            f"cannot read the captions pickle {path} ({type(err).__name__}); convert it to captions.json"
        ) from None
    _check_expansion(data, path, len(payload))
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a dict of image id -> captions, not a {type(data).__name__}")
    out = {}
    for key, value in data.items():
        key = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)
        out[key] = _caption_list(value, f"{path}, {key!r}")
    return out


def _folder_captions(folder: Path, names: list[str]) -> list[list[str]]:
    """Captions of the images ``names`` in ``folder``: from ``captions.json``, else a ``*.pkl``."""
    json_path = folder / CAPTIONS_FILE
    if json_path.is_file():
        table = read_captions_json(json_path)
        missing = sorted(set(table) - set(names))
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UsageError(
                f"{json_path} names {missing[0]!r}{more}, which is not an image in {folder}; "
                "fix the names (relative to the folder, with /) or remove those entries"
            )
        captions = [table.get(name, []) for name in names]
    else:
        pickles = sorted(p for p in folder.glob("*.pkl") if p.is_file())
        if not pickles:
            raise ConfigError(
                f"captions=True: {folder} has no {CAPTIONS_FILE} (file name -> list of caption texts) and no "
                "caption pickle beside the images; add one, or train without captions=True",
                "captions",
            )
        table = {}
        for path in pickles:
            table.update(read_captions_pickle(path))
        captions = [table.get(Path(name).stem, table.get(name, [])) for name in names]
    without = sum(1 for c in captions if not any(tokenize(t) for t in c))
    if without == len(names):
        raise ConfigError(
            f"captions=True: none of the {len(names)} images in {folder} has a caption with words", "captions"
        )
    if without:
        notice(f"{without} of {len(names)} images have no caption; they train without one")
    return captions


def captions_file(source: str) -> Path | None:
    """The ``captions.json`` beside the images of a folder ``source``, if it has one (else None)."""
    if source.startswith("builtin:"):
        return None
    path = Path(source) / CAPTIONS_FILE
    return path if path.is_file() else None


def load_captions(source: str, names: list[str], labels=None, attributes=None, seed: int = 0) -> list[list[str]]:
    """Captions for the images ``names`` of ``source`` (see the module notes): one list per image."""
    if source.startswith("builtin:"):
        if source == "builtin:emoji" and attributes is not None:
            return emoji_captions(attributes, seed=seed)
        if labels is not None:
            return digit_captions(labels, seed=seed)
        if attributes is not None:
            return shape_captions(attributes, seed=seed)
        raise UsageError(f"{source} has no captions")
    folder = Path(source)
    if not folder.is_dir():
        raise ConfigError(
            f"captions=True needs a folder of images with a {CAPTIONS_FILE} beside them, not a single file", "captions"
        )
    return _folder_captions(folder, names)
