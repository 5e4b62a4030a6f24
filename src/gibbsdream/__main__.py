"""`gibbsdream` and `python -m gibbsdream` (and `torchrun -m gibbsdream train nade ...`) run the command line."""

import sys

from .signals import signals_held


def run() -> None:
    """Import the command line with Ctrl+C held, then run it.

    Importing it imports PyTorch and NumPy, whose C extensions fail in odd ways when a Ctrl+C cuts
    their import short (a RecursionError, "cannot load module more than once" later on); held, the
    Ctrl+C arrives once the import is done, as a plain "interrupted".
    """
    try:
        with signals_held():
            from .cli import main  # with Ctrl+C held: see the docstring
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
