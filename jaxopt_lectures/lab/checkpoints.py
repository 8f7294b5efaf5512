"""Checkpoints as plain ``.npz`` files: no pickle, written atomically.

A checkpoint stores the leaves of a state pytree (parameters, batch statistics, optimizer
state, RNG keys, step counters) under their tree paths, the epoch, and any extra arrays
(the history so far). Loading needs a *template* pytree of the same structure (the freshly
initialized state), so nothing but arrays is ever read from disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save", "load"]

_PATHS = "__paths__"
_EPOCH = "__epoch__"


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in flat], [leaf for _, leaf in flat], treedef


def save(path: str | os.PathLike, state: Any, epoch: int, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``state`` (any pytree of arrays), ``epoch`` and ``extra`` arrays to ``path``.

    The file is written next to its destination and renamed over it (``os.replace``), so a
    crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names, leaves, _ = _flatten(state)
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays[_PATHS] = np.asarray(names, dtype=np.str_)
    arrays[_EPOCH] = np.asarray(epoch, np.int64)
    for key, value in (extra or {}).items():
        arrays[f"extra_{key}"] = np.asarray(value)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike, template: Any) -> tuple[Any, int, dict[str, np.ndarray]]:
    """Read a checkpoint into the structure of ``template``: ``(state, epoch, extra)``.

    Raises ``ValueError`` naming the first mismatch when the checkpoint was written for a
    different model, optimizer or number of runs.
    """
    names, leaves, treedef = _flatten(template)
    with np.load(path, allow_pickle=False) as f:
        saved_names = [str(s) for s in f[_PATHS]]
        if saved_names != names:
            diff = next((a, b) for a, b in zip(saved_names + ["<end>"], names + ["<end>"]) if a != b)
            raise ValueError(
                f"{path}: checkpoint does not match this training setup (first difference: saved "
                f"{diff[0]!r}, expected {diff[1]!r}); use a new checkpoint path or the original settings."
            )
        restored = []
        for i, (name, leaf) in enumerate(zip(names, leaves)):
            value = f[f"leaf_{i}"]
            if value.shape != jnp.shape(leaf):
                raise ValueError(f"{path}: {name} has shape {value.shape}, expected {jnp.shape(leaf)}.")
            restored.append(jnp.asarray(value, dtype=jnp.asarray(leaf).dtype))
        epoch = int(f[_EPOCH])
        extra = {k[len("extra_"):]: f[k] for k in f.files if k.startswith("extra_")}
    return jax.tree_util.tree_unflatten(treedef, restored), epoch, extra
