"""Fused optimizer steps: parameters and optimizer state live packed, one buffer per group.

The per-leaf chains in ``optimizers.py`` are the reference: one rule per array, lifted over
the pytree. An optimizer step is pure memory traffic (Adam reads θ, g, m, v and writes θ, m,
v), and walking a tree of many small leaves costs a kernel launch per leaf and per output.
Here the parameters and the moments are packed **once**, at ``init``, into one contiguous
1-D buffer per group (dtype, and whether weight decay applies), and stay packed between
steps. A step is then a few large element-wise passes, whose buffers are donated so no
parameter-sized array is allocated per step::

    opt = fused_adamw(1e-3)
    state = opt.init(params)                      # packs θ, zeros m and v (once)
    step = jit_step(opt)                          # jit with donation of the state
    for batch in data:
        grads = jax.grad(loss)(state.params.unpack(), batch)
        state = step(state, grads)                # grads: a pytree like params, or a Packed
    params = state.params.unpack()                # views of the packed parameters

The update is computed with the same per-array rules (``adam_leaf``, ``momentum_leaf``) and
the same casts as the chains, so the numbers are those of ``adam``/``adamw``/``sgd``
followed by ``apply_updates`` (the tests check it bit for bit).

Two implementations of the update (``backend=``):

* ``"kernel"``: a C++ loop registered as an XLA FFI custom call (``_kernels/fused_step.cc``,
  built with the system ``g++`` on first use and cached), one pass per element that reads
  θ, g, m, v and writes θ, m, v in place (28 bytes per float32 Adam parameter), split over
  XLA's intra-op threads. Gradients given as a pytree are passed leaf by leaf (no
  concatenation). float32 and float64 groups; the per-step scalars are computed in JAX, so
  schedules and traced hyper-parameters work, and the kernel repeats XLA CPU's float
  operations (its FMA contractions and its reciprocal of the bias corrections), so the
  numbers are those of the chains bit for bit (tested).
* ``"xla"``: the pure-JAX update above. XLA CPU emits one loop per output (θ, m, v), about
  40 bytes per parameter, and packs pytree gradients with a ``concatenate`` that is slow for
  many leaves.
* ``"auto"`` (default): the kernel for float32/float64 groups when JAX runs on a single CPU
  device and the kernel can be built (``JAXOPT_LECTURES_KERNELS=0`` turns it off), else
  ``"xla"`` (bfloat16 groups, GPU/TPU where XLA fuses the outputs itself, several devices
  where the state may be sharded, no C++ compiler).

Measurements: ``benchmarks/README.md``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels
from ._core import (
    Scalar,
    ScalarOrSchedule,
    _path_str,
    check_dtype,
    check_flag,
    as_coefficient,
    check_choice,
    check_decay,
    check_eps,
    check_learning_rate,
    check_range,
    safe_increment,
)
from .transforms.adaptive import adam_leaf
from .transforms.momentum import momentum_leaf
from .transforms.regularization import DEFAULT_MASK, resolve_mask

PyTree = Any


# ---------------------------------------------------------------------------------------
# Packed pytrees.


class LeafSlot(NamedTuple):
    """Where one leaf lives: ``buffers[group][start:start + size].reshape(shape)``."""

    group: str
    start: int
    shape: tuple[int, ...]


class Layout(NamedTuple):
    """The static (hashable) description of a packed tree: jit sees it as aux data."""

    treedef: Any
    slots: tuple[LeafSlot, ...]
    groups: tuple[tuple[str, str, int], ...]  # (name, dtype name, size)

    def sizes(self) -> dict[str, int]:
        return {name: size for name, _, size in self.groups}


def make_layout(tree: PyTree, decay_mask: PyTree | None = None) -> Layout:
    """Groups the leaves by dtype (and by ``decay_mask`` when given), in tree order."""
    leaves, treedef = jax.tree.flatten(tree)
    flags = [None] * len(leaves) if decay_mask is None else jax.tree.leaves(decay_mask)
    if len(flags) != len(leaves):
        raise ValueError("the decay mask must have one bool per parameter leaf")
    offsets: dict[str, int] = {}
    dtypes: dict[str, str] = {}
    slots = []
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    for leaf, flag, path in zip(leaves, flags, paths):
        dtype = jnp.dtype(leaf.dtype).name
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"fused optimizers need floating-point parameters, got a {dtype} leaf at {path}")
        group = dtype if flag is None else f"{dtype}_{'decay' if flag else 'nodecay'}"
        start = offsets.get(group, 0)
        shape = tuple(int(s) for s in np.shape(leaf))
        slots.append(LeafSlot(group, start, shape))
        offsets[group] = start + int(np.prod(shape, dtype=np.int64))
        dtypes[group] = dtype
    groups = tuple((g, dtypes[g], offsets[g]) for g in sorted(offsets))
    return Layout(treedef, tuple(slots), groups)


@jax.tree_util.register_pytree_node_class
class Packed:
    """A pytree stored as one contiguous 1-D buffer per group, with its static ``layout``.

    ``Packed.pack(tree, layout)`` concatenates the leaves; ``unpack()`` gives the pytree
    back as slices of the buffers (inside ``jit`` XLA fuses them into their consumers).
    """

    def __init__(self, buffers: dict[str, jax.Array], layout: Layout):
        self.buffers = buffers
        self.layout = layout

    def tree_flatten(self):
        return (self.buffers,), self.layout

    @classmethod
    def tree_unflatten(cls, layout, children):
        return cls(children[0], layout)

    def __repr__(self):
        shapes = {k: (tuple(np.shape(v)), getattr(v, "dtype", None)) for k, v in self.buffers.items()}
        return f"Packed({shapes}, {len(self.layout.slots)} leaves)"

    @classmethod
    def pack(cls, tree: PyTree, layout: Layout) -> "Packed":
        parts = group_leaves(tree, layout)
        # A lone leaf is copied: the packed buffer is donated later, the caller's array is not.
        return cls({k: jnp.concatenate(v) if len(v) > 1 else jnp.copy(v[0]) for k, v in parts.items()}, layout)

    def unpack(self) -> PyTree:
        leaves = [
            jax.lax.slice_in_dim(self.buffers[s.group], s.start, s.start + int(np.prod(s.shape, dtype=np.int64)))
            .reshape(s.shape)
            for s in self.layout.slots
        ]
        return jax.tree.unflatten(self.layout.treedef, leaves)

    def map(self, f: Callable, *others: "Packed") -> "Packed":
        """``f(buffer, *other_buffers, group)`` group by group; same layout."""
        return Packed({g: f(b, *(o.buffers[g] for o in others), g) for g, b in self.buffers.items()}, self.layout)


def group_leaves(tree: PyTree, layout: Layout) -> dict[str, list[jax.Array]]:
    """Each group's leaves of ``tree``, raveled and cast to the group's dtype, in layout order
    (their concatenation is the packed buffer). Checks the structure and the shapes."""
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        raise ValueError(
            f"this tree does not have the packed parameters' structure ({treedef} vs "
            f"{layout.treedef}); compute the gradients with respect to state.params.unpack()"
        )
    parts: dict[str, list] = {name: [] for name, _, _ in layout.groups}
    dtypes = {name: dtype for name, dtype, _ in layout.groups}
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    for leaf, slot, path in zip(leaves, layout.slots, paths):
        if tuple(np.shape(leaf)) != slot.shape:
            raise ValueError(f"a leaf has shape {np.shape(leaf)} at {path} where the layout has {slot.shape}")
        if jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating):
            raise ValueError(
                f"the leaf at {path} is complex ({jnp.result_type(leaf)}) where the parameters are "
                f"{dtypes[slot.group]}; its imaginary part would be dropped"
            )
        parts[slot.group].append(jnp.ravel(jnp.asarray(leaf, dtypes[slot.group])))
    return parts


def zeros_like_packed(packed: Packed, dtype=None) -> Packed:
    """Zero buffers like ``packed``'s, in ``dtype`` when given (``mu_dtype``)."""
    return Packed({k: jnp.zeros_like(v, dtype=dtype) for k, v in packed.buffers.items()}, packed.layout)


