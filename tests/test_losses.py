"""Losses against hand computations and their reference formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_lectures import losses


def test_cross_entropy_int_and_soft_labels_agree_with_formula():
    logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = jnp.array([0, 2])
    probs = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True)
    expected = -np.log(probs[np.arange(2), [0, 2]])
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), expected, rtol=1e-6)
    soft = jax.nn.one_hot(labels, 3)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, soft), expected, rtol=1e-6)
    mixed = jnp.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, mixed), optax.softmax_cross_entropy(logits, mixed), rtol=1e-6
    )


def test_cross_entropy_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="integer labels"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="soft labels"):
        losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


def test_mse_hinge_accuracy():
    np.testing.assert_allclose(losses.mse(jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 1.0]])), [2.5])
    np.testing.assert_allclose(losses.hinge(jnp.array([2.0, 0.5, -1.0]), jnp.array([1.0, 1.0, 1.0])), [0.0, 0.5, 2.0])
    z = jnp.array([[3.0, 1.0, 2.5], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(losses.multiclass_hinge(z, jnp.array([0, 0])), [0.5, 3.0])
    assert float(losses.accuracy(z, jnp.array([0, 0]))) == 0.5
    assert float(losses.accuracy(z, jax.nn.one_hot(jnp.array([0, 1]), 3))) == 1.0


def test_entropy_extremes():
    uniform = jnp.zeros((1, 4))
    np.testing.assert_allclose(losses.entropy(uniform), [np.log(4)], rtol=1e-6)
    confident = jnp.array([[50.0, 0.0, 0.0, 0.0]])
    assert float(losses.entropy(confident)[0]) < 1e-6


def test_graph_smoothness_by_hand():
    y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    w = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    # pairs (0,1) and (1,0): weight 1, squared distance 2 -> 0.5 * (2 + 2) = 2; pair (0,2): distance 0
    np.testing.assert_allclose(losses.graph_smoothness(y, w), 2.0)
    x = jnp.array([[0.0], [0.1], [5.0], [5.1]])
    weights = losses.rbf_knn_weights(x, k=1)
    assert weights[0, 1] > 0 and weights[2, 3] > 0 and weights[0, 2] == 0 and weights[1, 3] == 0
    np.testing.assert_allclose(weights, weights.T)


def test_penalties_skip_biases_and_match_gradients():
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([3.0])}
    np.testing.assert_allclose(losses.l2_penalty(params), 0.5 * 5.0)
    np.testing.assert_allclose(losses.l1_penalty(params), 3.0)
    everything = {"w": True, "b": True}
    np.testing.assert_allclose(losses.l2_penalty(params, everything), 0.5 * 14.0)
    grad = jax.grad(losses.l2_penalty)(params)
    np.testing.assert_allclose(grad["w"], params["w"])  # dL2/dw = w: the lecture's λ w term
    np.testing.assert_allclose(grad["b"], 0.0)
    np.testing.assert_allclose(jax.grad(losses.l1_penalty)(params)["w"], jnp.sign(params["w"]))


def test_losses_module_does_not_import_flax():
    import subprocess
    import sys

    code = "import sys, jaxopt_lectures.losses; assert 'flax' not in sys.modules, 'losses pulled in flax'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_rbf_knn_weights_of_images_match_the_float64_formula(k):
    """``w_ij = exp(−γ‖x^i − x^j‖²)`` where j is among i's k nearest or i among j's (self excluded),
    on inputs with several features per example (images ``(n, 2, 3)``, flattened)."""
    x = np.random.default_rng(k).normal(size=(6, 2, 3))
    flat = x.reshape(6, -1)
    d2 = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nearest = np.argsort(d2, axis=1)[:, :k]
    near = np.zeros((6, 6), bool)
    near[np.arange(6)[:, None], nearest] = True
    near |= near.T
    expected = np.where(near, np.exp(-0.3 * d2), 0.0)
    got = losses.rbf_knn_weights(jnp.asarray(x, jnp.float32), k, gamma=0.3)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-5, atol=1e-7)
