"""Badly scaled inputs as data (data.ill_conditioned), the input covariance's condition number,
the data spec's ``feature_scale`` key, and the deep narrow network setting of issue 24."""

import numpy as np
import pytest

from jaxopt_lectures.lab import data, plan, trainer


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0)


def _flat(a):
    return a.reshape(len(a), -1)


def test_the_draw_is_fixed_per_seed_and_independent_of_the_split(digits):
    a, b = data.ill_conditioned(digits, seed=0), data.ill_conditioned(digits, seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    other = data.ill_conditioned(digits, seed=1)
    assert not np.allclose(a.feature_scale, other.feature_scale)
    # another split seed: the same scale for every feature
    np.testing.assert_array_equal(data.ill_conditioned(data.load_digits(seed=3), seed=0).feature_scale, a.feature_scale)
    np.testing.assert_allclose(a.feature_scale, 10.0 ** np.random.default_rng(0).uniform(-2, 1, 64), rtol=1e-6)


def test_feature_scales_span_the_powers_of_ten_and_constant_features_are_zero(digits):
    ds = data.ill_conditioned(digits, low=-2.0, high=1.0, seed=0)
    s = ds.feature_scale
    assert s.shape == (64,) and np.all(s >= 10**-2) and np.all(s <= 10**1)
    assert np.log10(s.min()) < -1.7 and np.log10(s.max()) > 0.7  # 64 draws reach both ends
    x = _flat(ds.x_train).astype(np.float64)
    std = x.std(0)
    constant = _flat(digits.x_train).astype(np.float64).std(0) < 1e-6
    assert 1 <= constant.sum() <= 5  # digits' corner pixels never light up
    for split in (ds.x_train, ds.x_val, ds.x_test):
        np.testing.assert_array_equal(_flat(split)[:, constant], 0.0)
    np.testing.assert_allclose(std[~constant], s[~constant], rtol=1e-4)  # standardised, then x 10^u
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5 * s.max())
    # low = high = 0 is plain per-feature standardisation; the rescaled data are that x 10^u
    std_ds = data.ill_conditioned(digits, low=0.0, high=0.0)
    np.testing.assert_array_equal(std_ds.feature_scale, 1.0)
    np.testing.assert_allclose(_flat(ds.x_test), _flat(std_ds.x_test) * s, rtol=1e-5, atol=1e-6)


def test_condition_numbers_standardised_versus_rescaled(digits):
    standardised = data.input_condition_number(data.ill_conditioned(digits, 0.0, 0.0))
    rescaled = data.input_condition_number(data.ill_conditioned(digits))
    # measured on the seed-0 split: ~147 and ~7.4e6 (the loader's global standardisation: ~2e6)
    assert 50 < standardised < 1e3
    assert 1e5 < rescaled < 1e8
    assert data.input_condition_number(digits) == data.input_condition_number(digits.x_train)


def test_condition_number_edge_cases():
    rng = np.random.default_rng(0)
    assert data.input_condition_number(np.ones((10, 3))) == 1.0  # nothing varies
    assert data.input_condition_number(np.c_[rng.normal(size=(10, 1)), np.ones((10, 2))]) == 1.0
    np.testing.assert_allclose(data.input_condition_number(rng.normal(size=(20000, 2)) * [1.0, 10.0]), 100, rtol=0.05)
    x = rng.normal(size=(50, 2))
    assert data.input_condition_number(np.c_[x, x.sum(1)]) == float("inf")  # a linear dependence


def test_split_labels_shapes_and_dtype_are_unchanged(digits):
    ds = data.ill_conditioned(data.load_digits(seed=0, unlabeled_size=100))
    ref = data.load_digits(seed=0, unlabeled_size=100)
    for name in ("y_train", "y_val", "y_test"):
        np.testing.assert_array_equal(getattr(ds, name), getattr(ref, name))
    for name in ("x_train", "x_val", "x_test", "x_unlabeled"):
        assert getattr(ds, name).shape == getattr(ref, name).shape and getattr(ds, name).dtype == np.float32
    assert ds.num_classes == 10 and "10^U(-2, 1)" in ds.name and digits.feature_scale is None


@pytest.mark.parametrize(
    "kwargs, match",
    [({"low": 1.0, "high": -2.0}, "low"), ({"high": float("nan")}, "finite"), ({"seed": -1}, "seed")],
)
def test_bad_arguments_are_named(digits, kwargs, match):
    with pytest.raises(data.DataError, match=match):
        data.ill_conditioned(digits, **kwargs)


def test_data_spec_feature_scale_applies_the_draw():
    spec = {"name": "digits", "feature_scale": {"low": -2, "high": 1, "seed": 0}}
    ds = plan.load_data(spec, 2)
    np.testing.assert_array_equal(ds.x_train, data.ill_conditioned(data.load_digits(seed=2)).x_train)
    assert not ds.x_train.flags.writeable and spec["feature_scale"] == {"low": -2, "high": 1, "seed": 0}
    with pytest.raises(data.DataError, match="feature_scale"):
        plan.load_data({"name": "digits", "feature_scale": {"lo": -2}}, 0)


def _train(model_spec, ds, epochs, lr):
    return trainer.train(
        plan.make_model_fn(model_spec, ds),
        ds,
        plan.make_optimizer({"name": "adam", "learning_rate": lr}, epochs * 10),
        epochs=epochs,
        batch_size=128,
        seeds=(0,),
        progress=False,
    )


def test_a_model_still_trains_on_the_rescaled_inputs():
    ds = plan.load_data({"name": "digits", "train_size": 400, "feature_scale": {"low": -2, "high": 1}}, 0)
    h = _train({"name": "mlp", "hidden": [32], "activation": "relu", "init": "he", "norm": None}, ds, 3, 3e-3)
    assert np.all(np.isfinite(h.train_loss)) and h.train_loss[0, 0, -1] < h.train_loss[0, 0, 0]


def test_a_deep_narrow_network_builds_and_trains():
    ds = plan.load_data({"name": "digits", "train_size": 400}, 0)
    spec = {"name": "mlp", "hidden": [16] * 12, "activation": "relu", "init": "lecun", "norm": None}
    model = plan.make_model_fn(spec, ds)
    assert model.keywords["init"] == "lecun" and model.args[0] == (64, *[16] * 12, 10)
    h = _train(spec, ds, 3, 3e-3)
    assert len(h.model(0, 0).blocks) == 12  # 12 hidden layers (and the readout)
    assert np.all(np.isfinite(h.train_loss)) and h.train_loss[0, 0, -1] < h.train_loss[0, 0, 0]
