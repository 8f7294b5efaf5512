"""The fused optimizers in the init/update protocol (``opt.as_transformation()``): the same
numbers as the per-leaf chains and as the fused ``init/step``, inside ``flax.nnx.Optimizer``
and ``flax.training.train_state.TrainState``, on both backends of the packed update.

The XLA backend returns the chain's update ``u`` itself (equal bit for bit when called
directly); the kernel backend returns ``θ' − θ`` (equal to rounding). Inside a whole jitted
train step XLA may fuse the gradient with the update differently for two optimizers, so the
Flax comparisons use a tight tolerance, not bits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.training import train_state

import jaxopt_lectures as jol
from jaxopt_lectures import fused
from jaxopt_lectures.fused import FusedMoments, FusedOptimizer, Packed, fused_adam, fused_adamw, fused_sgd, jit_step

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(64, 5)), jnp.float32)
Y = jnp.asarray(X @ RNG.normal(size=(5, 1)) + 0.3, jnp.float32)
STEPS = 12


@pytest.fixture(params=[False, True], ids=["concat", "leaf_writes"])
def leaf_writes(request, monkeypatch):
    """The XLA groups' two forms: moments concatenated (the CPU default) or written leaf by
    leaf with dynamic_update_slice (the default off the CPU), forced here."""
    monkeypatch.setattr(fused, "LEAF_WRITES", request.param)
    return request.param


class Tiny(nnx.Module):
    def __init__(self, rngs, dtype=jnp.float32):
        self.l1 = nnx.Linear(5, 16, rngs=rngs, param_dtype=dtype, dtype=dtype)
        self.l2 = nnx.Linear(16, 1, rngs=rngs, param_dtype=dtype, dtype=dtype)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.l1(x.astype(self.l1.kernel.dtype)))).astype(jnp.float32)


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


PAIRS = {  # name: (per-leaf chain, fused factory taking backend=)
    "adamw": (lambda: jol.adamw(1e-2, weight_decay=1e-2), lambda **kw: fused_adamw(1e-2, weight_decay=1e-2, **kw)),
    "adam_eps_root": (lambda: jol.adam(3e-2, eps_root=1e-7), lambda **kw: fused_adam(3e-2, eps_root=1e-7, **kw)),
    "adamw_schedule": (
        lambda: jol.adamw(jol.schedules.exponential_decay(1e-2, 2, 0.5), weight_decay=0.1, mask=None),
        lambda **kw: fused_adamw(jol.schedules.exponential_decay(1e-2, 2, 0.5), weight_decay=0.1, mask=None, **kw),
    ),
    "sgd": (lambda: jol.sgd(0.1), lambda **kw: fused_sgd(0.1, **kw)),
    "sgd_momentum": (lambda: jol.sgd(0.05, momentum=0.9), lambda **kw: fused_sgd(0.05, momentum=0.9, **kw)),
    "sgd_nesterov": (
        lambda: jol.sgd(0.05, momentum=0.9, nesterov=True),
        lambda **kw: fused_sgd(0.05, momentum=0.9, nesterov=True, **kw),
    ),
}


def _params():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "dense": {"kernel": jax.random.normal(k1, (6, 5)), "bias": jnp.zeros((5,))},
        "conv": jax.random.normal(k2, (3, 3, 2, 4)),
        "scalar": jnp.array(0.5),
        "big": jax.random.normal(k3, (300, 500)),
        "half": jax.random.normal(k3, (7,), jnp.bfloat16),
    }


def _grads(params, i):
    return jax.tree.map(lambda p: (10.0 ** (i - 2) * jnp.sin(3.0 * p + i) + 0.1 * i).astype(p.dtype), params)


def _bits(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: max diff {np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))}"


def _close(a, b, what, rtol=1e-6, atol=1e-7):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol, err_msg=what)


def _run(tx, params, steps):
    """``steps`` jitted ``update`` + ``apply_updates`` calls; the updates and params of each."""

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jol.apply_updates(params, updates), state, updates

    state, out = tx.init(params), []
    for i in range(steps):
        params, state, updates = step(params, state, _grads(params, i))
        out.append((params, updates))
    return out, state


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_transformation_matches_the_chain(name, backend, leaf_writes):
    """XLA: the chain's updates and parameters bit for bit. Kernel: u = θ' − θ, to rounding."""
    make_ref, make_fused = PAIRS[name]
    params = _params()
    ref, _ = _run(make_ref(), params, 4)
    have, state = _run(make_fused(backend=backend).as_transformation(), params, 4)
    assert isinstance(state, FusedMoments) and int(state.count) == 4
    for i, ((p_ref, u_ref), (p, u)) in enumerate(zip(ref, have)):
        for (path, a), b, ua, ub in zip(
            jax.tree_util.tree_leaves_with_path(p), jax.tree.leaves(p_ref), jax.tree.leaves(u), jax.tree.leaves(u_ref)
        ):
            what = f"{name} ({backend}) step {i}: {jax.tree_util.keystr(path)}"
            if backend == "xla" or a.dtype == jnp.bfloat16:  # bf16 groups take the XLA rule
                _bits(ua, ub, what + " update")
                _bits(a, b, what + " params")
            else:
                # θ' − θ carries θ's rounding: off by up to an ulp of θ (|θ| < 5 here)
                _close(ua, ub, what + " update", rtol=1e-5, atol=5e-7)
                _close(a, b, what + " params", rtol=1e-6, atol=1e-6)  # a few ulps after 4 steps


@pytest.mark.parametrize("name", ["adamw", "sgd_nesterov"])
def test_transformation_matches_the_fused_step(name, backend):
    params = _params()
    opt = PAIRS[name][1](backend=backend)
    have, _ = _run(opt.as_transformation(), params, 4)
    state, step = opt.init(params), jit_step(opt)
    for i in range(4):
        # the gradients at the adapter's θ, so both see the same ones
        state = step(state, _grads(have[i - 1][0] if i else params, i))
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(have[i][0]), jax.tree.leaves(state.params.unpack())
        ):
            # two programs: XLA may contract a multiply-add in one and not the other (an ulp)
            _close(a, b, f"{name} ({backend}) step {i}: {jax.tree_util.keystr(path)}", rtol=1e-6, atol=1e-7)


def test_state_holds_the_moments_only():
    params = _params()
    n = sum(x.size for x in jax.tree.leaves(params))
    state = fused_adamw(1e-3).as_transformation().init(params)
    assert isinstance(state.mu, Packed) and isinstance(state.nu, Packed)
    assert sum(b.size for b in state.mu.buffers.values()) == n == sum(b.size for b in state.nu.buffers.values())
    assert not hasattr(state, "params")
    assert fused_sgd(0.1).as_transformation().init(params) == FusedMoments(jnp.zeros([], jnp.int32), None, None)
    assert fused_sgd(0.1, 0.9).as_transformation().init(params).nu is None


def test_update_donated_updates_the_moments_in_place(monkeypatch):
    """Under a donating jit the moment buffers are reused (XLA groups with leaf writes: leaf
    by leaf with dynamic_update_slice, no concatenation)."""
    monkeypatch.setattr(fused, "LEAF_WRITES", True)
    params = {k: v for k, v in _params().items() if k != "half"}
    tx = fused_adamw(1e-2, backend="xla").as_transformation()
    update = jax.jit(tx.update, donate_argnums=1)
    state = update(_grads(params, 0), tx.init(params), params)[1]
    before = sorted(x.unsafe_buffer_pointer() for x in jax.tree.leaves((state.mu, state.nu)))
    _, new = update(_grads(params, 1), state, params)
    assert sorted(x.unsafe_buffer_pointer() for x in jax.tree.leaves((new.mu, new.nu))) == before
    text = update.lower(_grads(params, 2), new, params).compile().as_text()
    assert "concatenate" not in text
    copies = [line for line in text.splitlines() if " copy(" in line]
    if copies and jax.__version_info__ >= (0, 11):
        pytest.xfail(
            "jax >= 0.11's CPU compiler copies the packed moments around the leaf writes (issue 11: unmeasured on GPU)"
        )
    assert not copies, "a moment buffer was copied"


def _train_nnx(tx, steps=STEPS, dtype=jnp.float32):
    model = Tiny(nnx.Rngs(0), dtype)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        loss, grads = nnx.value_and_grad(mse)(model, X, Y)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(steps)]
    return model, opt, losses


@pytest.mark.parametrize("name", ["adamw", "sgd_momentum"])
def test_nnx_optimizer_trains_with_the_fused_rule(name, backend):
    make_ref, make_fused = PAIRS[name]
    model, opt, losses = _train_nnx(make_fused(backend=backend).as_transformation())
    ref_model, _, ref_losses = _train_nnx(make_ref())
    assert losses[-1] < 0.5 * losses[0]
    _close(losses, ref_losses, "losses", rtol=1e-5)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)),
        jax.tree.leaves(nnx.state(ref_model, nnx.Param)),
    ):
        _close(a, b, f"{name} ({backend}) {jax.tree_util.keystr(path)}", rtol=1e-5, atol=1e-6)
    # the named state survives inside nnx's optimizer state (its leaves are nnx Variables)
    assert int(jol.get_state_field(opt.opt_state, "count")[...]) == STEPS


def test_nnx_optimizer_matches_the_fused_step_in_a_hand_written_loop(backend):
    """The three ways to run the rule give one trajectory: nnx.Optimizer with the adapter,
    and the fused init/step on the model's parameters (the hand-written fast loop)."""
    model, _, losses = _train_nnx(fused_adamw(1e-2, weight_decay=1e-2, backend=backend).as_transformation())
    graphdef, params = nnx.split(Tiny(nnx.Rngs(0)), nnx.Param)
    opt = fused_adamw(1e-2, weight_decay=1e-2, backend=backend)
    state, step = opt.init(nnx.to_pure_dict(params)), jit_step(opt)

    def loss_of(p):
        nnx.replace_by_pure_dict(params, p)
        return mse(nnx.merge(graphdef, params), X, Y)

    loop_losses = []
    for _ in range(STEPS):
        loss, grads = jax.value_and_grad(loss_of)(state.params.unpack())
        loop_losses.append(float(loss))
        state = step(state, grads)
    _close(losses, loop_losses, "losses", rtol=1e-5)
    want = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state.params.unpack()), jax.tree.leaves(want)):
        _close(a, b, jax.tree_util.keystr(path), rtol=1e-5, atol=1e-6)


