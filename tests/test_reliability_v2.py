"""The severe and class-defining cases of the reliability audit v2
(shared/reviews/reliability-v2.md), each test named after its case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxopt_lectures as jol
from jaxopt_lectures.fused import Packed

P = {"w": jnp.ones(2)}
G = {"w": jnp.ones(2)}


# --- S01: accumulate_gradients with another every_k ----------------------------------------


def _accumulated(k, n, tx=None):
    tx = tx or jol.accumulate_gradients(jol.sgd(0.1), k)
    s = tx.init(P)
    for _ in range(n):
        _, s = tx.update(G, s, P)
    return s


def test_s01_a_state_of_another_every_k_mid_cycle_is_refused_naming_both():
    state = _accumulated(8, 5)  # mini_step 5 of a cycle of 8
    tx = jol.accumulate_gradients(jol.sgd(0.1), 2)
    with pytest.raises(ValueError, match=r"every_k=2.*every_k=8"):
        tx.update(G, state, P)


def test_s01_mini_step_set_past_every_k_is_refused():
    tx = jol.accumulate_gradients(jol.sgd(0.1), 2)
    state = jol.set_state_field(tx.init(P), "mini_step", 5)
    with pytest.raises(ValueError, match=r"mini_step=5.*\[0, 1\]"):
        tx.update(G, state, P)
    with pytest.raises(ValueError, match="mini_step"):
        jol.set_state_field(tx.init(P), "mini_step", -1)


def test_s01_a_state_of_another_every_k_at_an_update_boundary_resumes_like_a_fresh_run():
    state = _accumulated(8, 8)  # just updated: mini_step 0, empty sum
    assert int(state.mini_step) == 0
    tx = jol.accumulate_gradients(jol.sgd(0.1), 2)
    q, fresh_q, fresh = P, P, tx.init(P)
    for _ in range(20):
        u, state = tx.update(G, state, q)
        q = jol.apply_updates(q, u)
        u, fresh = tx.update(G, fresh, fresh_q)
        fresh_q = jol.apply_updates(fresh_q, u)
    np.testing.assert_array_equal(q["w"], fresh_q["w"])
    assert int(state.every_k) == 2


def test_s01_under_jit_a_foreign_state_still_steps_on_the_mean_it_holds():
    """Under jit the concrete check cannot run; the update must still not stall forever."""
    state = _accumulated(8, 5)
    tx = jol.accumulate_gradients(jol.sgd(0.1), 2)
    step = jax.jit(tx.update)
    q = P
    for _ in range(20):
        u, state = step(G, state, q)
        q = jol.apply_updates(q, u)
    # 6 micro-batches of ones -> one update of -0.1, then 9 updates of 2 -> 10 in all
    np.testing.assert_allclose(q["w"], 1.0 - 10 * 0.1, atol=1e-6)
    state = jol.set_state_field(tx.init(P), "mini_step", 5)  # a count that its sum does not hold
    u, state = step(G, state, P)
    assert bool(jnp.all(u["w"] < 0)) and int(state.mini_step) == 0  # it steps, no stall


# --- S02: a fused state stepped by another weight-decay configuration ----------------------

FP = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
FG = {"w": jnp.full((2, 2), 0.5), "b": jnp.full(2, 0.5)}


@pytest.mark.parametrize("form", ["step", "jit_step", "as_transformation"])
def test_s02_a_fused_adam_state_stepped_by_fused_adamw_is_refused(form, backend):
    made_by = jol.fused_adam(0.1, backend=backend)
    stepper = jol.fused_adamw(0.1, weight_decay=0.5, backend=backend)
    with pytest.raises(ValueError, match=r"no weight decay.*fused_adamw\(weight_decay=0\.5.*\['w'\]"):
        if form == "as_transformation":
            stepper.as_transformation().update(FG, made_by.as_transformation().init(FP), FP)
        else:
            (stepper.step if form == "step" else jol.jit_step(stepper))(made_by.init(FP), FG)


@pytest.mark.parametrize("form", ["step", "as_transformation"])
def test_s02_a_mask_none_state_stepped_by_the_default_mask_is_refused(form):
    made_by, stepper = jol.fused_adamw(0.1, weight_decay=0.5, mask=None), jol.fused_adamw(0.1, weight_decay=0.5)
    with pytest.raises(ValueError, match=r"2 of 2 leaves.*1 of 2 leaves.*\['b'\] the state's packing decays"):
        if form == "step":
            stepper.step(made_by.init(FP), FG)
        else:
            stepper.as_transformation().update(FG, made_by.as_transformation().init(FP), FP)


def test_s02_an_adamw_state_stepped_by_fused_adam_or_fused_sgd_is_refused():
    state = jol.fused_adamw(0.1, weight_decay=0.5).init(FP)
    with pytest.raises(ValueError, match=r"weight decay on 1 of 2 leaves.*fused_adam\(weight_decay=0\)"):
        jol.fused_adam(0.1).step(state, FG)
    with pytest.raises(ValueError, match=r"fused_sgd\(momentum=0\.9\).*2 moment buffer"):
        jol.fused_sgd(0.1, momentum=0.9).step(state, FG)


def test_s02_the_same_decay_layout_with_another_value_steps_with_the_steppers_value():
    """Another λ on the same leaves is a hyper-parameter change, not a configuration change."""
    state = jol.fused_adamw(0.1, weight_decay=0.1).init(FP)
    stepped = jol.fused_adamw(0.1, weight_decay=0.5).step(state, FG).params.unpack()
    fresh = jol.fused_adamw(0.1, weight_decay=0.5).step(jol.fused_adamw(0.1, weight_decay=0.5).init(FP), FG)
    np.testing.assert_array_equal(stepped["w"], fresh.params.unpack()["w"])
    # a mask that selects nothing steps like no weight decay: accepted
    nothing = jol.fused_adamw(0.1, weight_decay=0.5, mask=lambda p: jax.tree.map(lambda _: False, p))
    a = jol.fused_adam(0.1)
    np.testing.assert_array_equal(
        a.step(nothing.init(FP), FG).params.unpack()["w"], a.step(a.init(FP), FG).params.unpack()["w"]
    )


# --- N15: concrete arrays as hyper-parameters are range-checked like numbers ---------------


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: jol.sgd(jnp.array(-0.1)), "learning_rate"),
        (lambda: jol.adam(0.1, b1=jnp.array(1.0)), "b1"),
        (lambda: jol.adam(b2=np.array(1.5), learning_rate=0.1), "b2"),
        (lambda: jol.adamw(0.1, weight_decay=jnp.array(-1.0)), "weight_decay"),
        (lambda: jol.inject_hyperparams(jol.adam)(learning_rate=jnp.array(-1.0)), "learning_rate"),
        (lambda: jol.fused_adam(jnp.array(-0.1)), "learning_rate"),
        (lambda: jol.sgd(np.array(np.nan)), "learning_rate"),
        (lambda: jol.sgd(np.array(1e39)), "learning_rate"),  # inf once stored as float32
        (lambda: jol.adam(0.1, b1=jnp.array(0.9999, jnp.bfloat16)), "b1"),  # 1.0 in bfloat16
        (lambda: jol.sgd(jnp.array([0.1, -0.2])), "learning_rate"),  # one member of a vmapped sweep
    ],
)
def test_n15_concrete_arrays_are_refused_like_the_same_numbers(make, name):
    with pytest.raises(ValueError, match=rf"{name}=.*out of range"):
        make()


def test_n15_tracers_and_good_arrays_still_pass():
    tx = jol.sgd(jnp.array(0.1))
    u, _ = tx.update(G, tx.init(P), P)
    np.testing.assert_allclose(u["w"], -0.1)

    @jax.jit
    def step(lr):
        tx = jol.sgd(lr)  # a tracer: not checked here
        return tx.update(G, tx.init(P), P)[0]

    np.testing.assert_allclose(step(-0.1)["w"], 0.1)
    jax.vmap(lambda lr: jol.sgd(lr).update(G, jol.sgd(lr).init(P), P)[0])(jnp.array([0.1, 0.2]))


# --- N13: clip_by_global_norm on norms above ~8.5e37 -------------------------------------


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([1e38, 1.0], jnp.float32),
        ([9e37, 1.0], jnp.float32),
        ([2e38, 2e38], jnp.float32),
        ([5e37, 1.0], jnp.float32),
        ([3e38, -3e38, 1e30], jnp.float32),
        ([3.0, 4.0], jnp.float32),
        ([3e38, 3e38], jnp.bfloat16),
    ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_n13_clip_by_global_norm_rescales_huge_norms_like_float64(values, dtype, jit):
    g = {"w": jnp.array(values, dtype), "b": jnp.array([values[-1]], dtype)}
    update = jol.clip_by_global_norm(1.0).update
    out = (jax.jit(update) if jit else update)(g, None)[0]
    ref = {k: np.asarray(v, np.float64) for k, v in g.items()}
    norm = np.sqrt(sum(np.sum(v**2) for v in ref.values()))
    for k in g:
        want = ref[k] * min(1.0, 1.0 / norm)
        tol = 1e-2 if dtype == jnp.bfloat16 else 1e-6
        # float32 cannot hold what falls below its smallest normal number (the CPU flushes it)
        np.testing.assert_allclose(np.asarray(out[k], np.float64), want, rtol=tol, atol=2 * np.finfo(np.float32).tiny)
    assert np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in out.values())) == pytest.approx(
        min(1.0, norm), rel=1e-2
    )


# --- C01: resuming with fewer epochs than the checkpoint holds -----------------------------


def _train_mlp(ds, epochs, checkpoint=None, keep=2):
    import functools

    from jaxopt_lectures.lab import models, trainer

    mlp = functools.partial(models.MLP, (64, 16, 10))
    return trainer.train(
        mlp, ds, jol.sgd(0.1), epochs=epochs, seeds=(0,), checkpoint=checkpoint, checkpoint_keep=keep, progress=False
    )


def test_c01_a_checkpoint_beyond_epochs_is_refused_naming_both(tmp_path, digits200):
    ck = tmp_path / "ck"
    _train_mlp(digits200, 5, ck)  # keeps epochs 4 and 5
    with pytest.raises(ValueError, match=r"latest epoch is 5, beyond epochs=3.*\[4, 5\]"):
        _train_mlp(digits200, 3, ck)


def test_c01_a_kept_epoch_equal_to_epochs_is_restored_like_a_fresh_run(tmp_path, digits200):
    ck = tmp_path / "ck"
    _train_mlp(digits200, 5, ck, keep=5)
    resumed, fresh = _train_mlp(digits200, 3, ck), _train_mlp(digits200, 3)
    np.testing.assert_array_equal(resumed.train_loss, fresh.train_loss)
    np.testing.assert_array_equal(resumed.test_loss, fresh.test_loss)
    assert resumed.epochs_done == 3
    longer = _train_mlp(digits200, 5, ck, keep=5)  # the longer run is still there, untouched
    assert longer.epochs_done == 5
    assert not np.array_equal(longer.test_loss, fresh.test_loss)


# --- L28: a batch larger than the training split ------------------------------------------


@pytest.mark.parametrize("argv", [["--small", "1024", "--large", "2048"], ["--small", "100000", "--large", "200000"]])
def test_l28_cli_batch_size_above_the_training_split_is_refused_before_any_work(argv, tmp_path, capsys):
    from jaxopt_lectures import cli

    out = tmp_path / "b"
    assert cli.main(["batch-size", *argv, "--updates", "6", "--seeds", "2", "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    bad = "--large 2048" if "1024" in argv else "--small 100000"
    assert f"{bad} is out of range; allowed: integers in [1, 1257]" in err and err.count("\n") == 1
    assert not out.exists()


def test_l28_train_refuses_a_batch_larger_than_the_training_split(digits200):
    import functools

    from jaxopt_lectures.lab import models, plan, trainer

    n = len(digits200.x_train)
    mlp = functools.partial(models.MLP, (64, 16, 10))
    with pytest.raises(ValueError, match=rf"batch_size={n + 1} is out of range; allowed: integers in \[1, {n}\]"):
        trainer.train(mlp, digits200, jol.sgd(0.1), epochs=1, batch_size=n + 1, seeds=(0,), progress=False)
    with pytest.raises(ValueError, match="batch_size=0 is out of range"):
        trainer.train(mlp, digits200, jol.sgd(0.1), epochs=1, batch_size=0, seeds=(0,), progress=False)
    with pytest.raises(ValueError, match=rf"batch_size=4096 .*\[1, {n}\]"):
        plan.steps_per_epoch(n, 4096)
    assert plan.steps_per_epoch(n, n) == 1 and plan.steps_per_epoch(n, None) == 1


def test_l28_batch_size_study_checks_every_size_before_training(digits200):
    from jaxopt_lectures.lab import figures

    n = len(digits200.x_train)
    with pytest.raises(ValueError, match=rf"batch_sizes\[1\]={n + 1} is out of range"):
        figures.batch_size_study((16, n + 1), updates=2, seeds=(0,), data=digits200)


def test_l28_no_registry_row_asks_for_a_batch_larger_than_its_training_split():
    """Full batch is asked for with None; every other row's batch fits its split (full and quick)."""
    from jaxopt_lectures.lab import plan
    from jaxopt_lectures.lab.claims import rows

    for row in rows.ROWS:
        for setting in (row.baseline, row.variant):
            bs, spec = setting["batch_size"], setting["data"]
            n = len(plan.load_data(spec, 0).x_train)
            assert bs is None or 1 <= bs <= n, (row.name, bs, n)


