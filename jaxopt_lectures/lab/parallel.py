"""Data-parallel training of the lab's networks on a ``jax.sharding.Mesh``.

Reading order: :func:`make_shardings` (where every array lives), :func:`make_step` (one
jitted step), :func:`train_data_parallel` (the loop).

The engine is JAX's: the batch is split over the mesh's data axis with a ``NamedSharding``;
the step is ``jit`` with in/out shardings, and XLA's SPMD partitioner turns the batch mean
of the loss into per-device partial sums plus an all-reduce, so every device gets the
averaged gradient. Parameters are replicated (plain data parallelism) or split over the
data axis (``params="sharded"``: the partitioner all-gathers them where a layer needs
them); the optimizer state follows the parameters or, with ``shard_optimizer_state=True``,
is split ZeRO-1 style so each device keeps and updates ``1/N`` of m and v. On a 1-device
mesh the same code is ordinary single-device training.

For several hosts, call ``jax.distributed.initialize()`` first (``docs/distributed.md``);
``data_mesh()`` then spans every process's devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxopt_lectures as jol
from jaxopt_lectures import losses, sharding as shd
from jaxopt_lectures.lab.data import Dataset
from jaxopt_lectures.lab.trainer import _split_model, init_model_state

__all__ = ["ParallelState", "ParallelResult", "make_shardings", "make_step", "train_data_parallel"]

PARAM_LAYOUTS = ("replicated", "sharded")


class ParallelState(NamedTuple):
    """What one data-parallel run carries between steps."""

    params: Any
    batch_stats: Any
    opt_state: Any


class ParallelResult(NamedTuple):
    """What :func:`train_data_parallel` returns: the final state, the loss of every step,
    the shardings used, the jitted step and the seconds per step after the first (compiled) one."""

    state: ParallelState
    losses: np.ndarray
    shardings: ParallelState
    step: Callable
    step_seconds: float


def make_shardings(
    optimizer: jol.GradientTransformation,
    params: Any,
    batch_stats: Any,
    mesh: Mesh,
    *,
    params_layout: str = "replicated",
    shard_optimizer_state: bool = False,
    axis: str = shd.DATA_AXIS,
) -> ParallelState:
    """The ``NamedSharding`` of every leaf of the run's state on ``mesh``.

    ``params_layout``: ``"replicated"`` (a full copy per device) or ``"sharded"`` (each
    array split along its first dimension that the axis size divides). The optimizer
    state follows the parameters; ``shard_optimizer_state`` splits it over ``axis``.
    """
    if params_layout not in PARAM_LAYOUTS:
        raise ValueError(f"params_layout must be one of {PARAM_LAYOUTS}, got {params_layout!r}")
    rep = shd.replicated(mesh)
    p_sh = jax.tree.map(lambda _: rep, params)
    if params_layout == "sharded":
        p_sh = shd.shard_over_axis(p_sh, params, axis)
    abstract_params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), params, p_sh)
    o_sh = shd.state_shardings(optimizer, abstract_params, mesh)
    if shard_optimizer_state:
        o_sh = shd.shard_over_axis(o_sh, jax.eval_shape(optimizer.init, abstract_params), axis)
    return ParallelState(p_sh, jax.tree.map(lambda _: rep, batch_stats), o_sh)


def make_step(
    graphdef,
    optimizer: jol.GradientTransformation,
    num_classes: int,
    shardings: ParallelState,
    mesh: Mesh,
    axis: str = shd.DATA_AXIS,
) -> Callable:
    """``step(state, x, y) -> (state, loss)``: one SGD step on a batch split over ``axis``.

    Cross-entropy averaged over the whole (global) batch; batch-norm statistics are those of
    the global batch too, since the partitioner reduces over the split batch dimension.
    """

    def step(state: ParallelState, x, y):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, state.batch_stats, copy=True)
            logits = model(x, train=True)
            loss = jnp.mean(losses.softmax_cross_entropy(logits, jax.nn.one_hot(y, num_classes)))
            return loss, nnx.state(model, nnx.BatchStat)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return ParallelState(jol.apply_updates(state.params, updates), batch_stats, opt_state), loss

    batch = NamedSharding(mesh, PartitionSpec(axis))
    return jax.jit(
        step, in_shardings=(shardings, batch, batch), out_shardings=(shardings, shd.replicated(mesh)), donate_argnums=0
    )


def train_data_parallel(
    model_fn: Callable[..., nnx.Module],
    data: Dataset,
    optimizer: jol.GradientTransformation,
    steps: int,
    batch_size: int = 64,
    *,
    mesh: Mesh | None = None,
    seed: int = 0,
    params_layout: str = "replicated",
    shard_optimizer_state: bool = False,
    axis: str = shd.DATA_AXIS,
) -> ParallelResult:
    """Train ``model_fn(rngs=...)`` on ``data.x_train`` for ``steps`` steps, the batch split over devices.

    Args:
      model_fn: builds the network, e.g. ``functools.partial(lab.MLP, (64, 32, 10))``.
      data: a classification :class:`~jaxopt_lectures.lab.data.Dataset`.
      optimizer: any ``jol`` transformation.
      steps: optimizer steps; batches walk through a fresh permutation every epoch
        (``numpy`` generator seeded by ``seed``), the same on any number of devices.
      batch_size: global batch; a multiple of the number of devices on ``axis``.
      mesh: default :func:`jaxopt_lectures.sharding.data_mesh` (every device JAX sees).
      params_layout: ``"replicated"`` or ``"sharded"`` (see :func:`make_shardings`).
      shard_optimizer_state: ZeRO-1: split m, v, … over ``axis``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if data.num_classes is None:
        raise ValueError("train_data_parallel trains classifiers; this data set is a regression one.")
    mesh = mesh if mesh is not None else shd.data_mesh(axis=axis)
    n_dev = mesh.shape[axis]
    if batch_size % n_dev:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of the {n_dev} devices on axis {axis!r}; "
            f"use e.g. batch_size={batch_size - batch_size % n_dev or n_dev}."
        )
    n = len(data.x_train)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples.")

    abstract = nnx.eval_shape(lambda: model_fn(rngs=nnx.Rngs(0)))
    graphdef, _, _ = _split_model(abstract)
    params, batch_stats = init_model_state(model_fn, jax.random.PRNGKey(seed))
    shardings = make_shardings(
        optimizer,
        params,
        batch_stats,
        mesh,
        params_layout=params_layout,
        shard_optimizer_state=shard_optimizer_state,
        axis=axis,
    )
    params = jax.device_put(params, shardings.params)
    batch_stats = jax.device_put(batch_stats, shardings.batch_stats)
    opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
    state = ParallelState(params, batch_stats, opt_state)
    step = make_step(graphdef, optimizer, data.num_classes, shardings, mesh, axis)

    batch = NamedSharding(mesh, PartitionSpec(axis))
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    order = np.empty((0, batch_size), np.int64)
    loss_log = []
    start = time.perf_counter()  # restarted after the first (compiling) step
    # Virtual CPU devices share one thread pool: letting the next step's collectives start
    # before this step's have finished can leave an all-reduce waiting forever (seen with
    # 8 virtual devices on 2 cores). Accelerators keep JAX's asynchronous dispatch.
    wait_each_step = mesh.devices.flat[0].platform == "cpu"
    for i in range(steps):
        if i % per_epoch == 0:
            order = rng.permutation(n)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
        idx = order[i % per_epoch]
        x = jax.device_put(data.x_train[idx], batch)
        y = jax.device_put(data.y_train[idx], batch)
        state, loss = step(state, x, y)
        if wait_each_step:
            jax.block_until_ready(state)
        loss_log.append(loss)
        if i == 0:
            jax.block_until_ready(state)
            start = time.perf_counter()
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - start) / (steps - 1) if steps > 1 else float("nan")
    return ParallelResult(state, np.asarray(jax.device_get(loss_log)), shardings, step, per_step)
