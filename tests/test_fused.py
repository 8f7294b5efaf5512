"""Fused optimizers: the same numbers as the per-leaf chains, in place, state no larger."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures.fused import (
    FusedState,
    Packed,
    fused_adam,
    fused_adamw,
    fused_sgd,
    jit_step,
    make_layout,
    state_bytes,
)


def _params():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": {"kernel": jax.random.normal(k1, (6, 5)), "bias": jnp.zeros((5,))},
        "conv": jax.random.normal(k2, (3, 3, 2, 4)),
        "scale": jnp.ones((4,)),
        "half": jax.random.normal(k3, (7,), jnp.bfloat16),
    }


def _grads(params, i):
    return jax.tree.map(lambda p: (jnp.sin(3.0 * p + i) + 0.1 * i).astype(p.dtype), params)


def _reference_step(tx):
    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jol.apply_updates(params, updates), state

    return step


PAIRS = {
    "adam": (lambda: jol.adam(1e-2), lambda: fused_adam(1e-2)),
    "adam_no_bias_correction": (
        lambda: jol.adam(3e-2, b1=0.8, b2=0.99, eps=1e-6, bias_correction=False, eps_root=1e-9),
        lambda: fused_adam(3e-2, b1=0.8, b2=0.99, eps=1e-6, bias_correction=False, eps_root=1e-9),
    ),
    "adamw_masked": (lambda: jol.adamw(1e-2, weight_decay=0.1), lambda: fused_adamw(1e-2, weight_decay=0.1)),
    "adamw_all": (lambda: jol.adamw(1e-2, weight_decay=0.1, mask=None),
                  lambda: fused_adamw(1e-2, weight_decay=0.1, mask=None)),
    "adam_schedule": (lambda: jol.adam(jol.schedules.exponential_decay(1e-2, 2, 0.5)),
                      lambda: fused_adam(jol.schedules.exponential_decay(1e-2, 2, 0.5))),
    "sgd": (lambda: jol.sgd(0.1), lambda: fused_sgd(0.1)),
    "sgd_momentum": (lambda: jol.sgd(0.1, momentum=0.9), lambda: fused_sgd(0.1, momentum=0.9)),
    "sgd_nesterov": (lambda: jol.sgd(0.1, momentum=0.9, nesterov=True),
                     lambda: fused_sgd(0.1, momentum=0.9, nesterov=True)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_matches_per_leaf_bit_for_bit(name):
    make_ref, make_fused = PAIRS[name]
    ref, opt = make_ref(), make_fused()
    params = _params()
    ref_step, step = _reference_step(ref), jit_step(opt)
    ref_state, state = ref.init(params), opt.init(params)
    for i in range(4):
        grads = _grads(params, i)  # the same gradients for both: computed at the reference θ
        params, ref_state = ref_step(params, ref_state, grads)
        state = step(state, grads)
        got = state.params.unpack()
        for (path, want), have in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(got)):
            assert have.dtype == want.dtype and have.shape == want.shape, path
            np.testing.assert_array_equal(np.asarray(have, np.float32), np.asarray(want, np.float32),
                                          err_msg=f"{name} step {i} at {jax.tree_util.keystr(path)}")


def test_packed_grads_and_tree_grads_give_the_same_step():
    opt = fused_adam(1e-2)
    params = _params()
    a, b = opt.init(params), opt.init(params)
    grads = _grads(params, 1)
    a = jax.jit(opt.step)(a, grads)
    b = jax.jit(opt.step)(b, Packed.pack(grads, b.params.layout))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))


def test_state_is_no_larger_than_the_per_leaf_state():
    params = _params()
    for ref, opt in [(jol.adam(1e-3), fused_adam(1e-3)), (jol.sgd(0.1, momentum=0.9), fused_sgd(0.1, momentum=0.9)),
                     (jol.adamw(1e-3), fused_adamw(1e-3))]:
        ref_bytes = sum(x.nbytes for x in jax.tree.leaves(ref.init(params)))
        assert state_bytes(opt.init(params)) <= ref_bytes
    assert fused_sgd(0.1).init(params).mu is None


def test_layout_groups_by_dtype_and_decay_mask():
    params = _params()
    layout = make_layout(params, jax.tree.map(lambda p: p.ndim >= 2, params))
    assert {name: size for name, _, size in layout.groups} == {
        "bfloat16_nodecay": 7, "float32_decay": 30 + 72, "float32_nodecay": 5 + 4,
    }
    packed = Packed.pack(params, layout)
    for a, b in zip(jax.tree.leaves(packed.unpack()), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_step_updates_in_place_without_new_buffers():
    opt = fused_adamw(1e-2)
    params = _params()
    state = opt.init(params)
    step = jit_step(opt)
    state = step(state, _grads(params, 0))  # compile
    before = {id(x): x.unsafe_buffer_pointer() for x in jax.tree.leaves(state) if x.size > 1}
    pointers = sorted(before.values())
    new = step(state, _grads(params, 1))
    after = sorted(x.unsafe_buffer_pointer() for x in jax.tree.leaves(new) if x.size > 1)
    assert after == pointers, "the donated buffers were not reused"
    assert all(x.is_deleted() for x in jax.tree.leaves(state) if x.size > 1)
    text = step.lower(new, _grads(params, 2)).compile().as_text()
    assert "input_output_alias" in text
    assert " copy(" not in text, "XLA inserted a parameter-sized copy"


def test_init_does_not_alias_the_callers_arrays():
    leaf = jnp.arange(6.0)
    opt = fused_sgd(0.1, momentum=0.5)
    state = opt.init([leaf])
    jit_step(opt)(state, [jnp.ones(6)])
    assert not leaf.is_deleted()


def test_gradients_with_another_structure_are_refused():
    opt = fused_adam(1e-3)
    state = opt.init(_params())
    with pytest.raises(ValueError, match="structure"):
        opt.step(state, [jnp.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        opt.step(state, jax.tree.map(lambda p: jnp.ones((2,), p.dtype), _params()))


def test_bad_hyperparameters_are_refused_at_construction():
    with pytest.raises(ValueError, match="b1"):
        fused_adam(1e-3, b1=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        fused_sgd(-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        fused_adamw(1e-3, weight_decay=-0.1)
    with pytest.raises(TypeError, match="floating"):
        fused_sgd(0.1).init([jnp.arange(3)])


def test_a_training_loop_with_views_of_the_packed_params():
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss(p):
        return jnp.mean(jnp.square(x @ p["w"] + p["b"] - y))

    opt = fused_adam(0.1)
    state = opt.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    assert isinstance(state, FusedState)

    @jax.jit
    def train_step(state):
        grads = jax.grad(loss)(state.params.unpack())
        return opt.step(state, grads)

    first = loss(state.params.unpack())
    for _ in range(100):
        state = train_step(state)
    assert loss(state.params.unpack()) < 1e-2 * first
