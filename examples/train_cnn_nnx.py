"""Train a CNN (or a ResNet) on the digits with ``nnx.Optimizer`` and a jol optimizer.

jol transformations have optax's ``init``/``update`` interface, so Flax accepts them as they are.
Uses a GPU/TPU when JAX sees one.

Run: python examples/train_cnn_nnx.py [--resnet] [--small]
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from _small import small
from flax import nnx

import jaxopt_lectures as jol
from jaxopt_lectures import losses
from jaxopt_lectures.lab import CNN, ResNet, load_digits


def main():
    ds = load_digits(seed=0)
    rngs = nnx.Rngs(0)
    if "--resnet" in sys.argv:
        model = ResNet(8 if small() else 20, 8, in_shape=ds.input_shape, num_classes=10, rngs=rngs)
    else:
        model = CNN(ds.input_shape, 10, channels=(8,) if small() else (16, 32), dense=(32,), rngs=rngs)
    optimizer = nnx.Optimizer(model, jol.adamw(1e-3, weight_decay=1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean(losses.softmax_cross_entropy(model(x, train=True), y))

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    epochs, bs = (1, 64) if small() else (10, 32)
    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        perm = rng.permutation(len(ds.x_train))
        for i in range(0, len(perm) - bs + 1, bs):
            loss = step(model, optimizer, ds.x_train[perm[i : i + bs]], ds.y_train[perm[i : i + bs]])
        acc = float(jnp.mean(losses.accuracy(model(ds.x_val), ds.y_val)))
        print(f"epoch {epoch + 1}: last batch loss {float(loss):.3f}, validation accuracy {acc:.3f}")
    print(f"devices: {jax.devices()}")


if __name__ == "__main__":
    main()
