"""Shared switch for the examples: ``--small`` or ``JOL_SMALL=1`` runs a tiny configuration (used by CI)."""

import os
import sys


def small() -> bool:
    """True when the example should run at its smallest size (a few seconds on a CPU)."""
    return "--small" in sys.argv[1:] or os.environ.get("JOL_SMALL", "") not in ("", "0")
