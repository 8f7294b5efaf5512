"""The base type and the plumbing every transformation shares.

A *gradient transformation* is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)

held in a ``NamedTuple`` of closures with no arrays inside, so Flax can keep it as a
static attribute. Optimizers are ``chain``s of small transformations; ``apply_updates``
adds the final updates to the parameters.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]
Scalar = float | jax.Array
"""A number or a scalar array (a traced one inside ``jit``)."""
ScalarOrSchedule = float | jax.Array | Schedule
"""A hyper-parameter that may be a number, a scalar array (or tracer) or a schedule
``count -> value`` (optax's ``ScalarOrSchedule``)."""


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


def _accepted_extras(update: Callable) -> Callable[[dict], dict]:
    """What ``update``'s signature accepts of the extra keyword arguments (``value=loss``...):
    all of them with ``**kwargs``, else only those it names (optax's
    ``with_extra_args_support``: a member that takes none gets none)."""
    try:
        params = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return lambda extra: extra
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return lambda extra: extra
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    named -= {"updates", "grads", "state", "params"}
    return lambda extra: {k: v for k, v in extra.items() if k in named}


def chain(*txs: GradientTransformation) -> GradientTransformation:
    """Runs transformations one after another; the state is the tuple of their states.

    Extra keyword arguments of ``update`` (``value=loss``, ...) reach only the members whose
    ``update`` accepts them (``**kwargs`` or the named argument), as in ``optax.chain``.
    """
    for i, tx in enumerate(txs):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            hint = (
                "did you pass the factory instead of calling it?"
                if callable(tx)
                else "a FusedOptimizer has step(), not update(): chain opt.as_transformation()"
                if callable(getattr(tx, "step", None))
                else ""
            )
            raise TypeError(
                f"chain: argument {i} is {type(tx).__name__}, not a GradientTransformation"
                + (f" ({hint})" if hint else "")
            )
    extras = [_accepted_extras(tx.update) for tx in txs]

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
        for tx, s, accepts in zip(txs, state, extras):
            grads, s = tx.update(grads, s, params, **accepts(extra))
            new_state.append(s)
        return grads, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``θ ← θ + u`` leaf by leaf, the result cast back to each parameter's dtype.

    Every update leaf must have its parameter's shape (no broadcasting), and a complex
    update is refused for a real parameter. An integer or boolean parameter (a step
    counter, a masked-out leaf) accepts only an integer, boolean or ``float0`` update (the
    gradient ``jax.grad(..., allow_int=True)`` gives it, which leaves it unchanged): a
    floating update would be truncated, so it raises ``LeafDtypeError`` naming the path.
    """
    check_same_structure(updates, params, "updates", "params")
    check_same_shapes(updates, params, "updates", "params")
    for (path, p), (_, u) in zip(_leaf_paths(params), _leaf_paths(updates)):
        if p is None or jnp.issubdtype(jnp.result_type(p), jnp.inexact):
            continue
        ud = _dtype_of(u)
        if ud == jax.dtypes.float0 or not jnp.issubdtype(ud, jnp.inexact):
            continue
        raise LeafDtypeError(
            f"apply_updates: the parameter at {path} is {jnp.result_type(p)} and its update is "
            f"{ud}; the step would be truncated. Optimizers need floating-point parameters: "
            "cast it, e.g. with .astype(jnp.float32), or leave it out with masked(...)"
        )

    def leaf(p, u):
        if p is None:
            return None
        if _dtype_of(u) == jax.dtypes.float0:
            return p
        return jnp.asarray(p + u).astype(jnp.asarray(p).dtype)

    return jax.tree.map(leaf, params, updates, is_leaf=lambda x: x is None)


# ---------------------------------------------------------------------------------------
# Trees: structure checks that name the offending leaf, and the lift of a per-array rule.


def _path_str(path) -> str:
    return "".join(str(k) for k in path) or "<root>"


def check_same_structure(tree: PyTree, reference: PyTree, name: str, ref_name: str) -> None:
    """Raises ``ValueError`` naming the first path where two trees differ."""
    if jax.tree.structure(tree) == jax.tree.structure(reference):  # type: ignore[operator]  # jaxlib 0.12 ships PyTreeDef without stubs
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


class LeafDtypeError(TypeError, ValueError):
    """A parameter leaf of a dtype an optimizer cannot step (integer, bool): both a
    ``TypeError`` and a ``ValueError``, with the leaf's path in the message."""


def check_float_params(params: PyTree, owner: str) -> None:
    """Raises ``LeafDtypeError`` (a ``TypeError`` and a ``ValueError``) naming the first
    parameter leaf that is not floating point or complex: an integer or boolean parameter
    cannot take a fractional step (optax would keep it at 0 silently; the fused path agrees
    with us). Leave such leaves out with ``masked`` (a masked-out integer leaf is fine)."""
    for path, x in _leaf_paths(params):
        if x is None or isinstance(x, MaskedNode):
            continue
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            raise LeafDtypeError(
                f"{owner}: the parameter at {path} is {jnp.result_type(x)}; optimizers need "
                "floating-point (or complex) parameters: cast it, e.g. with .astype(jnp.float32), "
                "or leave it out with masked(...)"
            )


def as_float(g):
    """An integer or bool gradient as float32 (a float or complex one unchanged), so that a
    rule that casts its result back to the gradient's dtype does not truncate the step.
    A Python or numpy number becomes an array (``jnp.asarray``: a Python float is a weakly
    typed float32, as in optax), so every rule can read its ``dtype``."""
    g = jnp.asarray(g)
    if jnp.issubdtype(g.dtype, jnp.inexact):
        return g
    return g.astype(jnp.float32)


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
        return jax.tree.unflatten(self.treedef, [jax.ShapeDtypeStruct(shape, jnp.dtype(d)) for d, shape in self.leaves])


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
    def pack(cls, tree: PyTree, spec: PackSpec | None = None, name: str = "tree") -> FlatTree:
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

    def pack_flags(self, flags: PyTree) -> FlatTree:
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
                out[dtype] = jnp.concatenate([jnp.ravel(jnp.broadcast_to(jnp.asarray(f, bool), sh)) for f, sh in items])
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


def tree_zeros_like(tree: PyTree, dtype=None) -> PyTree:
    """Zeros like every leaf, in ``dtype`` when given (optax's ``tree.zeros_like``)."""
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_full_like(tree: PyTree, value) -> PyTree:
    return jax.tree.map(lambda x: jnp.full_like(x, value), tree)


def global_norm(tree: PyTree) -> jax.Array:
    """``sqrt(Σ_leaves Σ |x|²)``, accumulated in float32 at least, without overflow.

    The leaves are divided by the largest absolute value ``s`` first and the result is
    ``s · sqrt(Σ (x/s)²)``: ``[1e20, 1]`` has norm ``1e20``, not ``inf`` (float32's
    ``x²`` overflows above ~1.8e19). An infinite or NaN leaf still gives ``inf``/NaN.
    """
    safe, total, finite = global_norm_parts(tree)
    return jnp.where(finite, safe * jnp.sqrt(total), jnp.sqrt(total))


def global_norm_parts(tree: PyTree) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(s, Σ (x/s)², finite)`` with ``‖tree‖ = s · sqrt(Σ (x/s)²)`` where ``finite``
    (``s`` is the largest ``|x|``; 1 when that is 0, infinite or NaN, and ``finite`` is
    then False). ``clip_by_global_norm`` scales with the parts, not with ``c / ‖g‖``,
    which is a subnormal (flushed to 0 on the CPU) for norms above ~8.5e37 in float32."""
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if not leaves:
        return jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32), jnp.asarray(False)
    real = [jnp.abs(as_float(x)) for x in leaves]
    real = [x.astype(jnp.promote_types(x.dtype, jnp.float32)) for x in real]
    dtype = jnp.result_type(*real)
    scale = jnp.max(jnp.stack([jnp.max(x, initial=0.0).astype(dtype) for x in real]))
    finite = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(finite, scale, jnp.ones((), dtype))
    total = jnp.sum(jnp.stack([jnp.sum(jnp.square(x.astype(dtype) / safe)) for x in real]))
    return safe, total, finite


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


_NO_DEFAULT = object()


def _path_name(path) -> str:
    return ".".join(str(k) for k in path)


def get_state_field(state: PyTree, name: str, default: Any = _NO_DEFAULT, *, all: bool = False) -> Any:  # noqa: A002
    """Finds the named field (``count``, ``mu``, ``learning_rate``, ...) anywhere in a state.

    Searches NamedTuple fields and dict keys (the ``hyperparams`` of ``inject_hyperparams``)
    depth first. As ``optax.tree.get``: several matches raise ``KeyError("Found multiple
    values ...")`` naming their paths (``all=True`` returns the list of every match instead),
    and a missing name returns ``default`` when one is given, else raises ``KeyError``
    listing the names that exist.
    """
    found, seen = _find_fields(state, name)
    if all:
        if not found and default is _NO_DEFAULT:
            names = sorted(n for n in seen if not n.isdigit())
            raise KeyError(f"no field named {name!r} in this optimizer state; fields present: {names}")
        return [v for _, v in found] if found else default
    if not found:
        if default is not _NO_DEFAULT:
            return default
        names = sorted(n for n in seen if not n.isdigit())
        raise KeyError(f"no field named {name!r} in this optimizer state; fields present: {names}")
    if len(found) > 1:
        paths = [_path_name(p) for p, _ in found]
        raise KeyError(
            f"Found multiple values for {name!r} in this optimizer state, at {paths}; pass "
            "all=True for the list, or look inside one part (e.g. state[0])"
        )
    return found[0][1]


_MISSING = object()


def set_state_field(state: PyTree, name: str | None = None, value: Any = _MISSING, /, **fields: Any) -> PyTree:
    """Returns a copy of ``state`` where every field or key called ``name`` holds ``value``;
    also ``set_state_field(state, learning_rate=1e-4, b1=0.8)`` (``optax.tree.set``'s form).

    The value keeps the old leaf's shape and dtype, so a jitted step does not recompile.
    Typical use: ``state = set_state_field(state, "learning_rate", 1e-4)`` after
    ``inject_hyperparams``. The value is validated as the factory validates it
    (``learning_rate >= 0``, ``b1``/``b2``/``momentum``/``decay`` in ``[0, 1)``,
    ``eps >= 0``, ``count >= 0``, all finite); a field that holds a tree (``mu``, ``nu``)
    is only replaced by a tree of the same structure and shapes.
    """
    if name is not None:
        if value is _MISSING:
            raise TypeError("set_state_field(state, name, value): the value is missing")
        fields = {name: value, **fields}
    elif value is not _MISSING:
        raise TypeError("set_state_field: give a name with the value, or name=value keywords")
    for key, val in fields.items():
        state = _set_one_field(state, key, val)
    return state


def _set_one_field(state: PyTree, name: str, value) -> PyTree:
    _check_field_value(name, value)
    hits = 0

    def rebuild(node):
        nonlocal hits
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == name:
                    hits += 1
                    out[k] = _stored(name, v, value)
                else:
                    out[k] = rebuild(v)
            return type(node)(out) if type(node) is not dict else out
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            kw = {}
            for f in node._fields:
                v = getattr(node, f)
                if f == name:
                    hits += 1
                    kw[f] = _stored(name, v, value)
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


def _stored(name: str, old, value):
    """``value`` as the field ``name`` stores it (``_like``), validated on what is stored:
    ``1e39`` is ``inf`` in float32, ``1.5`` is not a count; and, for a field holding a dict
    (``hyperparams``), each entry it holds by its own name (audit v2 S07)."""
    entries = value.items() if isinstance(value, Mapping) else [(name, value)]
    olds = old if isinstance(value, Mapping) and isinstance(old, Mapping) else {name: old}
    for key, entry in entries:
        if isinstance(key, str) and key in _FIELD_RANGES:
            _check_field_value(key, entry)
            if key in olds and hasattr(olds[key], "dtype") and jnp.issubdtype(olds[key].dtype, jnp.integer):
                _check_integer_field(key, entry, jnp.dtype(olds[key].dtype))
    with np.errstate(over="ignore"):  # 1e39 as float32 is inf, which the check below names
        new = _like(old, value)
    stored = new if isinstance(value, Mapping) and isinstance(new, Mapping) else {name: new}
    for key, entry in entries:
        if isinstance(key, str) and key in stored:
            _check_stored(key, entry, stored[key])
    return new


def _check_integer_field(name: str, given, dtype) -> None:
    """A count (``count``, ``mini_step``...) is a whole number in its dtype's range: ``1.5``
    or ``2**31`` for an int32 field is refused, not truncated or wrapped."""
    if isinstance(given, jax.core.Tracer):
        return
    raw = np.asarray(given)
    top = int(jnp.iinfo(dtype).max)
    low = int(_FIELD_RANGES[name].get("low", 0))
    if raw.dtype.kind in "fiu" and raw.dtype.kind != "b":
        x = raw.astype(np.float64).reshape(-1)
        if np.all(np.isfinite(x)) and np.all(x == np.round(x)) and np.all((x >= low) & (x <= top)):
            return
    raise ValueError(
        f"set_state_field: {name}={given!r:.60} is out of range; allowed: integers in [{low}, {top}] "
        f"(the field stores {jnp.dtype(dtype).name})"
    )


def _check_stored(name: str, given, stored) -> None:
    rule = _FIELD_RANGES.get(name)
    if rule is None or isinstance(stored, jax.core.Tracer) or not hasattr(stored, "dtype"):
        return
    if jnp.issubdtype(stored.dtype, jnp.integer):
        return  # checked before the conversion (_check_integer_field)
    try:
        check_range(name, stored, owner="set_state_field", **rule)
    except ValueError as err:
        raise ValueError(f"{err} ({given!r:.60} was given; the field stores {jnp.dtype(stored.dtype).name})") from None


def _like(old, value):
    if isinstance(old, jax.Array) or hasattr(old, "dtype"):
        new = jnp.asarray(value, dtype=old.dtype)
        shape = jnp.shape(old)
        if new.size == math.prod(shape):
            return new.reshape(shape)
        if not new.shape:  # one value for every member of a stacked (vmapped) state
            return jnp.broadcast_to(new, shape)
        raise ValueError(
            f"set_state_field: this field holds an array of shape {shape}; the value has shape "
            f"{new.shape} (give one value, or {math.prod(shape)} values)"
        )
    if jax.tree.leaves(old) or old is None or isinstance(old, (tuple, list, dict)):
        if jax.tree.structure(value) != jax.tree.structure(old):  # type: ignore[operator]  # jaxlib 0.12 ships PyTreeDef without stubs
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


def static_value(x) -> float | None:
    """``x`` as a Python float where it is known before tracing: a number, or a concrete
    array of one element (in the dtype JAX stores it: ``np.float64(1e39)`` is ``inf``);
    ``None`` for tracers, schedules and arrays of several values. Decisions made at
    construction (which code path, which layout) read hyper-parameters through this, so a
    concrete array decides like the same Python number (audit v2, issue 21 item 2)."""
    if is_static_number(x):
        return float(x)
    if _is_array(x) and not isinstance(x, jax.core.Tracer) and np.size(x) == 1:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            return None
        with np.errstate(over="ignore"):
            return float(arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype)).reshape(()))
    return None


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and not isinstance(x, (np.str_, np.bytes_))


def check_type(name: str, value, owner: str = "", *, allow_callable: bool = True) -> None:
    """Raises ``TypeError`` naming the argument when ``value`` is not a real number, an
    array (or tracer) or, with ``allow_callable``, a schedule: strings, ``None``, booleans
    and complex numbers are refused at construction, not at the first ``update``."""
    if is_static_number(value) or (allow_callable and callable(value) and not _is_array(value)):
        return
    if (
        _is_array(value)
        and np.dtype(value.dtype).kind in "fiu"
        or (_is_array(value) and jnp.issubdtype(value.dtype, jnp.floating))
    ):
        return
    where = f"{owner}: " if owner else ""
    kinds = "a number, an array or a schedule" if allow_callable else "a number or an array"
    got = type(value).__name__
    if _is_array(value):
        got = f"an array of {value.dtype}"
    raise TypeError(f"{where}{name} must be {kinds} (real), got {got}: {value!r:.60}")


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
    Concrete arrays (jax or numpy) are checked like numbers, every element, after conversion
    to the dtype JAX stores them in (a float64 numpy array becomes float32 without x64, so
    ``1e39`` is ``inf``; a bfloat16 ``0.999`` is ``1.0``). Only tracers (values traced inside
    ``jit``) and schedules are not range-checked here.
    """
    check_type(name, value, owner)
    if is_static_number(value):
        _check_number(name, float(value), repr(value), low, high, low_open, high_open, owner)
        return
    if not _is_array(value) or isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value)
    with np.errstate(over="ignore"):  # 1e39 as float32 is inf, which the check then names
        arr = arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype))
    for x in arr.reshape(-1):
        kind = f"a {arr.dtype} array" if arr.ndim == 0 else f"an element of a {arr.dtype} array of shape {arr.shape}"
        _check_number(name, float(x), f"{x!s} ({kind})", low, high, low_open, high_open, owner)


