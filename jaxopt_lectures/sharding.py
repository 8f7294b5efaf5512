"""Optimizer state on many devices: JAX's own SPMD engine, no collectives of ours.

A transformation's state holds arrays shaped like the parameters (m, v, accumulators) and a
few scalars (counts, injected hyper-parameters). On a ``jax.sharding.Mesh``:

* **follow the parameters** (default): each parameter-shaped state leaf gets its
  parameter's sharding, scalars are replicated (:func:`state_shardings`);
* **ZeRO-1** (:func:`shard_over_axis` on those shardings): each parameter-shaped leaf is
  split along its first free dimension that the data axis divides, so every device keeps
  and updates ``1/N`` of m and v. Inside a ``jit`` whose in/out shardings say so, XLA's
  partitioner computes each device's slice of the update and all-gathers the new
  parameters; the numbers are those of one device.

:func:`init_sharded` creates the state directly with its shardings (``jit`` with
``out_shardings``): given ``jax.ShapeDtypeStruct`` leaves, no array is ever materialized whole on
one device::

    mesh = data_mesh()                                   # all devices, axis "data"
    params = jax.device_put(params, replicated(mesh))
    opt = jol.adam(1e-3)
    state = init_sharded(opt, params, zero=True)         # m, v split over "data"

Meshes here use ``AxisType.Auto`` axes (the partitioner decides inside ``jit``), which is
what ``jit(in_shardings=..., out_shardings=...)`` expects.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ._core import GradientTransformation
from .fused import FusedOptimizer, FusedState

PyTree = Any
DATA_AXIS = "data"

__all__ = [
    "DATA_AXIS",
    "data_mesh",
    "fused_state_shardings",
    "init_fused_sharded",
    "init_sharded",
    "per_device_bytes",
    "replicated",
    "shard_over_axis",
    "state_shardings",
]


def data_mesh(num_devices: int | None = None, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices JAX sees (default: all of them)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(
            f"data_mesh: asked for {n} devices but JAX sees {len(devices)}; on CPU set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax."
        )
    return Mesh(np.asarray(devices[:n]), (axis,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def _mesh_of(tree: PyTree) -> Mesh | None:
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, Mesh):
            return sharding.mesh
    return None


def _as_named(sharding: jax.sharding.Sharding | None, mesh: Mesh) -> NamedSharding:
    if isinstance(sharding, NamedSharding):
        return sharding
    if sharding is None or sharding.is_fully_replicated:
        return replicated(mesh)
    raise TypeError(
        f"expected a NamedSharding on the mesh, got {sharding}; device_put the parameters "
        "with jax.sharding.NamedSharding(mesh, PartitionSpec(...)) first."
    )


def _abstract(tree: PyTree) -> PyTree:
    """Shapes and dtypes only (what ``init`` needs to trace)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