# ---------------------------------------------------------------------------------------
# The fused optimizers.


class FusedState(NamedTuple):
    """``count``: steps made (0-based, a schedule's argument); ``params``: θ packed;
    ``mu``/``nu``: the moments packed like θ (``None`` when the rule keeps none)."""

    count: jax.Array
    params: Packed
    mu: Packed | None
    nu: Packed | None


class FusedOptimizer(NamedTuple):
    """``init(params) -> FusedState`` (packs once) and ``step(state, grads) -> FusedState``
    (pure; ``jit_step`` jits it with the state donated). No arrays inside."""

    init: Callable[[PyTree], FusedState]
    step: Callable[[FusedState, PyTree], FusedState]


def _learning_rate(learning_rate, count):
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _lr_scale(u, eta):
    """``scale_by_learning_rate``: ``u ← −η u`` in u's dtype (as the chain computes it)."""
    return (as_coefficient(-1.0 * eta, u.dtype) * u).astype(u.dtype)


def _apply(p, u):
    """``apply_updates`` on one buffer."""
    return jnp.asarray(p + u).astype(p.dtype)


BACKENDS = ("auto", "xla", "kernel")
KERNEL_DTYPES = ("float32", "float64")


def _check_fused_state(state, owner: str) -> None:
    if not isinstance(state, FusedState) or not isinstance(state.params, Packed):
        raise ValueError(
            f"{owner}.step got a state of type {type(state).__name__} where it expects the "
            "FusedState of this optimizer's init (a chain's state cannot be stepped here)"
        )


