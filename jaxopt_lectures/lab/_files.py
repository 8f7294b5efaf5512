"""The lab's one way to touch files: write them so readers never see them half-written
(reports, rows, arms, figures, the data cache, a checkpoint epoch's list of file hashes), read
them without ever blocking on a FIFO or device, keep finished work when a write fails, and
hold locks that say who holds them."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks
    fcntl = None  # type: ignore[assignment]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, mode: int | None = None) -> Path:
    """Call ``write(f)`` on a new file, then put it at ``path`` atomically.

    The temporary file gets an unpredictable name in the target folder, created exclusively
    (``mkstemp``: a planted link is never written through, two writers never share it); it
    is flushed, ``fsync``ed, given ``mode`` (default ``0o666`` minus the umask, like any file
    the user writes) and renamed over ``path``; then the folder is ``fsync``ed so the rename
    survives a crash. On any failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), (0o666 & ~umask()) if mode is None else mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)
    return path


# ---------------------------------------------------------------------------------------
# Reading, locking and keeping finished work: every row, arm, lock and cache file of the lab
# goes through these (audit v2, issue 21 item 3).


class NotARegularFile(OSError):
    """A FIFO, device, socket or folder where the lab expects a file: refused without
    reading (a FIFO would block forever), the path named in a one-line message."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: str | os.PathLike, mode: int) -> NotARegularFile:
    return NotARegularFile(f"{path}: {_kind(mode)}, not a regular file; refusing to use it")


def open_regular(path: str | os.PathLike, *, follow: bool = True) -> BinaryIO:
    """``open(path, "rb")`` that never blocks on a FIFO or device: opened with ``O_NONBLOCK``
    (``O_NOFOLLOW`` too unless ``follow``), then :class:`NotARegularFile` unless ``fstat``
    says it is a regular file; the returned file reads normally (blocking mode restored)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise _not_regular(path, stat.S_IFLNK) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, *, follow: bool = True) -> bytes:
    """The contents of the regular file ``path`` (:func:`open_regular`)."""
    with open_regular(path, follow=follow) as f:
        return f.read()


def write_or_keep(path: str | os.PathLike, data: bytes, say: Callable[[str], object], *, what: str = "result") -> bool:
    """:func:`atomic_write` ``data`` to ``path``; when that fails (the disk full, read-only or
    not writable: ENOSPC, EROFS, EACCES; or a file where its folder should be) say so in one
    line naming the path and return ``False``: the caller keeps the finished ``what`` in memory."""
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        say(f"warning: could not write {path} ({why}); the {what} is kept in memory only")
        return False
    return True


def holder(path: str | os.PathLike) -> str:
    """Who holds the lock file ``path``, from the pid its holder wrote: ``"pid 123"``, with
    ``", stopped"`` when that process is stopped (Ctrl-Z), or ``"an unknown process"``."""
    try:
        text = read_bytes(path, follow=False).decode("ascii", "replace").split()
        pid = int(text[0])
    except (OSError, ValueError, IndexError):
        return "an unknown process"
    state = _proc_state(pid)
    return f"pid {pid}" + (", stopped" if state in ("T", "t") else "")


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


class LockTimeout(TimeoutError):
    """A lock still held by another process past the timeout (the message names it)."""


@contextlib.contextmanager
def locked(
    path: str | os.PathLike,
    *,
    timeout: float | None,
    say: Callable[[str], object] = lambda m: print(m, file=sys.stderr, flush=True),
    poll_s: float = 0.2,
    what: str = "lock",
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created mode 0600, never through a link, a
    non-regular file refused without blocking) with this process's pid written in it.

    A lock held by another process is never waited on silently: one line names its holder
    (:func:`holder`); past ``timeout`` seconds (``0``: do not wait; ``None``: forever), or at
    once when the holder is stopped (Ctrl-Z) and ``timeout`` is not ``None``,
    :class:`LockTimeout` is raised naming the path and the holder. Closing releases it."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR):
            raise _not_regular(path, stat.S_IFLNK if e.errno == errno.ELOOP else stat.S_IFDIR) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if fcntl is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            said = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    who = holder(path)
                    stopped = who.endswith("stopped")  # waiting on a stopped process helps nobody
                    if deadline is not None and (stopped or time.monotonic() >= deadline):
                        raise LockTimeout(
                            f"{path}: {what} held by {who}"
                            + (f" for over {timeout:g} s" if timeout and not stopped else "")
                            + (" (stopped: resume it with fg, or end it)" if stopped else "")
                        ) from None
                    if not said:
                        said = True
                        limit = "" if timeout is None else f" (at most {timeout:g} s)"
                        say(f"waiting for {path}: {what} held by {who}{limit}")
                    time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