# --- the class of S01 for inject_hyperparams: a state from another build -------------------


def test_s01_class_inject_hyperparams_refuses_a_state_built_with_other_values():
    made_by = jol.inject_hyperparams(jol.adam)(learning_rate=0.1)
    state = made_by.init(P)
    with pytest.raises(ValueError, match=r"learning_rate=0\.1; this one is built with learning_rate=0\.01"):
        jol.inject_hyperparams(jol.adam)(learning_rate=0.01).update(G, state, P)
    with pytest.raises(ValueError, match=r"injected hyper-parameters are \['b1', .*this optimizer injects \['b2'"):
        jol.inject_hyperparams(jol.adam, static_args=("b1",))(learning_rate=0.1).update(G, state, P)
    with pytest.raises(ValueError, match=r"learning_rate=0\.1; this one is built with learning_rate=a schedule"):
        jol.inject_hyperparams(jol.adam)(learning_rate=jol.schedules.cosine_decay(0.1, 10)).update(G, state, P)


def test_s01_class_inject_hyperparams_keeps_values_set_on_the_state_and_under_jit_the_build_wins():
    tx = jol.inject_hyperparams(jol.sgd)(learning_rate=0.1)
    state = jol.set_state_field(tx.init(P), "learning_rate", 0.5)
    u, state = tx.update(G, state, P)  # a value set on the running state is not another build
    np.testing.assert_allclose(u["w"], -0.5)
    other = jol.inject_hyperparams(jol.sgd)(learning_rate=0.01)
    u, new = jax.jit(other.update)(G, tx.init(P), P)  # traced: cannot raise, so the build's value is used
    np.testing.assert_allclose(u["w"], -0.01, rtol=1e-6)
    assert float(new.hyperparams["learning_rate"]) == pytest.approx(0.01)
    u, _ = other.update(G, new, P)  # and the state now belongs to that build
    np.testing.assert_allclose(u["w"], -0.01, rtol=1e-6)


