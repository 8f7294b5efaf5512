"""Bad input fails early, with a message that names the argument, the value and the range."""

import math
import re

import jax.numpy as jnp
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures import schedules

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


# every range check of the schedules and the transformations, each with its owner and argument
# (issue 25: mutants that drop the owner, rename the argument or pass another value lived on)
_one = schedules.constant(1.0)
RANGE_CHECKS = [
    (lambda: schedules.constant(-1.0), "constant", "value"),
    (lambda: schedules.linear(-1.0, 0.0, 5), "linear", "init_value"),
    (lambda: schedules.linear(1.0, -1.0, 5), "linear", "end_value"),
    (lambda: schedules.linear(1.0, 0.0, -1), "linear", "transition_steps"),
    (lambda: schedules.linear(1.0, 0.0, 5, -1), "linear", "transition_begin"),
    (lambda: schedules.exponential_decay(-1.0, 5, 0.5), "exponential_decay", "init_value"),
    (lambda: schedules.exponential_decay(1.0, 5, 0.0), "exponential_decay", "decay_rate"),
    (lambda: schedules.exponential_decay(1.0, 5, 0.5, -1), "exponential_decay", "transition_begin"),
    (lambda: schedules.exponential_decay(1.0, 5, 0.5, end_value=-1.0), "exponential_decay", "end_value"),
    (lambda: schedules.piecewise_constant(-1.0), "piecewise_constant", "init_value"),
    (lambda: schedules.piecewise_constant(1.0, {-1: 0.5}), "piecewise_constant", "boundary"),
    (lambda: schedules.piecewise_constant(1.0, {5: -0.5}), "piecewise_constant", "scale"),
    (lambda: schedules.step_decay(1.0, 0), "step_decay", "step_size"),
    (lambda: schedules.cosine_decay(-1.0, 5), "cosine_decay", "init_value"),
    (lambda: schedules.cosine_decay(1.0, 0), "cosine_decay", "decay_steps"),
    (lambda: schedules.cosine_decay(1.0, 5, alpha=1.5), "cosine_decay", "alpha"),
    (lambda: schedules.cosine_decay(1.0, 5, exponent=0.0), "cosine_decay", "exponent"),
    (lambda: schedules.join([_one, _one], [-1]), "join", "boundary"),
    (lambda: schedules.warmup_cosine_decay(-1.0, 1.0, 2, 10), "warmup_cosine_decay", "init_value"),
    (lambda: schedules.warmup_cosine_decay(0.0, -1.0, 2, 10), "warmup_cosine_decay", "peak_value"),
    (lambda: schedules.warmup_cosine_decay(0.0, 1.0, 2, 10, end_value=-1.0), "warmup_cosine_decay", "end_value"),
    (lambda: schedules.warmup_cosine_decay(0.0, 1.0, -1, 10), "warmup_cosine_decay", "warmup_steps"),
    (lambda: jol.sgd(-1.0), "sgd", "learning_rate"),
    (lambda: jol.momentum(-1.0), "momentum", "learning_rate"),
    (lambda: jol.adagrad(-1.0), "adagrad", "learning_rate"),
    (lambda: jol.rmsprop(-1.0), "rmsprop", "learning_rate"),
    (lambda: jol.adam(-1.0), "adam", "learning_rate"),
    (lambda: jol.adamw(-1.0), "adamw", "learning_rate"),
    (lambda: jol.scale_by_adagrad(eps=-1.0), "scale_by_adagrad", "eps"),
    (lambda: jol.scale_by_adagrad(initial_accumulator_value=-1.0), "scale_by_adagrad", "initial_accumulator_value"),
    (lambda: jol.scale_by_rms(eps=-1.0), "scale_by_rms", "eps"),
    (lambda: jol.scale_by_rms(initial_scale=-1.0), "scale_by_rms", "initial_scale"),
    (lambda: jol.scale_by_adam(eps=-1.0), "scale_by_adam", "eps"),
    (lambda: jol.scale_by_adam(eps_root=-1.0), "scale_by_adam", "eps_root"),
    (lambda: jol.clip(-1.0), "clip", "max_delta"),
    (lambda: jol.clip_by_global_norm(0.0), "clip_by_global_norm", "max_norm"),
    (lambda: jol.add_momentum(1.5), "add_momentum", "beta"),
    (lambda: jol.add_momentum(1.5, variant="sum"), "add_momentum", "beta"),
    (lambda: jol.add_l1_regularization(-1.0), "add_l1_regularization", "coeff"),
    (lambda: jol.add_l2_regularization(-1.0), "add_l2_regularization", "coeff"),
    (lambda: jol.decoupled_weight_decay(-1.0), "decoupled_weight_decay", "weight_decay"),
    (lambda: jol.scale(math.inf), "scale", "step_size"),
    (lambda: jol.apply_if_finite(jol.sgd(0.1), max_consecutive_errors=-1), "apply_if_finite", "max_consecutive_errors"),
    (lambda: jol.accumulate_gradients(jol.sgd(0.1), every_k=0), "accumulate_gradients", "every_k"),
]


