"""Holding Ctrl+C and SIGTERM while something must not be cut short (a checkpoint's commit, an
import of a C extension, which fails in odd ways when interrupted half-way)."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM until the block is done, then deliver them; a second one arriving in
    the block is not held (the user insists): it interrupts at once. Only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}

    def hold(signum, frame):
        if pending:
            for number, handler in previous.items():
                signal.signal(number, handler)
            signal.raise_signal(signum)
            return
        pending.append(signum)

    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler is not None:  # None: installed outside Python; leave it alone
            previous[number] = handler
            signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            signal.raise_signal(pending[0])
