"""Bad input fails early, with a message that names the argument, the value and the range."""

import re

import jax.numpy as jnp
import pytest

import jaxopt_lectures as jol

BAD_HYPERPARAMETERS = [
    (lambda: jol.sgd(-0.1), "learning_rate", "-0.1", "[0, inf)"),
    (lambda: jol.adam(-1e-3), "learning_rate", "-0.001", "[0, inf)"),
    (lambda: jol.scale_by_learning_rate(-1.0), "learning_rate", "-1.0", "[0, inf)"),
    (lambda: jol.adam(1e-3, b1=1.0), "b1", "1.0", "[0, 1)"),
    (lambda: jol.adam(1e-3, b1=-0.1), "b1", "-0.1", "[0, 1)"),
    (lambda: jol.adamw(1e-3, b2=1.5), "b2", "1.5", "[0, 1)"),
    (lambda: jol.rmsprop(1e-3, decay=1.0), "decay", "1.0", "[0, 1)"),
    (lambda: jol.scale_by_rms(decay=-0.5), "decay", "-0.5", "[0, 1)"),
    (lambda: jol.sgd(0.1, momentum=1.2), "momentum", "1.2", "[0, 1)"),
    (lambda: jol.momentum(0.1, beta=1.0), "beta", "1.0", "[0, 1)"),
    (lambda: jol.adam(1e-3, eps=-1e-8), "eps", "-1e-08", "[0, inf)"),
    (lambda: jol.adagrad(0.1, eps=-1.0), "eps", "-1.0", "[0, inf)"),
    (lambda: jol.rmsprop(0.1, eps=-1.0), "eps", "-1.0", "[0, inf)"),
    (lambda: jol.adagrad(0.1, initial_accumulator_value=-1.0), "initial_accumulator_value", "-1.0", "[0, inf)"),
    (lambda: jol.adamw(1e-3, weight_decay=-0.1), "weight_decay", "-0.1", "[0, inf)"),
    (lambda: jol.add_l2_regularization(-1.0), "coeff", "-1.0", "[0, inf)"),
    (lambda: jol.clip_by_global_norm(0.0), "max_norm", "0.0", "(0, inf)"),
    (lambda: jol.accumulate_gradients(jol.sgd(0.1), every_k=0), "every_k", "0", ">= 1"),
    (lambda: jol.schedules.exponential_decay(1.0, 0, 0.5), "transition_steps", "0", "(0, inf)"),
    (lambda: jol.inject_hyperparams(jol.adam)(learning_rate=1e-3, b2=1.0), "b2", "1.0", "[0, 1)"),
]


@pytest.mark.parametrize("make, arg, value, allowed", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_value_error_naming_them(make, arg, value, allowed):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert f"{arg}={value}" in message
    assert allowed in message


@pytest.mark.parametrize(
    "make, arg, value",
    [
        (lambda: jol.momentum(0.1, variant="heavy_ball"), "variant", "heavy_ball"),
        (lambda: jol.add_momentum(0.9, variant="nesterov"), "variant", "nesterov"),
        (lambda: jol.rmsprop(0.1, init="ones"), "init", "ones"),
        (lambda: jol.scale_by_rms(init="random"), "init", "random"),
    ],
)
def test_unknown_choices_list_the_allowed_ones(make, arg, value):
    with pytest.raises(ValueError, match=re.escape(f"{arg}='{value}'")) as info:
        make()
    assert "not one of" in str(info.value)


def test_chain_rejects_a_factory_passed_uncalled():
    with pytest.raises(TypeError, match="did you pass the factory"):
        jol.chain(jol.scale_by_adam)


PARAMS = {"layer1": {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, "layer2": {"w": jnp.ones((2, 1))}}


@pytest.mark.parametrize(
    "tx",
    [jol.adam(1e-3), jol.sgd(0.1, momentum=0.9), jol.adagrad(0.1), jol.rmsprop(0.1), jol.adamw(1e-3)],
    ids=["adam", "momentum", "adagrad", "rmsprop", "adamw"],
)
def test_structure_mismatch_names_the_first_differing_path(tx):
    state = tx.init(PARAMS)
    grads = {"layer1": {"w": jnp.ones((2, 2)), "bias": jnp.zeros(2)}, "layer2": {"w": jnp.ones((2, 1))}}
    with pytest.raises(ValueError) as info:
        tx.update(grads, state, PARAMS)
    message = str(info.value)
    assert "['layer1']['bias']" in message and "['layer1']['b']" in message


def test_missing_leaf_is_named():
    tx = jol.adam(1e-3)
    state = tx.init(PARAMS)
    grads = {"layer1": {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, "layer2": {}}
    with pytest.raises(ValueError, match=re.escape("['layer2']['w']")):
        tx.update(grads, state, PARAMS)


def test_weight_decay_without_params_says_what_to_pass():
    tx = jol.adamw(1e-3)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(PARAMS, tx.init(PARAMS))


def test_get_state_field_lists_available_names():
    state = jol.adam(1e-3).init(PARAMS)
    assert int(jol.get_state_field(state, "count")) == 0
    with pytest.raises(KeyError, match="'mu'"):
        jol.get_state_field(state, "learning_rate")
