"""Codecs between data and states of category indices, built-in data, and mask distributions."""

from .builtin import BUILTIN_CORPORA
from .images import (
    BUILTIN_IMAGES,
    ImageCodec,
    ImageDataset,
    load_image_file,
    load_image_folder,
    load_images,
    save_png,
)
from .strings import CorpusReport, StringCodec, read_lines

__all__ = [
    "BUILTIN_CORPORA",
    "BUILTIN_IMAGES",
    "CorpusReport",
    "ImageCodec",
    "ImageDataset",
    "StringCodec",
    "load_image_file",
    "load_image_folder",
    "load_images",
    "read_lines",
    "save_png",
]
