"""The ``--quick --out DIR`` options every docs script takes (``tests/test_docs_scripts.py`` runs
each one so): the whole pipeline on a tiny model, written to DIR instead of the docs."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a tiny model: checks that the script runs")
    parser.add_argument("--out", type=Path, default=None, help="where the page, data and figures go (default docs/)")


def docs_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """Where the page goes: ``--out``, else docs/ (never docs/ for a quick run, whose numbers mean nothing)."""
    if args.quick and args.out is None:
        parser.error("--quick needs --out (its numbers must not replace the page's)")
    return args.out or (ROOT / "docs")
