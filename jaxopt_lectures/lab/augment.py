"""Key-driven, jit-able data augmentation for image batches ``(n, height, width, channels)``.

Every function takes a ``jax.random`` key first and returns a batch of the same shape, so it
can run inside the jitted training step. Strengths may be traced arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "hflip",
    "random_flip",
    "random_shift",
    "gaussian_noise",
    "blur",
    "random_blur",
    "mixup",
    "compose",
    "make_augment",
]

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def hflip(x: jax.Array) -> jax.Array:
    """Mirror images left-right (the width axis, -2). ``hflip(hflip(x)) == x``."""
    return jnp.flip(x, axis=-2)


def random_flip(key: jax.Array, x: jax.Array, p: float | jax.Array = 0.5) -> jax.Array:
    """Flip each image with probability ``p``.

    Only for data whose labels survive mirroring: a flipped digit 3 is not a 3 any more, so
    digits ship with ``flip_safe=False`` and :func:`make_augment` leaves flipping off for them.
    """
    do = jax.random.bernoulli(key, p, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(do, hflip(x), x)


def _shift_one(img: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
    h, w = img.shape[0], img.shape[1]
    rows = jnp.arange(h)[:, None] - dy
    cols = jnp.arange(w)[None, :] - dx
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    moved = img[jnp.clip(rows, 0, h - 1), jnp.clip(cols, 0, w - 1)]
    return jnp.where(valid[..., None], moved, jnp.zeros_like(moved))


def random_shift(key: jax.Array, x: jax.Array, max_shift: int = 1) -> jax.Array:
    """Translate each image by up to ``max_shift`` pixels in each direction, filling with zeros."""
    ky, kx = jax.random.split(key)
    n = x.shape[0]
    dy = jax.random.randint(ky, (n,), -max_shift, max_shift + 1)
    dx = jax.random.randint(kx, (n,), -max_shift, max_shift + 1)
    return jax.vmap(_shift_one)(x, dy, dx)


def gaussian_noise(key: jax.Array, x: jax.Array, std: float | jax.Array = 0.1) -> jax.Array:
    """Add ``N(0, std²)`` noise to every input value."""
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def blur(x: jax.Array) -> jax.Array:
    """3x3 binomial blur (weights ``[1,2,1]ᵀ[1,2,1]/16``) per channel, edges padded by replication."""
    k1 = jnp.array([0.25, 0.5, 0.25], x.dtype)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[1], x.shape[2]
    rows = k1[0] * padded[:, 0:h, :, :] + k1[1] * padded[:, 1 : 1 + h, :, :] + k1[2] * padded[:, 2 : 2 + h, :, :]
    return k1[0] * rows[:, :, 0:w, :] + k1[1] * rows[:, :, 1 : 1 + w, :] + k1[2] * rows[:, :, 2 : 2 + w, :]


def random_blur(key: jax.Array, x: jax.Array, p: float | jax.Array = 0.5) -> jax.Array:
    """Blur each image with probability ``p``."""
    do = jax.random.bernoulli(key, p, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(do, blur(x), x)


def mixup(key: jax.Array, x: jax.Array, y_soft: jax.Array, alpha: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al. 2017): ``x̃ = λ x_i + (1-λ) x_j``, ``ỹ = λ y_i + (1-λ) y_j``, ``λ ~ Beta(α, α)``.

    ``y_soft`` are distributions (rows sum to 1), so the mixed labels also sum to 1. One ``λ``
    per batch, partner ``j`` a random permutation of the batch. ``α <= 0`` turns mixup off
    (``λ = 1``), so ``α`` can be a traced hyper-parameter.
    """
    k_lam, k_perm = jax.random.split(key)
    alpha = jnp.asarray(alpha, x.dtype)
    safe = jnp.where(alpha > 0, alpha, 1.0)
    lam = jnp.where(alpha > 0, jax.random.beta(k_lam, safe, safe, dtype=x.dtype), 1.0)
    perm = jax.random.permutation(k_perm, x.shape[0])
    x_mix = lam * x + (1.0 - lam) * x[perm]
    y_mix = lam * y_soft + (1.0 - lam) * y_soft[perm]
    return x_mix, y_mix


def compose(*augments: Augment) -> Augment:
    """Apply augmentations in order, each with its own sub-key."""

    def apply(key: jax.Array, x: jax.Array) -> jax.Array:
        for i, aug in enumerate(augments):
            x = aug(jax.random.fold_in(key, i), x)
        return x

    return apply


def make_augment(
    *,
    flip: bool = False,
    max_shift: int = 0,
    noise_std: float = 0.0,
    blur_p: float = 0.0,
    flip_safe: bool = True,
) -> Augment | None:
    """Build an augmentation ``(key, x) -> x`` from switches; ``None`` when all are off.

    Pass ``flip_safe=dataset.flip_safe``: asking to flip data whose labels change under
    mirroring (digits) raises instead of silently teaching the network wrong labels.
    """
    if flip and not flip_safe:
        raise ValueError(
            "flip=True on a data set whose labels are not mirror-invariant (e.g. digits: a "
            "mirrored 3 is not a 3); leave flip off or pass flip_safe=True deliberately."
        )
    parts: list[Augment] = []
    if flip:
        parts.append(random_flip)
    if max_shift:
        parts.append(lambda k, x: random_shift(k, x, max_shift))
    if blur_p:
        parts.append(lambda k, x: random_blur(k, x, blur_p))
    if noise_std:
        parts.append(lambda k, x: gaussian_noise(k, x, noise_std))
    return compose(*parts) if parts else None
