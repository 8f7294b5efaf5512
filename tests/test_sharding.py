"""Sharded optimizer state and data-parallel training on JAX's SPMD engine.

The multi-device checks need 8 virtual CPU devices, which JAX only creates when
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` is set before it starts; this test
process already started JAX with one device, so they run in ``tests/_sharding_check.py``,
a fresh Python process, and this file checks its exit code and its report. The checks:
MLP and CNN trained on 1 device and on 8 (data-parallel; ZeRO-1 optimizer state; sharded
parameters) reach the same parameters; every state leaf has the sharding it was given;
``init`` on ``ShapeDtypeStruct``s equals ``init`` on arrays, structure and shardings; a
jitted step does not recompile while shardings stay the same; ``lab.train(mesh=...)``
spreads its vmapped runs one per device with the numbers of one device.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

import jaxopt_lectures as jol
from jaxopt_lectures import sharding as shd

SCRIPT = Path(__file__).with_name("_sharding_check.py")
EXPECTED = [
    "OK init adam",
    "OK init chain",
    "OK init masked",
    "OK init accumulate",
    "OK fused",
    "OK train mlp replicated zero=False",
    "OK train mlp replicated zero=True",
    "OK train mlp sharded zero=True",
    "OK train cnn replicated zero=False",
    "OK train cnn replicated zero=True",
    "OK no recompile",
    "OK trainer runs spread",
    "OK recipe rows spread",
    "ALL OK",
]


def test_eight_virtual_devices_match_one(tmp_path):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        JAXOPT_LECTURES_CACHE=str(tmp_path / "cache"),
    )
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for line in EXPECTED:
        assert line in lines, (line, proc.stdout)


def test_one_device_state_follows_params_and_zero_is_a_no_op():
    mesh = shd.data_mesh(1)
    params = jax.device_put({"w": jnp.ones((4, 3)), "b": jnp.zeros((3,))}, shd.replicated(mesh))
    tx = jol.adam(1e-3)
    state = shd.init_sharded(tx, params, zero=True)
    assert all(leaf.sharding.spec == P() for leaf in jax.tree.leaves(state))
    assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))
    assert sum(shd.per_device_bytes(state).values()) == 4 + 2 * 4 * (12 + 3)


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        shd.data_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="pass mesh="):
        shd.state_shardings(jol.adam(1e-3), {"w": jax.ShapeDtypeStruct((2,), jnp.float32)})
