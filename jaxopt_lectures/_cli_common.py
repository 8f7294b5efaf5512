"""What every ``jaxopt-lectures`` subcommand shares: the one-line usage error and the check of
an output folder. A module of its own, so that ``cli`` and ``figures_cli`` import it and not each
other (run as ``python -m jaxopt_lectures.cli``, a second copy of ``cli`` had its own
``UsageError``, which ``main`` did not catch).

Every CLI number has a documented range, shown in ``--help`` and checked before any work by
one path: :func:`add_number` declares it, :func:`check_numbers` checks it (``main`` calls it
before a command runs), and :func:`check` is the one message for values known only later
(a batch size against the data, a seed list)."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


#: The largest seed: seeds become uint32 PRNG keys (``jax.random.PRNGKey(2**32)`` is seed 0's key).
MAX_SEED = 2**32 - 1
#: The most seeds one command trains (each seed is a full training run).
MAX_SEEDS = 1000


@dataclass(frozen=True)
class Bounds:
    """The allowed values of one numeric CLI option: ``[low, high]`` (``(low, high]`` with
    ``low_open``), integers or finite numbers. Its :meth:`describe` is what ``--help`` shows and
    what an out-of-range error says."""

    low: float
    high: float
    integer: bool = True
    low_open: bool = False

    def describe(self) -> str:
        kind = "integers" if self.integer else "numbers"
        return f"{kind} in {'(' if self.low_open else '['}{_text(self.low)}, {_text(self.high)}]"

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high


def _text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def check(option: str, value: float, bounds: Bounds, why: str = "") -> None:
    """The one check of a CLI number: raises :class:`UsageError` ``--OPTION VALUE is out of
    range; allowed: <bounds>`` (and ``why``, in parentheses) when ``value`` is not in ``bounds``."""
    if value not in bounds:
        raise UsageError(
            f"--{option} {value} is out of range; allowed: {bounds.describe()}" + (f" ({why})" if why else "")
        )


def add_number(
    parser: argparse.ArgumentParser, flag: str, bounds: Bounds, default: float, help: str, **kwargs: Any
) -> None:
    """Add the numeric option ``flag`` with its allowed range: ``--help`` shows the default and
    the range, and :func:`check_numbers` (called by ``main`` before a command starts) checks it."""
    dest = flag.lstrip("-").replace("-", "_")
    parser.add_argument(
        flag,
        type=int if bounds.integer else float,
        default=default,
        help=f"{help} (default {default}; {bounds.describe()})",
        **kwargs,
    )
    registered = dict(parser.get_default(_BOUNDS) or {})
    registered[dest] = (flag.lstrip("-"), bounds)
    parser.set_defaults(**{_BOUNDS: registered})


_BOUNDS = "_number_bounds"


def check_numbers(args: argparse.Namespace) -> None:
    """Check every option added with :func:`add_number` against its range (before any work)."""
    for dest, (option, bounds) in (getattr(args, _BOUNDS, None) or {}).items():
        check(option, getattr(args, dest), bounds)


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
