"""Running a compiled worker on several threads: who owns what, where the threads meet, and the
Python side of the run (:func:`run_workers`). Nothing here is compiled, and nothing needs numba.

**The contract the workers rely on** (the compiled half is in :mod:`.rbm`, "meetings"):

* Worker ``t`` of ``T`` (its :class:`Part`) owns the hidden units ``[first, last)``, the ``t``-th
  of ``T`` consecutive blocks that together cover every hidden unit once
  (:func:`parts_for`; :func:`run_workers` checks it). So the columns a worker writes are written
  by nobody else, and each meeting counter has one writer.
* The counters (:func:`meeting_counters`), each alone on :func:`counter_span` bytes: row ``t`` is
  the number of meetings worker ``t`` has reached, written by worker ``t`` alone; row ``T`` the
  number of steps whose random numbers are ready, written by the calling thread alone (here);
  row ``T + 1`` the call-off flag, which any thread may set but only from 0 to 1, so that
  writers cannot disagree.
* Ordering: a worker writes its counter only after its own stores of the step, and reads shared
  data only after the counters it waited for (an opaque call on both sides keeps the compiler
  from moving a store or load across); x86's total store order then makes every store before
  a counter visible to whoever sees the counter (:func:`.native.check_machine` refuses other
  machines). The calling thread's Python stores (the random numbers, then the ready count) are
  ordered the same way: a call into the interpreter is opaque to the compiler. When
  :func:`run_workers` returns, every worker has returned and ``Future.result`` (a lock) has
  ordered their stores before the caller's loads.
* Waiting: a worker spins a little at a meeting, then sleeps on the counter it waits for
  (a futex, Linux); whoever moves a counter wakes its sleepers right after (:func:`wake`, and its
  compiled twin in :mod:`.rbm`). The kernel checks the counter under its own lock as it puts a
  waiter to sleep, so no wake is lost; a sleep also ends after :data:`SLEEP_NS` in any case, so
  that a call-off is seen.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch

SLEEPS = sys.platform.startswith("linux")  # a waiter sleeps on a futex; elsewhere it yields its core
FUTEX = 202  # SYS_futex on x86-64 Linux (the compiled loops run on x86-64 only)
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 0 | 128, 1 | 128  # FUTEX_WAIT, FUTEX_WAKE | FUTEX_PRIVATE_FLAG
SLEEP_NS = 1_000_000  # the longest sleep at a meeting: how late a call-off may be seen
_TIMEOUT = 2  # columns 2 and 3 of the call-off row: the sleep's timeout as a C timespec (s, ns)


def default_threads(num_hidden: int) -> int:
    """Threads of the compiled loops: PyTorch's intra-op thread count, but at least 64 hidden units
    each, because every thread does a share of each matrix product and the threads meet twice
    per Gibbs step, so thin shares cost more in meetings than they save."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus, num_hidden // 64))


class Part(NamedTuple):
    """Which worker this is, and the hidden units ``[first, last)`` it owns."""

    thread: int
    num_threads: int
    first: int
    last: int


