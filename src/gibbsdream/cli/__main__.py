"""``python -m gibbsdream.cli`` (as ``python -m gibbsdream``, without holding Ctrl+C during imports)."""

from . import main

main()
