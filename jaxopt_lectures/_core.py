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
import numpy as np

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
    """``θ ← θ + u`` leaf by leaf, the result cast back to each parameter's dtype.

    Every update leaf must have its parameter's shape (no broadcasting), parameters must
    be floating point or complex, and a complex update is refused for a real parameter.
    """
    check_same_structure(updates, params, "updates", "params")
    check_same_shapes(updates, params, "updates", "params")
    check_float_params(params, "apply_updates")
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


def _leaf_paths(tree: PyTree) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(_path_str(p), x) for p, x in leaves]


def _shape_of(x) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _dtype_of(x):
    return x.dtype if hasattr(x, "dtype") else jnp.result_type(x)


def _is_complex(x) -> bool:
    return jnp.issubdtype(_dtype_of(x), jnp.complexfloating)


def check_same_shapes(tree: PyTree, reference: PyTree, name: str, ref_name: str) -> None:
    """Raises ``ValueError`` naming the first leaf whose shape differs from the reference's
    (no broadcasting between a gradient and its parameter), or a complex leaf where the
    reference is real (its imaginary part would be dropped). Trees of one structure;
    shapes are static, so this is a Python-level check that also runs under ``jit``."""
    for (path, a), (_, b) in zip(_leaf_paths(tree), _leaf_paths(reference)):
        if a is None or b is None:
            continue
        sa, sb = _shape_of(a), _shape_of(b)
        if sa != sb:
            raise ValueError(
                f"{name} has shape {sa} at {path} where {ref_name} has shape {sb}; "
                "a gradient must have its parameter's shape (a forgotten batch axis?)"
            )
        if _is_complex(a) and not _is_complex(b):
            raise ValueError(
                f"{name} is complex ({_dtype_of(a)}) at {path} where {ref_name} is real "
                f"({_dtype_of(b)}); its imaginary part would be dropped"
            )


def check_float_params(params: PyTree, owner: str) -> None:
    """Raises ``TypeError`` naming the first parameter leaf that is not floating point or
    complex: an integer parameter cannot take a fractional step (the fused path agrees)."""
    for path, x in _leaf_paths(params):
        if x is None:
            continue
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            raise TypeError(
                f"{owner}: the parameter at {path} is {jnp.result_type(x)}; optimizers need "
                "floating-point (or complex) parameters: cast it, e.g. with .astype(jnp.float32)"
            )


def as_float(g):
    """An integer or bool gradient as float32 (a float or complex one unchanged), so that a
    rule that casts its result back to the gradient's dtype does not truncate the step."""
    if jnp.issubdtype(jnp.result_type(g), jnp.inexact):
        return g
    return jnp.asarray(g).astype(jnp.float32)


def check_state(state, cls, owner: str) -> None:
    """Raises ``ValueError`` when ``state`` is not a ``cls`` (a state from another optimizer)."""
    if not isinstance(state, cls):
        raise ValueError(
            f"{owner} got a state of type {type(state).__name__} where it expects "
            f"{cls.__name__}; was the state made by this optimizer's init?"
        )


def tree_map_checked(f: Callable, tree: PyTree, *rest: PyTree, names: tuple[str, ...] = ()):
    """``jax.tree.map(f, tree, *rest)`` after checking every tree has ``tree``'s structure
    and, leaf by leaf, its shape (the checks name the leaf path and both shapes).

    This is how a per-array rule is lifted over a pytree: the rule is written once for
    one array and stays testable on its own. Integer leaves of ``tree`` (gradients) are
    cast to float32 first (``as_float``).
    """
    labels = names or ("grads",) + tuple(f"tree {i + 1}" for i in range(len(rest)))
    for label, other in zip(labels[1:], rest):
        check_same_structure(tree, other, labels[0], label)
        check_same_shapes(tree, other, labels[0], label)
    return jax.tree.map(lambda x, *r: f(as_float(x), *r), tree, *rest)


