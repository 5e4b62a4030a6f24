"""Writing files so that a crash never leaves half of one: atomic writes, the writer lock of a folder,
leftovers of interrupted writes, and JSON that stays valid (no NaN).

Every file gibbsdream writes (checkpoints, sweep reports, images, samples) goes through
:func:`atomic_write_bytes`: a temporary file in the same folder, flushed and fsynced, renamed over
the target, and the folder fsynced. A folder that a run writes (a checkpoint, a sweep report) is
held by :func:`writer_lock` for the whole run, so a second writer is refused.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .errors import ConfigError, UsageError

try:  # POSIX only; elsewhere the writer lock is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".lock"
_LEFTOVER = re.compile(r"^\..+\.tmp$")  # temporary files of an interrupted write (atomic_write_bytes)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def user_cache_folder(kind: str) -> Path:
    """Where gibbsdream keeps what it can make again (rendered emoji, parsed chorales):
    ``$XDG_CACHE_HOME/gibbsdream/KIND`` (an absolute XDG_CACHE_HOME only, as the XDG spec says),
    else ``~/Library/Caches/gibbsdream/KIND`` on macOS and ``~/.cache/gibbsdream/KIND`` elsewhere."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        root = Path(xdg)
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path.home() / ".cache"
    return root / "gibbsdream" / kind


def json_numbers(values, digits: int) -> list:
    """Numbers rounded to ``digits`` places for JSON, with NaN, infinities and None as null."""
    return [None if v is None or not math.isfinite(v) else round(v, digits) for v in values]


def finite_json(value):
    """``value`` with every non-finite float replaced by None, so ``json.dumps`` writes valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


_fault_calls = 0


def _fault_point() -> None:
    """A test hook after every file operation of a write: with ``GIBBSDREAM_FAULT_AFTER=N`` in the
    environment the process sends itself ``GIBBSDREAM_FAULT_SIGNAL`` (KILL, INT or TERM; KILL by
    default) at the N-th point, so tests can stop a save after each of its operations in turn."""
    global _fault_calls
    target = os.environ.get("GIBBSDREAM_FAULT_AFTER")
    if not target:
        return
    _fault_calls += 1
    if _fault_calls == int(target):
        name = os.environ.get("GIBBSDREAM_FAULT_SIGNAL", "KILL")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path``: a temporary file in the same folder, flushed and fsynced, then
    renamed over ``path`` and the folder fsynced. Readers see the old file or the new one, never a
    part; on any error (a full disk) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            _fault_point()
            os.fsync(f.fileno())
        _fault_point()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fault_point()
    _fsync_folder(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path):
    """Write a whole folder at once: yield a new, empty temporary folder beside ``path`` to fill;
    when the block ends without an error it takes ``path``'s place (a folder already there is
    moved aside, then removed: the caller decides beforehand whether that may happen). Readers see
    the old folder or the new one, never a part; on any error the temporary folder is removed and
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(staged, 0o777 & ~_UMASK)  # mkdtemp makes owner-only folders; give what mkdir would
        yield staged
        _fsync_folder(staged)
        old = None
        if os.path.lexists(path):
            # Renamed aside first: a folder can replace only an empty one in one rename.
            old = path.parent / f".{path.name}.{os.getpid()}-{threading.get_ident()}.old.tmp"
            os.rename(path, old)
        try:
            os.rename(staged, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)
            raise
    except BaseException:
        _remove_tree(staged)
        raise
    _fsync_folder(path.parent)
    if old is not None:
        _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """Remove a folder and what it holds (a link: the link only); what cannot be removed is left."""
    if os.path.islink(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


_held_locks: dict[str, list] = {}  # real path -> [fd, depth]: the locks this process holds
_held_guard = threading.Lock()


def _lock_holder(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            pid = f.read(32).strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def writer_lock(folder):
    """Hold the writer lock of a folder (a checkpoint, a sweep report; created if missing) for the
    ``with`` block.

    One process at a time may write a folder: another one gets a UsageError naming the PID that
    holds it. The lock is an ``flock`` on ``folder/.lock``, so the kernel releases it when its
    process dies: a lock left by a killed run is simply taken over. Re-entrant within a process.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _held_guard:
        held = _held_locks.get(key)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield
        finally:
            with _held_guard:
                held[1] -= 1
        return
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_UMASK)
        except OSError as err:
            raise UsageError(
                f"cannot lock {folder} for writing ({path}: {err.strerror}); check that the folder is writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"{folder} is being written by {_lock_holder(path)}; wait for that run to finish (or stop it), "
                    "or write to another out folder",
                    "out",
                ) from None
            raise
        try:  # the run that held it may have removed the file meanwhile (see below): lock the new one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # the PID is only for the message another process shows
    with _held_guard:
        _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        with _held_guard:
            del _held_locks[key]
        if created and [entry.name for entry in os.scandir(folder)] == [LOCK_NAME]:
            with contextlib.suppress(OSError):  # a run that failed before saving leaves no folder
                os.unlink(path)
                os.rmdir(folder)
        os.close(fd)  # releases the flock


def is_leftover(name: str) -> bool:
    """Whether a file name in a folder written by this module is its lock or an interrupted write's
    temporary file (which readers ignore)."""
    return name == LOCK_NAME or bool(_LEFTOVER.match(name))


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files of interrupted writes from ``folder``; call it holding the folder's
    :func:`writer_lock` (another writer's temporary files would be in use)."""
    for entry in os.scandir(folder):
        if _LEFTOVER.match(entry.name):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            _fault_point()


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same existing file (False when either is None or missing)."""
    try:
        return a is not None and b is not None and os.path.samefile(a, b)
    except (OSError, TypeError, ValueError):
        return False
