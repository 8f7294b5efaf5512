"""One way to write a file that readers never see half-written (reports, rows, figures,
the data cache, a checkpoint epoch's list of file hashes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
