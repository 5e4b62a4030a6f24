"""`python -m gibbsdream` (and `torchrun -m gibbsdream train nade ...`) run the command line."""

from .cli import main

if __name__ == "__main__":
    main()
