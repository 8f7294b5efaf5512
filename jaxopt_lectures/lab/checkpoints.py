"""Checkpoints on Orbax: a directory of finished epochs, written atomically, no pickle.

A checkpoint is a directory managed by an ``orbax.checkpoint.CheckpointManager``: one
sub-directory per saved epoch (the step number is the epoch), the last ``keep`` of them
kept. Each epoch holds three items:

- ``state``: the state pytree (parameters, batch statistics, optimizer state, RNG keys,
  step counters; bfloat16 leaves and typed ``jax.random.key`` keys included), saved by
  Orbax's ``StandardCheckpointHandler`` (TensorStore/OCDBT; each host writes its shards);
- ``extra``: named numpy arrays (the trainer's history so far), when there are any;
- ``meta``: JSON: the epoch, the tree layout (path, shape and dtype of every leaf) and the
  run's *fingerprint*, a JSON object of its settings (model, optimizer probe, seeds,
  configs, data, package version; see ``trainer.train``).

Orbax writes an epoch under a temporary name and renames it when complete, so a crash
mid-write leaves the previous epochs intact and the unfinished one is never read. Then the
SHA-256 of every file of the epoch goes into ``sha256.json`` beside them (one process only;
written atomically): a file damaged or missing later is named before Orbax reads anything
(whose parallel reads, when one fails, leave the others to fail in the background).

Loading needs a *template*: the freshly initialized state (or ``jax.ShapeDtypeStruct``
leaves). The layout is compared with it first, naming the first differing path, then the
fingerprint (:class:`CheckpointMismatch` names every differing field), and only then are
the arrays read, each straight into the template leaf's sharding (a ZeRO-1 optimizer
state lands split over its mesh again, not on the default device).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = [
    "CheckpointDamaged",
    "CheckpointInUse",
    "CheckpointMismatch",
    "Checkpoints",
    "compare_fingerprints",
    "load",
    "save",
]

_FORMAT = "jaxopt_lectures.checkpoint/2"
_STATE, _EXTRA, _META = "state", "extra", "meta"
_HASHES = "sha256.json"
_LOCK = ".lock"


class CheckpointMismatch(ValueError):
    """The checkpoint was written by another run (other settings, seeds, data or version)."""


class CheckpointDamaged(ValueError):
    """An epoch of the checkpoint cannot be trusted: a file damaged or missing, its integrity
    record (``sha256.json``) missing, its metadata unreadable."""


class CheckpointInUse(RuntimeError):
    """Another process is writing this checkpoint directory (one writer per directory)."""


def _layout(tree: Any) -> list[list]:
    """``[path, shape, dtype]`` of every leaf (``None`` leaves are empty subtrees)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        [
            jax.tree_util.keystr(p),
            list(np.shape(leaf)),
            str(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype),
        ]
        for p, leaf in flat
    ]