def test_s01_class_partition_refuses_a_state_whose_labels_moved_naming_the_leaf():
    """Already so (audit S04): each part's state holds its own leaves, so a moved label fails
    the part's structure check, which names the leaf; pinned here for leaves of equal shapes."""
    p = {"v": jnp.ones(2), "w": jnp.ones(2)}
    made_by = jol.partition({"a": jol.adam(0.1), "b": jol.sgd(0.1, momentum=0.9)}, {"v": "a", "w": "b"})
    swapped = jol.partition({"a": jol.adam(0.1), "b": jol.sgd(0.1, momentum=0.9)}, {"v": "b", "w": "a"})
    with pytest.raises(ValueError, match=r"\['w'\]"):
        swapped.update(p, made_by.init(p), p)
    other_parts = jol.partition({"a": jol.adam(0.1), "c": jol.sgd(0.1)}, {"v": "a", "w": "c"})
    with pytest.raises(ValueError, match=r"parts \['a', 'b'\] where the transforms are \['a', 'c'\]"):
        other_parts.update(p, made_by.init(p), p)


# --- property: a configuration change between saving and resuming a state ------------------

HP = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -1.0])}


def _grads(i):
    return jax.tree.map(lambda x: jnp.sin(x * (i + 1)) + 0.1 * i, HP)


