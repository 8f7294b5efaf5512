"""Fused optimizers: the same numbers as the per-leaf chains, in place, state no larger.

Both implementations of the packed update are checked: the C++ kernel (an XLA FFI custom
call, ``backend="kernel"``; those tests skip, saying why, where it cannot be built) and the
pure-JAX one (``backend="xla"``).

What each promises against the chain:
- ``backend="xla"``: every number bit for bit (the same compiler rounds both).
- ``backend="kernel"``: the moments m and v, and every number of the SGD family, bit for bit.
  Adam's θ is rounded by g++ on one side and by XLA on the other, which since jax 0.11 is
  free to contract and reorder the bias-corrected step: each step may differ by at most
  ``KERNEL_ULPS_PER_STEP`` ulps of the larger of ``|θ_{t-1}|`` and ``|θ_t|``, and these add up
  over the steps (measured: at most 5 on jax 0.12.1, float32 and float64; 0 on jax 0.10.2).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from _ulps import assert_within_drift, grow_drift
from jaxopt_lectures import _kernels, fused
from jaxopt_lectures.fused import (
    FusedState,
    Packed,
    _kernel_call,
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


def _mixed_params():
    """``_params()`` plus a scalar leaf, a one-element leaf and a leaf larger than the kernel's
    chunk (so the threaded path, with chunks that straddle leaves, is exercised)."""
    k = jax.random.PRNGKey(5)
    return {**_params(), "scalar": jnp.array(0.5), "one": jnp.ones((1,)), "big": jax.random.normal(k, (300, 500))}


def _mixed_grads(params, i):
    """Gradients of several magnitudes (1e-3 ... 1e2), so m, v and the updates vary."""
    return jax.tree.map(lambda p: (10.0 ** (i - 2) * jnp.sin(3.0 * p + i) + 0.1 * i).astype(p.dtype), params)


def _assert_same_bits(have, want, what):
    have, want = np.asarray(have), np.asarray(want)
    assert have.dtype == want.dtype and have.shape == want.shape, what
    if have.tobytes() != want.tobytes():  # a readable message first, then fail on signed zeros too
        np.testing.assert_array_equal(have.astype(np.float64), want.astype(np.float64), err_msg=what)
        raise AssertionError(f"{what}: equal values but different bits (signed zeros)")


SCHEDULE = jol.schedules.exponential_decay(1e-2, 2, 0.5)
PAIRS = {  # name: (per-leaf chain, fused factory taking backend=)
    "adam": (lambda: jol.adam(1e-2), lambda **kw: fused_adam(1e-2, **kw)),
    "adam_no_bias_correction": (
        lambda: jol.adam(3e-2, b1=0.8, b2=0.99, eps=1e-6, bias_correction=False, eps_root=1e-9),
        lambda **kw: fused_adam(3e-2, b1=0.8, b2=0.99, eps=1e-6, bias_correction=False, eps_root=1e-9, **kw),
    ),
    "adam_eps_root": (lambda: jol.adam(3e-2, eps_root=1e-7), lambda **kw: fused_adam(3e-2, eps_root=1e-7, **kw)),
    "adam_array_hyperparameters": (
        lambda: jol.adam(jnp.float32(1e-2), b1=jnp.float32(0.85), b2=jnp.float32(0.995)),
        lambda **kw: fused_adam(jnp.float32(1e-2), b1=jnp.float32(0.85), b2=jnp.float32(0.995), **kw),
    ),
    "adamw_masked": (lambda: jol.adamw(1e-2, weight_decay=0.1), lambda **kw: fused_adamw(1e-2, weight_decay=0.1, **kw)),
    "adamw_all": (
        lambda: jol.adamw(1e-2, weight_decay=0.1, mask=None),
        lambda **kw: fused_adamw(1e-2, weight_decay=0.1, mask=None, **kw),
    ),
    "adam_schedule": (lambda: jol.adam(SCHEDULE), lambda **kw: fused_adam(SCHEDULE, **kw)),
    "adamw_schedule": (
        lambda: jol.adamw(SCHEDULE, weight_decay=0.1),
        lambda **kw: fused_adamw(SCHEDULE, weight_decay=0.1, **kw),
    ),
    "sgd": (lambda: jol.sgd(0.1), lambda **kw: fused_sgd(0.1, **kw)),
    "sgd_schedule": (lambda: jol.sgd(SCHEDULE), lambda **kw: fused_sgd(SCHEDULE, **kw)),
    "sgd_momentum": (lambda: jol.sgd(0.1, momentum=0.9), lambda **kw: fused_sgd(0.1, momentum=0.9, **kw)),
    "sgd_momentum_array": (
        lambda: jol.sgd(SCHEDULE, momentum=jnp.float32(0.8)),
        lambda **kw: fused_sgd(SCHEDULE, momentum=jnp.float32(0.8), **kw),
    ),
    "sgd_nesterov": (
        lambda: jol.sgd(0.1, momentum=0.9, nesterov=True),
        lambda **kw: fused_sgd(0.1, momentum=0.9, nesterov=True, **kw),
    ),
}


KERNEL_ULPS_PER_STEP = 8


def _compare_with_chain(name, backend, params, steps, grads_fn=_mixed_grads, packed_grads=False):
    """Steps the chain and the fused optimizer side by side and compares θ, m and v after each
    step: bit for bit, except Adam's θ from the kernel (within the rounding budget above)."""
    make_ref, make_fused = PAIRS[name]
    ref, opt = make_ref(), make_fused(backend=backend)
    ref_step, step = _reference_step(ref), jit_step(opt)
    ref_state, state = ref.init(params), opt.init(params)
    rounded_by_two_compilers = name.startswith("adam") and backend != "xla" and _kernels.available()
    budget = [np.zeros(np.shape(p)) for p in jax.tree.leaves(params)]
    for i in range(steps):
        grads = grads_fn(params, i)  # the same gradients for both: computed at the reference θ
        before = params
        params, ref_state = ref_step(params, ref_state, grads)
        state = step(state, Packed.pack(grads, state.params.layout) if packed_grads else grads)
        budget = [
            grow_drift(b, p0, p1, KERNEL_ULPS_PER_STEP)
            for b, p0, p1 in zip(budget, jax.tree.leaves(before), jax.tree.leaves(params))
        ]
        pairs = [("params", state.params, params)]
        pairs += [
            (f, getattr(state, f), jol.get_state_field(ref_state, f))
            for f in ("mu", "nu")
            if getattr(state, f) is not None
        ]
        for field, packed, want in pairs:
            leaves = zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(packed.unpack()), budget)
            for (path, w), have, b in leaves:
                what = f"{name} ({backend}) step {i}: {field}{jax.tree_util.keystr(path)}"
                if field == "params" and rounded_by_two_compilers:
                    assert_within_drift(have, w, b, what)
                else:
                    _assert_same_bits(have, w, what)
    return step, state


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_matches_the_per_leaf_chain(name, backend):
    _compare_with_chain(name, backend, _mixed_params(), steps=4)


