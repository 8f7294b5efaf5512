"""The base type and the plumbing every transformation shares.

A *gradient transformation* is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)

held in a ``NamedTuple`` of closures with no arrays inside, so Flax can keep it as a
static attribute. Optimizers are ``chain``s of small transformations; ``apply_updates``
adds the final updates to the parameters.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]


class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params=None, **extra)``."""

    init: Callable[[PyTree], PyTree]
    update: Callable[..., tuple[PyTree, PyTree]]


class EmptyState(NamedTuple):
    """State of a transformation that keeps nothing between steps."""


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask leaves out (a pytree node with no leaves)."""


def identity() -> GradientTransformation:
    """Passes the gradients through unchanged."""

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        return grads, state

    return GradientTransformation(init, update)


def chain(*txs: GradientTransformation) -> GradientTransformation:
    """Runs transformations one after another; the state is the tuple of their states."""
    for i, tx in enumerate(txs):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"chain: argument {i} is {type(tx).__name__}, not a GradientTransformation "
                "(did you pass the factory instead of calling it?)"
            )

    def init(params):
        return tuple(tx.init(params) for tx in txs)

    def update(grads, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(txs):
            raise ValueError(
                f"chain of {len(txs)} transformations got a state with "
                f"{len(state) if isinstance(state, tuple) else type(state).__name__} entries; "
                "was it made by this chain's init?"
            )
        new_state = []
        for tx, s in zip(txs, state):
            grads, s = tx.update(grads, s, params, **extra)
            new_state.append(s)
        return grads, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``θ ← θ + u`` leaf by leaf, the result cast back to each parameter's dtype."""
    check_same_structure(updates, params, "updates", "params")
    return jax.tree.map(
        lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )


# ---------------------------------------------------------------------------------------
# Trees: structure checks that name the offending leaf, and the lift of a per-array rule.


def _path_str(path) -> str:
    return "".join(str(k) for k in path) or "<root>"


def check_same_structure(tree: PyTree, reference: PyTree, name: str, ref_name: str) -> None:
    """Raises ``ValueError`` naming the first path where two trees differ."""
    if jax.tree.structure(tree) == jax.tree.structure(reference):
        return
    a, _ = jax.tree_util.tree_flatten_with_path(tree)
    b, _ = jax.tree_util.tree_flatten_with_path(reference)
    paths_a = [_path_str(p) for p, _ in a]
    paths_b = [_path_str(p) for p, _ in b]
    for pa, pb in zip(paths_a, paths_b):
        if pa != pb:
            detail = f"{name} has a leaf at {pa} where {ref_name} has one at {pb}"
            break
    else:
        if len(paths_a) > len(paths_b):
            detail = f"{name} has an extra leaf at {paths_a[len(paths_b)]} that {ref_name} lacks"
        elif len(paths_b) > len(paths_a):
            detail = f"{name} lacks the leaf at {paths_b[len(paths_a)]} that {ref_name} has"
        else:
            detail = "the leaves sit at the same paths but the containers differ in type"
    raise ValueError(
        f"the structure of {name} does not match {ref_name}: {detail}. "
        f"({name}: {len(paths_a)} leaves, {ref_name}: {len(paths_b)} leaves; "
        "was the state made by init() on these same parameters?)"
    )


def tree_map_checked(f: Callable, tree: PyTree, *rest: PyTree, names: tuple[str, ...] = ()):
    """``jax.tree.map(f, tree, *rest)`` after checking every tree has ``tree``'s structure.

    This is how a per-array rule is lifted over a pytree: the rule is written once for
    one array and stays testable on its own.
    """
    labels = names or ("grads",) + tuple(f"tree {i + 1}" for i in range(len(rest)))
    for label, other in zip(labels[1:], rest):
        check_same_structure(tree, other, labels[0], label)
    return jax.tree.map(f, tree, *rest)


def as_coefficient(x, dtype):
    """A hyper-parameter ready to multiply an array of ``dtype`` without promoting it.

    Python numbers stay Python numbers (weakly typed: ``0.9 * x`` keeps ``x``'s dtype and
    ``1 - 0.9`` is computed in float64 first, as optax does); arrays and tracers (injected
    or scheduled values) are kept in at least float32, so that e.g. ``1 − β2`` with
    ``β2 = 0.999`` is not rounded to 0 in bfloat16: each rule casts its results back.
    """
    if is_static_number(x):
        return x
    return jnp.asarray(x).astype(jnp.promote_types(dtype, jnp.float32))


