"""The ``gibbsdream`` command line: flags in, the Python front door (:mod:`gibbsdream.api`) called,
results presented. Nothing outside this package imports it.

``common`` holds the ``app`` group, the checks every command makes at the edge and :func:`main`;
the commands live in ``commands`` (train rbm, sample, evaluate, demo), ``images`` (train nade,
inpaint), ``sweep`` and ``serve``, each registering itself on ``app`` when imported here.
``params`` has the checked click types and ``fields`` the one table from library names to flags.
"""

from . import commands, images, serve, sweep  # noqa: F401  (each registers its commands on app)
from .common import app, main

__all__ = ["app", "main"]
