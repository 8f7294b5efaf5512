"""A multi-seed, multi-configuration training loop built on this package's optimizers.

Reading order: :class:`History` (what comes back), :func:`train` (the loop), then the pure
single-run pieces it is made of (``_loss``, ``_step``, ``_evaluate``).

Compiling dominates on CPU, so the loop compiles once per model and data shape:

* hyper-parameters that experiments vary enter the jitted step as traced arrays: the
  trainer's own (``dropout``, ``l2``, ``l1``, ``mixup_alpha``, ``entropy_weight``,
  ``graph_weight``) through
  ``hparams``/``configs``, the optimizer's through ``jol.inject_hyperparams`` (any other
  key of a config is written into the optimizer state with ``jol.set_state_field``);
* dense models run all (configuration, seed) pairs as one ``vmap``-ed program whose epoch is a
  ``lax.scan`` over batches; conv nets step run by run in a Python loop over one jitted step
  (``scan`` and ``vmap`` both make CPU convolutions many times slower).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxopt_lectures as jol
from jaxopt_lectures import losses
from jaxopt_lectures.lab import augment as aug, checkpoints
from jaxopt_lectures.lab._paths import enable_compilation_cache
from jaxopt_lectures.lab.data import Dataset

__all__ = ["History", "train", "TRAINER_HPARAMS", "init_model_state", "transfer_params"]

#: Hyper-parameters the trainer itself understands; they enter the step as traced arrays.
TRAINER_HPARAMS = ("dropout", "l2", "l1", "mixup_alpha", "entropy_weight", "graph_weight")
#: The terms that need a batch of the unlabeled pool (semi-supervised learning, lecture 000).
UNLABELED_HPARAMS = ("entropy_weight", "graph_weight")
#: Neighbours per example in the graph of the graph-smoothness term.
GRAPH_NEIGHBOURS = 5


@dataclasses.dataclass
class History:
    """What :func:`train` returns. Metric arrays are ``(configs, seeds, epochs)``.

    ``train_*`` are measured on the whole training split in evaluation mode (dropout off,
    batch-norm running averages), ``val_*`` on the validation split. Entries after a run
    diverged or stopped early are NaN. ``diverged_epoch``/``diverged_step`` are ``-1`` for
    runs that never produced a non-finite loss; ``stopped_epoch`` is ``-1`` unless early
    stopping ended the run (its parameters are then those of ``best_epoch``).
    ``graphdef``/``state`` hold the final models: see :meth:`model`.
    """

    seeds: tuple[int, ...]
    configs: tuple[dict, ...]
    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    diverged_epoch: np.ndarray
    diverged_step: np.ndarray
    stopped_epoch: np.ndarray
    best_epoch: np.ndarray
    epochs_done: int = 0
    #: ``(configs, seeds)`` loss and accuracy of the final (early-stopped: best) parameters
    #: on the test split, which nothing in training looks at; ``None`` without a test split.
    test_loss: np.ndarray | None = None
    test_acc: np.ndarray | None = None
    #: ``(configs, seeds, epochs)`` test loss after every epoch (``train(..., test_curve=True)``
    #: with a test split; else ``None``): what an epoch's parameters would score on the test
    #: split, e.g. to compare two runs at the epoch each reaches the same training loss.
    test_curve: np.ndarray | None = None
    graphdef: Any = dataclasses.field(default=None, repr=False)
    state: Any = dataclasses.field(default=None, repr=False)

    @property
    def diverged(self) -> np.ndarray:
        """``(configs, seeds)`` booleans: did the run's loss become NaN or infinite?"""
        return self.diverged_epoch >= 0

    def final(self, metric: str = "val_acc") -> np.ndarray:
        """The last finite value of ``metric`` for every run, ``(configs, seeds)``."""
        values = getattr(self, metric)
        out = np.full(values.shape[:2], np.nan)
        for idx in np.ndindex(*values.shape[:2]):
            finite = values[idx][np.isfinite(values[idx])]
            if finite.size:
                out[idx] = finite[-1]
        return out

    def model(self, config: int = 0, seed: int = 0) -> nnx.Module:
        """The trained network of one run, as an ``nnx`` module (``seed`` is an index)."""
        run = config * len(self.seeds) + seed
        one = jax.tree.map(lambda a: a[run], self.state)
        return nnx.merge(self.graphdef, one.params, one.batch_stats)


