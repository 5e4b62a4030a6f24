"""Sampling jobs of the web page: a bounded pool of worker threads, live progress, cancellation.

A job is one call of :func:`gibbsdream.sample` running in a worker thread. Its ``on_step``
callback stores a reference to the newest states and trace row (the samplers never modify them
afterwards), so a poll can show the chain as it is without the sampler waiting for anyone; the
same callback raises :class:`JobCancelled` once the job is cancelled, which ends the sampler
between two steps.

Jobs are named by long random ids, so one visitor cannot see or cancel another's job by guessing.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import UsageError

ACTIVE = ("queued", "running")


class JobCancelled(Exception):
    """Raised from a sampler's ``on_step`` callback to stop a cancelled job."""


class ServerBusy(Exception):
    """Every job slot is taken; the message says so and what to do."""


@dataclass
class Job:
    """One sampling run and what a poll may read of it.

    Attributes:
        kind: ``"image"`` or ``"strings"``.
        model: the name of the served model.
        steps: steps the run will take (``step`` counts up to it).
        step: the last step reported by the sampler (``-1`` before the first report).
        latest: ``(states, trace_row)`` after ``step``: ``(N, *shape)`` states and ``(N,)`` trace.
        trace: one ``(N,)`` trace row per reported step, in order (tensors, possibly on a GPU).
        state: ``queued``, ``running``, ``done``, ``cancelled`` or ``failed``.
        error: why a failed job failed, in one line.
        result: what the job's work function returned (read only when ``state == "done"``).
        inputs: what the work function needs (states, masks, settings), kept for downloads.
    """

    kind: str
    model: str
    steps: int
    inputs: dict = field(default_factory=dict)
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = "queued"
    step: int = -1
    latest: tuple | None = None
    trace: list = field(default_factory=list)
    error: str | None = None
    result: dict | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    cache: dict = field(default_factory=dict)  # downloads made once on request (e.g. the GIF bytes)

    def on_step(self, step: int, states, trace_row) -> None:
        """The sampler's ``on_step`` callback: keep the newest states, stop if cancelled."""
        if self.cancel_requested.is_set():
            raise JobCancelled
        self.trace.append(trace_row)
        self.latest = (states, trace_row)  # one assignment, so a poll never sees a half-updated pair
        self.step = step

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return round((self.finished or time.monotonic()) - self.started, 3)


class JobManager:
    """Runs jobs on at most ``max_jobs`` threads and refuses more than that at once.

    Work done for a request outside a job (decoding an uploaded image) holds one of the same
    ``max_jobs`` places while it runs (:meth:`slot`), so uploads cannot add up either.

    Finished jobs are kept (for polls and downloads) until more than ``keep`` finished jobs
    exist; then the oldest finished ones are dropped.
    """

    def __init__(self, max_jobs: int = 2, keep: int = 64):
        self.max_jobs = max_jobs
        self.keep = keep
        self._pool = ThreadPoolExecutor(max_jobs, thread_name_prefix="gibbsdream-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._slots = 0  # places held through slot()
        self._lock = threading.Lock()

    def active(self) -> int:
        """Jobs queued or running, and places held through :meth:`slot`."""
        with self._lock:
            return self._busy()

    def _busy(self) -> int:
        return self._slots + sum(j.state in ACTIVE for j in self._jobs.values())

    def _make_room(self) -> None:
        """Raise :class:`ServerBusy` if every place is taken (call with the lock held)."""
        busy = self._busy()
        if busy >= self.max_jobs:
            running, reading = busy - self._slots, self._slots
            what = [f"{running} jobs are running"] if running or not reading else []
            if reading:
                what.append(f"{reading} uploaded image{'s are' if reading > 1 else ' is'} being read")
            what = " and ".join(what)
            raise ServerBusy(
                f"the server is busy: {what}, the most it works on at once; "
                "try again when one has finished (or cancel yours)"
            )

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one job place while the ``with`` block runs, or raise :class:`ServerBusy`."""
        with self._lock:
            self._make_room()
            self._slots += 1
        try:
            yield
        finally:
            with self._lock:
                self._slots -= 1

    def submit(self, job: Job, work: Callable[[Job], dict]) -> Job:
        """Queue ``work(job)`` (which returns the job's result), or raise :class:`ServerBusy`."""
        with self._lock:
            self._make_room()
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.state not in ACTIVE]
            for old in finished[: max(0, len(finished) - self.keep)]:
                del self._jobs[old]
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.state in ACTIVE:
            job.cancel_requested.set()
        return job

    def shutdown(self) -> None:
        """Cancel every job and stop the workers (without waiting for a step to end)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_requested.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(job: Job, work: Callable[[Job], dict]) -> None:
        if job.cancel_requested.is_set():
            job.state, job.finished = "cancelled", time.monotonic()
            return
        job.started = time.monotonic()
        job.state = "running"
        try:
            job.result = work(job)
            job.state = "done"
        except JobCancelled:
            job.state = "cancelled"
        except UsageError as err:
            job.error, job.state = str(err), "failed"
        except Exception as err:
            # The page shows one line; the server's terminal keeps the whole story for a bug report.
            traceback.print_exc(file=sys.stderr)
            job.error, job.state = f"the job failed ({type(err).__name__}: {err})", "failed"
        finally:
            job.finished = time.monotonic()
