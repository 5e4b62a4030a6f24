"""Model families: one module per family, holding what the front ends need to know about it.

A :class:`Family` says how to load a checkpoint of its kind ready for use, how to train one, how
to generate from it (and inpaint, where it can), how to score it on data, and which sweep settings
it has. The API (:mod:`gibbsdream.api`) looks families up here by the name a checkpoint records;
the CLI, the web page and sweeps go through the API. Adding a family is one new module that builds
a :class:`Family` and calls :func:`register` (see ``docs/architecture.md``).
"""

from __future__ import annotations

from .base import SPLITS, Evaluation, Exported, Family, Generated, family_names, get_family, register

__all__ = ["SPLITS", "Evaluation", "Exported", "Family", "Generated", "family_names", "get_family", "register"]