class RunState(NamedTuple):
    """Everything one run carries between steps (stacked over runs on a leading axis)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array  # the run's base key; step and epoch keys are folded from it
    step: jax.Array
    active: jax.Array  # False once diverged or early-stopped: updates are skipped
    diverged_step: jax.Array
    best_params: Any
    best_batch_stats: Any
    best_val: jax.Array
    bad_epochs: jax.Array


# ---------------------------------------------------------------------------------------
# Single-run pure functions.


def _split_model(model: nnx.Module):
    graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)  # type: ignore[misc]  # flax types split's result as variadic
    if jax.tree.leaves(rest):
        raise TypeError(
            "the model holds state other than parameters and batch statistics (for example "
            "nnx.Dropout's Rngs); use jaxopt_lectures.lab.models.Dropout, which takes its key as an argument."
        )
    return graphdef, params, batch_stats


def init_model_state(model_fn: Callable[..., nnx.Module], key: jax.Array):
    """``(params, batch_stats)`` of ``model_fn(rngs=nnx.Rngs(key))``; jit/vmap friendly."""
    _, params, batch_stats = _split_model(model_fn(rngs=nnx.Rngs(key)))
    return params, batch_stats


def transfer_params(target: Any, source: Any) -> Any:
    """Pre-training: copy every leaf of ``source`` whose path and shape match one in ``target``.

    Layers that differ (a new head, a different width) keep ``target``'s initialization.
    """
    src = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    leaves = []
    for path, leaf in flat:
        other = src.get(jax.tree_util.keystr(path))
        leaves.append(other if other is not None and jnp.shape(other) == jnp.shape(leaf) else leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """The static (compile-time) choices of one training program."""

    graphdef: Any
    optimizer: Any
    classification: bool
    num_classes: int
    batch_size: int
    num_batches: int
    hp_names: tuple[str, ...]
    augment: Callable | None
    loss_fn: Callable | None
    unlabeled_batch: int
    eval_loss_fn: Callable | None = None


def _loss(setup: _Setup, params, batch_stats, x, y, x_unl, pair_w, key, hp):
    model = nnx.merge(setup.graphdef, params, batch_stats, copy=True)
    k_aug, k_mix, k_drop, k_unl = jax.random.split(key, 4)
    if setup.augment is not None:
        x = setup.augment(k_aug, x)
    target = jax.nn.one_hot(y, setup.num_classes) if setup.classification else y
    if "mixup_alpha" in hp:
        x, target = aug.mixup(k_mix, x, target, hp["mixup_alpha"])
    out = model(x, train=True, key=k_drop, dropout=hp.get("dropout"))
    data_loss = jnp.mean(_per_example_loss(setup, out, target))
    loss = data_loss
    if any(name in hp for name in UNLABELED_HPARAMS):
        out_u = model(x_unl, train=True, key=k_unl, dropout=hp.get("dropout"))
    if "entropy_weight" in hp:
        loss = loss + hp["entropy_weight"] * jnp.mean(losses.entropy(out_u))
    if "graph_weight" in hp:
        # Graph smoothness S = ½ Σ w_ij ‖y_i − y_j‖² over the edges of a k-nearest-neighbour
        # graph of the whole unlabeled pool: the first half of x_unl are random nodes i, the
        # second half one random neighbour j of each, so the batch mean of w_ij‖y_i − y_j‖²
        # estimates the mean edge term (lecture 000: connected inputs get similar outputs).
        y_u = jax.nn.softmax(out_u)
        half = x_unl.shape[0] // 2
        gaps = jnp.sum(jnp.square(y_u[:half] - y_u[half:]), axis=-1)
        loss = loss + hp["graph_weight"] * 0.5 * jnp.mean(pair_w * gaps)
    if "l2" in hp:
        loss = loss + hp["l2"] * losses.l2_penalty(params)
    if "l1" in hp:
        loss = loss + hp["l1"] * losses.l1_penalty(params)
    return loss, (data_loss, nnx.state(model, nnx.BatchStat))


def knn_graph(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every example (Euclidean) and their edge weights
    ``w_ij = exp(−‖x_i − x_j‖² / d)`` (``d`` = input size), computed once on the host."""
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    k = max(min(k, len(flat) - 1), 1)
    if len(flat) < 2:
        return np.zeros((len(flat), 1), np.int32), np.zeros((len(flat), 1), np.float32)
    sq = np.sum(flat**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1)[:, :k].astype(np.int32)
    w = np.exp(-np.take_along_axis(d2, idx, axis=1) / flat.shape[1]).astype(np.float32)
    return idx, w


def _per_example_loss(setup: _Setup, out, target):
    if setup.loss_fn is not None:
        return setup.loss_fn(out, target)
    if setup.classification:
        return losses.softmax_cross_entropy(out, target)
    return losses.mse(out, target)


