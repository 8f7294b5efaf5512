"""Augmentations: shapes, involutions, label sums, and the lecture's warning about flips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures.lab import augment, data

KEY = jax.random.PRNGKey(0)


def test_flip_is_an_involution_and_random_flip_mixes():
    x = jax.random.normal(KEY, (16, 8, 8, 1))
    np.testing.assert_array_equal(augment.hflip(augment.hflip(x)), x)
    out = augment.random_flip(jax.random.PRNGKey(1), x, 0.5)
    flipped = [bool(jnp.all(o == augment.hflip(xi[None])[0])) for o, xi in zip(out, x)]
    same = [bool(jnp.all(o == xi)) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same)) and 0 < sum(flipped) < 16


def test_shift_noise_blur_properties():
    x = jnp.zeros((4, 5, 5, 1)).at[:, 2, 2, 0].set(1.0)
    shifted = jax.jit(lambda k, x: augment.random_shift(k, x, 1))(KEY, x)
    assert shifted.shape == x.shape
    np.testing.assert_allclose(shifted.sum(axis=(1, 2, 3)), 1.0)  # the pixel moved, not lost
    noisy = augment.gaussian_noise(KEY, jnp.zeros((1000, 2, 2, 1)), 0.5)
    assert abs(float(noisy.std()) - 0.5) < 0.03
    blurred = augment.blur(x)
    np.testing.assert_allclose(blurred.sum(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(blurred[0, 2, 2, 0], 0.25)
    np.testing.assert_allclose(augment.blur(jnp.ones((1, 4, 4, 2))), 1.0)


def test_mixup_labels_sum_to_one_and_alpha_zero_is_identity():
    x = jax.random.normal(KEY, (8, 4, 4, 1))
    y = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    xm, ym = jax.jit(augment.mixup)(jax.random.PRNGKey(2), x, y, 0.4)
    np.testing.assert_allclose(ym.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(xm, x)
    x0, y0 = augment.mixup(jax.random.PRNGKey(2), x, y, 0.0)
    np.testing.assert_array_equal(x0, x)
    np.testing.assert_array_equal(y0, y)


def test_flipping_digits_changes_their_meaning_so_it_is_off_by_default():
    d = data.load_digits(seed=0)
    centroids = np.stack([d.x_train[d.y_train == c].mean(0) for c in range(10)])

    def nearest_centroid_acc(x):
        dist = ((x[:, None] - centroids[None]) ** 2).sum(axis=(2, 3, 4))
        return float((dist.argmin(1) == d.y_test).mean())

    plain = nearest_centroid_acc(d.x_test)
    mirrored = nearest_centroid_acc(np.asarray(augment.hflip(jnp.asarray(d.x_test))))
    assert plain > 0.85 and mirrored < plain - 0.3
    assert not d.flip_safe
    with pytest.raises(ValueError, match="mirrored 3"):
        augment.make_augment(flip=True, flip_safe=d.flip_safe)
    assert augment.make_augment(max_shift=1, flip_safe=d.flip_safe) is not None
    assert augment.make_augment() is None
