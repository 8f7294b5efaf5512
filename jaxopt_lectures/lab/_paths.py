"""Where the lab keeps its caches (generated data sets, compiled programs)."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from jaxopt_lectures import _kernels


def cache_dir() -> Path:
    """The package's cache folder (``jaxopt_lectures._kernels.cache_dir``), created on first use."""
    path = _kernels.cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_compilation_cache(path: str | os.PathLike | None = None, min_compile_secs: float = 0.5) -> Path:
    """Turn on JAX's persistent compilation cache (compiles dominate run time on CPU).

    Called by the trainer and the CLI, never on import. Programs that took at least
    ``min_compile_secs`` to compile are stored under ``path`` (default ``cache_dir()/jax``)
    and reloaded by later processes instead of recompiled.
    """
    target = Path(path) if path is not None else cache_dir() / "jax"
    target.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return target
