"""Loss functions and loss-side regularizers, in pure JAX (no Flax).

Every per-example loss returns one value per example (shape ``labels``' batch shape);
take the mean yourself. Formulas use the lectures' symbols: ``z`` the logits, ``ŷ`` the
target, ``y = softmax(z)`` the network's distribution, ``λ`` a regularization strength.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any

__all__ = [
    "softmax_cross_entropy",
    "mse",
    "hinge",
    "multiclass_hinge",
    "accuracy",
    "entropy",
    "graph_smoothness",
    "rbf_knn_weights",
    "l2_penalty",
    "l1_penalty",
    "default_penalty_mask",
    "softmax_cross_entropy_with_integer_labels",
    "hinge_loss",
    "multiclass_hinge_loss",
]


def _soft_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Integer labels (batch,) become one-hot rows; soft labels (batch, C) pass through."""
    if labels.ndim == logits.ndim:
        if labels.shape != logits.shape:
            raise ValueError(
                f"soft labels have shape {labels.shape} but logits {logits.shape}; "
                "they must match (or pass integer labels of shape logits.shape[:-1])."
            )
        return labels
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"integer labels have shape {labels.shape}, expected {logits.shape[:-1]} "
            f"for logits of shape {logits.shape}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"integer labels must have an integer dtype, got {labels.dtype}.")
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy between the target ``ŷ`` and ``y = softmax(z)`` (lecture 000).

    ``C(y, ŷ) = -Σ_i ŷ_i ln y_i``, computed stably with ``log_softmax``. ``labels`` are either
    integers of shape ``logits.shape[:-1]`` or a distribution of shape ``logits.shape``
    (soft labels, e.g. from mixup).
    """
    target = _soft_labels(logits, labels)
    return -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error ``mean_i (y_i - ŷ_i)²`` over the trailing axes (lecture 000's L)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"shapes differ: predictions {predictions.shape}, targets {targets.shape}.")
    err = jnp.square(predictions - targets)
    return err.reshape(err.shape[0], -1).mean(axis=-1) if err.ndim > 1 else err


def hinge(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary hinge loss ``max(0, 1 - ŷ f(x))`` with ``ŷ ∈ {-1, +1}`` (lecture 000, SVM)."""
    return jnp.maximum(0.0, 1.0 - labels * scores)


def multiclass_hinge(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Multi-class hinge ``max(0, 1 + max_{j≠ŷ} z_j - z_ŷ)`` (Crammer and Singer); int labels."""
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    correct = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1)
    best_other = jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)
    return jnp.maximum(0.0, 1.0 + best_other - correct)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max class is the label (soft labels: their arg-max)."""
    if labels.ndim == logits.ndim:
        labels = jnp.argmax(labels, axis=-1)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def entropy(logits: jax.Array) -> jax.Array:
    """Entropy of the predicted distribution, ``E(y) = -Σ_m y_m ln y_m`` (lecture 000).

    Entropy minimization adds ``λ · mean E(y^u)`` over unlabeled examples to the loss, so the
    network is pushed to be confident ("non black or white") on data it has no labels for.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def graph_smoothness(outputs: jax.Array, weights: jax.Array) -> jax.Array:
    """Smoothness on a graph, ``S = ½ Σ_{i,j} w_ij ‖y^i - y^j‖²`` (lecture 000).

    ``outputs`` is (n, k) (e.g. softmax probabilities), ``weights`` the (n, n) symmetric
    similarity matrix. Small ``S`` means connected (similar) examples get similar outputs.
    Returns a scalar.
    """
    if weights.shape != (outputs.shape[0], outputs.shape[0]):
        raise ValueError(f"weights must be ({outputs.shape[0]}, {outputs.shape[0]}), got {weights.shape}.")
    diff = outputs[:, None, :] - outputs[None, :, :]
    return 0.5 * jnp.sum(weights * jnp.sum(jnp.square(diff), axis=-1))


def rbf_knn_weights(x: jax.Array, k: int, gamma: float = 1.0) -> jax.Array:
    """Graph weights for :func:`graph_smoothness`: ``w_ij = exp(-γ‖x^i - x^j‖²)`` between k-nearest
    neighbours (symmetrized: an edge if either is among the other's k nearest), zero elsewhere."""
    flat = x.reshape(x.shape[0], -1)
    d2 = jnp.sum(jnp.square(flat[:, None, :] - flat[None, :, :]), axis=-1)
    n = flat.shape[0]
    d2_no_self = d2 + jnp.diag(jnp.full((n,), jnp.inf))
    kth = jnp.sort(d2_no_self, axis=-1)[:, k - 1 : k]
    near = d2_no_self <= kth
    near = near | near.T
    return jnp.where(near, jnp.exp(-gamma * d2), 0.0)


def default_penalty_mask(params: PyTree) -> PyTree:
    """Which leaves a penalty touches: weight matrices and kernels (``ndim >= 2``), not biases or
    norm scales (lecture 004: biases do not affect smoothness, so leave them out)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _masked_leaves(params: PyTree, mask: PyTree | Callable[[PyTree], PyTree] | None) -> list[Any]:
    if mask is None:
        mask = default_penalty_mask
    if callable(mask):
        mask = mask(params)
    return [p for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]


def l2_penalty(params: PyTree, mask: PyTree | Callable | None = None) -> jax.Array:
    """The L2 term added to the loss, ``½ ‖θ‖₂² = ½ Σ w²`` (lecture 004); multiply by λ yourself.

    Its gradient is ``λ w``, which is what ``jol.add_l2_regularization(λ)`` adds to the gradient,
    so the two give the same updates. ``mask`` (a pytree of bools or a function of ``params``)
    defaults to :func:`default_penalty_mask`.
    """
    leaves = _masked_leaves(params, mask)
    return 0.5 * sum((jnp.sum(jnp.square(p)) for p in leaves), jnp.zeros(()))


def l1_penalty(params: PyTree, mask: PyTree | Callable | None = None) -> jax.Array:
    """The L1 term added to the loss, ``‖θ‖₁ = Σ |w|`` (lecture 004); gradient ``λ sgn(w)``."""
    leaves = _masked_leaves(params, mask)
    return sum((jnp.sum(jnp.abs(p)) for p in leaves), jnp.zeros(()))


# optax.losses' names for the same functions (same numbers; optax's argument names).


def softmax_cross_entropy_with_integer_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``softmax_cross_entropy`` for integer labels only (``optax.losses``' name and contract)."""
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must have an integer dtype, got {jnp.result_type(labels)}")
    return softmax_cross_entropy(logits, labels)


def hinge_loss(predictor_outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """``hinge`` under ``optax.losses``' name: ``max(0, 1 − t·f(x))``, ``t ∈ {−1, +1}``."""
    return hinge(predictor_outputs, targets)


def multiclass_hinge_loss(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """``multiclass_hinge`` under ``optax.losses``' name."""
    return multiclass_hinge(scores, labels)