def test_nnx_optimizer_with_bfloat16_params():
    """bfloat16 groups (moments rounded when stored) take the XLA rule, leaf by leaf."""
    model, _, losses = _train_nnx(fused_adamw(1e-2, weight_decay=1e-2).as_transformation(), dtype=jnp.bfloat16)
    ref_model, _, ref_losses = _train_nnx(jol.adamw(1e-2, weight_decay=1e-2), dtype=jnp.bfloat16)
    assert losses[-1] < 0.8 * losses[0]
    _close(losses, ref_losses, "losses", rtol=1e-2)  # bf16 forward passes: fusion order shows
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(nnx.state(ref_model, nnx.Param))):
        assert a.dtype == jnp.bfloat16
        _close(a, b, "bf16 params", rtol=2e-2, atol=2e-2)


def _train_state(tx, steps=STEPS):
    model = Tiny(nnx.Rngs(1))
    graphdef, params = nnx.split(model, nnx.Param)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    state = train_state.TrainState.create(apply_fn=apply_fn, params=params, tx=tx)

    @jax.jit
    def step(state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((state.apply_fn(p, X) - Y) ** 2))(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(steps):
        state, loss = step(state)
        losses.append(float(loss))
    return state, losses


@pytest.mark.parametrize("name", ["adamw", "sgd_nesterov"])
def test_train_state_trains_with_the_fused_rule(name, backend):
    make_ref, make_fused = PAIRS[name]
    state, losses = _train_state(make_fused(backend=backend).as_transformation())
    ref, ref_losses = _train_state(make_ref())
    assert losses[-1] < 0.5 * losses[0]
    _close(losses, ref_losses, "losses", rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        _close(a, b, f"{name} ({backend})", rtol=1e-5, atol=1e-6)
    assert int(state.opt_state.count) == STEPS == int(state.step)


def test_inside_a_chain():
    params = _params()
    ref, _ = _run(jol.chain(jol.clip_by_global_norm(1.0), jol.adamw(1e-2, weight_decay=1e-2)), params, 3)
    have, _ = _run(
        jol.chain(
            jol.clip_by_global_norm(1.0), fused_adamw(1e-2, weight_decay=1e-2, backend="xla").as_transformation()
        ),
        params,
        3,
    )
    for (p_ref, _), (p, _) in zip(ref, have):
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(p_ref)):
            _bits(a, b, "chain(clip, fused adamw)")


def test_errors_name_what_is_wrong():
    params = _params()
    tx = fused_adamw(1e-2).as_transformation()
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, state)
    with pytest.raises(ValueError, match="FusedMoments"):
        tx.update(params, jol.adamw(1e-2).init(params), params)
    with pytest.raises(ValueError, match="structure"):
        tx.update([jnp.ones(3)], state, params)
    with pytest.raises(ValueError, match=r"shape \(2,\) at \['big'\]"):
        tx.update({**params, "big": jnp.ones(2)}, state, {**params, "big": jnp.ones(2)})
    with pytest.raises(TypeError, match="no init/update form"):
        FusedOptimizer(lambda p: p, lambda s, g: s).as_transformation()


def test_chain_names_the_init_update_form_of_a_fused_optimizer():
    with pytest.raises(TypeError, match=r"chain opt\.as_transformation\(\)"):
        jol.chain(jol.clip_by_global_norm(1.0), fused_adamw(1e-2))
