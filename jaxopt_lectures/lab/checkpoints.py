"""Checkpoints as plain ``.npz`` files: no pickle, written atomically.

A checkpoint stores the leaves of a state pytree (parameters, batch statistics, optimizer
state, RNG keys, step counters) under their tree paths, the epoch, and any extra arrays
(the history so far). Loading needs a *template* pytree of the same structure (the freshly
initialized state), so nothing but arrays is ever read from disk.

A checkpoint also records what it belongs to: a *fingerprint*, a JSON object of the run's
settings (model, optimizer probe, seeds, configs, data, package version; see
``trainer.train``). :func:`load` refuses a checkpoint whose fingerprint differs and names
every differing field, so another run's weights and history are never resumed silently.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save", "load"]

_PATHS = "__paths__"
_EPOCH = "__epoch__"
_FINGERPRINT = "__fingerprint__"


class CheckpointMismatch(ValueError):
    """The checkpoint was written by another run (other settings, seeds, data or version)."""


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in flat], [leaf for _, leaf in flat], treedef


def save(path: str | os.PathLike, state: Any, epoch: int, extra: dict[str, np.ndarray] | None = None,
         fingerprint: dict | None = None) -> Path:
    """Write ``state`` (any pytree of arrays), ``epoch``, ``extra`` arrays and the run's
    ``fingerprint`` (a JSON-able dict) to ``path``.

    The file is written under an unpredictable temp name in the destination folder (created
    exclusively, so a planted link is never written through), fsynced, and renamed over the
    destination (``os.replace``), so a crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names, leaves, _ = _flatten(state)
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays[_PATHS] = np.asarray(names, dtype=np.str_)
    arrays[_EPOCH] = np.asarray(epoch, np.int64)
    for key, value in (extra or {}).items():
        arrays[f"extra_{key}"] = np.asarray(value)
    if fingerprint is not None:
        arrays[_FINGERPRINT] = np.asarray(json.dumps(fingerprint, sort_keys=True), dtype=np.str_)
    from jaxopt_lectures.lab._files import atomic_write

    return atomic_write(path, lambda f: np.savez(f, **arrays), mode=0o600)


def compare_fingerprints(path, saved: dict | None, expected: dict | None) -> None:
    """Raise :class:`CheckpointMismatch` naming each field where two fingerprints differ."""
    if expected is None:
        return
    if saved is None:
        raise CheckpointMismatch(f"{path}: this checkpoint records no fingerprint of the run it belongs to, so it "
                                 "cannot be checked; pass checkpoint_mode='fresh' (or delete the file) to start over.")
    keys = sorted(set(saved) | set(expected))
    diffs = [f"{k}: checkpoint {saved.get(k, '<absent>')!r}, this run {expected.get(k, '<absent>')!r}"
             for k in keys if saved.get(k) != expected.get(k)]
    if diffs:
        raise CheckpointMismatch(f"{path} was written by another run ({'; '.join(diffs)}); pass "
                                 "checkpoint_mode='fresh' (or delete the file) to start over, or use another path.")


def load(path: str | os.PathLike, template: Any, fingerprint: dict | None = None) -> tuple[Any, int, dict]:
    """Read a checkpoint into the structure of ``template``: ``(state, epoch, extra)``.

    Raises ``ValueError`` naming the first mismatch when the checkpoint was written for a
    different model, optimizer or number of runs, :class:`CheckpointMismatch` when its
    recorded ``fingerprint`` differs from the given one, and ``ValueError`` naming the file
    when it is damaged (truncated, not an ``.npz``, a leaf missing, a wrong dtype or epoch).
    """
    try:
        return _load(path, template, fingerprint)
    except (EOFError, zipfile.BadZipFile, KeyError, OSError, TypeError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); delete it or pass "
                         "checkpoint_mode='fresh' to start over.") from None


def _load(path, template, fingerprint):
    with open(path, "rb") as fh:  # our handle: closed even when numpy fails half-way
        loaded = np.load(fh, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise TypeError("a single .npy array, not a checkpoint archive")
        with loaded as f:
            return _read(path, f, template, fingerprint)


def _read(path, f, template, fingerprint):
    names, leaves, treedef = _flatten(template)
    saved_fp = json.loads(str(f[_FINGERPRINT])) if _FINGERPRINT in f.files else None
    compare_fingerprints(path, saved_fp, fingerprint)
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
        want = jnp.asarray(leaf).dtype
        if value.dtype != want and not (value.dtype.kind == "V" and value.dtype.itemsize == want.itemsize):
            raise ValueError(f"{path}: {name} has dtype {value.dtype}, expected {want}.")
        restored.append(jnp.asarray(value.view(want) if value.dtype.kind == "V" else value, dtype=want))
    epoch = int(f[_EPOCH])
    if epoch < 0:
        raise ValueError(f"{path}: epoch {epoch} is out of range; allowed: integers >= 0.")
    extra = {k[len("extra_"):]: f[k] for k in f.files if k.startswith("extra_")}
    return jax.tree_util.tree_unflatten(treedef, restored), epoch, extra
