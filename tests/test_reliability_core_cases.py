"""The optimizer core's cases of the reliability audit (shared/reviews/reliability.md, section 1),
each named after its case number: each failed on 75af9b4."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jol

P = {"w": jnp.ones(2)}
G = {"w": jnp.ones(2)}


def step(tx, grads=G, params=P):
    u, _ = tx.update(grads, tx.init(params), params)
    return jol.apply_updates(params, u)


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.sgd(float("inf")),
        lambda: jol.adam(float("inf")),
        lambda: jol.adam(0.1, eps=float("inf")),
        lambda: jol.adamw(0.1, weight_decay=float("inf")),
        lambda: jol.add_l2_regularization(float("inf")),
    ],
)
def test_case_003_infinite_hyper_parameters_are_refused(make):
    with pytest.raises(ValueError, match="finite"):
        make()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: jol.sgd("0.1"), "learning_rate"),
        (lambda: jol.sgd(None), "learning_rate"),
        (lambda: jol.sgd(0.1, momentum="0.9"), "momentum"),
        (lambda: jol.adam(0.1, b1="0.9"), "b1"),
        (lambda: jol.scale("2"), "step_size"),
    ],
)
def test_case_005_strings_and_none_are_refused_at_construction_naming_the_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_case_006_a_bool_is_not_a_learning_rate():
    with pytest.raises((ValueError, TypeError), match="learning_rate"):
        jol.sgd(True)


def test_case_012_scale_nan_is_refused():
    with pytest.raises(ValueError):
        jol.scale(float("nan"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.sgd(jol.schedules.constant(-0.1)),
        lambda: jol.schedules.constant(float("nan")),
        lambda: jol.schedules.cosine_decay(-0.1, 10),
    ],
)
def test_case_016_schedules_with_negative_or_nan_values_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_case_022_a_gradient_of_another_shape_is_refused_naming_the_leaf():
    p = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    g = {"w": jnp.ones((3, 2)), "b": jnp.ones((5, 2))}
    for tx in (jol.adam(0.1), jol.sgd(0.1, momentum=0.9), jol.adagrad(0.1), jol.rmsprop(0.1), jol.adamw(0.1)):
        with pytest.raises(ValueError, match=r"\(5, 2\) at \['b'\].*\(2,\)"):
            tx.update(g, tx.init(p), p)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        jol.apply_updates(p, g)
    with pytest.raises(ValueError, match=r"\['b'\]"):  # under jit too (shapes are static)
        jax.jit(jol.apply_updates)(p, g)


def test_case_023_a_state_made_on_other_shapes_names_the_leaf():
    tx = jol.adam(0.1)
    state = tx.init({"w": jnp.ones((3, 3))})
    with pytest.raises(ValueError, match=r"\['w'\]"):
        tx.update({"w": jnp.ones((3, 2))}, state, {"w": jnp.ones((3, 2))})


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adagrad(0.1, eps=0.0),
        lambda: jol.rmsprop(0.1, decay=0.9, eps=0.0, init="first_grad"),
        lambda: jol.adam(0.1, eps=0.0),
    ],
)
def test_case_030_the_lecture_forms_with_eps_0_give_0_not_nan_for_a_zero_gradient(make):
    out = step(make(), {"w": jnp.array([0.0, 1.0])})["w"]
    assert np.isfinite(np.asarray(out)).all()
    assert float(out[0]) == 1.0 and float(out[1]) < 1.0
    ref = optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
    u, _ = ref.update({"w": jnp.array([0.0, 1.0])}, ref.init(P), P)
    assert np.isfinite(np.asarray(u["w"])).all()  # optax defines the same coordinate as 0 too


def test_case_037_clipping_survives_a_squared_norm_that_overflows():
    out, _ = jol.clip_by_global_norm(1.0).update({"w": jnp.array([1e20, 1.0])}, None)
    np.testing.assert_allclose(np.asarray(out["w"]), [1.0, 1e-20], rtol=1e-6)
    out, _ = jol.clip_by_global_norm(1.0).update({"w": jnp.array([3e19, 3e19])}, None)
    np.testing.assert_allclose(np.asarray(out["w"]), [2**-0.5, 2**-0.5], rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adamw(0.1, weight_decay=0.5),
        lambda: jol.chain(jol.add_l2_regularization(0.5), jol.sgd(0.1)),
        lambda: jol.sgd(0.1, momentum=0.9),
        lambda: jol.adam(0.1),
        lambda: jol.adagrad(0.1),
        lambda: jol.rmsprop(0.1),
        lambda: jol.momentum(0.1, 0.9, "ema"),
    ],
)
def test_case_046_flatten_keeps_every_inner_rule(make):
    p = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    rng = np.random.default_rng(0)
    tx, flat = make(), jol.flatten(make())
    s, sf = tx.init(p), flat.init(p)
    a, b = p, p
    for i in range(3):
        g = {
            "w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) * (i > 0),
            "b": jnp.asarray(rng.normal(size=2), jnp.float32),
        }
        u, s = tx.update(g, s, a)
        uf, sf = flat.update(g, sf, b)
        a, b = jol.apply_updates(a, u), jol.apply_updates(b, uf)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_case_050_set_state_field_validates_like_the_factory():
    tx = jol.inject_hyperparams(jol.adam)(learning_rate=0.1)
    state = tx.init(P)
    for name, value in (("learning_rate", -1.0), ("learning_rate", float("nan")), ("b2", 1.0), ("b1", 1.5)):
        with pytest.raises(ValueError, match=name):
            jol.set_state_field(state, name, value)
    tx = jol.inject_hyperparams(jol.sgd)(learning_rate=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="momentum"):
        jol.set_state_field(tx.init(P), "momentum", 1.5)


def test_case_013_apply_if_finite_needs_an_integer():
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        jol.apply_if_finite(jol.sgd(0.1), 2.5)


def test_case_017_a_user_schedule_that_is_negative_at_the_start_is_refused():
    with pytest.raises(ValueError, match="schedule gives -0.001"):
        jol.sgd(lambda count: -1e-3)


def test_case_019_020_schedule_arguments_are_named():
    with pytest.raises(ValueError, match="end_value"):
        jol.schedules.warmup_cosine_decay(0, 0.1, 10, 100, end_value=0.5)
    with pytest.raises(ValueError, match="decay_rate"):
        jol.schedules.exponential_decay(0.1, 10, float("inf"))


def test_case_025_int_gradients_for_float_params_move_the_params():
    np.testing.assert_allclose(np.asarray(step(jol.sgd(0.1), {"w": jnp.ones(2, jnp.int32)})["w"]), [0.9, 0.9])


def test_case_026_integer_params_are_refused_naming_the_path():
    with pytest.raises(TypeError, match=r"\['w'\] is int32"):
        jol.adam(0.1).init({"w": jnp.full(2, 10, jnp.int32)})


def test_case_027_complex_params_follow_optax_semantics():
    p, g = {"w": jnp.zeros(2, jnp.complex64)}, {"w": jnp.full(2, 1 + 1j, jnp.complex64)}
    ours, ref = jol.adam(0.1), optax.adam(0.1)
    s, r = ours.init(p), ref.init(p)
    for _ in range(2):
        u, s = ours.update(g, s, p)
        v, r = ref.update(g, r, p)
    np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(v["w"]), rtol=1e-5)


def test_case_029_float16_adam_has_no_nan_and_no_frozen_coordinate():
    p, g = {"w": jnp.ones(4, jnp.float16)}, {"w": jnp.array([0, 1e-3, 1, 300], jnp.float16)}
    out = np.asarray(step(jol.adam(0.1), g, p)["w"], np.float32)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [1.0, 0.9, 0.9, 0.9], atol=2e-3)


def test_case_040_mask_leaves_must_be_booleans():
    with pytest.raises(TypeError, match="bool"):
        jol.masked(jol.sgd(0.1), {"w": "no"}).init(P)


def test_case_042_another_optimizers_state_is_refused():
    with pytest.raises(ValueError, match="AdamState"):
        jol.sgd(0.1, momentum=0.9).update(G, jol.adam(0.1).init(P), P)


def test_case_052_an_int_learning_rate_is_injected_too():
    state = jol.inject_hyperparams(jol.sgd)(learning_rate=1).init(P)
    assert float(jol.set_state_field(state, "learning_rate", 0.5).hyperparams["learning_rate"]) == 0.5


def test_case_053_a_tree_field_is_not_replaced_by_a_scalar():
    with pytest.raises(ValueError, match="holds a tree"):
        jol.set_state_field(jol.adam(0.1).init(P), "mu", 0.0)


def test_case_047_flatten_names_the_leaf_of_a_wrong_shape():
    tx, p = jol.flatten(jol.adam(0.1)), {"a": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match=r"\(2, 3\) at \['a'\]"):
        tx.update({"a": jnp.ones((2, 3))}, tx.init(p), p)