def test_kernel_step_takes_packed_gradients_too(kernel):
    _compare_with_chain("adamw_masked", "kernel", _mixed_params(), steps=3, packed_grads=True)
    _compare_with_chain("sgd_nesterov", "kernel", _mixed_params(), steps=3, packed_grads=True)


@pytest.mark.parametrize("name", ["adam", "adamw_all", "sgd_momentum", "sgd"])
def test_kernel_float64_matches_per_leaf(name, kernel):
    with jax.enable_x64(True):
        params = {k: v for k, v in _mixed_params().items() if k != "half"}
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        _compare_with_chain(name, "kernel", params, steps=3)


def _custom_calls(step, state, grads):
    text = step.lower(state, grads).compile().as_text()
    return [t for t in _kernels.TARGETS if f'custom_call_target="{t}"' in text]


def test_auto_uses_the_kernel_on_cpu_for_float32_groups(kernel):
    params = _params()
    for opt, target in [
        (fused_adamw(1e-2), "jaxopt_lectures_fused_adam"),
        (fused_sgd(0.1, momentum=0.9), "jaxopt_lectures_fused_momentum"),
        (fused_sgd(0.1), "jaxopt_lectures_fused_sgd"),
    ]:
        assert _custom_calls(jit_step(opt), opt.init(params), params) == [target]
    opt = fused_adam(1e-2, backend="xla")
    assert _custom_calls(jit_step(opt), opt.init(params), params) == []
    # a bfloat16-only tree has nothing for the kernel: pure XLA
    half = {"a": jnp.ones((3, 2), jnp.bfloat16)}
    assert _custom_calls(jit_step(fused_adam(1e-2)), fused_adam(1e-2).init(half), half) == []


