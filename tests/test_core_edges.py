"""The core's last silent edges (issue 12, item 4), one test per case with the exact message.
(Shapes and most value ranges were closed by issue 13: tests/test_reliability_core_cases.py.)"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jol

P = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}


def test_a_string_learning_rate_names_the_argument_and_its_type():
    with pytest.raises(
        TypeError, match=re.escape("adam: learning_rate must be a number, an array or a schedule (real), got str: 'a'")
    ):
        jol.adam("a")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: jol.adam(1e-3, b1="0.9"), "b1 must be a number, an array or a schedule (real), got str"),
        (lambda: jol.adam(1e-3, eps=None), "eps must be a number, an array or a schedule (real), got NoneType"),
        (lambda: jol.sgd(0.1, momentum=[0.9]), "momentum must be a number, an array or a schedule (real), got list"),
        (lambda: jol.adam(1e-3, b2=1j), "b2 must be a number, an array or a schedule (real), got complex"),
        (
            lambda: jol.adam(jnp.asarray("x" == "x")),
            "learning_rate must be a number, an array or a schedule (real), got an array of bool",
        ),
        (lambda: jol.adam(1e-3, nesterov=0.1), "nesterov must be True or False, got float"),
        (lambda: jol.sgd(0.1, 0.9, "yes"), "nesterov must be True or False, got str"),
        (lambda: jol.rmsprop(0.1, 0.9, 1e-8, 0.0, 0.5), "eps_in_sqrt must be True or False, got float"),
        (lambda: jol.rmsprop(0.1, centered=None), "centered must be True or False, got NoneType"),
        (lambda: jol.adam(1e-3, bias_correction="no"), "bias_correction must be True or False, got str"),
        (lambda: jol.adagrad(0.1, eps_in_sqrt=1), "eps_in_sqrt must be True or False, got int"),
        (lambda: jol.adam(1e-3, mu_dtype="bogus"), "mu_dtype must be None or a dtype, got str"),
        (lambda: jol.fused_adam(1e-3, bias_correction=0), "bias_correction must be True or False, got int"),
    ],
)
def test_every_hyper_parameter_is_type_checked_naming_it(make, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        make()


def test_a_gradient_of_another_shape_names_its_path_and_both_shapes():
    g = {"w": jnp.ones((2, 3)), "b": jnp.ones(2)}
    msg = re.escape("grads has shape (2, 3) at ['w'] where state.mu has shape (2, 2)")
    with pytest.raises(ValueError, match=msg):
        jol.adam(0.1).update(g, jol.adam(0.1).init(P), P)
    tx = jol.masked(jol.adam(0.1), {"w": True, "b": False})
    with pytest.raises(ValueError, match=re.escape("(2, 3) at ['w']")):
        tx.update(g, tx.init(P), P)
    with pytest.raises(ValueError, match=re.escape("a leaf has shape (2, 3) at ['w'] where the layout has (2, 2)")):
        jol.fused_adam(0.1).step(jol.fused_adam(0.1).init(P), g)


@pytest.mark.parametrize("leaf", [jnp.arange(2), jnp.array([True, False])], ids=["int32", "bool"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adam(0.1),
        lambda: jol.sgd(0.1, 0.9),
        lambda: jol.adagrad(0.1),
        lambda: jol.rmsprop(0.1),
        lambda: jol.adamw(0.1, mask=None),
    ],
)
def test_integer_and_bool_parameters_raise_naming_the_path(make, leaf):
    params = {"w": jnp.ones(2), "step": leaf}
    with pytest.raises(ValueError, match=re.escape(f"the parameter at ['step'] is {leaf.dtype}")) as info:
        make().init(params)
    assert isinstance(info.value, TypeError) and isinstance(info.value, jol.LeafDtypeError)


def test_stateless_sgd_on_an_integer_parameter_raises_at_apply_updates():
    params, tx = {"step": jnp.arange(2)}, jol.sgd(0.1)
    u, _ = tx.update({"step": jnp.ones(2, jnp.int32)}, tx.init(params), params)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "apply_updates: the parameter at ['step'] is int32 and its update is float32; the step would be truncated"
        ),
    ):
        jol.apply_updates(params, u)


def test_a_masked_out_integer_leaf_is_fine():
    params = {"w": jnp.ones(2), "step": jnp.asarray(3)}
    tx = jol.masked(jol.adam(0.1), {"w": True, "step": False})
    grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) * p["step"], allow_int=True)(params)
    assert grads["step"].dtype == jax.dtypes.float0
    state = tx.init(params)
    for _ in range(2):
        u, state = tx.update(grads, state, params)
        params = jol.apply_updates(params, u)
    assert int(params["step"]) == 3 and params["step"].dtype == jnp.int32
    assert float(params["w"][0]) < 1.0
    # an integer update of an integer leaf is exact too
    assert int(jol.apply_updates({"n": jnp.asarray(3)}, {"n": jnp.asarray(2)})["n"]) == 5


@pytest.mark.parametrize(
    "ours, ref",
    [
        (lambda: jol.adam(0.1), lambda: optax.adam(0.1)),
        (lambda: jol.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
        (lambda: jol.rmsprop(0.1), lambda: optax.rmsprop(0.1)),
        (lambda: jol.adamw(0.1, mask=None), lambda: optax.adamw(0.1)),
        (
            lambda: jol.chain(jol.clip_by_global_norm(1.0), jol.sgd(0.1)),
            lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
        ),
    ],
)
def test_complex_parameters_are_handled_as_optax_does(ours, ref):
    p = {"z": jnp.asarray([1 + 2j, -0.5j], jnp.complex64)}
    a, b = p, p
    sa, sb = ours().init(p), ref().init(p)
    for k in range(3):
        g = {"z": jnp.asarray([0.3 - 1j * k, 1.0 + 0.2j], jnp.complex64)}
        u, sa = ours().update(g, sa, a)
        v, sb = ref().update(g, sb, b)
        a, b = jol.apply_updates(a, u), optax.apply_updates(b, v)
    np.testing.assert_allclose(np.asarray(a["z"]), np.asarray(b["z"]), rtol=1e-5, atol=1e-6)


def test_complex_parameters_are_refused_by_the_fused_path():
    with pytest.raises(TypeError, match=re.escape("got a complex64 leaf at ['z']")):
        jol.fused_adam(0.1).init({"z": jnp.ones(2, jnp.complex64)})


@pytest.mark.parametrize(
    "make",
    [
        lambda m: jol.adamw(0.1, mask=m),
        lambda m: jol.add_l2_regularization(0.1, m),
        lambda m: jol.add_l1_regularization(0.1, m),
        lambda m: jol.decoupled_weight_decay(0.1, m),
        lambda m: jol.masked(jol.adam(0.1), m),
        lambda m: jol.fused_adamw(0.1, mask=m),
    ],
)
def test_a_mask_that_does_not_fit_the_params_fails_at_init_naming_the_path(make):
    params = {"enc": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "dec": {"w": jnp.ones((2, 2))}}
    with pytest.raises(ValueError, match=re.escape("params has a leaf at ['dec']['w'] that the mask does not cover")):
        make({"enc": True}).init(params)
    with pytest.raises(ValueError, match=re.escape("the mask has a leaf at ['dex'] where params has none")):
        make({"enc": True, "dex": False}).init(params)
    with pytest.raises(ValueError, match=re.escape("the mask has a leaf at ['enc']['w']['x'] where params has none")):
        make({"enc": {"w": {"x": True}, "b": True}, "dec": True}).init(params)
    make({"enc": {"w": True, "b": False}, "dec": True}).init(params)  # a prefix is fine


def test_a_prefix_mask_applies_to_the_whole_subtree():
    params = {"enc": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "dec": {"w": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = jol.decoupled_weight_decay(0.5, {"enc": False, "dec": True})
    u, _ = tx.update(grads, tx.init(params), params)
    assert float(jnp.max(jnp.abs(u["enc"]["w"]))) == 0 and float(u["dec"]["w"][0, 0]) == 0.5


def test_global_norm_of_an_empty_tree_is_zero_and_clipping_it_is_a_no_op():
    assert float(jol.global_norm({})) == 0.0
    assert float(jol.global_norm({"a": None})) == 0.0
    tx = jol.clip_by_global_norm(1.0)
    updates, _ = tx.update({}, tx.init({}), None)
    assert updates == {}


def test_centered_rms_of_complex_gradients_matches_the_complex128_formula():
    """``r_t = p r + (1 − p)|g|²``, ``m_t = p m + (1 − p) g``, ``u = g / √(δ + r_t − |m_t|²)``,
    for complex64 gradients (the mean keeps its imaginary part)."""
    rng = np.random.default_rng(5)
    p, eps = 0.9, 1e-8
    params = {"z": jnp.zeros((4,), jnp.complex64)}
    tx = jol.scale_by_stddev(decay=p, eps=eps)
    state = tx.init(params)
    r, m = np.zeros(4), np.zeros(4, np.complex128)
    for _ in range(3):
        g = rng.normal(size=4) + 1j * rng.normal(size=4)
        u, state = tx.update({"z": jnp.asarray(g, jnp.complex64)}, state, params)
        r = p * r + (1 - p) * np.abs(g) ** 2
        m = p * m + (1 - p) * g
        np.testing.assert_allclose(np.asarray(u["z"]), g / np.sqrt(eps + r - np.abs(m) ** 2), rtol=2e-4)
