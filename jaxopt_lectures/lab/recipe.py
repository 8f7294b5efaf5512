"""The lecture's concluding table, measured: the public face of the registry and the runner.

Seed 000 ends with a table: for each technique, *which step of finding a function it
changes* and *what it buys* (better optimization: a lower training loss; better
generalization: a lower validation loss). The pieces, each with one reason to change:

- :mod:`.claims.quotes`: what the lectures say, quoted (seed file, lines, words), and the
  claim with its negative half;
- :mod:`.claims.rows`: how each claim is tested (two arms, tuned knobs, budget, regime);
- :mod:`.plan`: settings -> trainer arguments (tuned knobs as traced inputs);
- :mod:`.run`: tune each arm on validation, judge on test; :mod:`.stats`: the verdict rule;
- :mod:`.report`: resumable row files and the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from jaxopt_lectures.lab.claims.rows import REGISTRY, Row, differing_paths, merge, setting
from jaxopt_lectures.lab.plan import (  # noqa: F401 (re-exported: the tests call recipe.runs_per_device_split, recipe._runs_mesh)
    per_example_loss,
    runs_mesh as _runs_mesh,
    runs_per_device_split,
)
from jaxopt_lectures.lab.run import RULE, dispatch_order, explain, row_fingerprint, run_row

Entry = Row  # the name report.py and older examples use

STEPS = {
    "loss": "what we want (loss/data)",
    "function_set": "the function set",
    "optimization": "picking the best (optimization)",
}

__all__ = [
    "REGISTRY",
    "Row",
    "Entry",
    "STEPS",
    "RULE",
    "select",
    "run_entry",
    "explain",
    "setting",
    "merge",
    "differing_paths",
    "per_example_loss",
    "CompileTimer",
    "dispatch_order",
    "row_fingerprint",
]


def run_entry(entry: Row, seeds: Sequence[int], quick: bool, progress: bool = False, blocks: int = 1) -> dict:
    """Train both arms of one row on ``seeds`` (at least ``blocks`` blocks of them) and judge
    them (see :func:`.run.run_row`)."""
    return run_row(entry, seeds, quick, progress, blocks)


def select(names: Sequence[str] | None) -> list[Row]:
    """Registry rows by name, each once, in the order given (all when ``names`` is empty);
    unknown names raise ``KeyError`` listing the valid ones."""
    if not names:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown technique(s) {', '.join(map(repr, unknown))}; known: {', '.join(REGISTRY)}")
    return [REGISTRY[n] for n in dict.fromkeys(names)]


class CompileTimer:
    """Adds up the time JAX spends compiling, and counts the XLA compilations (its
    monitoring events; small eager kernels count too)."""

    _total = 0.0
    _count = 0
    _installed = False

    @classmethod
    def install(cls) -> None:
        if not cls._installed:

            def listener(event: str, duration_secs: float, **_: str | int) -> None:
                if event.startswith("/jax/core/compile/"):
                    cls._total += duration_secs
                if event == "/jax/core/compile/backend_compile_duration":
                    cls._count += 1

            jax.monitoring.register_event_duration_secs_listener(listener)
            cls._installed = True

    @classmethod
    def total(cls) -> float:
        return cls._total

    @classmethod
    def count(cls) -> int:
        return cls._count
