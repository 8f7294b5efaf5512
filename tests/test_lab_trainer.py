"""The trainer: learning, vmapped configs equal separate runs, divergence, early stopping,
pre-training, semi-supervised terms, and bit-for-bit resume after a crash."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures import lab, losses


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def digits():
    return lab.load_digits(seed=0, train_size=400, unlabeled_size=200)


MLP = functools.partial(lab.MLP, (64, 16, 10))
SGD = jol.inject_hyperparams(jol.sgd)(learning_rate=0.1, momentum=0.9)


def _same_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_vmapped_configs_learn_and_equal_separate_runs(digits):
    configs = [{"learning_rate": 0.1, "dropout": 0.0}, {"learning_rate": 0.02, "dropout": 0.2}]
    h = lab.train(MLP, digits, SGD, epochs=4, batch_size=32, seeds=[0, 1], configs=configs, progress=False)
    assert h.train_loss.shape == (2, 2, 4) and h.val_acc.shape == (2, 2, 4)
    assert np.all(h.train_loss[..., -1] < h.train_loss[..., 0])
    assert np.all(h.final("val_acc")[0] > 0.85)
    assert not np.allclose(h.train_loss[0, 0], h.train_loss[0, 1])  # seeds differ
    assert not h.diverged.any() and np.all(h.stopped_epoch == -1)
    alone = lab.train(MLP, digits, SGD, epochs=4, batch_size=32, seeds=[1], configs=configs[1:], progress=False)
    np.testing.assert_allclose(alone.train_loss[0, 0], h.train_loss[1, 1], rtol=1e-5)
    np.testing.assert_allclose(jol.get_state_field(h.state.opt_state, "learning_rate"), [0.1, 0.1, 0.02, 0.02])
    # train metrics are in evaluation mode on the whole training split
    model = h.model(config=0, seed=1)
    logits = model(jnp.asarray(digits.x_train))
    np.testing.assert_allclose(
        float(jnp.mean(losses.softmax_cross_entropy(logits, digits.y_train))), h.train_loss[0, 1, -1], rtol=1e-4
    )


def test_full_batch_divergence_and_regression():
    d = lab.linear_regression(64, w=2.0, b=-1.0, noise=0.01, seed=0)
    h = lab.train(
        functools.partial(lab.MLP, (1, 1)),
        d,
        jol.inject_hyperparams(jol.sgd)(learning_rate=0.5),
        epochs=60,
        batch_size=None,
        seeds=[0],
        configs=[{"learning_rate": 0.5}, {"learning_rate": 50.0}],
        progress=False,
    )
    assert np.asarray(h.state.step).tolist()[0] == 60  # full batch: one step per epoch
    model = h.model(config=0)
    np.testing.assert_allclose(model.head.kernel[...][0, 0], 2.0, atol=0.02)
    np.testing.assert_allclose(model.head.bias[...][0], -1.0, atol=0.02)
    assert not h.diverged[0, 0] and h.diverged[1, 0]
    assert 0 <= h.diverged_epoch[1, 0] < 60 and h.diverged_step[1, 0] >= 0
    assert np.isnan(h.train_loss[1, 0, -1]) and np.isfinite(h.train_loss[0, 0, -1])
    assert np.all(np.isfinite(np.asarray(h.state.params["head"]["kernel"][...])))  # last finite params kept


def test_early_stopping_restores_best_params(digits):
    small = lab.load_digits(seed=0, train_size=40)
    h = lab.train(
        functools.partial(lab.MLP, (64, 64, 10)),
        small,
        jol.adam(3e-2),
        epochs=40,
        batch_size=8,
        seeds=[0],
        early_stopping_patience=3,
        progress=False,
    )
    stop, best = h.stopped_epoch[0, 0], h.best_epoch[0, 0]
    assert 0 <= best < stop < 39 and stop - best == 3
    assert np.all(np.isnan(h.val_loss[0, 0, stop + 1 :]))
    logits = h.model()(jnp.asarray(small.x_val))
    val = float(jnp.mean(losses.softmax_cross_entropy(logits, small.y_val)))
    np.testing.assert_allclose(val, h.val_loss[0, 0, best], rtol=1e-4)
    assert h.val_loss[0, 0, best] == np.nanmin(h.val_loss[0, 0])


def test_semi_supervised_mixup_penalties_and_augment(digits):
    off = {"entropy_weight": 0.0, "mixup_alpha": 0.0, "l2": 0.0, "l1": 0.0, "dropout": 0.0, "graph_weight": 0.0}
    configs = [
        off,
        {**off, "entropy_weight": 0.3},
        {"entropy_weight": 0.1, "mixup_alpha": 0.2, "l2": 1e-3, "l1": 1e-5, "dropout": 0.1, "graph_weight": 0.1},
        {**off, "graph_weight": 3.0},
    ]
    h = lab.train(
        MLP,
        digits,
        SGD,
        epochs=4,
        batch_size=32,
        seeds=[0],
        configs=configs,
        augment=lab.augment.make_augment(noise_std=0.05),
        progress=False,
    )
    assert np.all(np.isfinite(h.train_loss)) and np.all(h.train_loss[:, 0, -1] < h.train_loss[:, 0, 0])
    assert np.all(h.final("val_acc") > 0.8)
    unlabeled = jnp.asarray(digits.x_unlabeled)
    ent = [float(jnp.mean(losses.entropy(h.model(config=c)(unlabeled)))) for c in (0, 1)]
    assert ent[1] < 0.8 * ent[0]  # entropy minimization makes unlabeled predictions confident
    # graph smoothness: neighbouring unlabeled inputs get closer outputs than without it
    weights = losses.rbf_knn_weights(unlabeled, 5, gamma=1.0 / unlabeled[0].size)
    smooth = [float(losses.graph_smoothness(jax.nn.softmax(h.model(config=c)(unlabeled)), weights)) for c in (0, 3)]
    assert smooth[1] < smooth[0]
    for term in ("entropy_weight", "graph_weight"):
        with pytest.raises(ValueError, match="unlabeled"):
            lab.train(MLP, lab.load_digits(train_size=50), SGD, epochs=1, hparams={term: 0.1}, progress=False)


def test_the_entropy_term_reads_the_same_unlabeled_batch_with_or_without_a_graph_term(digits):
    """The unlabeled batch is random nodes and one graph neighbour of each, whichever terms are
    on: a 0-weighted graph term changes nothing (it used to: without it the second half of the
    entropy term's batch was example 0 repeated)."""

    def run(hp):
        return lab.train(MLP, digits, SGD, epochs=2, batch_size=32, seeds=[0], hparams=hp, progress=False)

    alone = run({"entropy_weight": 0.3})
    with_graph_off = run({"entropy_weight": 0.3, "graph_weight": 0.0})
    np.testing.assert_allclose(alone.train_loss, with_graph_off.train_loss, rtol=1e-5)
    np.testing.assert_allclose(alone.val_loss, with_graph_off.val_loss, rtol=1e-5)


def test_pretraining_initializes_matching_layers(digits):
    pre = lab.train(MLP, digits, SGD, epochs=2, batch_size=64, seeds=[0], progress=False)
    five = lab.from_arrays(digits.x_train, digits.y_train % 5, num_classes=5)
    down = lab.train(
        functools.partial(lab.MLP, (64, 16, 5)), five, SGD, epochs=0, seeds=[0, 1], init_from=pre, progress=False
    )
    for run in range(2):
        np.testing.assert_array_equal(
            down.state.params["blocks"][0]["linear"]["kernel"][...][run],
            pre.state.params["blocks"][0]["linear"]["kernel"][...][0],
        )
    assert down.state.params["head"]["kernel"][...].shape == (2, 16, 5)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("kind", ["mlp_vmap", "cnn_loop"])
def test_resume_after_crash_is_bit_for_bit(digits, tmp_path, kind):
    if (
        kind == "cnn_loop"
        and jax.default_backend() == "gpu"
        and "--xla_gpu_deterministic_ops=true" not in os.environ.get("XLA_FLAGS", "")
    ):
        pytest.skip(
            "GPU convolution kernels are not deterministic unless XLA_FLAGS has "
            "--xla_gpu_deterministic_ops=true; the promise on GPU is made with that flag (README)"
        )
    if kind == "mlp_vmap":
        model_fn = functools.partial(lab.MLP, (64, 16, 10), norm="batch", dropout=0.1)
        kw = dict(hparams={"dropout": 0.1, "mixup_alpha": 0.2})
    else:
        model_fn = functools.partial(lab.CNN, (8, 8, 1), 10, channels=(4,), dense=(), dropout=0.0)
        kw = dict(augment=lab.augment.make_augment(max_shift=1))
    opt = jol.inject_hyperparams(jol.adam)(learning_rate=1e-2)
    args = (model_fn, digits, opt)
    straight = lab.train(*args, epochs=3, batch_size=64, seeds=[0, 1], progress=False, **kw)

    def crash(epoch, history):
        if epoch == 1:
            raise _Crash

    ckpt = tmp_path / "run"
    with pytest.raises(_Crash):
        lab.train(
            *args, epochs=3, batch_size=64, seeds=[0, 1], progress=False, checkpoint=ckpt, on_epoch_end=crash, **kw
        )
    resumed = lab.train(*args, epochs=3, batch_size=64, seeds=[0, 1], progress=False, checkpoint=ckpt, **kw)
    _same_tree(straight.state, resumed.state)
    np.testing.assert_array_equal(straight.val_loss, resumed.val_loss)
    # the last 2 epochs, no temporary directory (and the writer's lock, v2 C10)
    assert sorted(p.name for p in ckpt.iterdir()) == [".lock", "2", "3"]


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    state = {"w": jnp.arange(3.0), "n": {"count": jnp.array(2, jnp.int32)}}
    path = lab.checkpoints.save(tmp_path / "c", state, 5, {"loss": np.ones(2)})
    meta = json.loads((path / "5" / "meta" / "metadata").read_text())  # the layout is plain JSON
    assert meta["layout"] == [["['n']['count']", [], "int32"], ["['w']", [3], "float32"]]
    restored, epoch, extra = lab.checkpoints.load(path, state)
    assert epoch == 5 and extra["loss"].tolist() == [1.0, 1.0]
    _same_tree(restored, state)
    with pytest.raises(ValueError, match="does not match"):
        lab.checkpoints.load(path, {"v": jnp.arange(3.0), "n": {"count": jnp.array(2)}})


def test_gradient_norm_probe_shows_vanishing_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 16))
    y = jnp.arange(64) % 4

    def norms(act, init):
        model = lab.MLP((16, 32, 32, 32, 32, 4), activation=act, init=init, rngs=lab.models.nnx.Rngs(0))
        g = lab.gradient_norms(model, x, y)
        assert list(g) == ["blocks/0/linear", "blocks/1/linear", "blocks/2/linear", "blocks/3/linear", "head"]
        return g

    sig = norms("sigmoid", 1.0)
    relu = norms("relu", "he")
    assert sig["blocks/0/linear"] < sig["head"] / 5
    assert relu["blocks/0/linear"] > relu["head"] / 3


