"""The lectures' networks in ``flax.nnx``: MLP, CNN (2-D and 1-D) and ResNet.

Every model is called as ``model(x, *, train=False, key=None, dropout=None)``:

* ``train`` switches dropout on and batch norm to batch statistics (updating its running
  averages); ``train=False`` is evaluation mode.
* ``key`` is the ``jax.random`` key for the dropout masks (needed when ``train`` and a rate > 0).
* ``dropout`` overrides the rate given at construction; it may be a traced array, so the
  trainer can vary it without recompiling.

Options shared by all models: ``activation`` (``"sigmoid"``, ``"tanh"``, ``"relu"``,
``"leaky_relu"``, ``"prelu"``, ``"identity"`` or ``maxout(k)``), ``norm`` (``None``,
``"batch"``, ``"layer"``), ``init`` (``"lecun"``, ``"he"``, ``"glorot"``, a float for
``N(0, scale²)``, or any ``jax.nn.initializers`` function) and ``dropout_mode``
(``"inverted"`` or ``"classic"``, see :class:`Dropout`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "maxout",
    "Maxout",
    "initializer",
    "Dropout",
    "PReLU",
    "DenseBlock",
    "MLP",
    "CNN",
    "CNN1D",
    "ResNet",
    "count_params",
    "layer_parameter_counts",
]

BN_MOMENTUM = 0.9  # 0.99 left eval-mode loss at 1.52 vs train 0.10 after 360 steps in our probe


@dataclasses.dataclass(frozen=True)
class Maxout:
    """Activation spec: group ``k`` linear pieces per unit and keep their max (lecture 004)."""

    k: int


def maxout(k: int) -> Maxout:
    """Maxout with ``k`` pieces per unit; ``a = max_j z_j`` over each group of ``k`` pre-activations.

    ReLU is the special case ``k = 2`` with the second piece's weights and bias at zero.
    """
    if k < 1:
        raise ValueError(f"maxout needs k >= 1 pieces per unit, got {k}.")
    return Maxout(int(k))


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01),  # lecture 004: slope 0.01 for z < 0
    "identity": lambda z: z,
}


def _pieces(activation: Any) -> int:
    if isinstance(activation, Maxout):
        return activation.k
    if activation == "prelu" or activation in _ACTIVATIONS:
        return 1
    raise ValueError(f"unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS) + ['prelu']} or maxout(k).")


#: ``jax.nn.initializers.variance_scaling``'s correction: the std of a unit normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


@functools.partial(jax.jit, static_argnums=1)
def _truncated_normal_flat(key: jax.Array, size: int) -> jax.Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,), jnp.float32)


def variance_scaling(scale: float, mode: str) -> Callable:
    """A truncated-normal ``variance_scaling`` initializer (``Var = scale / fan``, ``mode``
    ``"fan_in"`` or ``"fan_avg"``): the distribution of ``jax.nn.initializers``' one (same fans,
    same truncation to ±2 std, same correction), drawn from a flat sample whose length is the
    next power of two. The sampler then compiles once per size bucket instead of once per
    weight shape: the lab initializes networks eagerly, run by run, and compiling jax's
    truncated-normal sampler for every distinct shape cost more than the initialization."""

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(int(d) for d in shape)
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in = (shape[-2] if len(shape) > 1 else shape[-1]) * receptive
        fan_out = shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
        n = math.prod(shape)
        flat = _truncated_normal_flat(key, max(256, 1 << max(n - 1, 1).bit_length()))
        std = np.float32(math.sqrt(scale / fan) / _TRUNCATED_STD)
        if isinstance(flat, jax.core.Tracer):  # inside jit, vmap or eval_shape
            return (flat[:n] * std).reshape(shape).astype(dtype)
        # eagerly: slice, scale and reshape on the host; in JAX each would be one more compiled
        # program per weight shape (NumPy's float32 product rounds as XLA's does)
        return jax.device_put((np.asarray(flat)[:n] * std).reshape(shape).astype(dtype))

    return init


def _host_constant(value: float) -> Callable:
    """An initializer filling ``value`` through NumPy (``jnp.zeros`` compiles a program per shape)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.device_put(np.full(tuple(int(d) for d in shape), value, dtype))

    return init