def _gradient_groups(grads, layout: Layout) -> dict[str, list[jax.Array]]:
    """Each group's gradient as 1-D pieces in layout order: the packed buffer when ``grads``
    is a ``Packed``, else one piece per leaf (raveled, in the group's dtype)."""
    if isinstance(grads, Packed):
        if grads.layout != layout:
            raise ValueError("the packed gradients have another layout than the packed parameters")
        return {name: [buffer] for name, buffer in grads.buffers.items()}
    return group_leaves(grads, layout)


def _concatenated(pieces: dict[str, list[jax.Array]], from_tree: bool) -> dict[str, jax.Array]:
    """The packed gradient buffers of the groups in ``pieces`` (for the XLA update)."""
    packed = {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in pieces.items()}
    if not (from_tree and packed):
        return packed
    # Materialize the concatenation once: XLA on CPU would otherwise fuse the concatenation
    # of every leaf into each consumer (m, v and θ), a per-element branch over all leaves.
    return jax.lax.optimization_barrier(packed)


def _kernel_groups(layout: Layout, backend: str, owner: str) -> frozenset[str]:
    """The groups the C++ kernel updates (see the module docstring for ``backend``)."""
    if backend == "xla":
        return frozenset()
    eligible = frozenset(name for name, dtype, _ in layout.groups if dtype in KERNEL_DTYPES)
    if backend == "kernel":
        if jax.default_backend() != "cpu":
            raise RuntimeError(f"{owner}(backend='kernel') runs on CPU only; JAX's default backend "
                               f"is {jax.default_backend()!r}: use backend='auto' or 'xla'")
        if not _kernels.available():
            raise RuntimeError(f"{owner}(backend='kernel'): the C++ kernel is unavailable "
                               f"({_kernels.unavailable_reason()}); use backend='auto' or 'xla'")
        return eligible
    if not eligible or jax.default_backend() != "cpu" or jax.device_count() != 1:
        return frozenset()
    return eligible if _kernels.available() else frozenset()


def _as_dtype(values, dtype) -> jax.Array:
    """The scalars ``values`` as one 1-D array of ``dtype`` (each cast as XLA casts it)."""
    return jnp.stack([jnp.asarray(x).astype(dtype) for x in values])


def _adam_coefficients(t, eta, b1, b2, eps, eps_root, bias_correction, weight_decay, dtype):
    """``[β1, 1 − β1, β2, 1 − β2, 1/(1 − β1^t), 1/(1 − β2^t), ε_root, ε, λ, −η]`` for the kernel,
    computed with the expressions of ``adam_leaf`` and ``scale_by_learning_rate`` (XLA turns
    ``m / (1 − β1^t)`` into ``m · (1/(1 − β1^t))``: the kernel gets the reciprocals)."""
    b1, b2 = as_coefficient(b1, dtype), as_coefficient(b2, dtype)
    if bias_correction:
        inv1, inv2 = 1 / (1 - b1**t).astype(dtype), 1 / (1 - b2**t).astype(dtype)
    else:
        inv1 = inv2 = 1.0  # x · 1 is exact: the kernel's product is then the chain's m, v
    return _as_dtype(
        [b1, 1 - b1, b2, 1 - b2, inv1, inv2, as_coefficient(eps_root, dtype), as_coefficient(eps, dtype),
         as_coefficient(weight_decay, dtype), as_coefficient(-1.0 * eta, dtype)],
        dtype,
    )


