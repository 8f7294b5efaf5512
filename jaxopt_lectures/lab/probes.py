"""Probes that look inside a network while it trains."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxopt_lectures import losses

__all__ = ["gradient_norms", "sharpness"]


def gradient_norms(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = losses.softmax_cross_entropy,
    *,
    train: bool = False,
) -> dict[str, float]:
    """The norm ``‖∂L/∂θ_layer‖₂`` of every layer's gradient, input layer first.

    A layer is a module owning parameters (its kernel and bias together), named by its path,
    e.g. ``"blocks/0/linear"``. With sigmoid activations the norms shrink toward the input
    (lecture 004's vanishing gradient); with ReLU they stay comparable. ``train=True``
    measures in training mode (batch statistics; dropout needs no key only when its rate is 0).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax types split's result as variadic

    def loss(p):
        m = nnx.merge(graphdef, p, rest, copy=True)
        return jnp.mean(loss_fn(m(x, train=train), y))

    grads = jax.grad(loss)(params)
    sums: dict[str, jax.Array] = {}
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        keys = [k for k in keys if k != "value"]
        layer = "/".join(keys[:-1]) or keys[-1]
        sums[layer] = sums.get(layer, jnp.zeros(())) + jnp.sum(jnp.square(g))
    return {layer: float(jnp.sqrt(s)) for layer, s in sums.items()}


def sharpness(model: nnx.Module, x, y, num_classes: int, *, eps: float = 0.05, draws: int = 4) -> float:
    """How sharp the minimum is: the mean rise of the training cross-entropy (evaluation mode)
    when every weight array ``a`` gets Gaussian noise of ``eps · ‖a‖`` (``draws`` draws, keys
    1000, 1001, ...): a random-direction version of Keskar et al.'s ε-sharpness. A flat
    minimum hardly rises; a sharp one does."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax types split's result as variadic
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss_at(p):
        out = nnx.merge(graphdef, p, rest)(x, train=False)
        return jnp.mean(losses.softmax_cross_entropy(out, jax.nn.one_hot(y, num_classes)))

    base = float(loss_at(params))
    rises = []
    for k in range(draws):
        keys = iter(jax.random.split(jax.random.PRNGKey(1000 + k), len(jax.tree.leaves(params))))

        def noisy(a):
            u = jax.random.normal(next(keys), a.shape, a.dtype)  # noqa: B023 (used within this iteration)
            return a + eps * jnp.linalg.norm(a) / jnp.maximum(jnp.linalg.norm(u), 1e-12) * u

        rises.append(float(loss_at(jax.tree.map(noisy, params))) - base)
    return float(np.mean(rises))
