"""Built-in corpora that work offline (they ship inside installed packages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class BuiltinCorpus:
    description: str
    load: Callable[[], list[str]]


def _unique_in_order(names) -> list[str]:
    return list(dict.fromkeys(names))


def _regions() -> list[str]:
    import pycountry  # pycountry takes ~80 ms to import: only when this corpus is read

    return _unique_in_order(s.name for s in pycountry.subdivisions)


def _countries() -> list[str]:
    import pycountry  # pycountry takes ~80 ms to import: only when this corpus is read

    return _unique_in_order(c.name for c in pycountry.countries)


def _words() -> list[str]:
    try:
        from english_words import get_english_words_set  # an optional extra: only when this corpus is read
    except ImportError:
        raise UsageError(
            "builtin:words needs the english-words package (about 8 MB of word lists); install it with "
            'pip install english-words, or pip install -e ".[bench]" in a checkout of gibbsdream'
        ) from None
    # Webster's Second International (web2), lower-cased, letters only; sorted, as a set has no order
    return sorted(get_english_words_set(["web2"], lower=True, alpha=True))


def _languages() -> list[str]:
    import pycountry  # pycountry takes ~80 ms to import: only when this corpus is read

    return _unique_in_order(lang.name for lang in pycountry.languages)


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "regions": BuiltinCorpus("≈4,900 names of countries' subdivisions (ISO 3166-2, from pycountry)", _regions),
    "countries": BuiltinCorpus("249 country names (ISO 3166-1, from pycountry)", _countries),
    "languages": BuiltinCorpus("≈7,900 language names (ISO 639-3, from pycountry)", _languages),
    "words": BuiltinCorpus(
        "≈234,000 English words (Webster's Second, lower-case letters; needs pip install english-words)", _words
    ),
}
