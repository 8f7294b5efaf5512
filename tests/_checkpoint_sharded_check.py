"""Sharded checkpoints on 8 virtual CPU devices, run as a script by tests/test_lab_checkpoints.py.

JAX fixes its device count when it starts, so this runs in a fresh process launched with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``. Usage: ``_checkpoint_sharded_check.py
DIR``. It asserts, and prints one ``OK <check>`` line per check that passed.
"""

import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _strict import make_warnings_strict

jax.config.update("jax_numpy_rank_promotion", "raise")
make_warnings_strict()

import jaxopt_lectures as jol  # noqa: E402
from jaxopt_lectures import lab, sharding as shd  # noqa: E402
from jaxopt_lectures.lab import checkpoints  # noqa: E402

N = 8
assert len(jax.devices()) == N, jax.devices()
ROOT = Path(sys.argv[1])
mesh = shd.data_mesh(N)


def same_sharding(a, b):
    return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def check_zero1_state():
    # a ZeRO-1 Adam state (m, v split over "data"), one step taken, saved and restored into a
    # fresh init_sharded state: every leaf comes back equal and in the template's sharding
    tx = jol.adamw(1e-2, weight_decay=1e-2)
    params = jax.device_put(
        {"w": jnp.arange(64.0).reshape(16, 4) / 64, "b": jnp.ones(5, jnp.bfloat16)}, shd.replicated(mesh)
    )
    state = shd.init_sharded(tx, params, zero=True)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    _, state = jax.jit(tx.update)(grads, state, params)
    mu = jol.get_state_field(state, "mu")
    assert mu["w"].sharding.spec[0] == "data" and mu["w"].addressable_shards[0].data.shape == (2, 4), mu["w"].sharding
    checkpoints.save(ROOT / "zero1", {"params": params, "opt_state": state}, 1)
    template = {"params": params, "opt_state": shd.init_sharded(tx, params, zero=True)}
    back, epoch, _ = checkpoints.load(ROOT / "zero1", template)
    assert epoch == 1
    pairs = zip(jax.tree.leaves(back), jax.tree.leaves({"params": params, "opt_state": state}), strict=True)
    for got, want in pairs:
        assert got.dtype == want.dtype and same_sharding(got, want), (got.sharding, want.sharding)
        np.testing.assert_array_equal(np.asarray(got.astype(jnp.float32)), np.asarray(want.astype(jnp.float32)))
    assert jol.get_state_field(back["opt_state"], "mu")["w"].addressable_shards[0].data.shape == (2, 4)
    # restored into another layout (replicated): the template decides where arrays land
    replicated = jax.tree.map(lambda a: jax.device_put(a, shd.replicated(mesh)), template)
    back, _, _ = checkpoints.load(ROOT / "zero1", replicated)
    for got in jax.tree.leaves(back):
        assert got.sharding.is_fully_replicated, got.sharding
    print("OK zero1 state")


def check_trainer_resume_on_mesh():
    # lab.train(mesh=...) with its runs spread over the 8 devices: a resumed run restores each
    # array in its spread sharding and ends on the same numbers as a straight run
    sgd = jol.inject_hyperparams(jol.sgd)(learning_rate=0.1, momentum=0.9)
    data = lab.load_digits(seed=0, train_size=256, val_fraction=0.1, test_fraction=0.1)
    model = functools.partial(lab.MLP, (64, 16, 10))
    kwargs = dict(batch_size=32, seeds=list(range(N)), progress=False, compilation_cache=False, mesh=mesh)
    straight = lab.train(model, data, sgd, epochs=3, **kwargs)
    lab.train(model, data, sgd, epochs=2, checkpoint=ROOT / "runs", **kwargs)
    resumed = lab.train(model, data, sgd, epochs=3, checkpoint=ROOT / "runs", **kwargs)
    np.testing.assert_array_equal(resumed.train_loss, straight.train_loss)
    for got, want in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state), strict=True):
        assert same_sharding(got, want), (got.sharding, want.sharding)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    leaf = jax.tree.leaves(resumed.state.opt_state)[-1]
    assert leaf.sharding.spec[0] == "data" and leaf.addressable_shards[0].data.shape[0] == 1, leaf.sharding
    print("OK trainer resume on mesh")


if __name__ == "__main__":
    check_zero1_state()
    check_trainer_resume_on_mesh()
    print("ALL OK")