def test_the_epoch_step_updates_the_run_state_in_place(digits):
    """Donation end to end: the state an epoch hands over is consumed by the next epoch."""
    seen = []
    lab.train(
        MLP,
        digits,
        SGD,
        epochs=2,
        batch_size=64,
        seeds=[0],
        progress=False,
        on_epoch_end=lambda epoch, h: seen.append(h.state),
    )
    first, last = (jax.tree.leaves(s.params) + jax.tree.leaves(s.opt_state) for s in seen)
    assert all(leaf.is_deleted() for leaf in first if leaf.size)
    assert not any(leaf.is_deleted() for leaf in last)


def test_default_plan_vmaps_conv_nets_off_cpu_and_both_plans_agree(digits):
    """Issue 11: conv nets step run by run on the CPU only; on accelerators they are vmapped.
    The two plans train the same numbers (here on the CPU, to float tolerance)."""
    cnn = functools.partial(lab.CNN, (8, 8, 1), 10, channels=(4,), dense=(), dropout=0.0)
    from flax import nnx

    model = nnx.eval_shape(lambda: cnn(rngs=nnx.Rngs(0)))
    assert lab.trainer.default_vmap(model, "cpu") is False
    assert lab.trainer.default_vmap(model, "gpu") is True and lab.trainer.default_vmap(model, "tpu") is True
    assert lab.trainer.default_vmap(nnx.eval_shape(lambda: MLP(rngs=nnx.Rngs(0))), "cpu") is True
    opt = jol.inject_hyperparams(jol.adam)(learning_rate=1e-2)
    kw = dict(
        epochs=2,
        batch_size=64,
        seeds=[0, 1],
        configs=[{"learning_rate": 1e-2}, {"learning_rate": 3e-3}],
        progress=False,
    )
    loop = lab.train(cnn, digits, opt, vmap=False, **kw)
    vmapped = lab.train(cnn, digits, opt, vmap=True, **kw)
    np.testing.assert_allclose(loop.train_loss, vmapped.train_loss, rtol=2e-4)
    np.testing.assert_allclose(loop.test_loss, vmapped.test_loss, rtol=2e-4)


