"""Multi-device checks of tests/test_sharding.py, run as a script in a fresh process.

JAX fixes its device count when it starts, and the test process already started with one
CPU device; this script is launched with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
It asserts, and prints one ``OK <check>`` line per check that passed.
"""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from _strict import make_warnings_strict

jax.config.update("jax_numpy_rank_promotion", "raise")
make_warnings_strict()

import jaxopt_lectures as jol  # noqa: E402
from jaxopt_lectures import lab, sharding as shd  # noqa: E402
from jaxopt_lectures.lab import parallel  # noqa: E402

N = 8
assert len(jax.devices()) == N, jax.devices()
mesh1, mesh8 = shd.data_mesh(1), shd.data_mesh(N)
DIGITS = lab.load_digits(seed=0, train_size=256, val_fraction=0.1, test_fraction=0.1)
MODELS = {
    "mlp": functools.partial(lab.MLP, (64, 16, 10)),
    "cnn": functools.partial(lab.CNN, (8, 8, 1), 10, channels=(8,), dense=(16,)),
}
STEPS, BATCH = 4, 32


def specs(tree):
    return [leaf.sharding.spec for leaf in jax.tree.leaves(tree)]


def close(a, b, what):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6, err_msg=what)


def check_training(name, variants):
    opt = jol.adamw(3e-3, weight_decay=1e-2)
    run = functools.partial(parallel.train_data_parallel, MODELS[name], DIGITS, opt, STEPS, BATCH)
    ref = run(mesh=mesh1)
    for layout, zero in variants:
        got = run(mesh=mesh8, params_layout=layout, shard_optimizer_state=zero)
        what = f"{name} {layout} zero={zero}"
        close(got.state.params, ref.state.params, what)
        close(got.state.batch_stats, ref.state.batch_stats, what)
        np.testing.assert_allclose(got.losses, ref.losses, rtol=2e-5, err_msg=what)
        # every state leaf carries the sharding it was asked for, after the steps too
        for leaf, want in zip(jax.tree.leaves(got.state), jax.tree.leaves(got.shardings), strict=True):
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (what, leaf.sharding, want)
        adam = jol.get_state_field(got.state.opt_state, "mu")
        for p, m in zip(jax.tree.leaves(got.state.params), jax.tree.leaves(adam), strict=True):
            if zero and any(s % N == 0 for s in m.shape):
                assert "data" in m.sharding.spec, (what, m.shape, m.sharding.spec)
                assert m.addressable_shards[0].data.size == m.size // N
            elif not zero:
                assert m.sharding.spec == p.sharding.spec, (what, m.sharding.spec, p.sharding.spec)
        if layout == "replicated":
            assert all(s == P() for s in specs(got.state.params)), what
        print(f"OK train {what}")


def check_state_follows_params():
    params = {"w": jnp.ones((16, 4)), "b": jnp.ones((4,)), "head": {"k": jnp.ones((4, 10))}}
    wanted = {
        "w": NamedSharding(mesh8, P("data")),
        "b": shd.replicated(mesh8),
        "head": {"k": NamedSharding(mesh8, P(None, None))},
    }
    params = jax.device_put(params, wanted)
    txs = {
        "adam": jol.adam(1e-3),
        "chain": jol.chain(jol.clip_by_global_norm(1.0), jol.inject_hyperparams(jol.adamw)(learning_rate=1e-3)),
        "sgd": jol.sgd(0.1, momentum=0.9),
        "rmsprop": jol.rmsprop(1e-3),
        "adagrad": jol.adagrad(0.1),
        "masked": jol.masked(jol.adam(1e-3), {"w": True, "b": False, "head": {"k": True}}),
        "accumulate": jol.accumulate_gradients(jol.adam(1e-3), 2),
    }
    for name, tx in txs.items():
        eager = tx.init(params)  # zeros_like of sharded params: same shardings, eagerly
        from_arrays = shd.init_sharded(tx, params)
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), params)
        from_abstract = shd.init_sharded(tx, abstract)
        assert jax.tree.structure(from_abstract) == jax.tree.structure(from_arrays) == jax.tree.structure(eager)
        for a, b, c in zip(jax.tree.leaves(from_arrays), jax.tree.leaves(from_abstract), jax.tree.leaves(eager)):
            assert a.sharding == b.sharding, (name, a.sharding, b.sharding)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
            if a.shape == (16, 4):  # w's moments follow w, eagerly too
                assert a.sharding.spec == P("data") and c.sharding.is_equivalent_to(a.sharding, 2), name
        zero_arrays = shd.init_sharded(tx, params, zero=True)
        zero_abstract = shd.init_sharded(tx, abstract, zero=True)
        shardings = [[x.sharding for x in jax.tree.leaves(t)] for t in (zero_arrays, zero_abstract)]
        assert shardings[0] == shardings[1], (name, shardings)
        print(f"OK init {name}")
    # fused: θ, m and v packed into one buffer each (16·4 + 4·12 + 8 = 120 = 8·15), split over the data axis
    fparams = jax.device_put(
        {"w": jnp.ones((16, 4)), "k": jnp.ones((4, 12)), "b": jnp.ones((8,))}, shd.replicated(mesh8)
    )
    fopt = jol.fused_adam(1e-2)
    fstate = shd.init_fused_sharded(fopt, fparams, mesh8)
    buffers = jax.tree.leaves((fstate.params, fstate.mu, fstate.nu))
    assert all(b.sharding.spec == P("data") for b in buffers), [b.sharding for b in buffers]
    step = jol.jit_step(fopt, out_shardings=shd.fused_state_shardings(fopt, fparams, mesh8))
    grads = jax.tree.map(lambda a: 0.5 * a, fparams)
    fstate = step(fstate, grads)
    one = fopt.step(fopt.init(jax.device_get(fparams)), jax.device_get(grads))
    close(fstate.params.unpack(), one.params.unpack(), "fused")
    assert all(b.sharding.spec == P("data") for b in jax.tree.leaves((fstate.params, fstate.mu, fstate.nu)))
    print("OK fused")