_zeros, _ones = _host_constant(0.0), _host_constant(1.0)


def initializer(init: Any) -> Callable:
    """Weight initializer from a name: ``"lecun"`` (Var = 1/fan_in), ``"he"`` (2/fan_in),
    ``"glorot"`` (2/(fan_in+fan_out)), a float ``s`` for ``N(0, s²)``, or an initializer function."""
    inits = jax.nn.initializers
    if callable(init):
        return init
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return inits.normal(stddev=float(init))
    named = {  # jax's lecun_normal, he_normal, glorot_normal in distribution (see variance_scaling)
        "lecun": (1.0, "fan_in"),
        "he": (2.0, "fan_in"),
        "kaiming": (2.0, "fan_in"),
        "glorot": (1.0, "fan_avg"),
        "xavier": (1.0, "fan_avg"),
    }
    if init in named:
        return variance_scaling(*named[init])
    raise ValueError(f"unknown init {init!r}; use {sorted(named)}, a float scale, or an initializer.")


class Dropout(nnx.Module):
    """Dropout, both ways the lectures teach (004).

    Training: each unit is kept with probability ``1 - p`` (mask ``m ~ Bernoulli(1 - p)``).

    * ``"inverted"``: training output ``m ⊙ x / (1 - p)``, test output ``x``.
    * ``"classic"`` (the lecture's form): training output ``m ⊙ x``; at test time the next
      layer's weights are multiplied by ``1 - p``, which is the same as outputting
      ``(1 - p) x``. For a linear network this equals the average over all ``2^n`` masks
      (the ensemble argument).
    * ``"unscaled"``: classic training without the test-time ``1 - p``: the mistake the
      lecture warns about (the test-time activations are ``1 / (1 - p)`` times too large).
    """

    def __init__(self, rate: float = 0.0, mode: str = "inverted"):
        if mode not in ("inverted", "classic", "unscaled"):
            raise ValueError(f"dropout mode must be 'inverted', 'classic' or 'unscaled', got {mode!r}.")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
        self.rate = rate
        self.mode = mode

    def __call__(
        self, x: jax.Array, *, train: bool = False, key: jax.Array | None = None, rate: float | jax.Array | None = None
    ) -> jax.Array:
        p = self.rate if rate is None else rate
        if isinstance(p, (int, float)) and p == 0.0:
            return x
        if not train:
            return x * (1.0 - p) if self.mode == "classic" else x
        if key is None:
            raise ValueError("dropout in training mode needs a key: call model(x, train=True, key=key).")
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        kept = x / (1.0 - p) if self.mode == "inverted" else x
        return jnp.where(keep, kept, jnp.zeros_like(x))


class PReLU(nnx.Module):
    """Parametric ReLU: ``a = z`` for ``z > 0``, ``a = α z`` otherwise, one learnable ``α`` per
    unit (lecture 004), initialized at 0.25."""

    def __init__(self, features: int, init_slope: float = 0.25):
        self.slope = nnx.Param(jnp.full((features,), init_slope, jnp.float32))

    def __call__(self, z: jax.Array) -> jax.Array:
        slope = self.slope[...].reshape((1,) * (z.ndim - 1) + (-1,))
        return jnp.where(z > 0, z, slope * z)


def _make_norm(norm: str | None, features: int, rngs: nnx.Rngs, bn_momentum: float):
    if norm is None:
        return None
    if norm == "batch":
        return nnx.BatchNorm(features, momentum=bn_momentum, scale_init=_ones, bias_init=_zeros, rngs=rngs)
    if norm == "layer":
        return nnx.LayerNorm(features, scale_init=_ones, bias_init=_zeros, rngs=rngs)
    raise ValueError(f"unknown norm {norm!r}; use None, 'batch' or 'layer'.")


