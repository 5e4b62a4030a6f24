"""Codecs between data and states of category indices, and built-in data."""

from .builtin import BUILTIN_CORPORA
from .strings import CorpusReport, StringCodec, read_lines

__all__ = ["BUILTIN_CORPORA", "CorpusReport", "StringCodec", "read_lines"]
