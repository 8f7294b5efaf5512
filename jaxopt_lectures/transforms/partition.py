"""Per-parameter optimizers: a different transformation for each labelled part of the model.

The lectures' recipe of pre-training then fine-tuning (seed 000, "Initialization (e.g.,
pre-train)": a network first trained on a pretext task with plenty of data, then trained
on the downstream task, helps both optimization and generalization) is, in code, one
optimizer per part of the parameters: a small η for the pre-trained body, a larger η for
the new head, a frozen part that does not move at all. ``partition`` routes each leaf to
the transformation of its label::

    tx = jol.partition({"body": jol.adamw(1e-4), "head": jol.adamw(1e-2), "frozen": jol.set_to_zero()},
                       {"embed": "frozen", "body": "body", "head": "head"})

For every label ℓ with transformation T_ℓ and the leaves P_ℓ that carry it,
``u[i] = T_ℓ(g[P_ℓ])[i]`` for ``i ∈ P_ℓ``: each T_ℓ sees only its own leaves (the others
are ``MaskedNode``, as in ``masked``), so its state holds moments for those leaves only,
and a global norm inside T_ℓ is the norm of its part. The semantics are optax's
``optax.partition`` (``multi_transform``): labels as a pytree like the parameters, or a
*prefix* of it (one label for a whole subtree), or a function ``params -> labels``;
the state is named: ``state.inner_states["head"]`` is the head's optimizer state, and
``get_state_field`` finds fields inside it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core import (
    EmptyState,
    FlatTree,
    GradientTransformation,
    MaskedNode,
    PyTree,
    _path_str,
    check_same_structure,
    check_state,
)
from .regularization import Mask, _broadcast_prefix
from .wrappers import masked

# --- set_to_zero and freeze ----------------------------------------------------------------


def set_to_zero() -> GradientTransformation:
    """``u = 0`` for every leaf: the parameters it sees do not move (and it keeps no state).

    Use it as the transformation of a frozen label in ``partition``: the other labels'
    optimizers then never see the frozen leaves, so Adam allocates no ``m``/``v`` for them.
    """

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        return jax.tree.map(jnp.zeros_like, grads), state

    return GradientTransformation(init, update)


def freeze(mask: Mask) -> GradientTransformation:
    """Zero updates where ``mask`` is True, the others pass through (optax's ``freeze``).

    ``mask`` is a bool, a bool pytree like the parameters or a prefix of it
    (``{"body": True, "head": False}``), or a function ``params -> such a tree``. Chained
    before Adam, Adam still keeps moments for the frozen leaves (they stay zero): to not
    allocate them, route the frozen leaves to ``set_to_zero()`` with ``partition``.
    """

    def full_mask(params):
        tree = mask(params) if callable(mask) else mask
        flags = _broadcast_prefix(tree, params, "freeze", "mask")
        return jax.tree.unflatten(jax.tree.structure(params), flags)

    return masked(set_to_zero(), full_mask)


# --- partition -----------------------------------------------------------------------------


class PartitionState(NamedTuple):
    """``inner_states``: a dict label -> the state of that label's transformation (over
    its own leaves only; ``MaskedNode`` stands where the other labels' leaves are)."""

    inner_states: dict


def _accepts_extra(update) -> set | None:
    """The extra keyword arguments ``update`` takes: ``None`` for all (``**extra``)."""
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(list(sig.parameters)[3:])


def partition(
    transforms: Mapping[Hashable, GradientTransformation], param_labels: PyTree | Callable[[PyTree], PyTree]
) -> GradientTransformation:
    """Applies ``transforms[ℓ]`` to the leaves labelled ℓ (optax's ``partition``).

    ``transforms`` maps a label (a string) to a transformation; ``param_labels`` is a
    pytree of labels like the parameters, or a prefix of it (``{"body": "body", "head":
    "head"}`` labels whole subtrees), or a function ``params -> labels``. Every leaf's
    label must be a key of ``transforms`` (a ``ValueError`` names the unknown label and the
    known ones); a label tree that does not fit the parameters is a ``ValueError`` naming
    the first path where they differ. Extra ``update`` arguments (``value=loss``) go to
    the transformations that accept them. The state is a ``PartitionState`` whose
    ``inner_states[ℓ]`` is the state of ``transforms[ℓ]`` over ℓ's leaves only.
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(
            f"partition: transforms must be a non-empty mapping label -> transformation, got "
            f"{type(transforms).__name__}"
        )
    for label, tx in transforms.items():
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"partition: transforms[{label!r}] is {type(tx).__name__}, not a GradientTransformation "
                "(did you pass the factory instead of calling it?)"
            )
    transforms = dict(transforms)
    extras_of = {label: _accepts_extra(tx.update) for label, tx in transforms.items()}
    known = sorted(map(str, transforms))

    def leaf_labels(tree):
        if isinstance(tree, FlatTree):
            raise ValueError(
                "partition cannot run inside flatten (the packed buffers have no per-leaf labels); "
                "put flatten inside each part instead: partition({'a': flatten(adam(...))}, labels)"
            )
        labels = param_labels(tree) if callable(param_labels) else param_labels
        flat = _broadcast_prefix(labels, tree, "partition", "param_labels")
        paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        for path, label in zip(paths, flat):
            if isinstance(label, (jax.Array, jnp.ndarray)) or not isinstance(label, Hashable):
                raise TypeError(
                    f"partition: the label at {_path_str(path)} is {label!r:.60} "
                    f"({type(label).__name__}); labels must be static strings"
                )
            if label not in transforms:
                raise ValueError(
                    f"partition: param_labels gives the label {label!r} (at {_path_str(path)}) "
                    f"for which there is no transformation; known labels: {known}"
                )
        return flat

    def split(tree, flat, label):
        leaves, treedef = jax.tree.flatten(tree)
        return jax.tree.unflatten(treedef, [x if lab == label else MaskedNode() for x, lab in zip(leaves, flat)])

    def init(params):
        flat = leaf_labels(params)
        return PartitionState(
            inner_states={label: tx.init(split(params, flat, label)) for label, tx in transforms.items()}
        )

    def update(grads, state, params=None, **extra):
        check_state(state, PartitionState, "partition")
        if set(state.inner_states) != set(transforms):
            raise ValueError(
                f"partition: the state has parts {sorted(map(str, state.inner_states))} where the "
                f"transforms are {known}; was it made by this partition's init?"
            )
        if params is not None:
            check_same_structure(grads, params, "grads", "params")
        flat = leaf_labels(grads)
        leaves, treedef = jax.tree.flatten(grads)
        out = list(leaves)
        new_states = {}
        for label, tx in transforms.items():
            accepted = extras_of[label]
            kw = extra if accepted is None else {k: v for k, v in extra.items() if k in accepted}
            sub_params = None if params is None else split(params, flat, label)
            sub_updates, new_states[label] = tx.update(
                split(grads, flat, label), state.inner_states[label], sub_params, **kw
            )
            try:  # one entry per leaf of grads: its update, or MaskedNode where another part's leaf is
                sub_leaves = treedef.flatten_up_to(sub_updates)  # type: ignore[attr-defined]  # jaxlib 0.12 ships PyTreeDef without stubs
            except (ValueError, TypeError):
                check_same_structure(
                    sub_updates, split(grads, flat, label), f"transforms[{label!r}]'s updates", "its gradients"
                )
                raise
            for i, (u, lab) in enumerate(zip(sub_leaves, flat)):
                if lab == label:
                    out[i] = u
        return jax.tree.unflatten(treedef, out), PartitionState(inner_states=new_states)

    return GradientTransformation(init, update)
