"""L2 / L1 regularization and (decoupled) weight decay (seed 004).

Seed 004 writes ``L'(θ) = L(θ) + λ·½‖θ‖₂²``, so ``∂L'/∂w = ∂L/∂w + λw`` and the update
``w ← (1 − ηλ) w − η ∂L/∂w`` shrinks every weight before it moves: *weight decay*. With
the penalty written ``λ‖θ‖₂²`` (no ½) the factor is ``(1 − 2ηλ)``: pass ``coeff = 2λ``.
L1 (``λ‖θ‖₁``) adds ``λ·sgn(w)`` instead: always subtract a fixed amount.

The lectures leave biases out of the penalty, and so do we by default: only leaves
with ``ndim >= 2`` (weight matrices, conv kernels) are decayed. ``mask=None`` decays
every leaf; a bool pytree or a callable ``params -> bool pytree`` choose explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core import (
    EmptyState,
    FlatTree,
    GradientTransformation,
    PyTree,
    Scalar,
    _leaf_paths,
    _path_str,
    as_coefficient,
    as_float,
    check_range,
    check_same_shapes,
    check_same_structure,
)

Mask = Any
"""Which leaves a transformation touches: a bool, a bool pytree like the parameters (or a
prefix of it; a leaf may be a bool array, per element), or a function ``params -> such a tree``."""


def decay_matrices_only(params: PyTree) -> PyTree:
    """The default mask: ``True`` for leaves with ``ndim >= 2`` (not biases or norm scales)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


DEFAULT_MASK: Callable = decay_matrices_only


def _mask_leaf(flag, path: str, owner: str):
    """A mask leaf as a Python bool (``True``, ``np.True_``: the leaf is in or out as a
    whole), or a bool array, kept as an array even when it is 0-d and concrete: an array
    may have been computed from the parameters' values, which under ``jit`` are traced and
    cannot decide a structure, so it selects element by element in both modes and a
    value-dependent mask behaves the same eager and jitted (audit v2 N21)."""
    if isinstance(flag, (bool, np.bool_)):
        return bool(flag)
    if isinstance(flag, (jax.Array, np.ndarray)) and flag.dtype == np.bool_:
        return flag
    raise TypeError(
        f"{owner} mask: the leaf at {path} is {flag!r:.60} ({type(flag).__name__}); allowed: "
        "True/False or a bool array (bool('no') would be True)"
    )


def _prefix_mismatch(mask, params) -> str:
    """Where ``mask`` stops being a prefix of ``params``: the first differing path."""
    m_paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(mask)[0]]
    p_paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for pm in m_paths:
        if not any(pp[: len(pm)] == pm for pp in p_paths):
            return f"the mask has a leaf at {_path_str(pm)} where params has none"
    for pp in p_paths:
        if not any(pp[: len(pm)] == pm for pm in m_paths):
            return f"params has a leaf at {_path_str(pp)} that the mask does not cover"
    return "the leaves sit at the same paths but the containers differ in type"


def _keys(path) -> tuple:
    """A key path as comparable values: dict keys, attribute names and sequence indices
    (so that a dict of labels matches a ``flax.nnx.State`` or ``FrozenDict`` of params)."""
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append((type(k).__name__, getattr(k, attr)))
                break
        else:
            out.append((type(k).__name__, str(k)))
    return tuple(out)


def _broadcast_prefix(labels, params, owner: str, name: str) -> list:
    """One label per leaf of ``params`` (in ``jax.tree.leaves`` order), from ``labels``: a
    tree like ``params`` or a prefix of it. Raises ``ValueError`` naming the first path
    where the two differ."""
    label_leaves, label_def = jax.tree_util.tree_flatten_with_path(labels)
    try:
        subtrees = label_def.flatten_up_to(params)  # type: ignore[attr-defined]  # jaxlib 0.12 ships PyTreeDef without stubs
    except (ValueError, TypeError):
        subtrees = None
    if subtrees is not None:
        return [lab for (_, lab), sub in zip(label_leaves, subtrees) for _ in jax.tree.leaves(sub)]
    # Same key paths, other containers (a dict of labels for a flax State): match by path.
    by_path = {_keys(p): lab for p, lab in label_leaves}
    param_paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    used, out = set(), []
    for p in param_paths:
        keys = _keys(p)
        hit = next((keys[:n] for n in range(len(keys) + 1) if keys[:n] in by_path), None)
        if hit is None:
            raise ValueError(
                f"{owner}: {name} does not match the parameters: params have a leaf at {_path_str(p)} "
                f"that {name} gives no value for ({name} has entries at "
                f"{', '.join(sorted(_path_str(q) for q, _ in label_leaves)[:6])}); pass a tree like the "
                "params, a prefix of it, or a function of the params"
            )
        used.add(hit)
        out.append(by_path[hit])
    for p, _ in label_leaves:
        if _keys(p) not in used:
            raise ValueError(
                f"{owner}: {name} does not match the parameters: it has an entry at {_path_str(p)} "
                "where the params have no leaf (a misspelt key?)"
            )
    return out