def test_fallback_when_the_kernel_is_unavailable(monkeypatch):
    monkeypatch.setattr(_kernels, "_state", {"tried": True, "lib": None, "reason": "switched off for this test"})
    params = _params()
    opt = fused_adam(1e-2)
    assert _custom_calls(jit_step(opt), opt.init(params), params) == []
    _compare_with_chain("adamw_masked", "auto", _mixed_params(), steps=2)
    _compare_with_chain("sgd_momentum", "auto", _mixed_params(), steps=2)
    with pytest.raises(RuntimeError, match="backend='kernel'.*switched off for this test"):
        fused_adam(1e-2, backend="kernel").step(opt.init(params), params)


def test_loader_without_a_compiler_or_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path))
    monkeypatch.delenv(_kernels.SWITCH_ENV, raising=False)
    monkeypatch.setattr(_kernels, "_state", {"tried": False, "lib": None, "reason": None})
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert _kernels.load() is None
    assert "no C++ compiler" in _kernels.unavailable_reason()
    monkeypatch.setattr(_kernels, "_state", {"tried": False, "lib": None, "reason": None})
    monkeypatch.setenv(_kernels.SWITCH_ENV, "0")
    assert not _kernels.available()
    assert _kernels.SWITCH_ENV in _kernels.unavailable_reason()
    assert list(tmp_path.iterdir()) == []  # nothing was built


def test_kernel_library_is_cached_per_source_and_compiler(kernel):
    cxx = _kernels.compiler()
    path = _kernels.library_path(cxx)
    assert path.exists() and path.parent == _kernels.cache_dir()
    assert path == _kernels.library_path(cxx)
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir() if path.stem in p.name)


def test_kernel_refuses_gradients_of_another_size(kernel):
    def call(p, m, v, coef, g):
        return _kernel_call("jaxopt_lectures_fused_adam", [p, m, v], coef, [g], decay=False)

    p, m, v = jnp.ones(5), jnp.zeros(5), jnp.zeros(5)
    with pytest.raises(Exception, match="gradient operands hold 4 elements, the parameters 5"):
        jax.block_until_ready(jax.jit(call)(p, m, v, jnp.zeros(10), jnp.ones(4)))


def test_backend_is_checked():
    with pytest.raises(ValueError, match="backend='gpu'"):
        fused_adam(1e-3, backend="gpu")
    with pytest.raises(ValueError, match="backend"):
        fused_sgd(0.1, backend=None)


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
    for ref, opt in [
        (jol.adam(1e-3), fused_adam(1e-3)),
        (jol.sgd(0.1, momentum=0.9), fused_sgd(0.1, momentum=0.9)),
        (jol.adamw(1e-3), fused_adamw(1e-3)),
    ]:
        ref_bytes = sum(x.nbytes for x in jax.tree.leaves(ref.init(params)))
        assert state_bytes(opt.init(params)) <= ref_bytes
    assert fused_sgd(0.1).init(params).mu is None