class PackSpec(NamedTuple):
    """The static layout of a packed tree: its treedef and each leaf's (dtype name, shape)."""

    treedef: Any
    leaves: tuple[tuple[str, tuple[int, ...]], ...]

    def template(self) -> PyTree:
        """The original tree with a ``jax.ShapeDtypeStruct`` per leaf (for checks)."""
        return jax.tree.unflatten(
            self.treedef, [jax.ShapeDtypeStruct(shape, jnp.dtype(d)) for d, shape in self.leaves]
        )


@jax.tree_util.register_pytree_with_keys_class
class FlatTree:
    """A pytree stored as one contiguous 1-D buffer per dtype, with the static ``spec`` to
    unpack it: what ``flatten`` hands its inner transformation. Masks evaluated on a
    ``FlatTree`` see the original tree (``resolve_mask`` unpacks it) and come back packed,
    so weight decay and ``masked`` keep their per-leaf meaning inside ``flatten``."""

    def __init__(self, buffers: dict, spec: PackSpec):
        self.buffers = dict(buffers)
        self.spec = spec

    def tree_flatten_with_keys(self):
        keys = tuple(sorted(self.buffers))
        return [(jax.tree_util.DictKey(k), self.buffers[k]) for k in keys], (keys, self.spec)

    def tree_flatten(self):
        keys = tuple(sorted(self.buffers))
        return [self.buffers[k] for k in keys], (keys, self.spec)

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, spec = aux
        return cls(dict(zip(keys, children)), spec)

    def __repr__(self):
        return f"FlatTree({ {k: getattr(v, 'shape', v) for k, v in self.buffers.items()} })"

    @staticmethod
    def spec_of(tree: PyTree) -> PackSpec:
        leaves, treedef = jax.tree.flatten(tree)
        return PackSpec(treedef, tuple((jnp.dtype(x.dtype).name, tuple(jnp.shape(x))) for x in leaves))

    @classmethod
    def pack(cls, tree: PyTree, spec: PackSpec | None = None, name: str = "tree") -> "FlatTree":
        """Packs ``tree`` (checked against ``spec``: structure, shapes, no complex into real;
        other dtypes are cast to the layout's, as the fused optimizers do)."""
        if spec is None:
            spec = cls.spec_of(tree)
        else:
            template = spec.template()
            check_same_structure(tree, template, name, "params")
            check_same_shapes(tree, template, name, "params")
        groups: dict[str, list] = {}
        for leaf, (dtype, _) in zip(jax.tree.leaves(tree), spec.leaves):
            groups.setdefault(dtype, []).append(jnp.ravel(jnp.asarray(leaf).astype(dtype)))
        return cls({k: jnp.concatenate(v) if len(v) > 1 else v[0] for k, v in groups.items()}, spec)

    def unpack(self) -> PyTree:
        offsets: dict[str, int] = {}
        out = []
        for dtype, shape in self.spec.leaves:
            start = offsets.get(dtype, 0)
            size = math.prod(shape)
            out.append(jax.lax.slice_in_dim(self.buffers[dtype], start, start + size).reshape(shape))
            offsets[dtype] = start + size
        return jax.tree.unflatten(self.spec.treedef, out)

    def pack_flags(self, flags: PyTree) -> "FlatTree":
        """A per-leaf mask (bools, or bool arrays broadcastable to the leaf) in this layout:
        a Python bool for a dtype group whose leaves all agree, else a per-element array."""
        groups: dict[str, list] = {}
        for flag, (dtype, shape) in zip(jax.tree.leaves(flags), self.spec.leaves):
            groups.setdefault(dtype, []).append((flag, shape))
        out = {}
        for dtype, items in groups.items():
            if all(isinstance(f, bool) for f, _ in items) and len({f for f, _ in items}) == 1:
                out[dtype] = items[0][0]
            elif all(isinstance(f, bool) for f, _ in items):
                out[dtype] = np.concatenate([np.full(math.prod(sh), f) for f, sh in items])
            else:
                out[dtype] = jnp.concatenate(
                    [jnp.ravel(jnp.broadcast_to(jnp.asarray(f, bool), sh)) for f, sh in items]
                )
        return FlatTree(out, self.spec)


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
    """``sqrt(Σ_leaves Σ |x|²)``, accumulated in float32 at least, without overflow.

    The leaves are divided by the largest absolute value ``s`` first and the result is
    ``s · sqrt(Σ (x/s)²)``: ``[1e20, 1]`` has norm ``1e20``, not ``inf`` (float32's
    ``x²`` overflows above ~1.8e19). An infinite or NaN leaf still gives ``inf``/NaN.
    """
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    real = [jnp.abs(as_float(x)) for x in leaves]
    real = [x.astype(jnp.promote_types(x.dtype, jnp.float32)) for x in real]
    dtype = jnp.result_type(*real)
    scale = jnp.max(jnp.stack([jnp.max(x, initial=0.0).astype(dtype) for x in real]))
    finite = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(finite, scale, 1.0)
    total = sum(jnp.sum(jnp.square(x.astype(dtype) / safe)) for x in real)
    return jnp.where(finite, safe * jnp.sqrt(total), jnp.sqrt(total))


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
    ``inject_hyperparams``. The value is validated as the factory validates it
    (``learning_rate >= 0``, ``b1``/``b2``/``momentum``/``decay`` in ``[0, 1)``,
    ``eps >= 0``, ``count >= 0``, all finite); a field that holds a tree (``mu``, ``nu``)
    is only replaced by a tree of the same structure and shapes.
    """
    _check_field_value(name, value)
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
    if jax.tree.leaves(old) or old is None or isinstance(old, (tuple, list, dict)):
        if jax.tree.structure(value) != jax.tree.structure(old):
            raise ValueError(
                f"set_state_field: this field holds a tree ({jax.tree.structure(old)}); "
                f"{value!r:.80} does not have its structure (set a scalar field such as "
                "learning_rate, or pass a tree like the old one)"
            )
        check_same_shapes(value, old, "the new value", "the old field")
        return jax.tree.map(lambda o, v: jnp.asarray(v, dtype=o.dtype), old, value)
    return value


# ---------------------------------------------------------------------------------------
# Validation of Python-scalar hyper-parameters, at construction (traced values pass).


def is_static_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and not isinstance(x, (np.str_, np.bytes_))


def check_type(name: str, value, owner: str = "", *, allow_callable: bool = True) -> None:
    """Raises ``TypeError`` naming the argument when ``value`` is not a real number, an
    array (or tracer) or, with ``allow_callable``, a schedule: strings, ``None``, booleans
    and complex numbers are refused at construction, not at the first ``update``."""
    if is_static_number(value) or (allow_callable and callable(value) and not _is_array(value)):
        return
    if _is_array(value) and np.dtype(value.dtype).kind in "fiu" or (
        _is_array(value) and jnp.issubdtype(value.dtype, jnp.floating)
    ):
        return
    where = f"{owner}: " if owner else ""
    kind = "a schedule, " if allow_callable else ""
    raise TypeError(
        f"{where}{name}={value!r} ({type(value).__name__}) is not a number; allowed: "
        f"a real number, {kind}or a real array"
    )


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

    Values must be finite numbers (``nan`` and ``±inf`` are refused even where the range is
    unbounded); strings, ``None`` and booleans raise ``TypeError`` naming the argument.
    Arrays, tracers and schedules are not range-checked (they may be traced inside ``jit``).
    """
    check_type(name, value, owner)
    if not is_static_number(value):
        return
    v = float(value)
    bad = (
        not math.isfinite(v)
        or v < low
        or v > high
        or (low_open and v == low)
        or (high_open and v == high)
    )
    if bad:
        lo = "(-inf" if low == -math.inf else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high == math.inf else f"{high:g}" + (")" if high_open else "]")
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is out of range; allowed: finite values in {lo}, {hi}")