def _kernel_call(target: str, state: list[jax.Array], coef: jax.Array, grads: list[jax.Array], **attrs):
    """``target(*state, coef, *grads) -> state'`` with each state buffer updated in place
    (output ``i`` aliases input ``i``: with a donated state nothing is allocated)."""
    shapes = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in state)
    call = jax.ffi.ffi_call(target, shapes, input_output_aliases={i: i for i in range(len(state))},
                            vmap_method="sequential")
    return call(*state, coef, *grads, **attrs)


def fused_adam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype=None,
    *,
    weight_decay: Scalar = 0.0,
    mask=DEFAULT_MASK,
    bias_correction: bool = True,
    backend: str = "auto",
) -> FusedOptimizer:
    """Adam (seed 003), or AdamW with ``weight_decay=λ > 0``, on packed buffers.

    Same numbers as ``adam(...)`` (``weight_decay=0``) or ``adamw(..., weight_decay, mask)``
    followed by ``apply_updates``: ``m_t = β1 m + (1 − β1) g``, ``v_t = β2 v + (1 − β2) g²``,
    ``θ ← θ − α (m̂_t / (√(v̂_t + ε_root) + ε) + λ θ)`` (λ only on the leaves ``mask`` selects;
    by default those with ``ndim >= 2``). Positional arguments as ``adam``'s (optax's);
    ``mu_dtype`` stores ``m`` in another dtype (those groups use the XLA update).
    ``backend``: ``"auto"``, ``"kernel"`` or ``"xla"`` (module docstring).
    """
    owner = "fused_adam"
    check_learning_rate(learning_rate, owner=owner)
    check_decay("b1", b1, owner=owner)
    check_decay("b2", b2, owner=owner)
    check_eps("eps", eps, owner=owner)
    check_eps("eps_root", eps_root, owner=owner)
    check_range("weight_decay", weight_decay, 0.0, owner=owner)
    check_choice("backend", backend, BACKENDS, owner=owner)
    check_flag("bias_correction", bias_correction, owner)
    mu_dtype = check_dtype("mu_dtype", mu_dtype, owner)
    decays = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
    zero_eps = all(isinstance(x, (int, float)) and x == 0 for x in (eps, eps_root))

    def init(params):
        layout = make_layout(params, resolve_mask(mask, params, owner) if decays else None)
        packed = Packed.pack(params, layout)
        return FusedState(
            jnp.zeros([], jnp.int32), packed, zeros_like_packed(packed, mu_dtype), zeros_like_packed(packed)
        )

    def xla_group(p, g, m, v, t, eta, decay):
        u, m, v = adam_leaf(g, m, v, t, b1, b2, eps, eps_root, bias_correction)
        if decay:
            c = as_coefficient(weight_decay, u.dtype)
            u = (u + c * p.astype(u.dtype)).astype(u.dtype)
        return _apply(p, _lr_scale(u, eta)), m, v

    def kernel_group(p, grads, m, v, t, eta, decay):
        coef = _adam_coefficients(t, eta, b1, b2, eps, eps_root, bias_correction,
                                  weight_decay if decay else 0.0, p.dtype)
        return _kernel_call("jaxopt_lectures_fused_adam", [p, m, v], coef, grads, decay=decay)

    def step(state, grads):
        _check_fused_state(state, owner)
        layout = state.params.layout
        pieces = _gradient_groups(grads, layout)
        # eps = eps_root = 0 (the lecture form): the XLA rule defines 0/0 as 0, the kernel does not.
        kernel = frozenset() if zero_eps else _kernel_groups(layout, backend, owner)
        # a group whose m is stored in another dtype than θ takes the XLA update
        kernel = frozenset(k for k in kernel if state.mu.buffers[k].dtype == state.params.buffers[k].dtype)
        packed = _concatenated({k: v for k, v in pieces.items() if k not in kernel}, not isinstance(grads, Packed))
        t = safe_increment(state.count)
        eta = _learning_rate(learning_rate, state.count)
        new = {}
        for name, p in state.params.buffers.items():
            m, v, decay = state.mu.buffers[name], state.nu.buffers[name], decays and name.endswith("_decay")
            if name in kernel:
                new[name] = kernel_group(p, pieces[name], m, v, t, eta, decay)
            else:
                new[name] = xla_group(p, packed[name], m, v, t, eta, decay)
        p_new, m_new, v_new = ({k: x[i] for k, x in new.items()} for i in range(3))
        return FusedState(t, Packed(p_new, layout), Packed(m_new, layout), Packed(v_new, layout))

    return FusedOptimizer(init, step)