def _build(family, c):
    if family == "accumulate":
        return jol.accumulate_gradients(jol.sgd(c["lr"]), c["k"])
    if family == "inject":
        return jol.inject_hyperparams(jol.adam)(learning_rate=c["lr"])
    kw = {} if c["mask"] == "default" else {"mask": None}
    return jol.fused_adamw(c["lr"], weight_decay=c["wd"], backend="xla", **kw)


def _same_contents(family, tx2, state, params):
    """The state ``tx2`` would hold with ``state``'s contents: what a correct resume continues."""
    if family == "accumulate":
        fresh = tx2.init(params)
        return fresh._replace(mini_step=state.mini_step, acc_grads=state.acc_grads, inner_state=state.inner_state)
    if family == "inject":
        return state  # accepted only when built alike
    fresh = tx2.init(params)

    def repack(m, like):
        return Packed.pack(m.unpack(), like.layout)

    return fresh._replace(
        count=state.count,
        params=repack(state.params, fresh.params),
        mu=repack(state.mu, fresh.mu),
        nu=repack(state.nu, fresh.nu),
    )


def _run(family, tx, state, params, start, n):
    for i in range(start, start + n):
        if family == "fused":
            state = tx.step(state, _grads(i))
        else:
            u, state = tx.update(_grads(i), state, params)
            params = jol.apply_updates(params, u)
    return (state.params.unpack() if family == "fused" else params), state