def tree_unzip(tree: PyTree, tuples: PyTree, n: int) -> tuple[PyTree, ...]:
    """Splits a tree whose leaves were mapped to ``n``-tuples into ``n`` trees like ``tree``."""
    return tuple(jax.tree.map(lambda _, t, i=i: t[i], tree, tuples) for i in range(n))


def tree_zeros_like(tree: PyTree) -> PyTree:
    return jax.tree.map(jnp.zeros_like, tree)


def tree_full_like(tree: PyTree, value) -> PyTree:
    return jax.tree.map(lambda x: jnp.full_like(x, value), tree)


def global_norm(tree: PyTree) -> jax.Array:
    """``sqrt(Σ_leaves Σ x²)``, accumulated in float32 at least."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(
        sum(jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))) for x in leaves)
    )


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` that stops at the largest int32 instead of wrapping around."""
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count).astype(jnp.int32)


# ---------------------------------------------------------------------------------------
# State lookup by name.


def _children(node):
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return [(f, getattr(node, f)) for f in node._fields]
    if isinstance(node, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(node)]
    return []


def _find_fields(state, name):
    """All ``(path, value)`` pairs in ``state`` whose key or field is ``name``, depth first."""
    found, seen = [], set()

    def visit(node, path):
        for key, child in _children(node):
            seen.add(str(key))
            if key == name:
                found.append((path + (key,), child))
            visit(child, path + (key,))

    visit(state, ())
    return found, seen


def get_state_field(state: PyTree, name: str, *, all: bool = False):  # noqa: A002
    """Finds a named field (``count``, ``mu``, ``learning_rate``, ...) anywhere in a state.

    Searches NamedTuple fields and dict keys (the ``hyperparams`` of
    ``inject_hyperparams``) depth first and returns the first match, or every match with
    ``all=True``. Raises ``KeyError`` listing the names that exist.
    """
    found, seen = _find_fields(state, name)
    if not found:
        names = sorted(n for n in seen if not n.isdigit())
        raise KeyError(f"no field named {name!r} in this optimizer state; fields present: {names}")
    return [v for _, v in found] if all else found[0][1]


def set_state_field(state: PyTree, name: str, value) -> PyTree:
    """Returns a copy of ``state`` where every field or key called ``name`` holds ``value``.

    The value keeps the old leaf's shape and dtype, so a jitted step does not recompile.
    Typical use: ``state = set_state_field(state, "learning_rate", 1e-4)`` after
    ``inject_hyperparams``.
    """
    hits = 0

    def rebuild(node):
        nonlocal hits
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == name:
                    hits += 1
                    out[k] = _like(v, value)
                else:
                    out[k] = rebuild(v)
            return type(node)(out) if type(node) is not dict else out
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            kw = {}
            for f in node._fields:
                v = getattr(node, f)
                if f == name:
                    hits += 1
                    kw[f] = _like(v, value)
                else:
                    kw[f] = rebuild(v)
            return type(node)(**kw)
        if isinstance(node, (tuple, list)):
            return type(node)(rebuild(v) for v in node)
        return node

    out = rebuild(state)
    if not hits:
        get_state_field(state, name)  # raises the KeyError that lists the fields
    return out


def _like(old, value):
    if isinstance(old, jax.Array) or hasattr(old, "dtype"):
        return jnp.asarray(value, dtype=old.dtype).reshape(jnp.shape(old))
    return value


# ---------------------------------------------------------------------------------------
# Validation of Python-scalar hyper-parameters, at construction (traced values pass).


def is_static_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_range(
    name: str,
    value,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    owner: str = "",
) -> None:
    """Raises ``ValueError`` naming the argument, its value and the allowed range.

    Arrays, tracers and schedules are not checked (they may be traced inside ``jit``).
    """
    if not is_static_number(value):
        return
    v = float(value)
    bad = (
        math.isnan(v)
        or v < low
        or v > high
        or (low_open and v == low)
        or (high_open and v == high)
    )
    if bad:
        lo = "(-inf" if low == -math.inf else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high == math.inf else f"{high:g}" + (")" if high_open else "]")
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is out of range; allowed: {lo}, {hi}")


def check_choice(name: str, value, choices, owner: str = "") -> None:
    if value not in choices:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is not one of {sorted(choices)}")


def check_learning_rate(learning_rate, owner: str = "") -> None:
    if callable(learning_rate):
        return
    check_range("learning_rate", learning_rate, 0.0, owner=owner)


def check_decay(name: str, value, owner: str = "") -> None:
    """Decay rates and momentum coefficients live in [0, 1)."""
    check_range(name, value, 0.0, 1.0, high_open=True, owner=owner)


def check_eps(name: str, value, owner: str = "") -> None:
    check_range(name, value, 0.0, owner=owner)