def check_integer(name: str, value, low: int, owner: str = "") -> None:
    """A Python (or numpy) integer ``>= low``, not a bool or a float like 2.5."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is out of range; allowed: integers >= {low}")


def check_choice(name: str, value, choices, owner: str = "") -> None:
    if value not in choices:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is not one of {sorted(choices)}")


SCHEDULE_PROBE_COUNTS = (0, 1)


def check_schedule(name: str, schedule, low: float = 0.0, owner: str = "") -> None:
    """Evaluates a schedule ``count -> value`` at a few counts (0, 1 and the schedule's own
    boundaries when it lists them in ``probe_counts``) and raises ``ValueError`` naming the
    argument if a value is NaN, infinite or below ``low``. This is cheap (a few scalar
    evaluations at construction); counts not probed are not checked. A schedule that
    cannot be evaluated outside ``jit`` (it closes over traced values) is not checked."""
    counts = sorted(set(SCHEDULE_PROBE_COUNTS) | set(getattr(schedule, "probe_counts", ())))
    for c in counts:
        try:
            v = schedule(jnp.asarray(c, jnp.int32))
        except jax.errors.JAXTypeError:
            return
        if isinstance(v, jax.core.Tracer):
            return
        try:
            arr = np.asarray(v)
        except (TypeError, jax.errors.JAXTypeError):
            return
        if arr.dtype.kind not in "fiu" or arr.size != 1:
            where = f"{owner}: " if owner else ""
            raise TypeError(f"{where}{name}: the schedule returned {v!r} at count {c}; allowed: a real scalar")
        x = float(arr.reshape(()))
        if not math.isfinite(x) or x < low:
            where = f"{owner}: " if owner else ""
            raise ValueError(
                f"{where}{name}: the schedule gives {x!r} at count {c}; allowed: finite values in [{low:g}, inf)"
            )


def check_learning_rate(learning_rate, owner: str = "") -> None:
    if callable(learning_rate):
        check_schedule("learning_rate", learning_rate, 0.0, owner=owner)
        return
    check_range("learning_rate", learning_rate, 0.0, owner=owner)


def check_decay(name: str, value, owner: str = "") -> None:
    """Decay rates and momentum coefficients live in [0, 1)."""
    check_range(name, value, 0.0, 1.0, high_open=True, owner=owner)


def check_eps(name: str, value, owner: str = "") -> None:
    check_range(name, value, 0.0, owner=owner)


# The ranges ``set_state_field`` enforces for the hyper-parameters the factories validate.
_FIELD_RANGES = {
    "learning_rate": dict(low=0.0),
    "b1": dict(low=0.0, high=1.0, high_open=True),
    "b2": dict(low=0.0, high=1.0, high_open=True),
    "momentum": dict(low=0.0, high=1.0, high_open=True),
    "decay": dict(low=0.0, high=1.0, high_open=True),
    "beta": dict(low=0.0, high=1.0),
    "eps": dict(low=0.0),
    "eps_root": dict(low=0.0),
    "weight_decay": dict(low=0.0),
    "coeff": dict(low=0.0),
    "initial_accumulator_value": dict(low=0.0),
    "initial_scale": dict(low=0.0),
    "max_norm": dict(low=0.0, low_open=True),
    "max_delta": dict(low=0.0),
    "count": dict(low=0.0),
}


def _check_field_value(name: str, value) -> None:
    """``set_state_field``'s validation: the factory's range for a known hyper-parameter."""
    rule = _FIELD_RANGES.get(name)
    if rule is None:
        return
    if isinstance(value, jax.core.Tracer):
        return
    if _is_array(value):
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"set_state_field: {name}={value!r} is not a real number")
        for x in arr.reshape(-1).tolist():
            check_range(name, x, owner="set_state_field", **rule)
        return
    check_range(name, value, owner="set_state_field", **rule)