def _where(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _step(setup: _Setup, rs: RunState, idx, hp, data) -> RunState:
    """One optimizer step of one run on the examples ``idx`` of the training split."""
    x_train, y_train, _, _, x_unl, nbr_idx, nbr_w = data
    key = jax.random.fold_in(jax.random.fold_in(rs.key, 1), rs.step)
    k_loss, k_unl = jax.random.split(key)
    xu, pair_w = None, None
    if setup.unlabeled_batch:
        k_node, k_edge = jax.random.split(k_unl)
        half = setup.unlabeled_batch // 2
        nodes = jax.random.randint(k_node, (half,), 0, x_unl.shape[0])
        edge = jax.random.randint(k_edge, (half,), 0, nbr_idx.shape[1])
        # random nodes and one random graph neighbour of each (see the graph term in _loss)
        xu = x_unl[jnp.concatenate([nodes, nbr_idx[nodes, edge]])]
        pair_w = nbr_w[nodes, edge]
    grad_fn = jax.value_and_grad(
        lambda p: _loss(setup, p, rs.batch_stats, x_train[idx], y_train[idx], xu, pair_w, k_loss, hp), has_aux=True
    )
    (loss, (_, batch_stats)), grads = grad_fn(rs.params)
    updates, opt_state = setup.optimizer.update(grads, rs.opt_state, rs.params)
    params = jol.apply_updates(rs.params, updates)
    ok = jnp.isfinite(loss)
    go = rs.active & ok
    return rs._replace(
        params=_where(go, params, rs.params),
        batch_stats=_where(go, batch_stats, rs.batch_stats),
        opt_state=_where(go, opt_state, rs.opt_state),
        step=rs.step + go.astype(rs.step.dtype),
        active=go,
        diverged_step=jnp.where(rs.active & ~ok, rs.step, rs.diverged_step),
    )


def epoch_indices(run_keys: np.ndarray, epoch: int, n: int, num_batches: int, batch_size: int) -> np.ndarray:
    """This epoch's batches for every run, ``(runs, num_batches, batch_size)``: a fresh
    permutation of the ``n`` training examples per run and epoch (the remainder dropped),
    seeded by the run's key and the epoch, so a resumed run draws the same batches.

    Drawn on the host with NumPy: a sort-based shuffle inside every arm's compiled epoch
    program cost about 0.4 s of compilation per arm (a quarter of it), and the indices are
    a few kilobytes per epoch to send."""
    out = np.empty((len(run_keys), num_batches, batch_size), np.int32)
    for r, key in enumerate(run_keys):
        rng = np.random.default_rng([int(k) for k in np.ravel(key)] + [2, int(epoch)])
        out[r] = rng.permutation(n)[: num_batches * batch_size].reshape(num_batches, batch_size)
    return out


def _host_keys(keys: jax.Array) -> np.ndarray:
    """The runs' keys as host integers ``(runs, words)`` (raw or typed keys alike)."""
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    return np.asarray(keys).reshape(keys.shape[0], -1)


def _scan_epoch(setup: _Setup, rs: RunState, idx, hp, data) -> RunState:
    rs, _ = jax.lax.scan(lambda s, i: (_step(setup, s, i, hp, data), None), rs, idx)
    return rs


def _evaluate(setup: _Setup, rs: RunState, x, y):
    """Loss and accuracy on a whole split, evaluation mode (no dropout, running averages)."""
    model = nnx.merge(setup.graphdef, rs.params, rs.batch_stats, copy=True)
    out = model(x, train=False)
    target = jax.nn.one_hot(y, setup.num_classes) if setup.classification else y
    if setup.eval_loss_fn is not None:
        loss = jnp.mean(setup.eval_loss_fn(out, target))
    else:
        loss = jnp.mean(_per_example_loss(setup, out, target))
    acc = losses.accuracy(out, y) if setup.classification else jnp.full((), jnp.nan)
    return loss, acc


def _end_epoch(setup: _Setup, rs: RunState, data, patience):
    """Evaluate, then do the early-stopping bookkeeping. Returns (state, metrics)."""
    x_train, y_train, x_val, y_val, *_ = data
    tl, ta = _evaluate(setup, rs, x_train, y_train)
    vl, va = _evaluate(setup, rs, x_val, y_val) if x_val.shape[0] else (tl * jnp.nan, ta * jnp.nan)
    finite = jnp.isfinite(tl)
    diverged_now = rs.active & ~finite
    rs = rs._replace(active=rs.active & finite, diverged_step=jnp.where(diverged_now, rs.step, rs.diverged_step))
    if patience is not None:
        better = rs.active & (vl < rs.best_val)
        bad = jnp.where(better, 0, rs.bad_epochs + 1)
        rs = rs._replace(
            best_params=_where(better, rs.params, rs.best_params),
            best_batch_stats=_where(better, rs.batch_stats, rs.best_batch_stats),
            best_val=jnp.where(better, vl, rs.best_val),
            bad_epochs=jnp.where(rs.active, bad, rs.bad_epochs),
            active=rs.active & (bad < patience),
        )
        return rs, (tl, ta, vl, va, better)
    return rs, (tl, ta, vl, va, jnp.zeros((), bool))


# ---------------------------------------------------------------------------------------
# The loop.


def _has_conv(model: nnx.Module) -> bool:
    return any(isinstance(node, nnx.Conv) for _, node in nnx.iter_graph(model))


def default_vmap(model: nnx.Module, backend: str | None = None) -> bool:
    """The trainer's default plan: all runs as one vmapped program with scanned epochs, except
    conv nets on the CPU (vmapped and scanned CPU convolutions are many times slower there, so
    those step run by run). On a GPU or TPU everything is vmapped: that is what they are good at."""
    backend = jax.default_backend() if backend is None else backend
    return backend != "cpu" or not _has_conv(model)


def _run_hparams(hparams, configs, seeds):
    base = dict(hparams or {})
    configs = [dict(c) for c in (configs or [{}])]
    names = sorted(set(base) | {k for c in configs for k in c})
    table = {}
    for name in names:
        col = []
        for c in configs:
            if name in c:
                col.append(c[name])
            elif name in base:
                col.append(base[name])
            else:
                raise ValueError(f"config {c} lacks {name!r} and hparams gives no default for it.")
        table[name] = np.repeat(np.asarray(col, np.float32), len(seeds))
    return configs, table


def _stack_on_host(*leaves):
    """``jnp.stack(leaves)`` through NumPy: eager ``jnp.stack`` compiles one program per leaf
    shape and run count (dozens per network), a host copy compiles none. Typed keys stay in JAX."""
    if jax.dtypes.issubdtype(leaves[0].dtype, jax.dtypes.prng_key):
        return jnp.stack(leaves)
    return jax.device_put(np.stack([np.asarray(leaf) for leaf in leaves]))  # jnp.asarray compiles per shape


def _stack(trees):
    """Runs -> one stacked state (the conv nets' run-by-run loop, every epoch). On the CPU
    through NumPy (no program per leaf shape); on accelerators on the device (no transfer)."""
    if jax.default_backend() == "cpu":
        return jax.tree.map(_stack_on_host, *trees)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n):
    """One stacked state -> its runs (the inverse of :func:`_stack`, same device choice)."""

    def host(a):  # one host view per leaf, sliced n times (no slicing program per leaf shape)
        keep = jax.default_backend() != "cpu" or jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
        return a if keep else np.asarray(a)

    views = jax.tree.map(host, tree)
    put = lambda a: jax.device_put(a) if isinstance(a, (np.ndarray, np.generic)) else a  # noqa: E731
    return [jax.tree.map(lambda a, i=i: put(a[i]), views) for i in range(n)]