def _check_number(name, v: float, shown: str, low, high, low_open, high_open, owner) -> None:
    bad = not math.isfinite(v) or v < low or v > high or (low_open and v == low) or (high_open and v == high)
    if bad:
        lo = "(-inf" if low == -math.inf else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high == math.inf else f"{high:g}" + (")" if high_open else "]")
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={shown} is out of range; allowed: finite values in {lo}, {hi}")


def check_integer(name: str, value, low: int, owner: str = "") -> None:
    """A Python (or numpy) integer ``>= low``, not a bool or a float like 2.5."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name}={value!r} is out of range; allowed: integers >= {low}")


def check_flag(name: str, value, owner: str = "") -> None:
    """Raises ``TypeError`` naming the argument when ``value`` is not a bool (a switch such
    as ``nesterov`` or ``eps_in_sqrt``: ``0.1`` or ``"yes"`` is refused, not read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        where = f"{owner}: " if owner else ""
        raise TypeError(f"{where}{name} must be True or False, got {type(value).__name__}: {value!r:.60}")


def check_dtype(name: str, value, owner: str = ""):
    """``None`` or a floating dtype (``jnp.bfloat16``, ``"float32"``...), as a ``jnp.dtype``;
    anything else raises ``TypeError`` naming the argument."""
    if value is None:
        return None
    where = f"{owner}: " if owner else ""
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{where}{name} must be None or a dtype, got {type(value).__name__}: {value!r:.60}") from None
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{where}{name} must be a floating dtype (e.g. jnp.bfloat16), got {dtype}")
    return dtype


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
_FIELD_RANGES: dict[str, dict[str, Any]] = {
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
    "mini_step": dict(low=0.0),
    "every_k": dict(low=1.0),
    "notfinite_count": dict(low=0.0),
    "total_notfinite": dict(low=0.0),
}


def _check_field_value(name: str, value) -> None:
    """``set_state_field``'s validation: the factory's range for a known hyper-parameter,
    by the one path every hyper-parameter takes (``check_range``: numbers and concrete
    arrays alike, every element; only tracers pass)."""
    rule = _FIELD_RANGES.get(name)
    if rule is None:
        return
    check_range(name, value, owner="set_state_field", **rule)