CONFIGS = {
    "accumulate": st.fixed_dictionaries({"lr": st.sampled_from([0.1, 0.05]), "k": st.integers(1, 4)}),
    "inject": st.fixed_dictionaries({"lr": st.sampled_from([0.1, 0.01])}),
    "fused": st.fixed_dictionaries(
        {"lr": st.just(0.1), "wd": st.sampled_from([0.0, 0.5]), "mask": st.sampled_from(["default", "none"])}
    ),
}


@settings(max_examples=40)
@given(data=st.data())
def test_property_a_changed_configuration_resumes_correctly_or_is_refused(data):
    family = data.draw(st.sampled_from(sorted(CONFIGS)), label="family")
    c1, c2 = data.draw(CONFIGS[family], label="saved with"), data.draw(CONFIGS[family], label="resumed with")
    n1, n2 = data.draw(st.integers(0, 5), label="steps before"), data.draw(st.integers(1, 4), label="steps after")
    tx1, tx2 = _build(family, c1), _build(family, c2)
    params, state = _run(family, tx1, tx1.init(HP), HP, 0, n1)
    try:
        got, _ = _run(family, tx2, state, params, n1, n2)
    except ValueError:
        return  # refused: fine (the same configuration is never refused: the test below)
    # accepted: the state must be one tx2 could have made, and continue as that one would
    if family == "accumulate":
        assert int(state.mini_step) < c2["k"], (c1, c2, int(state.mini_step))
    if family == "inject":
        assert c1 == c2
    want, _ = _run(family, tx2, _same_contents(family, tx2, state, params), params, n1, n2)
    jax.tree.map(np.testing.assert_array_equal, got, want)


@settings(max_examples=10)
@given(data=st.data())
def test_property_the_same_configuration_is_never_refused(data):
    family = data.draw(st.sampled_from(sorted(CONFIGS)), label="family")
    c = data.draw(CONFIGS[family], label="config")
    tx1, tx2 = _build(family, c), _build(family, c)
    params, state = _run(family, tx1, tx1.init(HP), HP, 0, data.draw(st.integers(0, 5)))
    _run(family, tx2, state, params, 0, 2)


# --- N03: Python-number leaves ----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.sgd(0.1),
        lambda: jol.sgd(0.1, momentum=0.9),
        lambda: jol.adam(0.1),
        lambda: jol.adagrad(0.1),
        lambda: jol.rmsprop(0.1),
        lambda: jol.chain(jol.clip_by_global_norm(1.0), jol.sgd(0.1)),
    ],
)
def test_n03_python_float_leaves_step_like_arrays(make):
    tx = make()
    params = {"w": 1.0}
    u, _ = tx.update({"w": 0.5}, tx.init(params), params)
    want, _ = tx.update({"w": jnp.asarray(0.5)}, tx.init({"w": jnp.asarray(1.0)}), {"w": jnp.asarray(1.0)})
    np.testing.assert_array_equal(
        jol.apply_updates(params, u)["w"], jol.apply_updates({"w": jnp.asarray(1.0)}, want)["w"]
    )
    assert float(u["w"]) < 0


def test_n03_adam_on_a_python_float_gives_optax_s_step():
    tx = jol.adam(0.1)
    u, _ = tx.update({"w": 0.5}, tx.init({"w": 1.0}), {"w": 1.0})
    assert float(jol.apply_updates({"w": 1.0}, u)["w"]) == pytest.approx(0.9, rel=1e-5)


# --- N14: the lecture forms (eps = 0) are scale-invariant for tiny gradients ------------


@pytest.mark.parametrize("g", [1e-3, 1e-20, 1e-23, 1e-30, -1e-30])
@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adam(0.1, eps=0),
        lambda: jol.rmsprop(0.1, eps=0, init="first_grad"),
        lambda: jol.adagrad(0.1, eps=0),
        lambda: jol.adam(0.1, eps=0, nesterov=True),
        lambda: jol.rmsprop(0.1, eps=0, centered=True),
    ],
)
@pytest.mark.parametrize("jit", [False, True])
def test_n14_a_tiny_gradient_still_steps_with_eps_0(make, g, jit):
    tx, p = make(), {"w": jnp.ones(2)}
    grads = {"w": jnp.array([g, 0.0], jnp.float32)}
    u, _ = (jax.jit(tx.update) if jit else tx.update)(grads, tx.init(p), p)
    big, _ = tx.update({"w": jnp.array([1.0, 0.0])}, tx.init(p), p)  # the same step at g = 1
    np.testing.assert_allclose(abs(float(u["w"][0])), abs(float(big["w"][0])), rtol=1e-5)
    assert np.sign(float(u["w"][0])) == -np.sign(g)
    assert float(u["w"][1]) == 0.0  # an exact zero gradient still gives no step