def train(
    model_fn: Callable[..., nnx.Module],
    data: Dataset | Sequence[Dataset],
    optimizer: jol.GradientTransformation,
    epochs: int,
    batch_size: int | None = 32,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    hparams: dict[str, float] | None = None,
    configs: Sequence[dict[str, float]] | None = None,
    augment: Callable | None = None,
    loss_fn: Callable | None = None,
    early_stopping_patience: int | None = None,
    init_from: History | None = None,
    vmap: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    checkpoint_mode: str = "resume",
    checkpoint_info: dict | None = None,
    checkpoint_keep: int = 2,
    on_epoch_end: Callable[[int, History], None] | None = None,
    progress: bool = True,
    compilation_cache: bool = True,
    eval_loss_fn: Callable | None = None,
    progress_desc: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
    test_curve: bool = False,
) -> History:
    """Train ``model_fn(rngs=...)`` on ``data`` with ``optimizer`` for every (config, seed) pair.

    Args:
      model_fn: builds the network, e.g. ``functools.partial(MLP, (64, 32, 10))``; called as
        ``model_fn(rngs=nnx.Rngs(key))``. Same seed, same initialization across configs.
      data: a :class:`~jaxopt_lectures.lab.data.Dataset`, or one per seed (a sequence as long
        as ``seeds``, all with the same split sizes): seed ``s`` then trains and is measured
        on its own split, so the seed-to-seed spread includes the split's variance.
      optimizer: a ``jol`` transformation; wrap it in ``jol.inject_hyperparams`` to vary its
        hyper-parameters through ``configs`` without recompiling.
      epochs: total epochs (a resumed run continues up to this number; from a checkpoint
        already past it, the run restores its epoch ``epochs`` when that is still kept and
        is refused otherwise, naming both).
      batch_size: examples per step, at most the training split's size ``n`` (a larger one
        is refused, not clipped); ``None`` is full-batch gradient descent. Each epoch
        takes ``n // batch_size`` steps over a fresh permutation (the remainder is dropped).
      seeds: one run per seed (initialization, batch order, dropout masks).
      hparams: defaults for :data:`TRAINER_HPARAMS` (and optimizer hyper-parameters); a name
        that is absent switches that term off entirely.
      configs: a list of dicts overriding ``hparams`` per configuration.
      augment: ``(key, x) -> x`` applied to every training batch.
      loss_fn: per-example loss ``(outputs, targets) -> (batch,)``; default cross-entropy
        (classification, on one-hot or mixed targets) or MSE (regression).
      early_stopping_patience: stop a run after this many epochs without a lower validation
        loss and restore its best parameters.
      init_from: a previous :class:`History` (pre-training): matching layers start from its
        trained parameters (run by run if it has as many runs, seed by seed if it has one run
        per seed, else from its first run).
      vmap: run all pairs as one vmapped program; default (:func:`default_vmap`): yes, except
        conv nets on the CPU, which step run by run.
      checkpoint: an Orbax checkpoint directory (:mod:`~jaxopt_lectures.lab.checkpoints`) to
        save the run state and history to every ``checkpoint_every`` epochs (atomically, no
        pickle; the last ``checkpoint_keep`` epochs are kept); if it holds a finished epoch,
        training resumes from the latest and follows the same trajectory bit for bit, every
        array restored into the sharding of the freshly initialized state. Bit for bit on the
        CPU; on a GPU only with ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (its default
        convolution kernels are not deterministic: without the flag a resumed run agrees to
        float tolerance, not bit for bit).
        The checkpoint records what it belongs to (model, an optimizer probe, seeds, configs,
        batch size, data, package version, and ``checkpoint_info``); a checkpoint of another
        run is refused with a message naming each difference.
      checkpoint_mode: ``"resume"`` (default: continue a matching checkpoint) or ``"fresh"``
        (ignore the epochs already saved; they are deleted at this run's first save).
      checkpoint_info: extra JSON-able settings to record in (and compare with) the
        checkpoint, e.g. the optimizer's description: the optimizer probe (the first update
        of run 0 on a gradient of ones) tells learning rates and rules apart, but not knobs
        that only act later (a schedule's tail, an ``every_k``).
      checkpoint_keep: how many of the latest checkpoint epochs to keep (>= 1).
      on_epoch_end: called as ``on_epoch_end(epoch, history)`` after every epoch;
        ``history.state`` is valid until the next epoch starts (its buffers are donated to
        the next training step): copy what you keep.
      progress: show a tqdm bar (only when stderr is a terminal).
      compilation_cache: turn on JAX's persistent compilation cache in the user cache dir.
      eval_loss_fn: per-example loss for the reported train/validation loss (default:
        the training loss); e.g. cross-entropy when training on MSE or accuracy, so both
        sides of a comparison are measured alike.
      progress_desc: label of the progress bar.
      mesh: spread the vmapped runs over this mesh's first axis (each device trains
        ``runs / devices`` of the (config, seed) pairs; same numbers as on one device).
        The number of runs must be a multiple of that axis's size. For one run split over
        devices (data parallelism) see :mod:`jaxopt_lectures.lab.parallel`.
      test_curve: also measure the test loss after every epoch into ``history.test_curve``
        (one more compiled evaluation program; nothing in training reads it). Needs a test
        split; a resumed run's epochs from before a checkpoint without it stay NaN.
    """
    for name, value, low in (("epochs", epochs, 0), ("checkpoint_every", checkpoint_every, 1)):
        # before any work (audit v2 C02: checkpoint_every=0 divided by zero after the first epoch trained)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}={value!r} is out of range; allowed: integers >= {low}.")
    if compilation_cache:
        enable_compilation_cache()
    seeds = tuple(int(s) for s in seeds)
    per_seed_data = _per_seed_datasets(data, len(seeds))
    data = per_seed_data[0]
    configs, hp_table = _run_hparams(hparams, configs, seeds)
    n_cfg, n_seed = len(configs), len(seeds)
    n_runs = n_cfg * n_seed
    trainer_hp = {k: v for k, v in hp_table.items() if k in TRAINER_HPARAMS}
    opt_hp = {k: v for k, v in hp_table.items() if k not in TRAINER_HPARAMS}
    abstract = nnx.eval_shape(lambda: model_fn(rngs=nnx.Rngs(0)))
    use_vmap = default_vmap(abstract) if vmap is None else bool(vmap)
    setup = _make_setup(abstract, data, optimizer, batch_size, trainer_hp, augment, loss_fn, eval_loss_fn)
    # Every unlabeled term reads the same batch: random nodes and one graph neighbour of each.
    # (Without the graph the second half used to be example 0 repeated: the entropy term saw
    # half a batch of one image. Now its batch does not depend on whether a graph term is on.)
    seed_data = [_device_arrays(d, bool(setup.unlabeled_batch)) for d in per_seed_data]
    patience = early_stopping_patience
    runs = _initial_runs(
        model_fn, optimizer, seeds, n_cfg, {k: jnp.asarray(v) for k, v in opt_hp.items()}, init_from, patience
    )
    state = jax.tree.map(_stack_on_host, *runs)
    hp = {k: jnp.asarray(v) for k, v in trainer_hp.items()}
    if mesh is not None:
        state, hp = _spread_runs(mesh, use_vmap, n_runs, state, hp)

    shape = (n_cfg, n_seed, epochs)
    history = History(
        seeds=seeds,
        configs=tuple(configs),
        train_loss=np.full(shape, np.nan),
        train_acc=np.full(shape, np.nan),
        val_loss=np.full(shape, np.nan),
        val_acc=np.full(shape, np.nan),
        diverged_epoch=np.full(shape[:2], -1),
        diverged_step=np.full(shape[:2], -1),
        stopped_epoch=np.full(shape[:2], -1),
        best_epoch=np.full(shape[:2], -1),
        test_curve=np.full(shape, np.nan) if test_curve and len(data.x_test) else None,
        graphdef=setup.graphdef,
    )
    start = 0
    if checkpoint_mode not in ("resume", "fresh"):
        raise ValueError(f"checkpoint_mode={checkpoint_mode!r} is not one of ['resume', 'fresh']")
    ckpt = None
    if checkpoint is not None:
        fingerprint = _run_fingerprint(
            model_fn,
            abstract,
            optimizer,
            runs[0],
            seeds,
            configs,
            setup.batch_size,
            per_seed_data,
            loss_fn,
            augment,
            patience,
            checkpoint_info,
        )
        ckpt = checkpoints.Checkpoints(
            checkpoint, fingerprint=fingerprint, keep=checkpoint_keep, fresh=checkpoint_mode == "fresh"
        )
        try:
            ckpt.lock()  # one writer per checkpoint directory (audit v2 C10), held until ckpt.close()
            latest = ckpt.latest_epoch()
            if latest is not None:
                state, start = _restore(ckpt, state, history, _epoch_to_resume(ckpt, latest, epochs))
                history.epochs_done = start
        except BaseException:
            ckpt.close()
            raise

    try:
        run_epoch, end_epoch = _programs(setup, use_vmap, patience, seed_data, n_runs, n_seed)
        measure_test = (
            _test_program(setup, per_seed_data, use_vmap, n_cfg, n_seed) if history.test_curve is not None else None
        )
        run_keys = _host_keys(state.key)  # the batch order of run r in epoch e follows from them
        bar = _progress(range(start, epochs), progress, n_runs, progress_desc)
        for epoch in bar:
            batches = epoch_indices(run_keys, epoch, len(data.x_train), setup.num_batches, setup.batch_size)
            state = run_epoch(state, batches, hp)
            was_active = np.asarray(state.active).reshape(n_cfg, n_seed)
            state, (tl, ta, vl, va, better) = end_epoch(state)
            _record(history, epoch, state, was_active, n_cfg, n_seed, tl, ta, vl, va, better)
            if measure_test is not None and history.test_curve is not None:
                ok = np.isfinite(history.train_loss[..., epoch])  # NaN exactly where the run's metrics are
                history.test_curve[..., epoch] = np.where(ok, measure_test(state), np.nan)
            history.epochs_done = epoch + 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(
                    runs=n_runs,
                    train=f"{np.nanmean(history.train_loss[..., epoch]):.4f}",
                    val=f"{np.nanmean(history.val_loss[..., epoch]):.4f}",
                )
            if ckpt is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                ckpt.save(state, epoch + 1, _history_arrays(history))
            if on_epoch_end is not None:
                history.state = state
                on_epoch_end(epoch, history)
            if not np.asarray(state.active).any():
                break
    finally:
        if ckpt is not None:
            ckpt.close()
    if patience is not None:
        state = state._replace(params=state.best_params, batch_stats=state.best_batch_stats)
    history.state = state
    if len(data.x_test):
        history.test_loss, history.test_acc = _final_test_metrics(
            setup, state, end_epoch, seed_data, per_seed_data, use_vmap, n_cfg, n_seed
        )
    return history