def check_no_recompile():
    opt = jol.adamw(3e-3, weight_decay=1e-2)
    res = parallel.train_data_parallel(MODELS["mlp"], DIGITS, opt, STEPS, BATCH, mesh=mesh8, shard_optimizer_state=True)
    assert res.step._cache_size() == 1, res.step._cache_size()  # STEPS calls, one compilation
    batch = NamedSharding(mesh8, P("data"))
    x = jax.device_put(DIGITS.x_train[:BATCH], batch)
    y = jax.device_put(DIGITS.y_train[:BATCH], batch)
    state = res.state
    for _ in range(3):  # waiting after each call: see the note in parallel.train_data_parallel
        state, _ = jax.block_until_ready(res.step(state, x, y))
    assert res.step._cache_size() == 1, res.step._cache_size()
    # the step pins its shardings: a batch laid out otherwise is refused, not silently resharded
    try:
        res.step(state, jax.device_put(x, shd.replicated(mesh8)), y)
    except ValueError as err:
        assert "does not match the sharding" in str(err), err
    else:
        raise AssertionError("a replicated batch was accepted by a step pinned to a split one")
    # a plain jit of the optimizer update: state in its params' shardings comes back in them,
    # so later calls reuse the program
    params = jax.device_put({"w": jnp.ones((16, 4)), "b": jnp.ones((4,))}, shd.replicated(mesh8))
    grads = jax.tree.map(lambda a: 0.1 * a, params)
    update = jax.jit(opt.update)
    state = shd.init_sharded(opt, params)
    for _ in range(3):
        _, state = jax.block_until_ready(update(grads, state, params))
    assert update._cache_size() == 1, update._cache_size()
    # ZeRO state: pin the out shardings to the in shardings, and it compiles once as well
    zero = shd.init_sharded(opt, params, zero=True)
    zero_sh = jax.tree.map(lambda a: a.sharding, zero)
    update_zero = jax.jit(opt.update, out_shardings=(jax.tree.map(lambda a: a.sharding, params), zero_sh))
    for _ in range(3):
        _, zero = jax.block_until_ready(update_zero(grads, zero, params))
    assert update_zero._cache_size() == 1, update_zero._cache_size()
    assert [a.sharding for a in jax.tree.leaves(zero)] == jax.tree.leaves(zero_sh)
    assert zero[0].mu["w"].sharding.spec[0] == "data" and zero[0].mu["b"].sharding.spec == P(), zero[0].mu
    print("OK no recompile")


def check_trainer_spreads_runs():
    # lab.train(mesh=...): the 8 vmapped (config, seed) runs, one per device, as on one device
    sgd = jol.inject_hyperparams(jol.sgd)(learning_rate=0.1, momentum=0.9)
    configs = [{"learning_rate": 0.1}, {"learning_rate": 0.03}]
    kwargs = dict(epochs=2, batch_size=32, seeds=[0, 1, 2, 3], configs=configs, progress=False, compilation_cache=False)
    one = lab.train(MODELS["mlp"], DIGITS, sgd, **kwargs)
    spread = lab.train(MODELS["mlp"], DIGITS, sgd, mesh=mesh8, **kwargs)
    np.testing.assert_allclose(spread.train_loss, one.train_loss, rtol=1e-5)
    close(spread.state.params, one.state.params, "trainer mesh")
    for leaf in jax.tree.leaves(spread.state.params) + jax.tree.leaves(spread.state.opt_state):
        assert leaf.sharding.spec[0] == "data" and leaf.addressable_shards[0].data.shape[0] == 1, leaf.sharding
    print("OK trainer runs spread")


def check_recipe_spreads_rows():
    # the recipe runner puts a row's vmapped runs on the devices: same row as on one device
    from jaxopt_lectures.lab import recipe

    entry = recipe.Entry(
        **{**recipe.REGISTRY["hinge"].__dict__, "quick_epochs": 1, "tune": {"optimizer.learning_rate": (0.01, 0.1)}}
    )
    assert recipe._runs_mesh(entry.baseline, 6).shape == {"runs": 6}
    spread = recipe.run_entry(entry, [0, 1, 2], quick=True)
    original = jax.device_count
    jax.device_count = lambda *a: 1  # as if JAX saw one device
    try:
        assert recipe._runs_mesh(entry.baseline, 6) is None
        single = recipe.run_entry(entry, [0, 1, 2], quick=True)
    finally:
        jax.device_count = original
    for side in ("without", "with"):
        for a, b in zip(spread["arms"][side]["eta_curve"], single["arms"][side]["eta_curve"]):
            np.testing.assert_allclose([a["train"], a["val"]], [b["train"], b["val"]], rtol=1e-5)
    print("OK recipe rows spread")


def main():
    checks = sys.argv[1:] or ["init", "mlp", "cnn", "recompile", "runs", "recipe"]
    for check in checks:
        if check == "init":
            check_state_follows_params()
        elif check in MODELS:
            variants = [("replicated", False), ("replicated", True)]
            check_training(check, variants + [("sharded", True)] if check == "mlp" else variants)
        elif check == "recompile":
            check_no_recompile()
        elif check == "runs":
            check_trainer_spreads_runs()
        elif check == "recipe":
            check_recipe_spreads_rows()
    print("ALL OK")


if __name__ == "__main__":
    main()
