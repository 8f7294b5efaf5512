"""Pre-train, then fine-tune with one optimizer per part of the network (seed 000, Initialization).

The lecture's recipe: pre-train on a task with plenty of data, then train on the downstream
task, where data are few. Here the body of a small MLP is pre-trained on a source regression
task; a new head is then fitted on 32 samples of a related target task. ``jol.partition``
gives the pre-trained body a small learning rate, the new head a large one, or freezes the
body (``jol.set_to_zero()``: Adam keeps no moments for it). Last, AdamW that decays only the
kernels *by label* is checked to give ``jol.adamw``'s numbers with its default mask.

Run: python examples/finetune_partition.py [--small]
"""

import jax
import jax.numpy as jnp
import numpy as np
from _small import small

import jaxopt_lectures as jol

D_IN, D_HIDDEN, D_FEATURES, D_SOURCE = 8, 32, 16, 16


def init_mlp(key, d_out=1):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "body": {
            "kernel": jax.random.normal(k1, (D_IN, D_HIDDEN)) / np.sqrt(D_IN),
            "bias": jnp.zeros(D_HIDDEN),
            "kernel2": jax.random.normal(k2, (D_HIDDEN, D_HIDDEN)) / np.sqrt(D_HIDDEN),
        },
        "head": {"kernel": jax.random.normal(k3, (D_HIDDEN, d_out)) / np.sqrt(D_HIDDEN), "bias": jnp.zeros(d_out)},
    }


def forward(params, x):
    h = jnp.tanh(x @ params["body"]["kernel"] + params["body"]["bias"])
    h = jnp.tanh(h @ params["body"]["kernel2"])
    return h @ params["head"]["kernel"] + params["head"]["bias"]


def mse(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)


def make_tasks(n_source, n_target, n_val):
    """Two tasks that share their features tanh(x A): the source has 16 outputs tanh(x A) C
    (plenty of data), the target one output tanh(x A) c (few data)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D_IN, D_FEATURES)) / np.sqrt(D_IN) * 2.0
    c_source, c_target = rng.normal(size=(D_FEATURES, D_SOURCE)), rng.normal(size=(D_FEATURES, 1))

    def sample(n, c):
        x = rng.normal(size=(n, D_IN))
        y = np.tanh(x @ a) @ c + 0.05 * rng.normal(size=(n, c.shape[1]))
        return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    return sample(n_source, c_source), sample(n_target, c_target), sample(n_val, c_target)


def train(params, tx, data, steps):
    x, y = data

    @jax.jit
    def step(params, state):
        grads = jax.grad(mse)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return jol.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def moment_count(state):
    return sum(x.size for x in jax.tree.leaves(state) if jnp.ndim(x) > 0)


def main():
    pre_steps, fine_steps = (600, 300) if small() else (2000, 1000)
    source, target, val = make_tasks(2048, 32, 1024)
    pretrained, _ = train(init_mlp(jax.random.key(0), D_SOURCE), jol.adam(3e-3), source, pre_steps)
    print(f"pre-training: source MSE {float(mse(pretrained, *source)):.4f}")
    new_head = init_mlp(jax.random.key(1))["head"]
    start = {"body": pretrained["body"], "head": new_head}
    parts = {"body": "body", "head": "head"}  # a prefix of the params: one label per subtree
    runs = {
        "from scratch, adamw(1e-2)": (init_mlp(jax.random.key(1)), jol.adamw(1e-2, weight_decay=1e-2)),
        "pre-trained, one lr adamw(1e-2)": (start, jol.adamw(1e-2, weight_decay=1e-2)),
        "pre-trained, body 1e-3 / head 1e-2": (
            start,
            jol.partition(
                {"body": jol.adamw(1e-3, weight_decay=1e-2), "head": jol.adamw(1e-2, weight_decay=1e-2)}, parts
            ),
        ),
        "pre-trained, body frozen / head 1e-2": (
            start,
            jol.partition({"body": jol.set_to_zero(), "head": jol.adamw(1e-2, weight_decay=1e-2)}, parts),
        ),
    }
    print(
        f"target task: {len(target[0])} training samples, validation MSE after {fine_steps} steps "
        f"(body pre-trained for {pre_steps} steps on {len(source[0])} source samples)"
    )
    for name, (params, tx) in runs.items():
        params, state = train(params, tx, target, fine_steps)
        print(
            f"  {name:38s} val MSE {float(mse(params, *val)):.4f}   train MSE {float(mse(params, *target)):.4f}"
            f"   optimizer state: {moment_count(state)} numbers"
        )

    # AdamW that decays only the kernels, by label: the same numbers as jol.adamw's default mask.
    def kernel_or_not(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "decay" if "kernel" in path[-1].key else "no_decay", params
        )

    by_label = jol.partition(
        {
            "decay": jol.adamw(1e-2, weight_decay=0.1, mask=None),
            "no_decay": jol.adamw(1e-2, weight_decay=0.0, mask=None),
        },
        kernel_or_not,
    )
    a, _ = train(start, by_label, target, fine_steps // 3)
    b, _ = train(start, jol.adamw(1e-2, weight_decay=0.1, mask=jol.decay_matrices_only), target, fine_steps // 3)
    diff = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(f"AdamW decaying kernels by label vs jol.adamw(mask=decay_matrices_only): max |Δθ| = {diff:.1e}")


if __name__ == "__main__":
    main()