def check_batch_size(batch_size, n_train: int, name: str = "batch_size") -> int:
    """``batch_size`` as an int in ``[1, n_train]``; else ``ValueError`` naming it and the range.
    A batch larger than the training split is refused, not clipped to the split: the run would
    be labelled with a batch size it never used (``None`` asks for full-batch explicitly)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n_train:
        raise ValueError(
            f"{name}={batch_size!r} is out of range; allowed: integers in [1, {n_train}] (the training "
            "split's size), or None for full-batch gradient descent"
        )
    return int(batch_size)


def _make_setup(
    abstract, data: Dataset, optimizer, batch_size, trainer_hp: dict, augment, loss_fn, eval_loss_fn
) -> _Setup:
    """The static choices of one training program, after checking the terms fit the data and model."""
    for name in UNLABELED_HPARAMS:
        if name in trainer_hp and data.x_unlabeled is None:
            raise ValueError(f"{name} needs an unlabeled pool: load the data with unlabeled_size > 0.")
    if "dropout" in trainer_hp and any(
        getattr(node, "mode", "inverted") != "inverted" and hasattr(node, "rate")
        for _, node in nnx.iter_graph(abstract)
    ):
        # evaluation calls the model without the traced rate, so a test-time (1 − p) would use
        # the model's own rate instead: refuse rather than evaluate the wrong network
        raise ValueError(
            "hparams/configs 'dropout' needs dropout_mode='inverted'; for 'classic' or 'unscaled' "
            "dropout set the rate in the model (e.g. MLP(..., dropout=0.5, dropout_mode='classic'))."
        )
    n = len(data.x_train)
    bs = n if batch_size is None else check_batch_size(batch_size, n)
    graphdef, _, _ = _split_model(abstract)
    return _Setup(
        graphdef=graphdef,
        optimizer=optimizer,
        classification=data.num_classes is not None,
        num_classes=data.num_classes or 0,
        batch_size=bs,
        num_batches=n // bs,
        hp_names=tuple(sorted(trainer_hp)),
        augment=augment,
        loss_fn=loss_fn,
        eval_loss_fn=eval_loss_fn,
        unlabeled_batch=(
            2 * max(min(bs, len(data.x_unlabeled)) // 2, 1)
            if any(name in trainer_hp for name in UNLABELED_HPARAMS) and data.x_unlabeled is not None  # checked above
            else 0
        ),
    )


def _initial_runs(
    model_fn, optimizer, seeds: tuple[int, ...], n_cfg: int, opt_values: dict, init_from, patience
) -> list[RunState]:
    """Every run's starting state, config-major: run ``c * seeds + s`` is seed ``s`` in config ``c``.

    Eagerly, run by run: jit(vmap(init)) of a network takes seconds to compile on CPU (random-number
    kernels), while eager initialization reuses small per-shape kernels. A seed initializes alike in
    every config, so its network is built once (eager nnx construction is most of the set-up time)
    and the runs share it until they are stacked."""
    n_seed = len(seeds)
    n_runs = n_cfg * n_seed
    init_cache: dict[int, tuple] = {}

    def init_run(seed_index, seed_key, values, src):
        if seed_index not in init_cache:
            params, batch_stats = init_model_state(model_fn, jax.random.fold_in(seed_key, 0))
            init_cache[seed_index] = (params, batch_stats, optimizer.init(params) if src is None else None)
        params, batch_stats, opt_state = init_cache[seed_index]
        if src is not None:
            params = transfer_params(params, src)
            opt_state = optimizer.init(params)
        for name, value in values.items():
            opt_state = jol.set_state_field(opt_state, name, value)
        return RunState(
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            key=jax.random.fold_in(seed_key, 1),
            step=jnp.zeros((), jnp.int32),
            active=jnp.ones((), bool),
            diverged_step=jnp.full((), -1, jnp.int32),
            best_params=params if patience is not None else None,
            best_batch_stats=batch_stats if patience is not None else None,
            best_val=jnp.full((), jnp.inf, jnp.float32),
            bad_epochs=jnp.zeros((), jnp.int32),
        )

    seed_keys = _stack_on_host(*[jax.random.PRNGKey(s) for _ in range(n_cfg) for s in seeds])
    src = None
    if init_from is not None:
        src = init_from.state.params
        runs_src = jax.tree.leaves(src)[0].shape[0]
        if runs_src == n_seed and n_runs != n_seed:  # one source run per seed: reuse it in every config
            src = jax.tree.map(lambda a: jnp.concatenate([a] * n_cfg), src)
        elif runs_src != n_runs:
            src = jax.tree.map(lambda a: jnp.broadcast_to(a[0], (n_runs,) + a.shape[1:]), src)
    return [
        init_run(
            i % n_seed,
            seed_keys[i],
            {k: v[i] for k, v in opt_values.items()},
            None if src is None else jax.tree.map(lambda a, i=i: a[i], src),
        )
        for i in range(n_runs)
    ]


def _epoch_to_resume(ckpt, latest: int, epochs: int) -> int | None:
    """The checkpoint epoch a run of ``epochs`` resumes from: the latest (``None``) when it is
    not beyond ``epochs``, else epoch ``epochs`` itself when it is still kept (a shorter run
    of the same trajectory). Otherwise refused: the model of a longer run would be returned
    under the labels of this one."""
    if latest <= epochs:
        return None
    kept = ckpt.epochs()
    if epochs in kept:
        return epochs
    raise ValueError(
        f"{ckpt.path}: the checkpoint's latest epoch is {latest}, beyond epochs={epochs}, and epoch "
        f"{epochs} is not kept (epochs on disk: {kept}); pass epochs >= {latest} to continue it, "
        "checkpoint_mode='fresh' to start over, or another checkpoint directory"
    )


def _restore(ckpt, state: RunState, history: History, epoch: int | None = None) -> tuple[RunState, int]:
    """The checkpointed state of ``epoch`` (default: the latest) and its epoch; its history
    arrays are copied into ``history``."""
    state, start, saved = ckpt.restore(state, epoch)
    for name, arr in saved.items():
        target = getattr(history, name, None)
        if target is None:  # e.g. a test curve saved by a run that measured it, resumed without
            continue
        width = min(target.shape[-1], arr.shape[-1]) if target.ndim == 3 else None
        if width is None:
            target[...] = arr
        else:
            target[..., :width] = arr[..., :width]
    return state, start


def _without_opt_state(state: RunState) -> RunState:
    """``state`` without its optimizer state, which evaluation never reads: the end-of-epoch
    program is then the same for every optimizer of one model, data and run count, and the
    compilation cache serves it to every arm after the first."""
    return state._replace(opt_state=())


def _end_epoch_program(setup: _Setup, patience, data_axis: int | None):
    """The vmapped end-of-epoch program, taking a state :func:`_without_opt_state`."""
    return jax.jit(jax.vmap(lambda rs, d: _end_epoch(setup, rs, d, patience), in_axes=(0, data_axis)))


def _programs(setup: _Setup, use_vmap: bool, patience, seed_data: list[tuple], n_runs: int, n_seed: int):
    """``(run_epoch(state, batches, hp) -> state, end_epoch(state, data=None) -> (state, metrics))``.

    Vmapped: one scanned program over every run, the run state donated (updated in place: no
    parameter-sized buffer per epoch). Otherwise one jitted step and evaluation, run by run
    (conv nets on the CPU: vmapped convolutions are slow there). ``end_epoch`` takes other
    data as ``(per_run, stacked)`` (:func:`_run_layout`), e.g. the test split in validation's place."""
    run_data, dev_data = _run_layout(seed_data, n_runs, n_seed, use_vmap)
    data_axis = None if len(seed_data) == 1 else 0
    if use_vmap:
        end_vmapped = _end_epoch_program(setup, patience, data_axis)
        epoch_vmapped = jax.jit(
            jax.vmap(lambda rs, i, h, d: _scan_epoch(setup, rs, i, h, d), in_axes=(0, 0, 0, data_axis)),
            donate_argnums=0,
        )

        def end_epoch_vmapped(state, data=None):
            new, metrics = end_vmapped(_without_opt_state(state), dev_data if data is None else data[1])
            return new._replace(opt_state=state.opt_state), metrics

        def run_epoch_vmapped(state, batches, hp):
            return epoch_vmapped(state, batches, hp, dev_data)

        return run_epoch_vmapped, end_epoch_vmapped

    step_fn = jax.jit(lambda rs, i, h, d: _step(setup, rs, i, h, d), donate_argnums=0)  # in place
    end_one = jax.jit(lambda rs, d: _end_epoch(setup, rs, d, patience))

    def end_epoch(state, data=None):
        per_run = run_data if data is None else data[0]
        outs = [end_one(r, per_run[i]) for i, r in enumerate(_unstack(_without_opt_state(state), n_runs))]
        return _stack([o[0] for o in outs])._replace(opt_state=state.opt_state), _stack([o[1] for o in outs])

    def run_epoch(state, batches, hp):
        runs = _unstack(state, n_runs)
        active = np.asarray(state.active)
        for r in range(n_runs):
            if not active[r]:
                continue
            h = {k: v[r] for k, v in hp.items()}
            for b in range(setup.num_batches):
                runs[r] = step_fn(runs[r], batches[r, b], h, run_data[r])
        return _stack(runs)

    return run_epoch, end_epoch