def _apply_norm(layer, x, train: bool):
    if layer is None:
        return x
    if isinstance(layer, nnx.BatchNorm):
        return layer(x, use_running_average=not train)
    return layer(x)


class _Activation(nnx.Module):
    """The nonlinearity after a layer with ``features * pieces`` outputs."""

    def __init__(self, activation: Any, features: int):
        self.pieces = _pieces(activation)
        self.name = "maxout" if isinstance(activation, Maxout) else activation
        self.prelu = PReLU(features) if activation == "prelu" else None

    def __call__(self, z: jax.Array) -> jax.Array:
        if self.name == "maxout":
            return jnp.max(z.reshape(z.shape[:-1] + (-1, self.pieces)), axis=-1)
        if self.prelu is not None:
            return self.prelu(z)
        return _ACTIVATIONS[self.name](z)


class DenseBlock(nnx.Module):
    """One hidden layer: ``Linear → norm → activation → dropout``."""

    def __init__(self, d_in, d_out, *, activation, norm, dropout, dropout_mode, init, bn_momentum, rngs):
        k = _pieces(activation)
        self.linear = nnx.Linear(d_in, d_out * k, kernel_init=initializer(init), bias_init=_zeros, rngs=rngs)
        self.norm = _make_norm(norm, d_out * k, rngs, bn_momentum)
        self.act = _Activation(activation, d_out)
        self.drop = Dropout(dropout, dropout_mode)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        dropout: float | jax.Array | None = None,
    ) -> jax.Array:
        z = _apply_norm(self.norm, self.linear(x), train)
        return self.drop(self.act(z), train=train, key=key, rate=dropout)


def _fold(key, i):
    return None if key is None else jax.random.fold_in(key, i)


class MLP(nnx.Module):
    """Fully-connected network; ``widths = (inputs, hidden..., outputs)``.

    Inputs of any shape are flattened per example. The output layer is linear (logits).
    """

    def __init__(
        self,
        widths: Sequence[int],
        *,
        activation: Any = "relu",
        dropout: float = 0.0,
        dropout_mode: str = "inverted",
        norm: str | None = None,
        init: Any = "lecun",
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"widths needs at least (inputs, outputs), got {widths}.")
        common = dict(
            activation=activation,
            norm=norm,
            dropout=dropout,
            dropout_mode=dropout_mode,
            init=init,
            bn_momentum=bn_momentum,
            rngs=rngs,
        )
        self.blocks = nnx.List([DenseBlock(a, b, **common) for a, b in zip(widths[:-2], widths[1:-1])])
        self.head = nnx.Linear(widths[-2], widths[-1], kernel_init=initializer(init), bias_init=_zeros, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        dropout: float | jax.Array | None = None,
    ) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for i, block in enumerate(self.blocks):
            x = block(x, train=train, key=_fold(key, i), dropout=dropout)
        return self.head(x)


class _ConvBlock(nnx.Module):
    """``Conv → norm → activation → max-pool``, for 1-D or 2-D inputs."""

    def __init__(self, c_in, c_out, *, ndim, kernel_size, pool, activation, norm, init, bn_momentum, rngs):
        k = _pieces(activation)
        self.conv = nnx.Conv(
            c_in, c_out * k, (kernel_size,) * ndim, kernel_init=initializer(init), bias_init=_zeros, rngs=rngs
        )
        self.norm = _make_norm(norm, c_out * k, rngs, bn_momentum)
        self.act = _Activation(activation, c_out)
        self.window = (pool,) * ndim

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.act(_apply_norm(self.norm, self.conv(x), train))
        return nnx.max_pool(x, self.window, strides=self.window)