def test_layout_groups_by_dtype_and_decay_mask():
    params = _params()
    layout = make_layout(params, jax.tree.map(lambda p: p.ndim >= 2, params))
    assert {name: size for name, _, size in layout.groups} == {
        "bfloat16_nodecay": 7,
        "float32_decay": 30 + 72,
        "float32_nodecay": 5 + 4,
    }
    packed = Packed.pack(params, layout)
    for a, b in zip(jax.tree.leaves(packed.unpack()), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


@pytest.mark.parametrize(
    "make",
    [
        lambda b: fused_adamw(1e-2, backend=b),
        lambda b: fused_sgd(0.1, 0.9, backend=b),
        lambda b: fused_sgd(0.1, backend=b),
    ],
    ids=["adamw", "sgd_momentum", "sgd"],
)
def test_step_updates_in_place_without_new_buffers(make, backend):
    opt = make(backend)
    params = _mixed_params()
    state = opt.init(params)
    step = jit_step(opt)
    state = step(state, _mixed_grads(params, 0))  # compile
    before = {id(x): x.unsafe_buffer_pointer() for x in jax.tree.leaves(state) if x.size > 1}
    pointers = sorted(before.values())
    new = step(state, _mixed_grads(params, 1))
    after = sorted(x.unsafe_buffer_pointer() for x in jax.tree.leaves(new) if x.size > 1)
    assert after == pointers, "the donated buffers were not reused"
    assert all(x.is_deleted() for x in jax.tree.leaves(state) if x.size > 1)
    text = step.lower(new, _mixed_grads(params, 2)).compile().as_text()
    assert "input_output_alias" in text
    # bf16 moments are computed in float32 and stored back (audit case 29), and XLA copies the
    # small bf16 group's buffers for that; every float32 buffer is still updated in place
    copies = [line for line in text.splitlines() if " copy(" in line and not re.search(r"= bf16\[\d+\]", line)]
    assert not copies, f"XLA inserted a parameter-sized copy: {copies[:2]}"


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


@pytest.fixture
def leaf_writes(monkeypatch):
    """The XLA update's leaf-by-leaf writes (off-CPU default; issue 11, item 4), forced on
    here: on the CPU they are correct but slow (XLA CPU loops over the whole buffer)."""
    monkeypatch.setattr(fused, "LEAF_WRITES", True)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_leaf_writes_match_per_leaf_bit_for_bit(name, leaf_writes):
    _compare_with_chain(name, "xla", _mixed_params(), steps=4)


#: The leaf writes (the accelerator path, forced on in these tests) are copy-free under jax
#: 0.10's CPU compiler; jax >= 0.11's copies the moment buffer around them (seen on 0.12.0.1).
#: There the copy check is an expected failure, said, not hidden; the numbers are still checked.
NEWER_XLA_COPIES = jax.__version_info__ >= (0, 11)
COPY_XFAIL = "jax >= 0.11's CPU compiler copies the packed moments around the leaf writes (issue 11: unmeasured on GPU)"


@pytest.mark.parametrize(
    "make",
    [
        lambda b: fused_adamw(1e-2, backend=b),
        lambda b: fused_sgd(0.1, 0.9, backend=b),
        lambda b: fused_sgd(0.1, backend=b),
    ],
    ids=["adamw", "sgd_momentum", "sgd"],
)
def test_leaf_writes_update_in_place_without_new_buffers(make, leaf_writes):
    try:
        test_step_updates_in_place_without_new_buffers(make, "xla")
    except AssertionError as e:
        if NEWER_XLA_COPIES and "parameter-sized copy" in str(e):
            pytest.xfail(COPY_XFAIL)
        raise


def test_the_cpu_default_packs_the_gradient_once():
    params = {k: v for k, v in _mixed_params().items() if k != "half"}
    opt = fused_adamw(1e-2, backend="xla")
    text = jit_step(opt).lower(opt.init(params), _mixed_grads(params, 0)).compile().as_text()
    assert ("dynamic-update-slice" in text) == (jax.default_backend() != "cpu")


@pytest.mark.parametrize(
    "make",
    [
        lambda: fused_adamw(1e-2, backend="xla"),
        lambda: fused_sgd(0.1, 0.9, backend="xla"),
        lambda: fused_sgd(0.1, backend="xla"),
    ],
    ids=["adamw", "sgd_momentum", "sgd"],
)
def test_xla_step_updates_from_the_gradient_leaves_without_concatenating(make, leaf_writes):
    """Issue 11, item 4: float32 groups are updated leaf by leaf into the packed buffers
    (dynamic_update_slice), in place, with no packed gradient materialized."""
    params = {k: v for k, v in _mixed_params().items() if k != "half"}
    opt = make()
    step = jit_step(opt)
    text = step.lower(opt.init(params), _mixed_grads(params, 0)).compile().as_text()
    assert "concatenate" not in text
    assert "dynamic-update-slice" in text
    # bfloat16 groups whose moments are rounded when stored still pack their gradient
    half = {"a": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.ones((4,), jnp.bfloat16)}
    state = opt.init(half)
    packs = "concatenate" in jit_step(opt).lower(state, half).compile().as_text()
    assert packs == (state.mu is not None)
    copies = [line for line in text.splitlines() if " copy(" in line]
    if copies and NEWER_XLA_COPIES:
        pytest.xfail(COPY_XFAIL)
    assert not copies, "a packed buffer was copied"


def test_a_state_with_another_number_of_moments_is_refused_naming_them():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros((3,))}
    grads = jax.tree.map(jnp.ones_like, params)
    adam_state = jol.fused_adam(0.1).init(params)
    with pytest.raises(ValueError, match=re.escape("got a state with 2 moment buffer(s) (mu, nu) where it keeps 1")):
        jol.fused_sgd(0.1, momentum=0.9).step(adam_state, grads)
    with pytest.raises(ValueError, match=re.escape("got a state with 0 moment buffer(s) (none) where it keeps 2")):
        jol.fused_adam(0.1).step(jol.fused_sgd(0.1).init(params), grads)