def test_n14_the_normal_path_is_bit_identical_to_the_rule_without_the_rescaled_redo():
    import optax

    from jaxopt_lectures.transforms import adaptive

    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    tx, ref = jol.adam(0.1, eps=0), optax.adam(0.1, eps=0)
    s, t = tx.init(p), ref.init(p)
    m = v = jnp.zeros(3)
    for i in range(3):
        g = {"w": jnp.array([0.3, -1.0, 2.0]) * (i + 1)}
        u, s = tx.update(g, s, p)
        plain, m, v = adaptive.adam_leaf(g["w"], m, v, jnp.int32(i + 1), 0.9, 0.999, 0, 0, True, _rescale=False)
        np.testing.assert_array_equal(u["w"], -0.1 * plain)
        o, t = ref.update(g, t, p)
        np.testing.assert_allclose(u["w"], o["w"], rtol=2e-5)


# --- N18: schedules count in integers ---------------------------------------------------

B24 = 2**24


@pytest.mark.parametrize("jit", [False, True])
def test_n18_schedule_boundaries_above_2_24_are_exact(jit):
    S = jol.schedules
    cases = [
        (S.piecewise_constant(1.0, {B24 + 1: 0.1}), {B24: 1.0, B24 + 1: 0.1}),
        (S.join([S.constant(1.0), S.constant(0.5)], [B24 + 1]), {B24: 1.0, B24 + 1: 0.5}),
        (S.linear(0.0, 1.0, 4, transition_begin=B24), {B24: 0.0, B24 + 1: 0.25, B24 + 3: 0.75}),
        (S.exponential_decay(1.0, 1, 0.5, transition_begin=B24, staircase=True), {B24 + 1: 0.5, B24 + 3: 0.125}),
        (S.exponential_decay(1.0, 2, 0.25, transition_begin=B24), {B24 + 1: 0.5}),
        (S.piecewise_constant(1.0, {2**40: 0.1}), {2**31 - 1: 1.0}),  # beyond int32: never reached
        (S.cosine_decay(1.0, 2**31 - 1), {0: 1.0, 2**31 - 1: 0.0}),
    ]
    for schedule, want in cases:
        f = jax.jit(schedule) if jit else schedule
        for count, value in want.items():
            assert float(f(jnp.asarray(count, jnp.int32))) == pytest.approx(value, rel=1e-6, abs=1e-7), (count, value)


def test_n18_linear_ratio_above_2_24_is_not_flat():
    f = jol.schedules.linear(0.0, 1.0, 2**26)
    values = [float(f(jnp.int32(c))) for c in (B24, B24 + 4, B24 + 8)]
    assert values[0] < values[1] < values[2]
    assert values[1] == pytest.approx((B24 + 4) / 2**26, rel=1e-7)


# --- N23: meta-gradients through update with a zero gradient -----------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adagrad(0.1),
        lambda: jol.adagrad(0.1, eps_in_sqrt=True),
        lambda: jol.rmsprop(0.1),
        lambda: jol.rmsprop(0.1, eps_in_sqrt=False),
        lambda: jol.adam(0.1),
        lambda: jol.adam(0.1, eps=0),
    ],
)
def test_n23_meta_gradient_with_a_zero_gradient_coordinate_is_finite(make):
    tx, p = make(), {"w": jnp.array([1.0, 1.0])}

    def loss(scale):
        u, _ = tx.update({"w": jnp.array([0.0, 0.5]) * scale}, tx.init(p), p)
        return jnp.sum(jol.apply_updates(p, u)["w"] ** 2)

    grad = jax.grad(loss)(jnp.float32(1.0))
    assert bool(jnp.isfinite(grad))
    before = tx.update({"w": jnp.array([0.0, 0.5])}, tx.init(p), p)[0]["w"]
    assert float(before[0]) == 0.0  # forward numbers unchanged: a zero gradient, no step


# --- N08: a dict mask for an nnx.State ---------------------------------------------------


def _nnx_params():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(2, 3, rngs=rngs)
            self.bn = nnx.BatchNorm(3, rngs=rngs)
            self.l2 = nnx.Linear(3, 1, rngs=rngs)

    return nnx.state(Net(nnx.Rngs(0)), nnx.Param)


