"""Strings <-> fixed-length states of category indices.

A :class:`StringCodec` maps each string to ``max_length`` category indices. Category 0 is the
padding symbol; categories ``1..len(alphabet)`` are the alphabet's characters in order. Strings
are padded on the right (``"ab" -> a b · ·``) or on the left (``· · a b``). Decoding drops
padding, so ``decode(encode(s)) == s`` for every string the codec accepts (after case folding,
when that is on).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, UsageError
from ..resources import check_memory
from .builtin import BUILTIN_CORPORA

RARE_POLICIES = ("skip", "replace", "keep")
PAD_SIDES = ("right", "left")


@dataclass
class CorpusReport:
    """What happened to each line of a corpus: how many were kept, and why others were skipped."""

    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> first few (line number, text)

    def skip(self, reason: str, line_number: int, text: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append((line_number, text))

    def summary(self) -> str:
        if not self.skipped:
            return f"kept all {self.kept} lines"
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
        return f"kept {self.kept} of {self.total} lines; skipped {reasons}"

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "skipped": dict(self.skipped)}


@dataclass
class StringCodec:
    """Fixed-length string codec.

    Attributes:
        alphabet: the characters, in category order (category ``i + 1`` is ``alphabet[i]``).
        max_length: number of positions ``V`` of every encoded state.
        pad_side: ``"right"`` or ``"left"``.
        case_fold: fold case (``str.casefold``) before encoding.
        pad_symbol: how padding is shown when decoding with ``show_padding=True``.
        replacement: character that stands in for rare characters (``rare="replace"``), or None.
    """

    alphabet: str
    max_length: int
    pad_side: str = "right"
    case_fold: bool = False
    pad_symbol: str = "·"
    replacement: str | None = None

    def __post_init__(self):
        if not isinstance(self.alphabet, str) or len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet:
            raise UsageError("a codec alphabet must be a non-empty string of distinct characters")
        if self.pad_side not in PAD_SIDES:
            raise UsageError(f"pad side must be one of {', '.join(PAD_SIDES)}, got {self.pad_side!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise UsageError(f"max length must be a whole number >= 1, got {self.max_length!r}")
        if not isinstance(self.case_fold, bool) or not isinstance(self.pad_symbol, str):
            raise UsageError(
                f"a codec's case_fold must be true or false and its pad_symbol a string, got "
                f"{self.case_fold!r} and {self.pad_symbol!r}"
            )
        if self.replacement is not None and not (isinstance(self.replacement, str) and len(self.replacement) == 1):
            raise UsageError(f"a codec's replacement must be one character or null, got {self.replacement!r}")
        self._index = {ch: i + 1 for i, ch in enumerate(self.alphabet)}
        self._lookup = ["\x00", *list(self.alphabet)]

    @property
    def num_categories(self) -> int:
        """``K = len(alphabet) + 1`` (the padding category is 0)."""
        return len(self.alphabet) + 1

    @property
    def shape(self) -> tuple[int]:
        return (self.max_length,)

    # ---- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        lines: list[str],
        *,
        max_length: int | None = None,
        case_fold: bool = False,
        pad_side: str = "right",
        min_char_count: int = 1,
        rare: str = "skip",
        replacement: str = "?",
        pad_symbol: str = "·",
    ) -> tuple[StringCodec, list[str], CorpusReport]:
        """Learn an alphabet from ``lines``; return ``(codec, kept_lines, report)``.

        Empty lines are skipped; so are lines longer than ``max_length`` (default: the longest
        kept line). Characters seen fewer than ``min_char_count`` times are *rare*: ``rare="skip"``
        drops lines that contain one, ``"replace"`` writes ``replacement`` instead, ``"keep"``
        keeps them in the alphabet.
        """
        if rare not in RARE_POLICIES:
            raise ConfigError(f"rare must be one of {', '.join(RARE_POLICIES)}, got {rare!r}", "rare")
        if pad_side not in PAD_SIDES:
            raise ConfigError(f"pad_side must be one of {', '.join(PAD_SIDES)}, got {pad_side!r}", "pad_side")
        if max_length is not None and max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {max_length}", "max_length")
        if min_char_count < 1:
            raise ConfigError(f"min_char_count must be >= 1, got {min_char_count}", "min_char_count")
        if rare == "replace" and len(replacement) != 1:
            raise UsageError(f"the replacement for rare characters must be one character, got {replacement!r}")
        report = CorpusReport(total=len(lines))
        candidates = []
        for number, line in enumerate(lines, start=1):
            text = line.casefold() if case_fold else line
            if not text:
                report.skip("empty", number, line)
            elif max_length is not None and len(text) > max_length:
                report.skip("too long", number, line)
            else:
                candidates.append((number, text))
        counts = Counter(ch for _, text in candidates for ch in text)
        rare_chars = {ch for ch, n in counts.items() if n < min_char_count} if rare != "keep" else set()
        kept = []
        for number, text in candidates:
            if rare_chars and not rare_chars.isdisjoint(text):
                if rare == "skip":
                    report.skip("rare character", number, text)
                    continue
                text = "".join(replacement if ch in rare_chars else ch for ch in text)
            kept.append(text)
        report.kept = len(kept)
        if not kept:
            raise ConfigError(
                f"no usable lines in the corpus ({report.summary()}); check the file, or loosen "
                "max_length / min_char_count",
                "max_length",
                "min_char_count",
            )
        alphabet = "".join(sorted(set("".join(kept))))
        codec = cls(
            alphabet=alphabet,
            max_length=max_length or max(map(len, kept)),
            pad_side=pad_side,
            case_fold=case_fold,
            pad_symbol=pad_symbol,
            replacement=replacement if rare == "replace" and rare_chars else None,
        )
        return codec, kept, report

    # ---- encoding --------------------------------------------------------------------------

    def prepare(self, text: str) -> str:
        """Case-fold and replace rare characters as the codec was fitted to."""
        text = text.casefold() if self.case_fold else text
        if self.replacement is not None:
            text = "".join(ch if ch in self._index else self.replacement for ch in text)
        return text

    def problem(self, text: str) -> str | None:
        """Why ``text`` cannot be encoded (after :meth:`prepare`), or None if it can."""
        if not text:
            return "empty"
        if len(text) > self.max_length:
            return f"longer than the model's {self.max_length} positions"
        unknown = sorted({ch for ch in text if ch not in self._index})
        if unknown:
            return "characters not in the alphabet: " + " ".join(repr(ch) for ch in unknown[:5])
        return None

    def filter(self, lines: list[str]) -> tuple[list[str], CorpusReport]:
        """Prepare ``lines`` and keep those the codec can encode; ``(kept, report)``."""
        report = CorpusReport(total=len(lines))
        kept = []
        for number, line in enumerate(lines, start=1):
            text = self.prepare(line)
            reason = self.problem(text)
            if reason is None:
                kept.append(text)
            else:
                report.skip(reason.split(":")[0], number, line)
        report.kept = len(kept)
        return kept, report

    def encode(self, strings: list[str]) -> torch.Tensor:
        """``list[str]`` (N) -> ``(N, max_length)`` long tensor. Raises UsageError on a bad string."""
        rows = []
        for i, s in enumerate(strings):
            text = self.prepare(s)
            reason = self.problem(text)
            if reason is not None:
                raise UsageError(f"string {i + 1} ({s!r}) cannot be encoded: {reason}")
            codes = [self._index[ch] for ch in text]
            padding = [0] * (self.max_length - len(codes))
            rows.append(codes + padding if self.pad_side == "right" else padding + codes)
        return torch.tensor(rows, dtype=torch.long).view(len(rows), self.max_length)

    def decode(self, states: torch.Tensor, show_padding: bool = False) -> list[str]:
        """``(N, max_length)`` category indices -> N strings (padding dropped unless shown)."""
        pad = self.pad_symbol if show_padding else ""
        lookup = [pad, *list(self.alphabet)]
        return ["".join(lookup[c] for c in row) for row in states.tolist()]

    # ---- clamping ------------------------------------------------------------------------------

    def clamp_prefix(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions fixed by a prefix: ``(x (V,), known (V,))``. Needs right padding."""
        return self._clamp(prefix, at_start=True)

    def clamp_suffix(self, suffix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions fixed by a suffix: ``(x (V,), known (V,))``. Needs left padding."""
        return self._clamp(suffix, at_start=False)

    def _clamp(self, text: str, at_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        wanted = "right" if at_start else "left"
        what = "prefix" if at_start else "suffix"
        if self.pad_side != wanted:
            raise UsageError(
                f"a {what} can only be clamped on a model whose strings are padded on the {wanted}; "
                f"this one pads on the {self.pad_side} (use --{'suffix' if at_start else 'prefix'})"
            )
        text = self.prepare(text)
        reason = self.problem(text)
        if reason is not None:
            raise UsageError(f"{what} {text!r} cannot be clamped: {reason}")
        x = torch.zeros(self.max_length, dtype=torch.long)
        known = torch.zeros(self.max_length, dtype=torch.bool)
        codes = torch.tensor([self._index[ch] for ch in text])
        span = slice(0, len(text)) if at_start else slice(self.max_length - len(text), self.max_length)
        x[span], known[span] = codes, True
        return x, known

    # ---- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "kind": "string",
            "alphabet": self.alphabet,
            "max_length": self.max_length,
            "pad_side": self.pad_side,
            "case_fold": self.case_fold,
            "pad_symbol": self.pad_symbol,
            "replacement": self.replacement,
        }

    @classmethod
    def from_dict(cls, d: dict) -> StringCodec:
        return cls(**{k: v for k, v in d.items() if k != "kind"})


def read_lines(source: str) -> list[str]:
    """Lines of a corpus: ``builtin:NAME`` or a UTF-8 text file with one string per line.

    Line endings are removed; nothing else is stripped. Raises UsageError with a remedy when the
    source is missing, unreadable, not UTF-8 or empty.
    """
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN_CORPORA:
            raise UsageError(
                f"unknown built-in corpus {name!r}; choose one of " + ", ".join(f"builtin:{n}" for n in BUILTIN_CORPORA)
            )
        lines = BUILTIN_CORPORA[name].load()
    else:
        path = Path(source)
        if not path.exists():
            raise UsageError(
                f"corpus file {source} does not exist; pass a UTF-8 text file with one string per "
                "line, or builtin:NAME (" + ", ".join(f"builtin:{n}" for n in BUILTIN_CORPORA) + ")"
            )
        if path.is_dir():
            raise UsageError(f"{source} is a folder; pass a UTF-8 text file with one string per line")
        if not path.is_file():
            # Reading a FIFO (or a terminal) would wait for a writer, perhaps forever.
            raise UsageError(
                f"{source} is not a regular file (a pipe, a socket or a device); save the corpus to a "
                "file and pass that"
            )

        size = path.stat().st_size
        # The bytes, the decoded text (up to 4 bytes a character) and the list of lines.
        check_memory(size * 7, f"reading the corpus {source} of {size:,} bytes", "split the corpus into smaller files")
        try:
            text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not part of line 1
        except UnicodeDecodeError as err:
            line = path.read_bytes()[: err.start].count(b"\n") + 1
            raise UsageError(f"{source} is not UTF-8 text (bad byte on line {line}); re-save it as UTF-8") from None
        except OSError as err:
            raise UsageError(f"cannot read {source}: {err.strerror}") from None
        # Only newlines end a line (read_text already turned \r\n and \r into \n); splitlines()
        # would also split at form feeds, U+2028 and other separators inside a string.
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    if not any(lines):
        raise UsageError(f"corpus {source} is empty; it needs at least one non-empty line")
    return lines
