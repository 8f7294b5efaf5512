"""Probes that look inside a network while it trains."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxopt_lectures import losses

__all__ = ["gradient_norms"]


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
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

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
