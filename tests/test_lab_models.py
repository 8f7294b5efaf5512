"""Models: shapes, parameter counts by hand, train/eval behaviour, and the lecture's identities."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxopt_lectures.lab import models as M

KEY = jax.random.PRNGKey(0)
X_IMG = jax.random.normal(KEY, (6, 8, 8, 1))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "identity", M.maxout(3)])
def test_mlp_activations_shapes_and_counts(activation):
    model = M.MLP((64, 32, 10), activation=activation, rngs=nnx.Rngs(0))
    assert model(X_IMG).shape == (6, 10)
    k = activation.k if isinstance(activation, M.Maxout) else 1
    hand = 64 * 32 * k + 32 * k + 32 * 10 + 10 + (32 if activation == "prelu" else 0)
    assert M.count_params(model) == hand


def _abstract(make, x):
    """Build a model and run it on shapes only (no compiling): (model, output shape)."""
    model = nnx.eval_shape(make)
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(x.shape, x.dtype))
    return model, out.shape


def test_cnn_counts_by_hand():
    cnn = M.CNN((8, 8, 1), 10, rngs=nnx.Rngs(0))
    assert cnn(X_IMG).shape == (6, 10)
    # conv 3x3x1x16+16, conv 3x3x16x32+32, dense (2*2*32)x64+64, head 64x10+10
    assert M.count_params(cnn) == 160 + 4640 + 8256 + 650
    cnn1d, shape = _abstract(lambda: M.CNN1D(rngs=nnx.Rngs(0)), jnp.ones((3, 40, 1)))
    assert shape == (3, 10)
    # conv 5x1x32+32, conv 5x32x32+32, dense (10*32)x64+64, head 64x10+10
    assert M.count_params(cnn1d) == 192 + 5152 + 20544 + 650


def test_resnet_counts_by_hand():
    res, shape = _abstract(lambda: M.ResNet(8, 4, norm=None, rngs=nnx.Rngs(0)), X_IMG)
    assert shape == (6, 10)
    # stem 40; stage 1: 2x148; stage 2: 296 + 584 + projection 40; stage 3: 1168 + 2320 + 144; head 170
    assert M.count_params(res) == 40 + 296 + 920 + 3632 + 170
    plain, _ = _abstract(lambda: M.ResNet(8, 4, norm=None, skip=False, rngs=nnx.Rngs(0)), X_IMG)
    assert M.count_params(plain) == 40 + 296 + 920 + 3632 + 170 - 40 - 144
    deep, shape = _abstract(lambda: M.ResNet(20, 4, norm="batch", rngs=nnx.Rngs(0)), X_IMG)
    assert shape == (6, 10)
    assert len(deep.blocks) == 9 and M.count_params(deep) > M.count_params(res)
    _, shape = _abstract(lambda: M.ResNet(8, 4, in_shape=(40, 1), norm="layer", rngs=nnx.Rngs(0)), jnp.ones((3, 40, 1)))
    assert shape == (3, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        M.ResNet(10, rngs=nnx.Rngs(0))


def test_lecture_parameter_comparison():
    counts = M.layer_parameter_counts((1000, 1000, 3), units=1000, kernel_size=3)
    assert counts["fully_connected"] == 1000 * 1000 * 3 * 1000
    assert counts["receptive_field"] == 1000 * 27
    assert counts["shared_weights"] == 27
    assert M.layer_parameter_counts((32, 32, 3), units=10, kernel_size=5, filters=4)["shared_weights"] == 4 * 75


def test_maxout_unit_reproduces_relu():
    relu = M.DenseBlock(
        3,
        1,
        activation="relu",
        norm=None,
        dropout=0.0,
        dropout_mode="inverted",
        init="lecun",
        bn_momentum=0.9,
        rngs=nnx.Rngs(0),
    )
    mx = M.DenseBlock(
        3,
        1,
        activation=M.maxout(2),
        norm=None,
        dropout=0.0,
        dropout_mode="inverted",
        init="lecun",
        bn_momentum=0.9,
        rngs=nnx.Rngs(1),
    )
    w, b = relu.linear.kernel[...], relu.linear.bias[...]
    # piece 1: z1 = w·x + b (the ReLU neuron); piece 2: z2 = 0 (weights and bias zero)
    mx.linear.kernel[...] = jnp.concatenate([w, jnp.zeros_like(w)], axis=1)
    mx.linear.bias[...] = jnp.concatenate([b, jnp.zeros_like(b)])
    x = jax.random.normal(KEY, (100, 3))
    # float32 matmuls use TF32 on GPUs by default (issue 11): compare at full precision
    with jax.default_matmul_precision("highest"):
        out_relu, out_mx = relu(x), mx(x)
    np.testing.assert_allclose(out_mx, out_relu, rtol=1e-5, atol=1e-6)
    assert 0 < int((out_relu == 0).sum()) < 100  # both regions of the ReLU were exercised


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_dropout_test_output_is_the_average_over_all_masks_for_a_linear_net(mode):
    p = 0.3
    model = M.MLP((3, 4, 2), activation="identity", dropout=p, dropout_mode=mode, rngs=nnx.Rngs(0))
    x = jax.random.normal(KEY, (5, 3))
    hidden = model.blocks[0].linear(x)
    scale = 1.0 if mode == "classic" else 1.0 / (1.0 - p)
    average = jnp.zeros((5, 2))
    for bits in itertools.product([0.0, 1.0], repeat=4):  # all 2^4 masks of the hidden layer
        mask = jnp.array(bits)
        prob = np.prod([1 - p if b else p for b in bits])
        average = average + prob * model.head(hidden * mask[None, :] * scale)
    np.testing.assert_allclose(model(x, train=False), average, rtol=1e-5, atol=1e-6)


def test_dropout_training_masks_and_traced_rate():
    drop = M.Dropout(0.25, "inverted")
    x = jnp.ones((200, 100))
    out = drop(x, train=True, key=KEY)
    kept = out != 0
    assert abs(float(kept.mean()) - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    classic = M.Dropout(0.25, "classic")
    np.testing.assert_allclose(classic(x, train=False), 0.75)
    np.testing.assert_allclose(drop(x, train=False), 1.0)
    traced = jax.jit(lambda r: drop(x, train=True, key=KEY, rate=r))(0.5)
    assert abs(float((traced != 0).mean()) - 0.5) < 0.01
    with pytest.raises(ValueError, match="needs a key"):
        drop(x, train=True)


def test_batch_norm_train_and_eval_behaviour():
    model = M.MLP((4, 8, 2), norm="batch", rngs=nnx.Rngs(0))
    bn = model.blocks[0].norm
    assert bn.momentum == 0.9
    x = 3.0 + jax.random.normal(KEY, (64, 4))
    before = model(x, train=False)
    z = model.blocks[0].linear(x)
    model(x, train=True)
    np.testing.assert_allclose(bn.mean[...], 0.1 * z.mean(0), rtol=1e-4, atol=1e-6)  # 0.9*0 + 0.1*batch mean
    after = model(x, train=False)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(model(x, train=False), after)  # eval mode does not update
    normed = bn(z, use_running_average=False)
    np.testing.assert_allclose(normed.mean(0), 0.0, atol=1e-4)


def test_layer_norm_normalizes_each_example():
    model = M.MLP((4, 8, 2), norm="layer", rngs=nnx.Rngs(0))
    z = model.blocks[0].norm(5.0 + 3.0 * jax.random.normal(KEY, (10, 8)))
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(-1), 1.0, atol=1e-3)


def test_initializers_set_the_weight_scale():
    def std(init, fan_in=400):
        return float(M.MLP((fan_in, 300, 2), init=init, rngs=nnx.Rngs(0)).blocks[0].linear.kernel[...].std())

    assert abs(std(0.05) - 0.05) < 0.002
    assert abs(std("lecun") - (1 / 400) ** 0.5) < 0.003
    assert abs(std("he") - (2 / 400) ** 0.5) < 0.004
    assert abs(std("glorot") - (2 / 700) ** 0.5) < 0.003
    with pytest.raises(ValueError, match="unknown init"):
        M.initializer("bogus")
    with pytest.raises(ValueError, match="unknown activation"):
        M.MLP((2, 2, 2), activation="swish", rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "name, jax_init", [("he", "he_normal"), ("lecun", "lecun_normal"), ("glorot", "glorot_normal")]
)
@pytest.mark.parametrize("shape", [(64, 48), (3, 3, 8, 16), (5, 1, 40)])
def test_named_initializers_have_jax_distribution(name, jax_init, shape):
    """The bucketed sampler draws what jax.nn.initializers draws: same variance (fans of conv
    kernels included) and the same truncation at two (uncorrected) standard deviations."""
    ours = np.concatenate([np.asarray(M.initializer(name)(jax.random.PRNGKey(i), shape)).ravel() for i in range(40)])
    ref = np.concatenate(
        [np.asarray(getattr(jax.nn.initializers, jax_init)()(jax.random.PRNGKey(i), shape)).ravel() for i in range(40)]
    )
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.std(), ref.std(), rtol=0.03)
    np.testing.assert_allclose(np.abs(ours).max(), np.abs(ref).max(), rtol=0.03)
    assert abs(ours.mean()) < 0.05 * ref.std()


def test_initializer_compiles_per_size_bucket_not_per_shape():
    """Issue 10 (compile budget): shapes that share a power-of-two bucket share one sampler program."""
    before = M._truncated_normal_flat._cache_size()
    init = M.initializer("he")
    for shape in [(40, 41), (41, 40), (30, 50), (3, 3, 13, 13), (1500,)]:  # all in the 2048 bucket
        assert init(jax.random.PRNGKey(0), shape).shape == shape
    assert M._truncated_normal_flat._cache_size() - before <= 1