def state_shardings(tx: GradientTransformation, params: PyTree, mesh: Mesh | None = None) -> PyTree:
    """The shardings of ``tx.init(params)`` when each state leaf follows its parameter.

    ``params``: arrays or ``jax.ShapeDtypeStruct``s whose ``.sharding`` is a ``NamedSharding``
    (a leaf without one counts as replicated on ``mesh``). A state leaf follows the parameter whose tree path
    ends its own path and whose shape it has (``mu['w']`` follows ``['w']``); every other
    leaf (counts, flattened buffers, hyper-parameters) is replicated.
    """
    mesh = mesh or _mesh_of(params)
    if mesh is None:
        raise ValueError("state_shardings: the parameters carry no NamedSharding; pass mesh=.")
    param_leaves = [
        (tuple(path), tuple(np.shape(leaf)), _as_named(getattr(leaf, "sharding", None), mesh))
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    # longest paths first, so a nested parameter is not shadowed by a shorter one
    param_leaves.sort(key=lambda item: -len(item[0]))
    abstract_state = jax.eval_shape(tx.init, _abstract(params))

    def follow(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> NamedSharding:
        path = tuple(path)
        for p_path, p_shape, sharding in param_leaves:
            if tuple(leaf.shape) == p_shape and path[len(path) - len(p_path) :] == p_path:
                return sharding
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(follow, abstract_state)


def shard_over_axis(shardings: PyTree, shapes: PyTree, axis: str = DATA_AXIS) -> PyTree:
    """ZeRO-style: split every array leaf along its first free dimension that ``axis`` divides.

    ``shardings`` and ``shapes`` (arrays or ``ShapeDtypeStruct``s) have the same structure.
    A leaf already split over ``axis``, a scalar, or one with no dimension the axis size
    divides keeps its sharding (it stays replicated over ``axis``).
    """

    def split(sharding: NamedSharding, leaf: jax.ShapeDtypeStruct) -> NamedSharding:
        mesh = sharding.mesh
        n = mesh.shape[axis]
        spec = list(sharding.spec) + [None] * (len(leaf.shape) - len(sharding.spec))
        used = {a for entry in spec if entry is not None for a in (entry if isinstance(entry, tuple) else (entry,))}
        if n == 1 or axis in used:
            return sharding
        for dim, size in enumerate(leaf.shape):
            if spec[dim] is None and size % n == 0:
                spec[dim] = axis
                return NamedSharding(mesh, PartitionSpec(*spec))
        return sharding

    return jax.tree.map(split, shardings, shapes)


def init_sharded(
    tx: GradientTransformation,
    params: PyTree,
    *,
    zero: bool = False,
    axis: str = DATA_AXIS,
    mesh: Mesh | None = None,
) -> PyTree:
    """``tx.init(params)`` created directly with its shardings (``jit`` + ``out_shardings``).

    ``params``: sharded arrays, or ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``; with
    the latter nothing is materialized whole on one device. ``init`` only reads the
    parameters' shapes for every transformation of this package (it fills zeros or a
    constant), so tracing it on zeros gives the real state. ``zero=True`` splits the
    parameter-shaped leaves over ``axis`` (ZeRO-1, :func:`shard_over_axis`).
    """
    shardings = state_shardings(tx, params, mesh)
    if zero:
        shardings = shard_over_axis(shardings, jax.eval_shape(tx.init, _abstract(params)), axis)
    if all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params)):
        return jax.jit(tx.init, out_shardings=shardings)(params)
    shapes = _abstract(params)
    return jax.jit(
        lambda: tx.init(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)), out_shardings=shardings
    )()


# ---------------------------------------------------------------------------------------
# The packed (fused) path: θ, m and v are 1-D buffers, split whole over the data axis.


def fused_state_shardings(
    opt: FusedOptimizer, params: PyTree, mesh: Mesh, *, zero: bool = True, axis: str = DATA_AXIS
) -> FusedState:
    """Shardings of ``opt.init(params)``: each packed buffer (θ, m, v) split over ``axis``
    when its length is a multiple of the axis size (``zero=True``), else replicated."""
    abstract_state = jax.eval_shape(opt.init, _abstract(params))
    n = mesh.shape[axis]

    def buffer(leaf: jax.ShapeDtypeStruct) -> NamedSharding:
        if zero and leaf.ndim == 1 and leaf.shape[0] % n == 0:
            return NamedSharding(mesh, PartitionSpec(axis))
        return replicated(mesh)

    return jax.tree.map(buffer, abstract_state)


def init_fused_sharded(
    opt: FusedOptimizer, params: PyTree, mesh: Mesh, *, zero: bool = True, axis: str = DATA_AXIS
) -> FusedState:
    """``opt.init(params)`` packed straight into its shardings (see :func:`fused_state_shardings`)."""
    shardings = fused_state_shardings(opt, params, mesh, zero=zero, axis=axis)
    return jax.jit(opt.init, out_shardings=shardings)(params)


def per_device_bytes(tree: PyTree) -> dict[Any, int]:
    """Bytes each device holds for ``tree``'s arrays, summed over their addressable shards."""
    out: dict[Any, int] = {}
    for array in jax.tree.leaves(tree):
        for shard in array.addressable_shards:
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out