def parts_for(num_threads: int, num_hidden: int) -> list[Part]:
    """The workers' parts: ``num_threads`` consecutive blocks of the hidden units, none empty
    (an empty block would hand the BLAS a leading dimension of 0, which it refuses)."""
    if not 1 <= num_threads <= num_hidden:
        raise ValueError(f"num_threads must lie in [1, num_hidden = {num_hidden}], got {num_threads}")
    return [
        Part(t, num_threads, t * num_hidden // num_threads, (t + 1) * num_hidden // num_threads)
        for t in range(num_threads)
    ]


def _check_parts(parts: list[Part]) -> None:
    """Raise ValueError unless ``parts`` are workers ``0 .. T-1`` whose blocks follow each other."""
    count = len(parts)
    for t, part in enumerate(parts):
        if part.thread != t or part.num_threads != count or part.first >= part.last:
            raise ValueError(f"part {t} of {count} is {part}")
        if t and part.first != parts[t - 1].last:
            raise ValueError(f"the blocks of parts {t - 1} and {t} are not consecutive: {parts[t - 1]}, {part}")
    if parts[0].first != 0:
        raise ValueError(f"the first part starts at hidden unit {parts[0].first}, not 0")


def cache_line_bytes() -> int:
    """This machine's cache line in bytes as the OS reports it, or 64 where it does not say."""
    size = 0
    if hasattr(os, "sysconf") and "SC_LEVEL1_DCACHE_LINESIZE" in os.sysconf_names:
        try:
            size = os.sysconf("SC_LEVEL1_DCACHE_LINESIZE")
        except (OSError, ValueError):
            size = 0
    return size if size > 0 else 64


def counter_span() -> int:
    """Bytes between two meeting counters: at least two cache lines, because Intel's spatial
    prefetcher fetches 64-byte lines in aligned pairs, so counters on neighbouring lines would
    still pass the pair back and forth between cores (false sharing). Whatever the array's
    alignment, counters this far apart never share a line or a pair."""
    return max(128, 2 * cache_line_bytes())


def meeting_counters(num_threads: int) -> np.ndarray:
    """Zeroed counters of one run, ``(T + 2, counter_span() // 8)`` int64; column 0 of each row is
    the counter, the rest spacing: rows ``0 .. T-1`` the workers' meeting counts, row ``T`` the
    steps whose random numbers are ready, row ``T + 1`` the call-off flag (module notes) and, in
    its columns 2 and 3, the sleeps' timeout (:data:`SLEEP_NS`) as the C ``timespec`` the kernel reads."""
    counters = np.zeros((num_threads + 2, counter_span() // 8), np.int64)
    counters[-1, _TIMEOUT : _TIMEOUT + 2] = divmod(SLEEP_NS, 10**9)  # read-only from here on
    return counters


_libc = ctypes.CDLL(None)  # the C library (POSIX only)
_syscall = getattr(_libc, "syscall", None)
if _syscall is not None:
    _syscall.restype = ctypes.c_long
    _syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long]


def wake(counters: np.ndarray, row: int) -> None:
    """Wake the workers asleep on ``counters[row, 0]`` (after the calling thread moved it)."""
    if SLEEPS and _syscall is not None:
        _syscall(FUTEX, counters.ctypes.data + row * counters.strides[0], FUTEX_WAKE_PRIVATE, 2**31 - 1)


class Meeting(NamedTuple):
    """What the workers of one run share: the counters they meet on, and the shares of the
    visible logits each publishes before a meeting for the others to read after it."""

    counters: np.ndarray  # (T + 2, span) int64: meeting_counters(T)
    logit_shares: np.ndarray  # (T, C, V*K) in the parameters' dtype: row t written by worker t only


def new_meeting(num_threads: int, num_chains: int, rows: int, dtype) -> Meeting:
    """A :class:`Meeting` for ``num_threads`` workers, ``num_chains`` chains and ``rows = V*K``."""
    return Meeting(meeting_counters(num_threads), np.empty((num_threads, num_chains, rows), dtype))


_sched_getcpu = getattr(_libc, "sched_getcpu", None)  # glibc and musl have it


def current_cpu() -> int:
    """The CPU the calling thread runs on now, or -1 where the C library cannot tell."""
    return _sched_getcpu() if _sched_getcpu is not None else -1


@contextmanager
def kept_apart(thread: int, main_cpu: int):
    """Keep worker threads off each other's CPU while they run: worker 0 (the calling thread) on
    ``main_cpu``, where it already is, the others anywhere else the process may run.

    Without it Linux woke the pool thread on the caller's CPU in one call out of two here and
    left it there, so two workers took turns on one core (measured: 510 µs an update instead of
    278). Nothing else is pinned, so the scheduler still places the helpers, and several
    processes on a large machine do not pile onto the same cores.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else set()
    if main_cpu < 0 or len(allowed) < 2 or main_cpu not in allowed:
        yield
        return
    os.sched_setaffinity(0, {main_cpu} if thread == 0 else allowed - {main_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def run_workers(worker, parts, total: int, per_chunk: int, feed, arguments, check, counters, pool, advance=None):
    """Run ``worker(parts[t], start, stop, *arguments[t])`` on ``len(parts)`` threads over ``total``
    steps (updates or sweeps).

    The calling thread is worker 0 and goes a chunk of ``per_chunk`` steps at a time, each after
    ``feed(start, stop)`` has drawn its random numbers; the others, from ``pool``, run all the
    steps in one call, waiting for each chunk as for a meeting (module notes), so that a chunk
    rarely waits for a thread pool to be woken (on the development VM that could cost
    milliseconds: a parallel ``zeros_like`` of 143,000 floats took 7.8 ms after a pause and 0.1 ms
    right after other work).
    ``feed`` may overwrite the previous chunk's numbers because worker 0 returns from a chunk only
    after the last meeting of its last step, when every worker has drawn that step.

    ``check(part, 0, total, *arguments[t])`` raises ValueError for arguments the compiled loop
    would misread (it checks no bounds); each worker checks its own once, in its own thread, as
    the first thing it does. ``counters`` from :func:`meeting_counters`; ``advance(n)`` reports
    progress. A worker that fails (its check included) calls the run off, so that no other
    waits for it forever, and its exception is raised here.
    """
    _check_parts(parts)
    threads = len(parts)
    if counters.shape[0] != threads + 2:
        raise ValueError(f"counters for {counters.shape[0] - 2} workers, not {threads}")
    ready, call_off = threads, threads + 1
    main_cpu = current_cpu() if threads > 1 else -1
    failures, checked = [], [False] * threads

    def work(thread, start, stop):
        try:
            with kept_apart(thread, main_cpu):
                if not checked[thread]:
                    check(parts[thread], 0, total, *arguments[thread])
                    checked[thread] = True
                worker(parts[thread], start, stop, *arguments[thread])
        except BaseException as error:  # raised again in the calling thread below
            call_off_run()
            failures.append(error)

    def call_off_run():
        counters[call_off, 0] = 1
        for row in range(threads + 1):
            wake(counters, row)

    helpers = [pool.submit(work, t, 0, total) for t in range(1, threads)]
    try:
        for start in range(0, total, per_chunk):
            stop = min(start + per_chunk, total)
            feed(start, stop)
            counters[ready, 0] = stop  # after feed's stores, which x86 makes visible first
            wake(counters, ready)
            work(0, start, stop)
            if failures:
                break
            if advance is not None:
                advance(stop - start)
    except BaseException:
        call_off_run()
        raise
    finally:
        for helper in helpers:
            helper.result()
    if failures:
        raise failures[0]