def test_epoch_batches_are_fresh_permutations_drawn_from_the_run_key():
    """The batch order (drawn on the host, issue 10's compile budget): every run and epoch a
    permutation of distinct examples, the same again for the same key and epoch (resume)."""
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in (0, 1)])
    a = lab.trainer.epoch_indices(keys, 3, 100, 4, 24)
    assert a.shape == (2, 4, 24) and a.dtype == np.int32
    for r in range(2):
        flat = a[r].ravel()
        assert len(set(flat.tolist())) == 96 and flat.min() >= 0 and flat.max() < 100
    np.testing.assert_array_equal(a, lab.trainer.epoch_indices(keys, 3, 100, 4, 24))
    assert not np.array_equal(a[0], a[1])  # runs differ
    assert not np.array_equal(a, lab.trainer.epoch_indices(keys, 4, 100, 4, 24))  # epochs differ
    typed = jax.random.key(0)[None]
    assert lab.trainer._host_keys(typed).shape == (1, 2)


@pytest.mark.parametrize("fractions", [(0.15, 0.15), (0.1, 0.2)], ids=["val_like_test", "sizes_differ"])
@pytest.mark.parametrize("kind", ["mlp_vmap", "cnn_loop"])
def test_test_metrics_are_the_final_models_on_the_test_split(kind, fractions):
    # equal val/test sizes reuse the end-of-epoch program with the test split in the
    # validation split's place; different sizes take a program of their own: both must be the
    # final (early-stopping: best) parameters evaluated on the test split, per run
    datasets = [
        lab.load_digits(seed=s, train_size=200, val_fraction=fractions[0], test_fraction=fractions[1]) for s in (0, 1)
    ]
    model = MLP if kind == "mlp_vmap" else functools.partial(lab.CNN, (8, 8, 1), 10, channels=(4,), dense=(8,))
    h = lab.train(
        model,
        datasets,
        SGD,
        epochs=5,
        batch_size=32,
        seeds=[0, 1],
        early_stopping_patience=1,
        configs=[{"learning_rate": 0.1}, {"learning_rate": 0.02}],
        progress=False,
    )
    for c in range(2):
        for s in range(2):
            logits = h.model(config=c, seed=s)(jnp.asarray(datasets[s].x_test))
            y = datasets[s].y_test
            loss = float(jnp.mean(losses.softmax_cross_entropy(logits, y)))
            np.testing.assert_allclose(h.test_loss[c, s], loss, rtol=1e-5)
            np.testing.assert_allclose(h.test_acc[c, s], float(np.mean(np.argmax(logits, -1) == y)), rtol=1e-6)