class CNN(nnx.Module):
    """Convolutional net: ``[conv → norm → act → max-pool] × len(channels)``, flatten, dense blocks, head.

    ``in_shape`` is one example's shape: ``(height, width, channels)`` for images or
    ``(length, channels)`` for sequences (a 1-D CNN). Convolutions keep the size ("SAME"),
    each pooling divides it by ``pool``.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        channels: Sequence[int] = (16, 32),
        dense: Sequence[int] = (64,),
        kernel_size: int = 3,
        pool: int = 2,
        activation: Any = "relu",
        dropout: float = 0.0,
        dropout_mode: str = "inverted",
        norm: str | None = None,
        init: Any = "he",
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ):
        in_shape = tuple(int(s) for s in in_shape)
        ndim = len(in_shape) - 1
        if ndim not in (1, 2):
            raise ValueError(f"in_shape must be (length, channels) or (height, width, channels), got {in_shape}.")
        spatial = list(in_shape[:-1])
        convs, c_in = [], in_shape[-1]
        for c in channels:
            if min(spatial) < pool:
                raise ValueError(f"input {in_shape} is too small for {len(channels)} poolings by {pool}.")
            convs.append(
                _ConvBlock(
                    c_in,
                    c,
                    ndim=ndim,
                    kernel_size=kernel_size,
                    pool=pool,
                    activation=activation,
                    norm=norm,
                    init=init,
                    bn_momentum=bn_momentum,
                    rngs=rngs,
                )
            )
            spatial = [s // pool for s in spatial]
            c_in = c
        self.convs = nnx.List(convs)
        flat = math.prod(spatial) * c_in
        widths = (flat, *dense)
        self.dense = nnx.List(
            [
                DenseBlock(
                    a,
                    b,
                    activation=activation,
                    norm=norm,
                    dropout=dropout,
                    dropout_mode=dropout_mode,
                    init=init,
                    bn_momentum=bn_momentum,
                    rngs=rngs,
                )
                for a, b in zip(widths[:-1], widths[1:])
            ]
        )
        self.head = nnx.Linear(widths[-1], num_classes, kernel_init=initializer(init), bias_init=_zeros, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        dropout: float | jax.Array | None = None,
    ) -> jax.Array:
        for conv in self.convs:
            x = conv(x, train=train)
        x = x.reshape(x.shape[0], -1)
        for i, block in enumerate(self.dense):
            x = block(x, train=train, key=_fold(key, i), dropout=dropout)
        return self.head(x)


class CNN1D(CNN):
    """A 1-D CNN for sequences such as MNIST-1D: :class:`CNN` with ``in_shape=(length, channels)``."""

    def __init__(self, length: int = 40, num_classes: int = 10, *, in_channels: int = 1, **kwargs: Any):
        kwargs.setdefault("channels", (32, 32))
        kwargs.setdefault("kernel_size", 5)
        super().__init__((length, in_channels), num_classes, **kwargs)


class _ResidualBlock(nnx.Module):
    """``a = act(F(x) + shortcut(x))`` with ``F = conv → norm → act → conv → norm``; without the
    skip connection just ``act(F(x))`` (the plain deep net of the degradation experiment)."""

    def __init__(self, c_in, c_out, *, ndim, stride, skip, norm, activation, init, bn_momentum, rngs):
        k3, k1, s = (3,) * ndim, (1,) * ndim, (stride,) * ndim
        kinit = initializer(init)
        self.conv1 = nnx.Conv(c_in, c_out, k3, strides=s, kernel_init=kinit, bias_init=_zeros, rngs=rngs)
        self.norm1 = _make_norm(norm, c_out, rngs, bn_momentum)
        self.act1 = _Activation(activation, c_out)
        self.conv2 = nnx.Conv(c_out, c_out, k3, kernel_init=kinit, bias_init=_zeros, rngs=rngs)
        self.norm2 = _make_norm(norm, c_out, rngs, bn_momentum)
        self.act2 = _Activation(activation, c_out)
        self.skip = skip
        needs_projection = skip and (stride != 1 or c_in != c_out)
        self.project = (
            nnx.Conv(c_in, c_out, k1, strides=s, kernel_init=kinit, bias_init=_zeros, rngs=rngs)
            if needs_projection
            else None
        )

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = self.act1(_apply_norm(self.norm1, self.conv1(x), train))
        h = _apply_norm(self.norm2, self.conv2(h), train)
        if self.skip:
            h = h + (x if self.project is None else self.project(x))
        return self.act2(h)


class ResNet(nnx.Module):
    """Residual network (He et al. 2016, CIFAR layout) with ``depth = 6n + 2`` weight layers.

    A 3x3 stem conv, three stages of ``n`` residual blocks (widths ``width, 2·width, 4·width``;
    stages 2 and 3 halve the spatial size), global average pooling and a linear head.
    ``skip=False`` removes the shortcuts, ``norm`` picks batch/layer/no normalization.
    Works on images ``(h, w, c)`` and sequences ``(length, c)``. Activations with several
    pieces (maxout) are not supported here.
    """

    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        *,
        in_shape: Sequence[int] = (8, 8, 1),
        num_classes: int = 10,
        skip: bool = True,
        norm: str | None = "batch",
        activation: Any = "relu",
        dropout: float = 0.0,
        dropout_mode: str = "inverted",
        init: Any = "he",
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}.")
        if _pieces(activation) != 1:
            raise ValueError("ResNet supports single-piece activations only (not maxout).")
        n = (depth - 2) // 6
        in_shape = tuple(int(s) for s in in_shape)
        ndim = len(in_shape) - 1
        kinit = initializer(init)
        self.stem = nnx.Conv(in_shape[-1], width, (3,) * ndim, kernel_init=kinit, bias_init=_zeros, rngs=rngs)
        self.stem_norm = _make_norm(norm, width, rngs, bn_momentum)
        self.stem_act = _Activation(activation, width)
        blocks, c_in = [], width
        for stage in range(3):
            c_out = width * 2**stage
            for b in range(n):
                stride = 2 if (stage > 0 and b == 0) else 1
                blocks.append(
                    _ResidualBlock(
                        c_in,
                        c_out,
                        ndim=ndim,
                        stride=stride,
                        skip=skip,
                        norm=norm,
                        activation=activation,
                        init=init,
                        bn_momentum=bn_momentum,
                        rngs=rngs,
                    )
                )
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.drop = Dropout(dropout, dropout_mode)
        self.head = nnx.Linear(c_in, num_classes, kernel_init=kinit, bias_init=_zeros, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        dropout: float | jax.Array | None = None,
    ) -> jax.Array:
        x = self.stem_act(_apply_norm(self.stem_norm, self.stem(x), train))
        for block in self.blocks:
            x = block(x, train=train)
        x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
        return self.head(self.drop(x, train=train, key=key, rate=dropout))


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) in a model."""
    return int(sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def layer_parameter_counts(
    input_shape: Sequence[int] = (1000, 1000, 3), units: int = 1000, kernel_size: int = 3, filters: int = 1
) -> dict[str, int]:
    """The lecture's (000) argument for convolution, as weight counts (biases left out).

    For an input ``H x W x C`` and a layer of ``units`` neurons:

    * ``fully_connected``: every neuron sees every input value, ``H·W·C·units``
      (1000x1000x3 inputs, 1000 neurons: 3·10⁹).
    * ``receptive_field``: every neuron sees only a ``k x k x C`` patch, ``units·k²·C``.
    * ``shared_weights``: neurons detecting the same pattern share one filter, so only
      ``filters·k²·C`` weights remain (default one filter, i.e. the cost per pattern),
      independent of the image size and of how many positions the filter is applied at.
    """
    *spatial, c = (int(s) for s in input_shape)
    patch = kernel_size ** len(spatial) * c
    return {
        "fully_connected": math.prod(spatial) * c * units,
        "receptive_field": units * patch,
        "shared_weights": filters * patch,
    }
