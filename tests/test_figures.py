"""The lectures' pictures, checked on the data behind them (lab/figures.py, figures CLI)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures import cli
from jaxopt_lectures.lab import data, figures, models, trainer


@pytest.fixture(scope="module")
def paths():
    return figures.optimizer_paths(1000, seed=0)


def test_closed_form_minimum_is_least_squares(paths):
    w, b = np.polyfit(paths.x.astype(np.float64), paths.y.astype(np.float64), 1)
    np.testing.assert_allclose(paths.minimum, [w, b], rtol=1e-6)
    assert paths.loss.min() >= paths.min_loss - 1e-6


def test_gd_at_1e3_flies_off(paths):
    # Seed 001's first picture: η = 1e-3 leaves the map within two updates and never comes back.
    p, start_dist = paths.paths["gd_1e-3"], np.hypot(*(paths.start - paths.minimum))
    dist = np.hypot(*(p[:4] - paths.minimum).T)
    assert dist[2] > 5 * start_dist and dist[3] > dist[2]
    assert not np.all(np.isfinite(p[100]))
    assert figures.path_summary(paths, "gd_1e-3").startswith("flies off the map after ")


def test_gd_at_1e4_is_far_from_the_minimum_after_100_updates(paths):
    # ... and the second: η = 1e-4 is stable but crawls along the valley.
    p, start_dist = paths.paths["gd_1e-4"], np.hypot(*(paths.start - paths.minimum))
    assert np.all(np.isfinite(p))
    assert np.hypot(*(p[100] - paths.minimum)) > 0.9 * start_dist
    assert paths.loss_at(*p[100]) < paths.loss_at(*p[0])  # it did descend (into the valley)
    assert np.hypot(*(p[-1] - paths.minimum)) > 0.5 * start_dist  # still far after 1000


def test_adam_ends_at_the_minimum_and_every_path_starts_together(paths):
    assert np.hypot(*(paths.paths["adam"][-1] - paths.minimum)) < 1e-2
    for p in paths.paths.values():
        assert p.shape == (1001, 2)
        np.testing.assert_array_equal(p[0], paths.start)
    # the adaptive methods all beat the slow gradient descent they are compared with
    slow = np.hypot(*(paths.paths["gd_1e-4"][-1] - paths.minimum))
    for name in ("adagrad", "rmsprop", "momentum", "adam"):
        assert np.hypot(*(paths.paths[name][-1] - paths.minimum)) < slow


def test_plot_paths_writes_one_png_per_comparison(tmp_path):
    r = figures.optimizer_paths(50, seed=1, grid=40)
    written = figures.plot_paths(r, tmp_path)
    assert [p.name for p in written] == [
        "paths_learning_rate.png",
        "paths_adagrad.png",
        "paths_rmsprop.png",
        "paths_momentum.png",
        "paths_adam.png",
        "paths_all.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_filter_normalized_direction_matches_each_filter_and_skips_vectors():
    params = {"kernel": jnp.arange(24.0).reshape(2, 3, 4) - 5.0, "bias": jnp.ones(4)}
    d = figures.filter_normalized_direction(params, jax.random.key(0))
    np.testing.assert_allclose(
        jnp.linalg.norm(d["kernel"].reshape(6, 4), axis=0),
        jnp.linalg.norm(params["kernel"].reshape(6, 4), axis=0),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(d["bias"], 0.0)


@pytest.fixture(scope="module")
def small_digits():
    return data.load_digits(seed=0, train_size=128)


def test_landscape_center_is_the_trained_loss(small_digits):
    ds = small_digits
    model_fn = functools.partial(models.ResNet, 8, 4, in_shape=ds.input_shape, num_classes=10)
    h = trainer.train(model_fn, ds, jol.sgd(0.05, momentum=0.9), 1, 64, seeds=(0,), progress=False)
    ls = figures.loss_landscape(h.model(0, 0), ds.x_train, ds.y_train, resolution=3, span=0.5)
    np.testing.assert_allclose(ls.center_loss, h.train_loss[0, 0, -1], rtol=1e-4)
    np.testing.assert_allclose(ls.curve[1], ls.center_loss, rtol=1e-6)
    np.testing.assert_allclose(ls.surface[1, 1], ls.center_loss, rtol=1e-6)
    assert ls.surface.shape == (3, 3) and np.all(np.isfinite(ls.surface))
    with pytest.raises(ValueError, match="odd"):
        figures.loss_landscape(h.model(0, 0), ds.x_train, ds.y_train, resolution=4)


def test_sigmoid_first_layer_gradient_vanishes_at_depth_20(small_digits, tmp_path):
    study = figures.gradient_depth_study((20,), epochs=0, data=small_digits, probe_examples=128)
    sig, relu = study.norms[("sigmoid", 20)][0], study.norms[("relu", 20)][0]
    assert len(sig) == len(relu) == 21  # 20 hidden layers and the output layer
    assert sig[0] < 1e-3 * relu[0]
    assert sig[0] < 1e-3 * sig[-1]  # shrinking toward the input under sigmoid
    assert figures.plot_gradients(study, tmp_path)[0].exists()


def test_batch_size_study_gives_equal_updates_tunes_eta_and_measures_sharpness(small_digits, tmp_path):
    study = figures.batch_size_study(
        (16, 128), updates=16, seeds=(0, 1), hidden=(16,), learning_rates=(0.03, 0.3), data=small_digits
    )
    assert study.updates_per_epoch == {16: 8, 128: 1}
    assert study.train_loss[16].shape == (2, 2) and study.train_loss[128].shape == (2, 16)  # equal updates
    assert set(study.learning_rate.values()) <= {0.03, 0.3} and study.grid == (0.03, 0.3)
    rows = study.table()
    assert [r["batch_size"] for r in rows] == [16, 128] and [r["epochs"] for r in rows] == [2, 16]
    assert all(np.isfinite(study.sharpness[bs]).all() and study.test_acc[bs].shape == (2,) for bs in (16, 128))
    verdict = study.verdict()
    assert verdict.startswith(("reproduced", "not reproduced", "regime not reached")), verdict
    assert figures.plot_batch_size(study, tmp_path)[0].exists()


def test_batch_size_verdict_names_the_regime_and_the_direction():
    flat = np.full((3, 1), 0.01)

    def study(train_small, acc_small):
        return figures.BatchSizeStudy(
            (16, 512),
            {16: np.full((3, 1), train_small), 512: flat},
            {16: flat, 512: flat},
            {16: flat, 512: flat},
            {16: flat, 512: flat},
            {16: 78, 512: 2},
            learning_rate={16: 0.1, 512: 0.3},
            updates=1560,
            test_acc={16: np.array(acc_small), 512: np.array([0.90, 0.91, 0.92])},
            sharpness={16: np.array([0.001] * 3), 512: np.array([0.01] * 3)},
        )

    assert study(0.5, [0.95, 0.96, 0.97]).verdict().startswith("regime not reached")
    assert study(0.01, [0.95, 0.96, 0.97]).verdict().startswith("reproduced")
    assert study(0.01, [0.90, 0.91, 0.92]).verdict().startswith("not reproduced")
    assert "flatter" in study(0.01, [0.90, 0.91, 0.92]).verdict()


def test_gradients_start_each_activation_from_its_own_initialization(small_digits):
    study = figures.gradient_depth_study((10,), epochs=0, data=small_digits, probe_examples=64)
    assert study.inits == {"sigmoid": "lecun", "relu": "he"}
    lecun = figures.gradient_depth_study(
        (10,), ("relu",), epochs=0, data=small_digits, probe_examples=64, inits={"relu": "lecun"}
    )
    # He's scale keeps a deep ReLU net's first-layer gradient larger than LeCun's (which shrinks with depth)
    assert study.norms[("relu", 10)][0][0] > lecun.norms[("relu", 10)][0][0]


def test_schedule_curves_cover_every_schedule():
    curves = figures.schedule_curves(200, peak=0.1)
    # every schedule function is drawn once (optax's aliases such as cosine_decay_schedule are the same functions)
    functions = {getattr(jol.schedules, n) for n in jol.schedules.__all__}
    assert {getattr(jol.schedules, n) for n in curves} == functions and len(curves) == len(functions)
    assert all(v.shape == (200,) for _, v in curves.values())
    assert curves["warmup_cosine_decay"][1][0] == 0.0 and curves["cosine_decay"][1][0] == pytest.approx(0.1)
    assert curves["cosine_decay"][1][-1] < 1e-4 and np.all(np.diff(curves["linear"][1]) <= 0)


def test_cli_schedules_and_paths_write_pngs(tmp_path, capsys):
    assert cli.main(["schedules", "--out", str(tmp_path), "--steps", "100"]) == 0
    assert cli.main(["paths", "--out", str(tmp_path), "--steps", "20", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'schedules.png'}" in out and f"wrote {tmp_path / 'paths_all.png'}" in out
    assert "closed-form minimum" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["paths", "--steps", "0"], "--steps 0 is out of range"),
        (["landscape", "--depth", "9"], "--depth 9 is out of range"),
        (["gradients", "--depths", "5,x"], "comma-separated integers"),
        (["batch-size", "--seeds", "0"], "--seeds 0 is out of range"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert cli.main(argv + ["--out", str(tmp_path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["landscape", "--width", "0"], "--width 0 is out of range"),
        (["landscape", "--width", "-4"], "--width -4 is out of range"),
        (["landscape", "--span", "nan"], "--span nan is out of range"),
        (["landscape", "--span", "0"], "--span 0.0 is out of range"),
    ],
)
def test_case_072_073_landscape_arguments_are_checked_before_training(argv, message, capsys, tmp_path):
    from jaxopt_lectures import cli

    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