def test_n08_a_dict_prefix_mask_matches_an_nnx_state_like_partition_labels():
    params = _nnx_params()
    grads = jax.tree.map(jnp.ones_like, params)
    tx = jol.masked(jol.adamw(0.1), {"l1": True, "bn": False, "l2": True})
    u, _ = tx.update(grads, tx.init(params), params)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(u)[0]}
    for path, v in flat.items():
        if "bn" in path:
            np.testing.assert_array_equal(v, 1.0)  # left out: the raw gradient
        else:
            assert bool(jnp.all(v < 0)), path
    labels = {"l1": "a", "bn": "b", "l2": "a"}  # the same dict as partition labels
    part = jol.partition({"a": jol.adamw(0.1), "b": jol.identity()}, labels)
    pu, _ = part.update(grads, part.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, u, pu)
    decayed = jol.adamw(0.1, weight_decay=0.5, mask={"l1": True, "bn": False, "l2": False})
    plain = jol.adamw(0.1, weight_decay=0.5, mask=lambda p: jax.tree.map(lambda _: False, p))
    du, _ = decayed.update(grads, decayed.init(params), params)
    nu, _ = plain.update(grads, plain.init(params), params)
    assert not np.array_equal(du["l1"]["kernel"][...], nu["l1"]["kernel"][...])
    np.testing.assert_array_equal(du["l2"]["kernel"][...], nu["l2"]["kernel"][...])


def test_n08_a_mask_naming_a_missing_key_is_still_refused_naming_it():
    params = _nnx_params()
    with pytest.raises(ValueError, match=r"mask has a leaf at \['l3'\] where params has none"):
        jol.adamw(0.1, mask={"l1": True, "l3": False}).init(params)


# --- N21: a value-dependent mask behaves the same eager and jitted ----------------------

VP = {"w": jnp.array(1.0), "v": jnp.array([0.5, 2.0])}
VG = {"w": jnp.array(1.0), "v": jnp.array([1.0, 1.0])}


@pytest.mark.parametrize(
    "mask",
    [
        lambda p: jax.tree.map(lambda x: jnp.all(x > 0.95), p),  # one flag per leaf, from the values
        lambda p: jax.tree.map(lambda x: x > 0.95, p),  # per element, from the values
    ],
    ids=["per_leaf", "per_element"],
)
def test_n21_a_value_dependent_mask_steps_alike_eager_and_jitted(mask):
    tx = jol.masked(jol.adam(0.1), mask)
    runs = []
    for update in (tx.update, jax.jit(tx.update)):
        p, s, trace = VP, tx.init(VP), []
        for _ in range(3):
            u, s = update(VG, s, p)
            p = jol.apply_updates(p, u)
            trace.append(p)
        runs.append(trace)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), runs[0], runs[1])
    # w > 0.95 at first: an Adam step; then w = 0.9 is masked out and takes the raw gradient
    np.testing.assert_allclose(runs[0][0]["w"], 0.9, rtol=1e-5)
    np.testing.assert_allclose(runs[0][1]["w"], 1.9, rtol=1e-5)


def test_n21_python_bool_masks_still_leave_the_leaf_out_of_the_inner_state():
    tx = jol.masked(jol.adam(0.1), {"w": True, "v": False})
    s = tx.init(VP)
    assert isinstance(s.inner_state[0].mu["v"], jol.MaskedNode)


# --- N22: fused_adamw needs one flag per leaf, and says so --------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("form", ["init", "as_transformation"])
@pytest.mark.parametrize(
    "mask, what",
    [
        (lambda p: {"w": jnp.array([[True, False], [True, True]])}, r"shape \(2, 2\)"),
        (lambda p: jax.tree.map(lambda x: jnp.all(x > 0.95), p), r"shape \(\)"),
    ],
    ids=["per_element", "value_dependent"],
)
def test_n22_fused_adamw_refuses_a_mask_that_is_not_one_bool_per_leaf(mask, what, form, jit):
    opt = jol.fused_adamw(0.1, weight_decay=0.5, mask=mask)
    init = opt.init if form == "init" else opt.as_transformation().init
    with pytest.raises(
        ValueError,
        match=rf"fused_adamw: mask gives a bool array of {what} \(per element, or computed from the values.* at \['w'\].*adamw\(\.\.\., mask=\.\.\.\)",
    ):
        (jax.jit(init) if jit else init)({"w": jnp.ones((2, 2))})


