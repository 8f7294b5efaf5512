"""jol.partition / set_to_zero / freeze: optax.partition's numbers, named state, clear errors."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jol

RNG = np.random.default_rng(0)


def _arr(*shape):
    return jnp.asarray(RNG.normal(size=shape), jnp.float32)


PARAMS = {
    "body": {"dense1": {"kernel": _arr(4, 3), "bias": _arr(3)}, "dense2": {"kernel": _arr(3, 3), "bias": _arr(3)}},
    "head": {"kernel": _arr(3, 2), "bias": _arr(2)},
}
TARGETS = [jax.tree.map(lambda p: jnp.asarray(RNG.normal(size=p.shape), jnp.float32), PARAMS) for _ in range(5)]


def grads_at(params, k):
    """The gradient of Σ (p − t_k)²·(1 + p²)/2: it changes with the parameters and the step."""
    return jax.tree.map(lambda p, t: (p - t) * (1.0 + p * p) + p * (p - t) ** 2, params, TARGETS[k % len(TARGETS)])


def trajectory(tx, steps=5, update=None, extra=None):
    update = update or tx.update
    params, state, out = PARAMS, tx.init(PARAMS), []
    for k in range(steps):
        updates, state = update(grads_at(params, k), state, params, **(extra or {}))
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


def kernel_or_bias(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: "kernel" if path[-1].key == "kernel" else "bias", params)


def full_labels(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[0].key, params)


# (name, jol transforms, optax transforms, labels): each case runs both partitions and compares.
CASES = {
    "dict_of_labels": (
        lambda: {"body": jol.adam(1e-2), "head": jol.sgd(0.1, momentum=0.9)},
        lambda: {"body": optax.adam(1e-2), "head": optax.sgd(0.1, momentum=0.9)},
        full_labels(PARAMS),
    ),
    "label_function": (
        lambda: {"kernel": jol.adamw(1e-2, weight_decay=0.1, mask=None), "bias": jol.adam(1e-2)},
        lambda: {"kernel": optax.adamw(1e-2, weight_decay=0.1), "bias": optax.adam(1e-2)},
        kernel_or_bias,
    ),
    "prefix_labels": (
        lambda: {"body": jol.adam(3e-2, b1=0.8, b2=0.99), "head": jol.sgd(0.05, momentum=0.5)},
        lambda: {"body": optax.adam(3e-2, b1=0.8, b2=0.99), "head": optax.sgd(0.05, momentum=0.5)},
        {"body": "body", "head": "head"},
    ),
    "nested_jol_and_optax": (
        lambda: {
            "body": jol.chain(
                jol.clip_by_global_norm(0.5), jol.adamw(1e-3, weight_decay=1e-2, mask=jol.decay_matrices_only)
            ),
            "head": jol.chain(optax.clip(0.3), jol.sgd(0.1)),
        },
        lambda: {
            "body": optax.chain(
                optax.clip_by_global_norm(0.5), optax.adamw(1e-3, weight_decay=1e-2, mask=jol.decay_matrices_only)
            ),
            "head": optax.chain(optax.clip(0.3), optax.sgd(0.1)),
        },
        {"body": "body", "head": "head"},
    ),
}


class PartitionMatchesOptax(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_same_numbers_as_optax_partition(self):
        for name in sorted(CASES):
            ours_txs, theirs_txs, labels = CASES[name]
            ours = jol.partition(ours_txs(), labels)
            theirs = optax.partition(theirs_txs(), labels)
            got, _ = trajectory(ours, update=self.variant(ours.update))
            want, _ = trajectory(theirs)
            # the trajectories really depend on the per-part routing (not all parts alike)
            assert float(jnp.max(jnp.abs(got[-1]["head"]["kernel"] - PARAMS["head"]["kernel"]))) > 1e-3
            chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_same_numbers_with_optax_inner_transforms_and_inside_optax_chain(self):
        txs = {"body": jol.adamw(1e-3, weight_decay=1e-2, mask=jol.decay_matrices_only), "head": optax.sgd(0.1)}
        ours = optax.chain(optax.clip_by_global_norm(1.0), jol.partition(txs, {"body": "body", "head": "head"}))
        theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.partition(txs, {"body": "body", "head": "head"}))
        got, _ = trajectory(ours, update=self.variant(ours.update))
        want, _ = trajectory(theirs)
        chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-7)


def test_each_part_sees_only_its_leaves():
    tx = jol.partition({"body": jol.adam(1e-2), "head": jol.sgd(0.1)}, {"body": "body", "head": "head"})
    state = tx.init(PARAMS)
    assert isinstance(state, jol.PartitionState)
    assert sorted(state.inner_states) == ["body", "head"]
    adam_state = state.inner_states["body"][0]
    assert isinstance(adam_state, jol.AdamState)
    assert isinstance(adam_state.mu["head"]["kernel"], jol.MaskedNode)
    chex.assert_trees_all_equal_shapes(adam_state.mu["body"], PARAMS["body"])
    # the head's global norm is the norm of the head only
    clip = jol.partition(
        {"body": jol.identity(), "head": jol.clip_by_global_norm(1e-3)}, {"body": "body", "head": "head"}
    )
    grads = grads_at(PARAMS, 0)
    updates, _ = clip.update(grads, clip.init(PARAMS), PARAMS)
    np.testing.assert_allclose(float(jol.global_norm(updates["head"])), 1e-3, rtol=1e-5)
    chex.assert_trees_all_equal(updates["body"], grads["body"])


def test_state_fields_by_name_reach_into_the_parts():
    injected = jol.inject_hyperparams(jol.adam)(learning_rate=1e-2)
    tx = jol.partition({"body": jol.sgd(0.1), "head": injected}, {"body": "body", "head": "head"})
    state = tx.init(PARAMS)
    np.testing.assert_allclose(float(jol.get_state_field(state, "learning_rate")), 1e-2, rtol=1e-6)
    assert int(state.inner_states["head"].count) == 0
    _, state = trajectory(tx, steps=2)
    np.testing.assert_allclose(float(jol.get_state_field(state.inner_states["head"], "learning_rate")), 1e-2, rtol=1e-6)
    state = jol.set_state_field(state, "learning_rate", 1e-3)
    np.testing.assert_allclose(float(state.inner_states["head"].hyperparams["learning_rate"]), 1e-3, rtol=1e-6)
    assert int(state.inner_states["head"].count) == 2
    assert isinstance(state, jol.PartitionState) and state.inner_states["body"] == (jol.EmptyState(),) * len(
        state.inner_states["body"]
    )


def test_set_one_parts_learning_rate_and_find_all_of_them():
    injected = jol.inject_hyperparams(jol.adam)
    tx = jol.partition(
        {"body": injected(learning_rate=1e-4), "head": injected(learning_rate=1e-2)}, {"body": "body", "head": "head"}
    )
    state = tx.init(PARAMS)
    lrs = jol.get_state_field(state, "learning_rate", all=True)
    np.testing.assert_allclose(sorted(float(x) for x in lrs), [1e-4, 1e-2], rtol=1e-6)
    head = jol.set_state_field(state.inner_states["head"], "learning_rate", 3e-3)
    state = state._replace(inner_states={**state.inner_states, "head": head})
    np.testing.assert_allclose(float(state.inner_states["head"].hyperparams["learning_rate"]), 3e-3, rtol=1e-6)
    np.testing.assert_allclose(float(state.inner_states["body"].hyperparams["learning_rate"]), 1e-4, rtol=1e-6)
    jitted = jax.jit(tx.update)
    updates, _ = jitted(grads_at(PARAMS, 0), state, PARAMS)
    # Adam's first step is -lr·sign(g) (up to eps): each part moved with its own learning rate
    np.testing.assert_allclose(np.abs(np.asarray(updates["head"]["kernel"])), 3e-3, rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.asarray(updates["body"]["dense1"]["kernel"])), 1e-4, rtol=1e-4)


def test_an_unknown_label_names_it_and_the_known_labels():
    tx = jol.partition({"body": jol.adam(1e-2), "head": jol.sgd(0.1)}, {"body": "body", "head": "haed"})
    with pytest.raises(ValueError) as err:
        tx.init(PARAMS)
    assert str(err.value) == (
        "partition: param_labels gives the label 'haed' (at ['head']['bias']) for which there is no "
        "transformation; known labels: ['body', 'head']"
    )


def test_an_unknown_label_from_a_function_is_caught_at_update_too():
    tx = jol.partition({"kernel": jol.sgd(0.1), "bias": jol.sgd(0.1)}, kernel_or_bias)
    state = tx.init(PARAMS)
    other = {**PARAMS, "scale": jnp.ones(3)}
    tx2 = jol.partition({"kernel": jol.sgd(0.1)}, kernel_or_bias)
    with pytest.raises(ValueError, match=re.escape("the label 'bias' (at ['body']['dense1']['bias'])")):
        tx2.init(PARAMS)
    with pytest.raises(ValueError, match=re.escape("params have a leaf at ['scale']")):
        jol.partition({"a": jol.sgd(0.1)}, {"body": "a", "head": "a"}).init(other)
    updates, _ = tx.update(grads_at(PARAMS, 0), state, PARAMS)
    chex.assert_trees_all_equal_shapes(updates, PARAMS)


def test_a_label_tree_that_does_not_fit_names_the_first_differing_path():
    txs = {"body": jol.adam(1e-2), "head": jol.sgd(0.1)}
    with pytest.raises(ValueError) as err:
        jol.partition(txs, {"body": "body", "hed": "head"}).init(PARAMS)
    assert str(err.value) == (
        "partition: param_labels does not match the parameters: params have a leaf at ['head']['bias'] "
        "that param_labels gives no value for (param_labels has entries at ['body'], ['hed']); pass a tree "
        "like the params, a prefix of it, or a function of the params"
    )
    extra = {"body": "body", "head": {"kernel": "head", "bias": "head", "scale": "head"}}
    with pytest.raises(ValueError) as err:
        jol.partition(txs, extra).init(PARAMS)
    assert str(err.value) == (
        "partition: param_labels does not match the parameters: it has an entry at ['head']['scale'] "
        "where the params have no leaf (a misspelt key?)"
    )


def test_bad_transforms_are_named():
    with pytest.raises(TypeError, match=re.escape("transforms['head'] is function")):
        jol.partition({"body": jol.adam(1e-2), "head": jol.sgd}, {"body": "body", "head": "head"})
    with pytest.raises(TypeError, match="non-empty mapping"):
        jol.partition({}, "a")
    tx = jol.partition({"a": jol.sgd(0.1)}, "a")
    with pytest.raises(ValueError, match="was the state made by this optimizer's init"):
        tx.update(PARAMS, jol.sgd(0.1).init(PARAMS), PARAMS)


def test_one_label_for_everything_is_the_plain_transformation():
    got, _ = trajectory(jol.partition({"all": jol.adam(1e-2)}, "all"))
    want, _ = trajectory(jol.adam(1e-2))
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_a_label_dict_matches_a_flax_state_by_path():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(4, 3, rngs=rngs)
            self.head = nnx.Linear(3, 2, rngs=rngs)

    params = jax.tree.map(lambda v: v, nnx.state(Net(nnx.Rngs(0)), nnx.Param))
    tx = jol.partition({"b": jol.sgd(0.0), "h": jol.sgd(1.0)}, {"body": "b", "head": "h"})
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(jnp.max(jnp.abs(updates["body"]["kernel"][...]))) == 0.0
    assert float(jnp.min(updates["head"]["kernel"][...])) == -1.0


# --- freezing -----------------------------------------------------------------------------


def test_set_to_zero_in_a_partition_freezes_without_moments():
    tx = jol.partition({"train": jol.adam(1e-2), "frozen": jol.set_to_zero()}, {"body": "frozen", "head": "train"})
    params, state = trajectory(tx, steps=3)
    chex.assert_trees_all_equal(params[-1]["body"], PARAMS["body"])
    assert float(jnp.max(jnp.abs(params[-1]["head"]["kernel"] - PARAMS["head"]["kernel"]))) > 1e-3
    moments = [x for x in jax.tree.leaves(state.inner_states["train"]) if x.ndim > 0]
    assert sum(x.size for x in moments) == 2 * sum(x.size for x in jax.tree.leaves(PARAMS["head"]))
    assert state.inner_states["frozen"] == jol.EmptyState()
    ref, _ = trajectory(
        optax.partition(
            {"train": optax.adam(1e-2), "frozen": optax.set_to_zero()}, {"body": "frozen", "head": "train"}
        ),
        steps=3,
    )
    chex.assert_trees_all_close(params, ref, rtol=2e-5)


@pytest.mark.parametrize("mask", [{"body": True, "head": False}, lambda p: {"body": True, "head": False}])
def test_freeze_zeroes_the_masked_leaves_as_optax(mask):
    tx = jol.chain(jol.freeze(mask), jol.sgd(0.1))
    got, _ = trajectory(tx, steps=3)
    chex.assert_trees_all_equal(got[-1]["body"], PARAMS["body"])
    ref, _ = trajectory(optax.chain(optax.freeze({"body": True, "head": False}), optax.sgd(0.1)), steps=3)
    chex.assert_trees_all_close(got, ref, rtol=1e-6)


def test_freeze_everything_or_nothing():
    grads = grads_at(PARAMS, 0)
    zero, _ = jol.freeze(True).update(grads, jol.freeze(True).init(PARAMS), PARAMS)
    chex.assert_trees_all_equal(zero, jax.tree.map(jnp.zeros_like, grads))
    same, _ = jol.freeze(False).update(grads, jol.freeze(False).init(PARAMS), PARAMS)
    chex.assert_trees_all_equal(same, grads)
    with pytest.raises(ValueError, match=re.escape("freeze: mask does not match the parameters")):
        jol.freeze({"bdy": True, "head": False}).init(PARAMS)


# --- Flax -----------------------------------------------------------------------------------


def test_inside_flax_nnx_optimizer():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(5, 8, rngs=rngs)
            self.head = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.head(jax.nn.relu(self.body(x)))

    x = _arr(64, 5)
    y = x @ _arr(5, 1) + 0.3

    def mse(model, x, y):
        return jnp.mean((model(x) - y) ** 2)

    def train(tx, steps=40):
        model = Net(nnx.Rngs(0))
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            loss, grads = nnx.value_and_grad(mse)(model, x, y)
            opt.update(model, grads)
            return loss

        return model, opt, [float(step(model, opt)) for _ in range(steps)]

    labels = {"body": "body", "head": "head"}
    model, opt, losses = train(jol.partition({"body": jol.set_to_zero(), "head": jol.adam(1e-2)}, labels))
    start = Net(nnx.Rngs(0))
    np.testing.assert_array_equal(model.body.kernel[...], start.body.kernel[...])
    assert losses[-1] < 0.7 * losses[0]
    assert int(jol.get_state_field(opt.opt_state, "count")[...]) == 40
    txs = {"body": jol.adamw(1e-3, weight_decay=1e-2, mask=jol.decay_matrices_only), "head": jol.sgd(0.05)}
    _, _, ours = train(jol.partition(txs, labels))  # a dict of labels fits the nnx.State by path
    _, _, theirs = train(optax.partition(txs, full_labels))  # optax needs a tree of the State's own type
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_extra_arguments_reach_only_the_parts_that_take_them():
    seen = {}

    def spy_update(grads, state, params=None, *, value=None):
        seen["value"] = value
        return grads, state

    spy = jol.GradientTransformation(lambda p: jol.EmptyState(), spy_update)
    tx = jol.partition({"body": optax.clip(0.1), "head": spy}, {"body": "body", "head": "head"})
    grads = grads_at(PARAMS, 0)
    # optax.clip takes no extras and spy takes only value=: passing other=1 to either would raise
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS, value=jnp.asarray(2.0), other=1)
    assert float(seen["value"]) == 2.0
    chex.assert_trees_all_equal(updates["body"], jax.tree.map(lambda g: jnp.clip(g, -0.1, 0.1), grads["body"]))


def test_nested_partitions_match_optax():
    inner = {"kernel": jol.adam(1e-2), "bias": jol.sgd(0.1)}
    ours = jol.partition(
        {"body": jol.partition(inner, kernel_or_bias), "head": jol.sgd(0.05)}, {"body": "body", "head": "head"}
    )
    theirs = optax.partition(
        {"body": optax.partition(inner, kernel_or_bias), "head": optax.sgd(0.05)}, {"body": "body", "head": "head"}
    )
    got, state = trajectory(ours)
    want, _ = trajectory(theirs)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-7)
    assert int(state.inner_states["body"].inner_states["kernel"][0].count) == 5


def test_inside_flatten_is_refused_with_the_fix():
    tx = jol.flatten(jol.partition({"a": jol.sgd(0.1)}, "a"))
    with pytest.raises(ValueError, match=re.escape("put flatten inside each part instead")):
        tx.init(PARAMS)
    inside = jol.partition(
        {"body": jol.flatten(jol.adam(1e-2)), "head": jol.sgd(0.1)}, {"body": "body", "head": "head"}
    )
    got, _ = trajectory(inside)
    want, _ = trajectory(
        optax.partition({"body": optax.adam(1e-2), "head": optax.sgd(0.1)}, {"body": "body", "head": "head"})
    )
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-7)
