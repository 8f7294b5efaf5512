"""Quickstart: compose an optimizer from the lectures' transformations and train a small model.

Run: python examples/quickstart.py [--small]   (uses a GPU/TPU if JAX sees one)
"""

import jax
import jax.numpy as jnp
import numpy as np
from _small import small
from sklearn.datasets import load_digits

import jaxopt_lectures as jol


def init_mlp(key, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        params.append(
            {"w": jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in), "b": jnp.zeros(fan_out)}
        )
    return params


def forward(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    logits = forward(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]

    # Adam from its parts (seed 003): momentum + RMSProp + bias correction, then the
    # decoupled weight decay of AdamW (seed 004) and a warm-up + cosine learning rate.
    schedule = jol.schedules.warmup_cosine_decay(0.0, 3e-3, warmup_steps=50, decay_steps=1000)
    tx = jol.chain(
        jol.clip_by_global_norm(5.0),
        jol.scale_by_adam(b1=0.9, b2=0.999),
        jol.decoupled_weight_decay(1e-3),
        jol.scale_by_learning_rate(schedule),
    )
    params = init_mlp(jax.random.key(0), [64, 128, 10])
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return jol.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(0)
    epochs = 2 if small() else 20
    for epoch in range(epochs):
        perm = rng.permutation(len(x_train))
        for i in range(0, len(perm), 28):
            idx = perm[i : i + 28]
            params, state, loss = step(params, state, x_train[idx], y_train[idx])
        if epoch % 5 == 4 or epoch == 0:
            acc = jnp.mean(jnp.argmax(forward(params, x_val), -1) == y_val)
            lr = schedule(state[-1].count)  # the schedule's count (Adam keeps one too)
            print(
                f"epoch {epoch + 1:2d}  train loss {float(loss_fn(params, x_train, y_train)):.4f}  "
                f"val loss {float(loss_fn(params, x_val, y_val)):.4f}  val acc {float(acc):.3f}  lr {float(lr):.2e}"
            )
    print(f"devices: {jax.devices()}")


if __name__ == "__main__":
    main()