# --- N24: jax.grad through the fused kernel -------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda b: jol.fused_adam(0.1, backend=b),
        lambda b: jol.fused_adamw(0.1, weight_decay=0.5, backend=b),
        lambda b: jol.fused_sgd(0.1, momentum=0.9, backend=b),
        lambda b: jol.fused_sgd(0.1, backend=b),
    ],
)
def test_n24_grad_through_the_default_fused_backend_equals_the_xla_backend(make):
    def loss(params, backend, form):
        opt = make(backend)
        g = jax.tree.map(lambda x: 0.3 * x + 0.1, params)
        if form == "step":
            new = opt.step(opt.init(params), g).params.unpack()
        else:
            t = opt.as_transformation()
            new = jol.apply_updates(params, t.update(g, t.init(params), params)[0])
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new))

    for form in ("step", "update"):
        got = jax.grad(loss)(FP, "auto", form)
        want = jax.grad(loss)(FP, "xla", form)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), got, want)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(got))


# --- S07: set_state_field validates what it stores ---------------------------------------


def _inject_state():
    return jol.inject_hyperparams(jol.adam)(learning_rate=0.1).init(P)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("count", 1.5, r"count=1\.5 is out of range; allowed: integers in \[0, 2147483647\]"),
        ("count", 2**31, r"count=2147483648 is out of range; allowed: integers"),
        ("count", -1, r"count=-1 is out of range"),
        ("learning_rate", 1e39, r"learning_rate=inf .*out of range.*1e\+39 was given; the field stores float32"),
        (
            "hyperparams",
            {"learning_rate": -1.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
            "learning_rate=-1",
        ),
        ("hyperparams", {"learning_rate": 0.1, "b1": 1.0, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0}, "b1=1"),
    ],
)
def test_s07_set_state_field_refuses_what_the_factory_refuses_on_the_stored_value(field, value, match):
    with pytest.raises(ValueError, match=match):
        jol.set_state_field(_inject_state(), field, value)


def test_s07_apply_if_finite_counters_and_stacked_states():
    state = jol.apply_if_finite(jol.sgd(0.1), 3).init(P)
    with pytest.raises(ValueError, match=r"notfinite_count=-5 is out of range"):
        jol.set_state_field(state, "notfinite_count", -5)
    assert int(jol.set_state_field(state, "notfinite_count", 2).notfinite_count) == 2
    tx = jol.inject_hyperparams(jol.sgd)
    stacked = jax.vmap(lambda lr: tx(learning_rate=lr).init(P))(jnp.array([0.1, 0.2, 0.3, 0.4]))
    one = jol.set_state_field(stacked, "learning_rate", 0.5)  # one value for every member
    np.testing.assert_array_equal(one.hyperparams["learning_rate"], np.full(4, 0.5, np.float32))
    with pytest.raises(ValueError, match=r"shape \(4,\); the value has shape \(2,\)"):
        jol.set_state_field(stacked, "learning_rate", jnp.array([0.5, 0.1]))
    with pytest.raises(ValueError, match=r"learning_rate=-0\.1"):
        jol.set_state_field(stacked, "learning_rate", jnp.array([0.5, -0.1, 0.2, 0.3]))
    good = _inject_state()
    new = jol.set_state_field(good, "hyperparams", {**good.hyperparams, "learning_rate": 0.5})
    assert float(new.hyperparams["learning_rate"]) == 0.5
    assert float(jol.set_state_field(good, "eps", 1e-50).hyperparams["eps"]) == 0.0  # 0 is a valid eps


# --- issue 21 item 2: decisions made at construction read concrete arrays like numbers ----


@pytest.mark.parametrize("eps", [0.0, jnp.array(0.0), np.float32(0.0)])
def test_class_a_concrete_zero_eps_takes_the_zero_denominator_rule_like_the_number(eps):
    opt = jol.fused_adam(0.1, eps=eps)  # a concrete 0 array once reached the kernel: NaN
    new = opt.step(opt.init({"w": jnp.ones(2)}), {"w": jnp.array([0.0, 1.0])}).params.unpack()
    assert float(new["w"][0]) == 1.0 and float(new["w"][1]) == pytest.approx(0.9, rel=1e-5)


@pytest.mark.parametrize("rate", [2.0, jnp.array(2.0), np.float64(2.0)])
def test_class_a_growing_exponential_decay_needs_a_cap_whatever_the_number_s_type(rate):
    with pytest.raises(ValueError, match=r"decay_rate=.*> 1 grows without bound"):
        jol.schedules.exponential_decay(0.1, 10, rate)
    with pytest.raises(ValueError, match=r"end_value=.*out of range; allowed: \[0, peak_value="):
        jol.schedules.warmup_cosine_decay(0.0, rate, 2, 10, end_value=rate * 2)