def test_a_state_with_another_weight_decay_layout_is_refused_naming_both_layouts_and_the_leaf():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros((3,))}
    grads = jax.tree.map(jnp.ones_like, params)
    with pytest.raises(ValueError) as info:
        jol.fused_adamw(0.1, weight_decay=0.5).step(jol.fused_adam(0.1).init(params), grads)
    message = str(info.value)
    assert message.startswith("this state was made by an optimizer with no weight decay; it is stepped by fused_adamw(")
    assert (
        ".step (weight decay on 1 of 2 leaves): at ['w'] the state's packing does not decay and this optimizer does."
        in message
    )


@pytest.mark.parametrize("writes", [False, True], ids=["concatenated", "leaf_writes"])
@pytest.mark.parametrize(
    "make_fused, make_chain",
    [
        (lambda b: jol.fused_adamw(0.01, weight_decay=0.1, backend=b), lambda: jol.adamw(0.01, weight_decay=0.1)),
        (lambda b: jol.fused_sgd(0.1, momentum=0.9, backend=b), lambda: jol.sgd(0.1, momentum=0.9)),
    ],
    ids=["adamw", "sgd_momentum"],
)
def test_as_transformation_gives_the_chains_updates(make_fused, make_chain, backend, writes, monkeypatch):
    """The init/update form (what nnx.Optimizer and TrainState call): the per-leaf chain's updates,
    on each backend and (XLA) with the new moments concatenated or written leaf by leaf."""
    if backend == "kernel" and writes:
        pytest.skip("the kernel groups do not use the XLA leaf writes")
    monkeypatch.setattr(fused, "LEAF_WRITES", writes)
    rng = np.random.default_rng(11)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=4), jnp.float32)}
    fused_tx, chain_tx = make_fused(backend).as_transformation(), make_chain()
    fs, cs = fused_tx.init(params), chain_tx.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        fu, fs = fused_tx.update(grads, fs, params)
        cu, cs = chain_tx.update(grads, cs, params)
        for k in params:
            np.testing.assert_allclose(np.asarray(fu[k]), np.asarray(cu[k]), rtol=1e-5, atol=1e-7)
        params = jol.apply_updates(params, cu)


def test_a_layout_without_weight_decay_groups_by_dtype_alone():
    """Without a decay mask the groups are named by dtype and every leaf's decay flag is None
    (no weight decay), as distinct from a mask's False (a group ``<dtype>_nodecay``)."""
    tree = {"w": jnp.ones((2, 3)), "h": jnp.ones(3, jnp.bfloat16)}
    plain = fused.make_layout(tree)
    assert [g for g, _, _ in plain.groups] == ["bfloat16", "float32"]
    assert plain.decay_flags() == (None, None)
    masked = fused.make_layout(tree, {"w": True, "h": False})
    assert [g for g, _, _ in masked.groups] == ["bfloat16_nodecay", "float32_decay"]
    assert masked.decay_flags() == (False, True)