def expand_mask(tree, params, owner: str):
    """A mask that is a *prefix* of ``params`` (optax's semantics: a bool at an inner node
    applies to its whole subtree) as one flag per parameter leaf. Raises ``ValueError``
    naming the first differing path when ``tree`` is not a prefix of ``params``."""
    if jax.tree.structure(tree) == jax.tree.structure(params):  # type: ignore[operator]  # jaxlib 0.12 ships PyTreeDef without stubs
        return tree
    try:
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), tree, params)
    except (ValueError, TypeError):
        pass
    try:
        # Same key paths, other containers (a dict mask for a flax nnx.State or FrozenDict):
        # matched key by key, as partition matches its labels (audit v2 N08).
        flags = _broadcast_prefix(tree, params, owner, "mask")
        return jax.tree.unflatten(jax.tree.structure(params), flags)
    except ValueError:
        pass
    raise ValueError(
        f"the structure of {owner} mask does not match params: {_prefix_mismatch(tree, params)}. "
        "A mask is a pytree of bools like the params, or a prefix of it (a bool for a "
        "whole subtree), or a callable params -> such a tree"
    )


def resolve_mask(mask, params, owner: str):
    """Turns ``mask`` (None, a bool pytree or a prefix of one, or a callable) into a pytree
    like ``params`` of Python bools or bool arrays (per-element masks; traced ones under
    ``jit``). For the packed parameters that ``flatten`` passes, the mask is evaluated on
    the original tree and packed."""
    if isinstance(params, FlatTree):
        if mask is None:
            return jax.tree.map(lambda _: True, params)
        return params.pack_flags(resolve_mask(mask, params.unpack(), owner))
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    tree = expand_mask(mask(params) if callable(mask) else mask, params, owner)
    check_same_structure(tree, params, f"{owner} mask", "params")
    flags = [_mask_leaf(f, path, owner) for path, f in _leaf_paths(tree)]
    return jax.tree.unflatten(jax.tree.structure(tree), flags)


def _add_scaled_params(coeff, mask, penalty_grad, owner: str) -> GradientTransformation:
    """``u ← u + coeff · penalty_grad(θ)`` on the leaves the mask selects."""
    check_range("coeff" if owner != "decoupled_weight_decay" else "weight_decay", coeff, 0.0, owner=owner)

    def init(params):
        resolve_mask(mask, params, owner)  # a mask that does not fit the params fails here
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del extra
        if params is None:
            raise ValueError(f"{owner} needs the parameters: call update(grads, state, params)")
        check_same_structure(grads, params, "grads", "params")
        check_same_shapes(grads, params, "grads", "params")
        keep = resolve_mask(mask, params, owner)

        def leaf(g, p, on):
            if on is False:
                return g
            g = as_float(g)
            c = as_coefficient(coeff, g.dtype)
            new = (g + c * penalty_grad(p).astype(g.dtype)).astype(g.dtype)
            return new if on is True else jnp.where(on, new, g)

        return jax.tree.map(leaf, grads, params, keep), state

    return GradientTransformation(init, update)


def add_l2_regularization(coeff: Scalar, mask: Mask = DEFAULT_MASK) -> GradientTransformation:
    """Coupled L2: ``g ← g + λθ`` *before* any adaptive scaling (seed 004's ∂L'/∂w).

    Put it first in a chain: with SGD it is exactly weight decay ``(1 − ηλ)w``; with Adam
    the penalty gets divided by √v̂ too (the reason AdamW exists).
    """
    return _add_scaled_params(coeff, mask, lambda p: p, "add_l2_regularization")


def add_l1_regularization(coeff: Scalar, mask: Mask = DEFAULT_MASK) -> GradientTransformation:
    """L1: ``g ← g + λ·sgn(θ)`` (seed 004; ``sgn(0) = 0``)."""
    return _add_scaled_params(coeff, mask, jnp.sign, "add_l1_regularization")


def decoupled_weight_decay(weight_decay: Scalar, mask: Mask = DEFAULT_MASK) -> GradientTransformation:
    """Decoupled weight decay (Loshchilov & Hutter, AdamW): ``u ← u + λθ`` *after* scaling.

    Chained before ``scale_by_learning_rate(η)`` this gives ``θ ← θ − η(u_adam + λθ)
    = (1 − ηλ)θ − η u_adam``: seed 004's decay factor, untouched by Adam's √v̂.
    """
    return _add_scaled_params(weight_decay, mask, lambda p: p, "decoupled_weight_decay")