def _final_test_metrics(
    setup: _Setup, state: RunState, end_epoch, seed_data, per_seed_data, use_vmap: bool, n_cfg: int, n_seed: int
):
    """``(configs, seeds)`` test loss and accuracy of the final (early-stopped: best) parameters."""
    n_runs = n_cfg * n_seed
    if all(d.x_test.shape == d.x_val.shape and d.y_test.shape == d.y_val.shape for d in per_seed_data):
        # the test split in the validation split's place: the end-of-epoch program, already
        # compiled, measures it (one program fewer per train call; its state output is dropped)
        tests = [
            (
                *d[:2],
                jax.device_put(np.asarray(ds.x_test, d[2].dtype)),
                jax.device_put(np.asarray(ds.y_test, d[3].dtype)),
                *d[4:],
            )
            for d, ds in zip(seed_data, per_seed_data)
        ]
        _, (_, _, vl, va, _) = end_epoch(state, _run_layout(tests, n_runs, n_seed, use_vmap))
        return np.asarray(vl, np.float64).reshape(n_cfg, n_seed), np.asarray(va, np.float64).reshape(n_cfg, n_seed)
    return _test_metrics(setup, state, per_seed_data, use_vmap, n_cfg, n_seed)


def _run_fingerprint(
    model_fn, abstract, optimizer, run0, seeds, configs, batch_size, datasets, loss_fn, augment, patience, info
) -> dict:
    """What a checkpoint belongs to, as a JSON-able dict of short hashes and values."""
    import hashlib
    import json

    from jaxopt_lectures import __version__

    def digest(*arrays) -> str:
        h = hashlib.sha256()
        for a in arrays:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    shapes = [
        (jax.tree_util.keystr(p), tuple(np.shape(v)), str(v.dtype))
        for p, v in jax.tree_util.tree_flatten_with_path(nnx.state(abstract))[0]
    ]
    ones = jax.tree.map(jnp.ones_like, run0.params)
    probe, _ = optimizer.update(ones, run0.opt_state, run0.params)
    name = lambda f: None if f is None else getattr(f, "__qualname__", type(f).__name__)  # noqa: E731
    return {
        "model": f"{name(getattr(model_fn, 'func', model_fn))} {hashlib.sha256(str(shapes).encode()).hexdigest()[:16]}",
        "optimizer_probe": digest(*jax.tree.leaves(probe)),
        "seeds": list(seeds),
        "configs": json.loads(json.dumps(list(configs), default=str)),
        "batch_size": int(batch_size),
        "data": [f"{d.name} {digest(d.x_train, d.y_train, d.x_val, d.y_val)}" for d in datasets],
        "loss": name(loss_fn),
        "augment": name(augment),
        "early_stopping": patience,
        "version": __version__,
        "info": json.loads(json.dumps(info, sort_keys=True, default=str)) if info else None,
    }


