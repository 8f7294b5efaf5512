"""What every ``jaxopt-lectures`` subcommand shares: the one-line usage error and the check of
an output folder. A module of its own, so that ``cli`` and ``figures_cli`` import it and not each
other (run as ``python -m jaxopt_lectures.cli``, a second copy of ``cli`` had its own
``UsageError``, which ``main`` did not catch)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


def writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        # an unpredictable probe name created with O_EXCL: never writes through a planted
        # link, and two runs probing one folder do not race (audit cases 94, 138)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"--out {str(path)!r} is not a writable directory ({e.strerror or e})") from None
    return path
