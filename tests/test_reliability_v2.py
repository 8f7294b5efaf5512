"""The severe and class-defining cases of the reliability audit v2
(shared/reviews/reliability-v2.md), each test named after its case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol

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