def _target(leaf: Any) -> Any:
    """What Orbax restores a leaf into: shape, dtype and sharding of a jax array or
    ``ShapeDtypeStruct``; a numpy leaf restores as numpy."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return np.asarray(leaf)


def _unreadable(path: str | os.PathLike, step: int | None, error: BaseException) -> ValueError:
    where = f"{path} (epoch {step})" if step is not None else str(path)
    return CheckpointDamaged(
        f"{where}: not a readable checkpoint ({type(error).__name__}: {error}); delete it or pass "
        "checkpoint_mode='fresh' to start over."
    )


def _file_hashes(step_dir: Path) -> dict[str, str]:
    out = {}
    for f in sorted(step_dir.rglob("*")):
        if f.is_file() and f.name != _HASHES:
            with open(f, "rb") as fh:
                out[f.relative_to(step_dir).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


def _write_hashes(step_dir: Path) -> None:
    from jaxopt_lectures.lab._files import atomic_write

    text = json.dumps(_file_hashes(step_dir), indent=0, sort_keys=True)
    atomic_write(step_dir / _HASHES, lambda f: f.write(text.encode()))


def _check_hashes(step_dir: Path) -> None:
    """Raise ``ValueError`` naming the first file of the epoch that is missing or differs
    from its recorded SHA-256, or saying that the record itself is missing (audit v2 C05: a
    missing record switched the check off, so a swapped state item resumed silently). With
    several hosts no record is written (each sees only its own shards): nothing to check."""
    if jax.process_count() > 1:
        return
    try:
        recorded = json.loads((step_dir / _HASHES).read_bytes())
    except FileNotFoundError:
        raise ValueError(
            f"{_HASHES} is missing (the epoch's integrity record: without it nothing shows the files are "
            "the ones saved)"
        ) from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{_HASHES} is not a JSON object")
    found = _file_hashes(step_dir)
    for name, digest in recorded.items():
        if name not in found:
            raise ValueError(f"{name} is missing")
        if found[name] != digest:
            raise ValueError(f"{name} is damaged (its SHA-256 differs from the one recorded when it was saved)")


def _names(path: Any) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _check_stored_dtypes(where: str, manager: Any, step: int, template: Any) -> None:
    """Compare the dtype each array was *stored* with (Orbax's own array metadata) with the
    template's: the layout in ``meta`` is only what the saver said (audit v2 C06: a ``meta``
    edited from float32 to bfloat16 or int32, hashes recomputed, restored the float32 data
    cast silently). Paths are matched by their key names (Orbax stores containers as dicts)."""
    try:
        stored = manager.item_metadata(step)[_STATE]
    except Exception:  # noqa: BLE001 - no array metadata to compare: the restore itself still checks shapes
        return
    leaves = jax.tree_util.tree_flatten_with_path(
        getattr(stored, "tree", stored), is_leaf=lambda x: hasattr(x, "dtype") and hasattr(x, "shape")
    )[0]
    found = {_names(p): m.dtype for p, m in leaves if hasattr(m, "dtype")}
    for p, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        want = getattr(leaf, "dtype", None)
        got = found.get(_names(p))
        if want is None or got is None or jax.dtypes.issubdtype(want, jax.dtypes.prng_key):
            continue
        if np.dtype(got) != np.dtype(want):
            raise ValueError(
                f"{where}: {jax.tree_util.keystr(p)} is stored as {np.dtype(got)}, but the checkpoint's "
                f"metadata and this run say {np.dtype(want)} (the metadata was changed after saving)."
            )


def compare_fingerprints(path: str | os.PathLike, saved: dict | None, expected: dict | None) -> None:
    """Raise :class:`CheckpointMismatch` naming each field where two fingerprints differ."""
    if expected is None:
        return
    if saved is None:
        raise CheckpointMismatch(
            f"{path}: this checkpoint records no fingerprint of the run it belongs to, so it "
            "cannot be checked; pass checkpoint_mode='fresh' (or delete it) to start over."
        )
    keys = sorted(set(saved) | set(expected))
    diffs = [
        f"{k}: checkpoint {saved.get(k, '<absent>')!r}, this run {expected.get(k, '<absent>')!r}"
        for k in keys
        if saved.get(k) != expected.get(k)
    ]
    if diffs:
        raise CheckpointMismatch(
            f"{path} was written by another run ({'; '.join(diffs)}); pass "
            "checkpoint_mode='fresh' (or delete it) to start over, or use another path."
        )


class Checkpoints:
    """The checkpoint directory of one run: ``save`` epochs, ``restore`` the latest.

    Args:
      directory: the checkpoint directory (created on the first save).
      fingerprint: the run's JSON-able settings, written with every epoch and compared on
        :meth:`restore`.
      keep: how many of the latest epochs to keep (>= 1).
      fresh: ignore the epochs already there; they are deleted at the first save.

    Saves are synchronous: when :meth:`save` returns, the epoch is on disk (renamed into
    place), so training may donate the state's buffers right after.

    One writer per directory: :meth:`lock` (called by the first :meth:`save`; the trainer
    calls it before restoring) holds ``<directory>/.lock`` until :meth:`close`, with the
    holder's pid in it; a second writer gets :class:`CheckpointInUse` naming that pid.
    """

    def __init__(
        self, directory: str | os.PathLike, *, fingerprint: dict | None = None, keep: int = 2, fresh: bool = False
    ):
        if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
            raise ValueError(f"keep={keep!r} is out of range; allowed: integers >= 1.")
        self.path = Path(directory).absolute()
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(
                f"{self.path}: not a readable checkpoint (a file, not a checkpoint directory; "
                "checkpoints are Orbax directories now); delete it or use another path."
            )
        self.fingerprint = fingerprint
        self._fresh = fresh
        options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=False, enable_async_checkpointing=False)
        handlers = {
            _STATE: ocp.StandardCheckpointHandler(),
            _EXTRA: ocp.StandardCheckpointHandler(),
            _META: ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(self.path, options=options, item_handlers=handlers)
        self._lock: contextlib.ExitStack | None = None

    def lock(self) -> None:
        """Become the directory's only writer until :meth:`close` (created if missing);
        :class:`CheckpointInUse` naming the holder when another process is writing it."""
        if self._lock is not None or jax.process_count() > 1:  # several hosts write one directory together
            return
        from jaxopt_lectures.lab import _files

        self.path.mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(_files.locked(self.path / _LOCK, timeout=0, what="writer's lock"))
        except _files.LockTimeout as e:
            raise CheckpointInUse(
                f"{e}; one writer per checkpoint directory: wait for it to finish, or use another directory"
            ) from None
        self._lock = stack

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._manager.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def latest_epoch(self) -> int | None:
        """The last finished epoch on disk (``None``: none, or ``fresh``)."""
        if self._fresh or not self.path.is_dir():
            return None
        self._manager.reload()
        return self._manager.latest_step()

    def epochs(self) -> list[int]:
        """The finished epochs on disk, oldest first (``[]``: none, or ``fresh``)."""
        if self._fresh or not self.path.is_dir():
            return []
        self._manager.reload()
        return sorted(int(step) for step in self._manager.all_steps())

    def save(self, state: Any, epoch: int, extra: dict[str, np.ndarray] | None = None) -> Path:
        """Write ``state``, ``extra`` arrays and the fingerprint as epoch ``epoch``; return its
        directory. Older epochs beyond ``keep`` are deleted."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch={epoch} is out of range; allowed: integers >= 0.")
        self.lock()
        if self._fresh:  # another run's epochs go only once this run has one of its own to write
            for step in self._manager.all_steps(read=True):
                self._manager.delete(step)
            self._fresh = False
        else:  # resumed from an older epoch (the later ones damaged): they are replaced
            for step in self._manager.all_steps(read=True):
                if step >= epoch:
                    self._manager.delete(step)
        extra = {str(k): np.asarray(v) for k, v in (extra or {}).items()}
        meta = {
            "format": _FORMAT,
            "epoch": epoch,
            "layout": _layout(state),
            "extra": sorted(extra),
            "fingerprint": self.fingerprint,
        }
        items = {_META: ocp.args.JsonSave(meta)}
        if meta["layout"]:  # a state without arrays (plain SGD's) has nothing for Orbax to write
            items[_STATE] = ocp.args.StandardSave(state)
        if extra:
            items[_EXTRA] = ocp.args.StandardSave(extra)
        try:
            self._manager.save(epoch, args=ocp.args.Composite(**items), force=True)
            self._manager.wait_until_finished()
            if jax.process_count() == 1:  # with several hosts, each sees only its own shard files
                _write_hashes(self.path / str(epoch))
        except OSError as e:  # a full disk (audit v2 C09): the earlier epochs are intact; say where
            raise OSError(
                e.errno, f"{self.path} (epoch {epoch}): could not save the checkpoint ({e.strerror or e})"
            ) from e
        return self.path / str(epoch)

    def restore(self, template: Any, epoch: int | None = None) -> tuple[Any, int, dict]:
        """Read epoch ``epoch`` (default: the latest) into the structure, dtypes and
        shardings of ``template``: ``(state, epoch, extra)``.

        Raises ``ValueError`` naming the first mismatch when the checkpoint was written for a
        different model, optimizer or number of runs, :class:`CheckpointMismatch` when its
        fingerprint differs from this run's, and ``ValueError`` naming the directory when it
        is damaged (a file truncated or missing, its integrity record missing, the metadata
        unreadable): :class:`CheckpointDamaged`. Without ``epoch``, a damaged latest epoch is
        passed over with a ``RuntimeWarning`` for the newest intact one (audit v2 C03); only
        when every epoch is damaged is the latest one's error raised.
        """
        if epoch is not None:
            return self._restore(template, int(epoch))
        steps = self.epochs()
        if not steps:
            raise FileNotFoundError(f"{self.path}: no finished checkpoint epoch to restore.")
        damaged: list[str] = []
        for step in reversed(steps):
            try:
                restored = self._restore(template, step)
            except CheckpointDamaged as e:
                if not damaged:
                    first = e
                damaged.append(str(step))
                continue
            if damaged:
                warnings.warn(
                    f"{self.path}: epoch {', '.join(damaged)} damaged ({first}); resuming from epoch {step}, the "
                    "newest intact one",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return restored
        raise first

    def _restore(self, template: Any, step: int) -> tuple[Any, int, dict]:
        where = f"{self.path} (epoch {step})"
        try:
            _check_hashes(self.path / str(step))
            meta = self._manager.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise ValueError(
                    f"format {meta.get('format') if isinstance(meta, dict) else meta!r}, expected {_FORMAT!r}"
                )
            saved_layout, saved_epoch, extra_names = meta["layout"], meta["epoch"], meta["extra"]
        except Exception as e:  # orbax/tensorstore/json raise many types for one cause: a damaged epoch
            raise _unreadable(self.path, step, e) from e
        compare_fingerprints(where, meta.get("fingerprint"), self.fingerprint)
        if saved_epoch != step:
            raise ValueError(f"{where}: records epoch {saved_epoch!r}; allowed: its step number {step}.")
        layout = _layout(template)
        names, saved_names = [entry[0] for entry in layout], [entry[0] for entry in saved_layout]
        if saved_names != names:
            diff = next((a, b) for a, b in zip(saved_names + ["<end>"], names + ["<end>"]) if a != b)
            raise ValueError(
                f"{where}: checkpoint does not match this training setup (first difference: saved "
                f"{diff[0]!r}, expected {diff[1]!r}); use a new checkpoint path or the original settings."
            )
        for (name, shape, dtype), (_, want_shape, want_dtype) in zip(saved_layout, layout):
            if list(shape) != want_shape:
                raise ValueError(f"{where}: {name} has shape {tuple(shape)}, expected {tuple(want_shape)}.")
            if dtype != want_dtype:
                raise ValueError(f"{where}: {name} has dtype {dtype}, expected {want_dtype}.")
        if layout:
            _check_stored_dtypes(where, self._manager, step, template)
        items = {_STATE: ocp.args.StandardRestore(jax.tree.map(_target, template))} if layout else {}
        if extra_names:
            items[_EXTRA] = ocp.args.StandardRestore()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items)) if items else {}
            extra = dict(restored[_EXTRA]) if extra_names else {}
            if sorted(extra) != sorted(extra_names):
                raise KeyError(f"extra arrays {sorted(extra)}, expected {sorted(extra_names)}")
        except Exception as e:  # a truncated or missing array file: named, never half-loaded
            raise _unreadable(self.path, step, e) from e
        return restored[_STATE] if layout else template, step, {k: np.asarray(v) for k, v in extra.items()}


def save(
    directory: str | os.PathLike,
    state: Any,
    epoch: int,
    extra: dict[str, np.ndarray] | None = None,
    fingerprint: dict | None = None,
    *,
    keep: int = 2,
) -> Path:
    """Write ``state`` (any pytree of arrays), ``extra`` arrays and the run's ``fingerprint``
    (a JSON-able dict) as epoch ``epoch`` of the checkpoint ``directory``, keeping the last
    ``keep`` epochs; return ``directory`` (for :func:`load`). See :class:`Checkpoints`."""
    with Checkpoints(directory, fingerprint=fingerprint, keep=keep) as ck:
        ck.save(state, epoch, extra)
    return Path(directory)


def load(directory: str | os.PathLike, template: Any, fingerprint: dict | None = None) -> tuple[Any, int, dict]:
    """Read the latest epoch of the checkpoint ``directory`` into the structure, dtypes and
    shardings of ``template``: ``(state, epoch, extra)``. See :meth:`Checkpoints.restore`."""
    with Checkpoints(directory, fingerprint=fingerprint) as ck:
        return ck.restore(template)
