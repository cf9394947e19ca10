"""File writing that a killed process cannot leave half done, the cleanup of what a kill leaves, and a
lock that tells a second process who is at work.

Temporary files are named ``.tmp-<pid>@<host>-<random>`` so that a later process can tell a dead
writer's leftovers (:func:`clean_stale_temps`) from the file of a writer still at work.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

__all__ = ["atomic_path", "atomic_write", "replace", "clean_stale_temps", "exclusive_lock", "LockHeld", "TEMP_PREFIX",
           "user_cache_dir", "zoo_cache_dir"]

TEMP_PREFIX = ".tmp-"
#: Temporary files older than this (seconds) are stale whoever wrote them (a write takes seconds at most).
STALE_AFTER = 3600.0
_OWNED = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)@([0-9a-f]{8})-")


def _host() -> str:
    """8 hex digits naming this machine (hostnames may hold characters unfit for file names)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(src: str, dst: str) -> None:
    """``os.replace(src, dst)``, then fsync the directory so the rename survives a power loss in order."""
    os.replace(src, dst)
    _fsync_dir(os.path.dirname(os.path.abspath(dst)))


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (``/proc``); else set and
    restored at once (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part
    (a temporary file in the same directory, fsynced, then renamed over ``path``: :func:`atomic_path`). The file
    gets the permissions ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` for a writer that needs a file name (``safetensors.torch.save_file``,
    which streams a large file without first building it in memory); on a clean exit the file is fsynced,
    given ``open``'s permissions and renamed over ``path``; on an error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}@{_host()}-", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def user_cache_dir(override: str | None = None) -> str:
    """Where nngraph keeps caches and reports: ``override``, else ``$NNGRAPH_CACHE``, else
    ``$XDG_CACHE_HOME/nngraph``, else ``~/.cache/nngraph``. Never a zoo directory: zoos may be read-only."""
    if override:
        return override
    if os.environ.get("NNGRAPH_CACHE"):
        return os.environ["NNGRAPH_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nngraph")


def zoo_cache_dir(root: str, kind: str, override: str | None = None) -> str:
    """``<user_cache_dir(override)>/<kind>/<zoo name>-<hash of its real path>``: one directory per zoo."""
    real = os.path.realpath(root)
    key = hashlib.sha256(real.encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(real.rstrip(os.sep)) or "zoo")
    return os.path.join(user_cache_dir(override), kind, f"{name}-{key}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _is_stale(name: str, age: float, max_age: float) -> bool:
    """A temp file is stale if this host's writer is dead, or if it is older than ``max_age``."""
    owned = _OWNED.match(name)
    if owned and owned.group(2) == _host() and not _alive(int(owned.group(1))):
        return True
    return age > max_age


def clean_stale_temps(directory: str, max_age: float = STALE_AFTER) -> list[str]:
    """Delete the ``.tmp-*`` files :func:`atomic_write` left in ``directory`` when its process was killed.

    Only stale ones go: written on this host by a process that is gone, or older than ``max_age``
    seconds (the writer may be on another host sharing the directory). Files that vanish or cannot be
    deleted (a read-only directory) are left alone.

    Returns:
        The paths deleted.
    """
    removed = []
    try:
        names = [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX)]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(directory, name)
        try:
            if _is_stale(name, now - os.stat(path).st_mtime, max_age):
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
    return removed


class LockHeld(BlockingIOError):
    """Another process holds the lock on ``path``; ``holder`` is what it recorded (``pid``, ``host``,
    ``started``), empty if it has not written it yet."""

    def __init__(self, path: str, holder: dict[str, Any]):
        super().__init__(errno.EWOULDBLOCK, f"{path} is locked by {holder or 'another process'}")
        self.path, self.holder = path, holder


#: Lock files this process holds (real path -> file descriptor), so that nested holds are no-ops.
_HELD: dict[str, int] = {}


def _read_holder(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _record_holder(fd: int) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)


def _try_flock(fd: int, path: str) -> bool:
    """Take the lock without waiting; ``False`` if the filesystem has no locks (warned), :class:`LockHeld`
    if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockHeld(path, _read_holder(path)) from None
    except OSError as err:
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        warnings.warn(f"cannot lock {path} ({err.strerror}): a second process could work in the same place")
        return False
    return True


@contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed) for the block; fail at once if
    another process holds it.

    The file records the holder (pid, host, start time) for the error of the next process that tries.
    The kernel drops the lock when the holder exits or is killed, so a leftover file never blocks. A
    nested hold of the same path in the same process is a no-op (the outer one releases it).

    Raises:
        LockHeld: if another process holds the lock (with what it recorded).
    """
    key = os.path.realpath(path)
    if fcntl is None or key in _HELD:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_flock(fd, path):
            _record_holder(fd)
            _HELD[key] = fd
        yield
    finally:
        _HELD.pop(key, None)
        os.close(fd)  # releases the lock
