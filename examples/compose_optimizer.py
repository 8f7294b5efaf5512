"""Compose your own optimizer from the lectures' transformations (seed 003).

Adam is momentum + RMSProp + bias correction; here we build it from parts, check that it
matches ``jol.adam`` step for step, then add clipping and decoupled weight decay.

Run: python examples/compose_optimizer.py [--small]
"""

import jax
import jax.numpy as jnp
from _small import small

import jaxopt_lectures as jol


def loss(params):  # a narrow valley: one direction 100x steeper than the other
    return 50.0 * params["w"] ** 2 + 0.5 * params["b"] ** 2


def run(tx, steps):
    params = {"w": jnp.array(1.0), "b": jnp.array(1.0)}
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = jol.apply_updates(params, updates)
    return params


def main():
    steps = 20 if small() else 500
    mine = jol.chain(jol.scale_by_adam(b1=0.9, b2=0.999), jol.scale_by_learning_rate(0.05))
    a, b = run(mine, steps), run(jol.adam(0.05), steps)
    print(
        f"composed Adam: {float(loss(a)):.3e}   jol.adam: {float(loss(b)):.3e}  (same: {bool(jnp.allclose(a['w'], b['w']))})"
    )
    robust = jol.chain(
        jol.clip_by_global_norm(1.0),
        jol.scale_by_adam(),
        jol.decoupled_weight_decay(1e-4),
        jol.scale_by_learning_rate(jol.schedules.cosine_decay(0.05, steps)),
    )
    print(f"clip + Adam + weight decay + cosine: loss {float(loss(run(robust, steps))):.3e} after {steps} steps")
    print(f"plain gradient descent (η = 0.01): loss {float(loss(run(jol.sgd(0.01), steps))):.3e}")


if __name__ == "__main__":
    main()