def fused_adamw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype=None,
    weight_decay: Scalar = 1e-4,
    mask=DEFAULT_MASK,
    *,
    bias_correction: bool = True,
    backend: str = "auto",
) -> FusedOptimizer:
    """AdamW on packed buffers: the numbers of ``adamw(...)`` (same arguments, same order)."""
    return fused_adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay=weight_decay, mask=mask,
                      bias_correction=bias_correction, backend=backend)


def fused_sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    accumulator_dtype=None,
    *,
    backend: str = "auto",
) -> FusedOptimizer:
    """SGD, with classic momentum ``m_t = β m + g``, ``θ ← θ − η m_t`` (PyTorch's SGD), on
    packed buffers: the numbers of ``sgd(learning_rate, momentum, nesterov)``. Nesterov:
    ``θ ← θ − η (β m_t + g)``. ``accumulator_dtype``: the dtype ``m`` is stored in (those
    groups use the XLA update). ``backend``: ``"auto"``, ``"kernel"`` or ``"xla"``."""
    owner = "fused_sgd"
    check_learning_rate(learning_rate, owner=owner)
    if momentum is None:
        momentum = 0.0
    check_decay("momentum", momentum, owner=owner)
    check_flag("nesterov", nesterov, owner)
    check_choice("backend", backend, BACKENDS, owner=owner)
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype, owner)
    keeps_momentum = nesterov or not isinstance(momentum, (int, float)) or momentum > 0

    def init(params):
        packed = Packed.pack(params, make_layout(params))
        mu = zeros_like_packed(packed, accumulator_dtype) if keeps_momentum else None
        return FusedState(jnp.zeros([], jnp.int32), packed, mu, None)

    def xla_group(p, g, m, first, eta):
        u = g
        if keeps_momentum:
            u, m = momentum_leaf(u, m, first, momentum, "classic", nesterov)
        return _apply(p, _lr_scale(u, eta)), m

    def kernel_group(p, grads, m, eta):
        neg_eta = as_coefficient(-1.0 * eta, p.dtype)
        if not keeps_momentum:
            (p,) = _kernel_call("jaxopt_lectures_fused_sgd", [p], _as_dtype([neg_eta], p.dtype), grads)
            return p, None
        coef = _as_dtype([as_coefficient(momentum, p.dtype), neg_eta], p.dtype)
        p, m = _kernel_call("jaxopt_lectures_fused_momentum", [p, m], coef, grads, nesterov=bool(nesterov))
        return p, m

    def step(state, grads):
        _check_fused_state(state, owner)
        layout = state.params.layout
        pieces = _gradient_groups(grads, layout)
        kernel = _kernel_groups(layout, backend, owner)
        if keeps_momentum:
            kernel = frozenset(k for k in kernel if state.mu.buffers[k].dtype == state.params.buffers[k].dtype)
        packed = _concatenated({k: v for k, v in pieces.items() if k not in kernel}, not isinstance(grads, Packed))
        eta = _learning_rate(learning_rate, state.count)
        first = state.count == 0
        p_new, m_new = {}, {}
        for name, p in state.params.buffers.items():
            m = state.mu.buffers[name] if keeps_momentum else None
            if name in kernel:
                p_new[name], m_new[name] = kernel_group(p, pieces[name], m, eta)
            else:
                p_new[name], m_new[name] = xla_group(p, packed[name], m, first, eta)
        mu = Packed(m_new, layout) if keeps_momentum else None
        return FusedState(safe_increment(state.count), Packed(p_new, layout), mu, None)

    return FusedOptimizer(init, step)


def jit_step(opt: FusedOptimizer, **jit_kwargs) -> Callable[[FusedState, PyTree], FusedState]:
    """``jax.jit(opt.step)`` with the state donated (updated in place, no new buffers).

    ``keep_unused=True`` keeps every donated buffer an input even if a rule ignores it
    (``jit`` would otherwise drop it silently and allocate). After a call the old state's
    arrays are deleted: keep only the returned state.
    """
    return jax.jit(opt.step, donate_argnums=0, keep_unused=True, **jit_kwargs)


def state_bytes(state: FusedState) -> int:
    """Bytes held by the optimizer state proper (the moments and the count, not θ)."""
    return int(sum(x.nbytes for x in jax.tree.leaves((state.count, state.mu, state.nu))))