@pytest.mark.parametrize("make, owner, arg", RANGE_CHECKS, ids=[f"{o}.{a}" for _, o, a in RANGE_CHECKS])
def test_every_range_check_names_its_owner_and_argument(make, owner, arg):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value).startswith(f"{owner}: {arg}="), str(info.value)
    assert "is out of range; allowed:" in str(info.value)


_P = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
STATEFUL = [
    (lambda: jol.scale_by_adagrad(), "scale_by_adagrad"),
    (lambda: jol.scale_by_rms(), "scale_by_rms"),
    (lambda: jol.scale_by_adam(), "scale_by_adam"),
    (lambda: jol.add_momentum(0.9), "add_momentum"),
    (lambda: jol.partition({"a": jol.sgd(0.1), "b": jol.sgd(0.2)}, {"w": "a", "b": "b"}), "partition"),
    (lambda: jol.scale_by_schedule(schedules.constant(1.0)), "scale_by_schedule"),
    (lambda: jol.masked(jol.sgd(0.1), {"w": True, "b": False}), "masked"),
    (lambda: jol.apply_if_finite(jol.sgd(0.1), 3), "apply_if_finite"),
    (lambda: jol.accumulate_gradients(jol.sgd(0.1), every_k=2), "accumulate_gradients"),
    (lambda: jol.flatten(jol.sgd(0.1)), "flatten"),
]


@pytest.mark.parametrize("make, owner", STATEFUL, ids=[o for _, o in STATEFUL])
def test_every_stateful_transformation_refuses_another_state_naming_itself(make, owner):
    other = jol.scale_by_adam() if owner == "add_momentum" else jol.add_momentum(0.9)
    with pytest.raises(ValueError) as info:
        make().update(_P, other.init(_P), _P)
    assert str(info.value).startswith(f"{owner} got a state of type {type(other.init(_P)).__name__} where")


def test_masked_names_its_mask_and_the_grads_that_do_not_fit():
    with pytest.raises(ValueError, match=r"^the structure of masked mask does not match params"):
        jol.masked(jol.sgd(0.1), {"w": True}).init(_P)  # at init: a mask without the params' leaf 'b'
    tx = jol.masked(jol.sgd(0.1), {"w": True, "b": False})
    state = tx.init(_P)
    with pytest.raises(ValueError, match=r"^the structure of masked mask does not match params"):
        tx.update(_P, state, {"w": _P["w"]})  # params without the mask's leaf 'b'
    with pytest.raises(ValueError, match=r"^the structure of grads does not match mask"):
        tx.update({"w": _P["w"]}, state, _P)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: jol.scale_by_rms(), "state.nu"),
        (lambda: jol.scale_by_stddev(), "state.nu"),
        (lambda: jol.scale_by_adam(), "state.mu"),
        (lambda: jol.scale_by_adagrad(), "state.sum_of_squares"),
        (lambda: jol.add_momentum(0.9), "state.mu"),
    ],
)
def test_a_gradient_of_another_shape_names_the_state_field_it_meets(make, field):
    tx = make()
    state = tx.init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match=re.escape(f"grads has shape (4,) at ['w'] where {field} has shape (3,)")):
        tx.update({"w": jnp.ones(4)}, state, None)


@pytest.mark.parametrize("make", [jol.add_l2_regularization, jol.add_l1_regularization, jol.decoupled_weight_decay])
def test_a_penalty_names_the_grads_and_params_whose_shapes_differ(make):
    tx = make(0.1)
    params = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match=re.escape("grads has shape (2, 4) at ['w'] where params has shape (2, 3)")):
        tx.update({"w": jnp.ones((2, 4))}, tx.init(params), params)


def test_an_array_hyperparameter_out_of_range_is_named_as_an_array_or_one_of_its_elements():
    with pytest.raises(ValueError, match=re.escape("adam: learning_rate=-1.0 (a float32 array) is out of range")):
        jol.adam(jnp.asarray(-1.0))
    with pytest.raises(ValueError, match=re.escape("(an element of a float32 array of shape (2,)) is out of range")):
        jol.adam(jnp.asarray([0.1, -1.0]))


def test_trees_whose_containers_differ_in_type_only_are_told_so():
    params = {"a": (jnp.ones(2), jnp.ones(2))}
    with pytest.raises(ValueError, match="the leaves sit at the same paths but the containers differ in type"):
        jol.apply_updates(params, {"a": [jnp.ones(2), jnp.ones(2)]})