def _per_seed_datasets(data: Dataset | Sequence[Dataset], n_seed: int) -> list[Dataset]:
    if isinstance(data, Dataset):
        return [data]
    datasets = list(data)
    if len(datasets) != n_seed:
        raise ValueError(f"data: got {len(datasets)} data sets for {n_seed} seeds; pass one Dataset or one per seed.")
    shapes = {
        (d.x_train.shape, d.x_val.shape, d.x_test.shape, None if d.x_unlabeled is None else d.x_unlabeled.shape)
        for d in datasets
    }
    if len(shapes) != 1:
        raise ValueError(f"data: the per-seed data sets must have equal split shapes, got {sorted(map(str, shapes))}")
    return datasets


def _device_arrays(data: Dataset, graph: bool) -> tuple:
    """The arrays a training step reads: train and validation splits, the unlabeled pool and
    its neighbour graph (zeros when unused)."""
    x_unl = data.x_unlabeled if data.x_unlabeled is not None else np.zeros((1,) + data.input_shape, np.float32)
    if graph:
        nbr_idx, nbr_w = knn_graph(x_unl, GRAPH_NEIGHBOURS)
    else:
        nbr_idx, nbr_w = np.zeros((len(x_unl), 1), np.int32), np.zeros((len(x_unl), 1), np.float32)
    return tuple(
        jax.device_put(np.asarray(a))
        for a in (data.x_train, data.y_train, data.x_val, data.y_val, x_unl, nbr_idx, nbr_w)
    )