def _test_curve_case(vmap: bool, epochs: int):
    datasets = [lab.load_digits(seed=s, train_size=150) for s in (0, 1)]
    configs = [{"learning_rate": 0.1}, {"learning_rate": 3.0}]  # the second stops early or diverges
    kw = dict(epochs=epochs, batch_size=50, seeds=[0, 1], configs=configs, progress=False, vmap=vmap)
    h = lab.train(MLP, datasets, SGD, test_curve=True, early_stopping_patience=1, **kw)
    assert h.test_curve is not None and h.test_curve.shape == (2, 2, epochs)
    # NaN exactly where the run's other metrics are (after it stopped or diverged)
    np.testing.assert_array_equal(np.isfinite(h.test_curve), np.isfinite(h.train_loss))
    assert not np.isfinite(h.train_loss).all() and not np.allclose(h.test_curve[0, :, 0], h.test_curve[0, :, -1])
    # the final (early-stopping: best) parameters are those of the best epoch: same test loss
    ok = ~h.diverged
    best = np.take_along_axis(h.test_curve, h.best_epoch[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(best[ok], h.test_loss[ok], rtol=1e-5)
    return kw, datasets


def test_the_test_curve_is_each_epochs_parameters_on_the_test_split():
    """``test_curve=True`` (the verdict's matched-training-loss reading): after every epoch the
    test loss of that epoch's parameters, per seed on its own split."""
    _test_curve_case(vmap=True, epochs=3)


@pytest.mark.slow
def test_the_test_curve_run_by_run_and_off_by_default():
    kw, datasets = _test_curve_case(vmap=False, epochs=4)
    assert lab.train(MLP, datasets, SGD, **kw).test_curve is None


def test_the_end_of_epoch_program_is_the_same_for_every_optimizer(digits):
    """Evaluation never reads the optimizer state, and its program does not take it: one model
    on one data layout compiles one end-of-epoch program, which the compilation cache then
    serves to the other optimizers' arms (a lab table trains dozens of them)."""
    from flax import nnx

    from jaxopt_lectures.lab import trainer

    abstract = nnx.eval_shape(lambda: MLP(rngs=nnx.Rngs(0)))
    texts = []
    for opt in (SGD, jol.inject_hyperparams(jol.adam)(learning_rate=1e-3)):
        setup = trainer._make_setup(abstract, digits, opt, 32, {}, None, None, None)
        runs = trainer._initial_runs(MLP, opt, (0, 1), 1, {"learning_rate": jnp.asarray([0.1])}, None, None)
        state = jax.tree.map(trainer._stack_on_host, *runs)
        data = trainer._device_arrays(digits, False)
        program = trainer._end_epoch_program(setup, None, None)
        texts.append(program.lower(trainer._without_opt_state(state), data).as_text())
        new, (tl, *_) = trainer._programs(setup, True, None, [data], 2, 2)[1](state)
        _same_tree(new.opt_state, state.opt_state)  # handed back untouched
        assert np.isfinite(np.asarray(tl)).all()
    assert texts[0] == texts[1]


def test_an_arm_without_a_test_split_is_refused_naming_it():
    """The lab judges each arm on its test split: a history without one is refused with a
    message, not an index error."""
    import dataclasses

    from jaxopt_lectures.lab import run

    h = lab.trainer.History(
        seeds=(0,),
        configs=({},),
        train_loss=np.ones((1, 1, 2)),
        train_acc=np.ones((1, 1, 2)),
        val_loss=np.ones((1, 1, 2)),
        val_acc=np.ones((1, 1, 2)),
        diverged_epoch=np.full((1, 1), -1),
        diverged_step=np.full((1, 1), -1),
        stopped_epoch=np.full((1, 1), -1),
        best_epoch=np.full((1, 1), -1),
    )
    spec = run.arm_spec({"optimizer": {"name": "sgd", "learning_rate": 0.1}}, {}, 2, (0,))
    with pytest.raises(ValueError, match="test split"):
        run._arm_result(dataclasses.replace(h, test_loss=None), None, spec)
