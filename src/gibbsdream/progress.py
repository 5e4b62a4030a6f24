"""Progress bars that go quiet when output is not a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _console() -> Console:
    return Console(file=sys.stderr)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True):
    """Yield ``advance(n=1, **fields)``; draws a bar on a terminal and nothing elsewhere."""
    console = _console()
    if not (enabled and console.is_terminal):
        yield lambda n=1, **fields: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")
        yield lambda n=1, **fields: bar.update(task, advance=n, status=fields.get("status", ""))