def _run_layout(seed_data: list[tuple], n_runs: int, n_seed: int, vmapped: bool) -> tuple[list[tuple], tuple | None]:
    """Per-seed data -> ``(per_run, stacked)``: one tuple per run (runs are config-major, a
    run's split is its seed's) and, for the vmapped program only, its input (unstacked if one
    split; ``None`` when the runs step one by one)."""
    per_run = [seed_data[i % n_seed if len(seed_data) > 1 else 0] for i in range(n_runs)]
    if not vmapped:
        return per_run, None
    stacked = seed_data[0] if len(seed_data) == 1 else tuple(_stack_on_host(*a) for a in zip(*per_run))
    return per_run, stacked


def _test_metrics(setup: _Setup, state: RunState, datasets, use_vmap: bool, n_cfg: int, n_seed: int):
    """``(configs, seeds)`` test loss and accuracy of every run's final parameters."""
    n_runs = n_cfg * n_seed
    tests = [(jnp.asarray(d.x_test), jnp.asarray(d.y_test)) for d in datasets]
    if use_vmap:
        x = _stack_on_host(*[tests[i % n_seed if len(tests) > 1 else 0][0] for i in range(n_runs)])
        y = _stack_on_host(*[tests[i % n_seed if len(tests) > 1 else 0][1] for i in range(n_runs)])
        loss, acc = jax.jit(jax.vmap(lambda rs, a, b: _evaluate(setup, rs, a, b)))(state, x, y)
    else:
        one = jax.jit(lambda rs, a, b: _evaluate(setup, rs, a, b))
        outs = [one(r, *tests[i % n_seed if len(tests) > 1 else 0]) for i, r in enumerate(_unstack(state, n_runs))]
        loss, acc = _stack_on_host(*[o[0] for o in outs]), _stack_on_host(*[o[1] for o in outs])
    return (np.asarray(loss, np.float64).reshape(n_cfg, n_seed), np.asarray(acc, np.float64).reshape(n_cfg, n_seed))


def _test_program(setup: _Setup, datasets, use_vmap: bool, n_cfg: int, n_seed: int):
    """``measure(state) -> (configs, seeds)`` test loss of every run's current parameters: one
    evaluation program compiled once per :func:`train` call, the test split put on the device
    once (for :attr:`History.test_curve`)."""
    n_runs = n_cfg * n_seed
    tests = [(jax.device_put(np.asarray(d.x_test)), jax.device_put(np.asarray(d.y_test))) for d in datasets]
    which = [i % n_seed if len(tests) > 1 else 0 for i in range(n_runs)]
    if use_vmap:
        if len(tests) == 1:
            vmapped = jax.jit(jax.vmap(lambda rs, a, b: _evaluate(setup, rs, a, b)[0], in_axes=(0, None, None)))
            args = tests[0]
        else:
            vmapped = jax.jit(jax.vmap(lambda rs, a, b: _evaluate(setup, rs, a, b)[0]))
            args = (_stack_on_host(*[tests[w][0] for w in which]), _stack_on_host(*[tests[w][1] for w in which]))

        def measure(state) -> np.ndarray:
            return np.asarray(vmapped(state, *args), np.float64).reshape(n_cfg, n_seed)

        return measure
    one = jax.jit(lambda rs, a, b: _evaluate(setup, rs, a, b)[0])

    def measure_runs(state) -> np.ndarray:
        runs = _unstack(state, n_runs)
        return np.array([float(one(r, *tests[w])) for r, w in zip(runs, which)], np.float64).reshape(n_cfg, n_seed)

    return measure_runs


def _spread_runs(mesh, use_vmap: bool, n_runs: int, *trees):
    """Put the leading (run) axis of every array in ``trees`` on the mesh's first axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    axis = mesh.axis_names[0]
    size = mesh.shape[axis]
    if not use_vmap:
        raise ValueError(
            "mesh= spreads the vmapped runs over devices; this model steps run by run "
            "(convolutions, or vmap=False): pass vmap=True, or train one run data-parallel "
            "with jaxopt_lectures.lab.parallel.train_data_parallel."
        )
    if n_runs % size:
        raise ValueError(
            f"{n_runs} runs cannot be spread evenly over the {size} devices of axis {axis!r}; "
            "use a number of (config, seed) pairs that is a multiple of it."
        )
    return jax.device_put(trees, NamedSharding(mesh, PartitionSpec(axis)))


_HISTORY_ARRAYS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "diverged_epoch",
    "diverged_step",
    "stopped_epoch",
    "best_epoch",
)


def _history_arrays(history: History) -> dict[str, np.ndarray]:
    out = {name: getattr(history, name) for name in _HISTORY_ARRAYS}
    if history.test_curve is not None:
        out["test_curve"] = history.test_curve
    return out


def _record(history, epoch, state, was_active, n_cfg, n_seed, tl, ta, vl, va, better):
    def grid(a):
        return np.asarray(a, np.float64).reshape(n_cfg, n_seed)

    active_after = np.asarray(state.active).reshape(n_cfg, n_seed)
    div_step = np.asarray(state.diverged_step).reshape(n_cfg, n_seed)
    newly_diverged = (div_step >= 0) & (history.diverged_epoch < 0)
    history.diverged_epoch[newly_diverged] = epoch
    history.diverged_step[newly_diverged] = div_step[newly_diverged]
    ok = was_active & ~newly_diverged
    for name, values in (("train_loss", tl), ("train_acc", ta), ("val_loss", vl), ("val_acc", va)):
        getattr(history, name)[..., epoch] = np.where(ok, grid(values), np.nan)
    history.best_epoch[grid(better).astype(bool)] = epoch
    stopped = ok & ~active_after & (history.stopped_epoch < 0) & ~newly_diverged
    history.stopped_epoch[stopped] = epoch


def _progress(epochs: range, progress: bool, n_runs: int, desc: str | None = None):
    if not progress or not sys.stderr.isatty():
        return epochs
    from tqdm.auto import tqdm

    label = f"{desc} ({n_runs} runs)" if desc else f"train ({n_runs} runs)"
    return tqdm(epochs, desc=label, unit="epoch", leave=False)
