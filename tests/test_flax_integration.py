"""Our transformations plug into Flax unchanged: nnx.Optimizer and TrainState."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import jaxopt_lectures as jol

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(64, 5)), jnp.float32)
Y = jnp.asarray(X @ RNG.normal(size=(5, 1)) + 0.3, jnp.float32)


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(5, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.l1(x)))


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def test_nnx_optimizer_trains_with_adamw_and_matches_optax():
    def train(tx):
        model = Tiny(nnx.Rngs(0))
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            loss, grads = nnx.value_and_grad(mse)(model, X, Y)
            opt.update(model, grads)
            return loss

        losses = [float(step(model, opt)) for _ in range(60)]
        return model, opt, losses

    model, opt, losses = train(jol.adamw(1e-2, weight_decay=1e-2))
    assert losses[-1] < 0.2 * losses[0]
    ref_model, _, ref_losses = train(optax.adamw(1e-2, weight_decay=1e-2, mask=jol.decay_matrices_only))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(model.l1.kernel[...], ref_model.l1.kernel[...], rtol=1e-4, atol=1e-6)
    # our named state survives inside nnx's optimizer state
    assert int(jol.get_state_field(opt.opt_state, "count")[...]) == 60


def test_train_state_with_composed_transformations():
    model = Tiny(nnx.Rngs(1))
    graphdef, params = nnx.split(model, nnx.Param)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    tx = jol.chain(jol.clip_by_global_norm(1.0), jol.sgd(jol.schedules.cosine_decay(0.05, 100), momentum=0.9))
    state = train_state.TrainState.create(apply_fn=apply_fn, params=params, tx=tx)

    @jax.jit
    def step(state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((state.apply_fn(p, X) - Y) ** 2))(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(50):
        state, loss = step(state)
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    assert int(state.step) == 50
    # two counts (momentum's and the schedule's): get_state_field refuses to pick one
    assert [int(c) for c in jol.get_state_field(state.opt_state, "count", all=True)] == [50, 50]


@pytest.mark.parametrize("make", [lambda: jol.adam(1e-3), lambda: jol.inject_hyperparams(jol.adam)(learning_rate=1e-3)])
def test_transformation_holds_no_arrays(make):
    """Flax keeps `tx` as a static attribute: it must be hashable closures, no arrays."""
    tx = make()
    assert isinstance(tx, tuple) and len(tx) == 2
    assert all(callable(f) and not isinstance(f, jax.Array) for f in tx)
    for fn in tx:
        for cell in fn.__closure__ or ():
            assert not isinstance(cell.cell_contents, jax.Array)
    hash(tx)
