"""Where the lab keeps its caches (generated data sets, compiled programs).

One folder for the whole package (``jaxopt_lectures._kernels.cache_dir``: built kernels, data
sets, JAX's compiled programs), private to the user (mode 0700; see
``jaxopt_lectures._kernels.private_dir``). Compiled programs and kernels are code, so a folder
another user could write to is never used. The cache only saves time: a folder that cannot be
used means no persistent cache, with one warning naming ``$JAXOPT_LECTURES_CACHE``.

JAX trusts its cache: an entry holding another program's executable (audit v2 L15: entries
rotated between keys) is loaded and run, and every later run fails the same way. The CLI then
calls :func:`set_aside_compilation_cache` and retries once with an empty cache.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import jax

from jaxopt_lectures import _kernels


def cache_dir() -> Path:
    """The package's cache folder (``jaxopt_lectures._kernels.cache_dir``), created with mode
    0700 on first use. Raises ``OSError`` (``UnsafeCacheError`` for a folder another user can
    write to) when it cannot be used; :func:`usable_cache_dir` warns and returns ``None`` instead."""
    return _kernels.private_dir(_kernels.cache_dir())


def usable_cache_dir(sub: str | None = None) -> Path | None:
    """:func:`cache_dir` (or its private sub-folder ``sub``), or ``None`` with one warning per
    process when it cannot be used: callers then run without a persistent cache."""
    return _kernels.usable_cache_dir(sub)


def enable_compilation_cache(path: str | os.PathLike | None = None, min_compile_secs: float = 0.0) -> Path | None:
    """Turn on JAX's persistent compilation cache (compiles dominate run time on CPU).

    Called by the trainer and the CLI, never on import. Programs that took at least
    ``min_compile_secs`` to compile are stored under ``path`` (default ``cache_dir()/jax``)
    and reloaded by later processes instead of recompiled. The default stores every program:
    the lab compiles hundreds of small ones (0.1-1 s each), many of them the same program for
    another arm or setting, which then load from the cache (a few MB per table). The folder
    must be private to the user (compiled programs are run as they are loaded); when it cannot
    be created or is not private, the cache stays off, one ``RuntimeWarning`` says why, and
    ``None`` is returned.
    """
    if path is None:
        target = usable_cache_dir("jax")
    else:
        try:
            target = _kernels.private_dir(path)
        except OSError as e:
            warnings.warn(
                f"jaxopt_lectures: the compilation cache folder {path} cannot be used "
                f"({type(e).__name__}: {e}); programs are recompiled in every process",
                RuntimeWarning,
                stacklevel=2,
            )
            target = None
    if target is None:
        return None
    try:  # XLA takes the folder as UTF-8 text (audit v2 L23: a non-UTF-8 name crashed training)
        str(target).encode("utf-8")
    except UnicodeEncodeError:
        warnings.warn(
            f"jaxopt_lectures: the compilation cache folder {target!r} is not a UTF-8 name, which XLA cannot "
            "take; programs are recompiled in every process",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    global _enabled
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled = target
    return target


#: The folder :func:`enable_compilation_cache` last turned on in this process.
_enabled: Path | None = None


def set_aside_compilation_cache() -> tuple[Path, Path] | None:
    """Move the compilation cache this process turned on (and still uses) aside, after a run
    failed with it: ``(folder, where it went)``; the folder is made again, empty, JAX's
    in-memory programs are dropped, and the next compile in this process or a new worker
    compiles afresh. ``None`` when there is nothing to move (no cache of ours, or no entry
    in it) or it cannot be moved."""
    target = _enabled
    if target is None or jax.config.jax_compilation_cache_dir != str(target):
        return None
    try:
        with os.scandir(target) as entries:
            if not any(not e.name.startswith(".") for e in entries):
                return None
        aside = target.with_name(f"{target.name}.set-aside-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.rename(target, aside)
        _kernels.private_dir(target)
    except OSError:
        return None
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # reopen the (now empty) folder
    jax.clear_caches()  # and forget the executables loaded from the old one
    return target, aside
