"""Offline data: seeded splits, training-only statistics, caching and clear errors."""

import random

import numpy as np
import pytest

from jaxopt_lectures.lab import data


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path / "cache"))


def test_digits_splits_are_seeded_disjoint_and_normalized_on_train():
    a = data.load_digits(seed=1)
    b = data.load_digits(seed=1)
    c = data.load_digits(seed=2)
    assert a.input_shape == (8, 8, 1) and a.num_classes == 10 and not a.flip_safe
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.y_val, c.y_val)
    np.testing.assert_allclose(a.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.x_train.std(), 1.0, atol=1e-4)
    assert abs(float(a.x_test.mean())) > 1e-4  # test statistics were not used
    assert a.y_train.dtype == np.int32 and a.x_train.dtype == np.float32


def test_train_size_and_unlabeled_pool_leave_other_splits_unchanged():
    full = data.load_digits(seed=0, unlabeled_size=200)
    small = data.load_digits(seed=0, unlabeled_size=200, train_size=100)
    assert len(small.x_train) == 100 and len(full.x_unlabeled) == 200
    np.testing.assert_array_equal(full.y_test, small.y_test)
    np.testing.assert_array_equal(full.y_val, small.y_val)
    # raw (un-normalized) unlabeled pools are identical; normalization differs with train stats
    np.testing.assert_allclose(
        full.x_unlabeled * full.std + full.mean, small.x_unlabeled * small.std + small.mean, atol=1e-5
    )


def test_mnist1d_is_generated_offline_cached_and_isolated(tmp_path):
    # the legacy global RNG on purpose: mnist1d draws from it, and loading must leave it as it was
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    d = data.load_mnist1d(num_samples=120)
    assert np.random.rand() == expected_np and random.random() == expected_py  # noqa: NPY002
    assert d.input_shape == (40, 1) and d.num_classes == 10
    cached = list((tmp_path / "cache").glob("mnist1d_120_*.npz"))
    assert len(cached) == 1
    again = data.load_mnist1d(num_samples=120)
    np.testing.assert_array_equal(d.x_train, again.x_train)


def test_linear_regression_toy_recovers_w_and_b():
    d = data.linear_regression(200, w=2.0, b=-1.0, noise=0.01, seed=3)
    assert d.num_classes is None and d.x_train.shape == (200, 1) and len(d.x_val) == 0
    slope, intercept = np.polyfit(d.x_train[:, 0], d.y_train[:, 0], 1)
    assert abs(slope - 2.0) < 0.02 and abs(intercept + 1.0) < 0.02


def test_npz_round_trip_and_errors(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3))
    y = np.arange(50) % 4
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    d = data.load(str(good), seed=0)
    assert d.num_classes == 4 and d.input_shape == (3,)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, labels=y)
    with pytest.raises(data.DataError, match=r"bad\.npz.*'y'"):
        data.load_npz(bad)


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (np.zeros(10), np.zeros(10, int), {}, "rank >= 2"),
        (np.zeros((10, 2)), np.zeros(9, int), {}, "10 examples but y has 9"),
        (np.zeros((10, 2)), np.arange(10), {"num_classes": 5}, r"\[0, 5\)"),
        (np.full((10, 2), np.nan), np.zeros(10, int), {}, "NaN"),
        (np.zeros((10, 2)), np.zeros((10, 2), int), {"num_classes": 3}, "rank 1"),
        (np.zeros((10, 2)), np.zeros(10, int), {"test_fraction": 0.5, "val_fraction": 0.5}, "none for training"),
    ],
)
def test_bad_data_errors_are_clear(x, y, kwargs, match):
    with pytest.raises(data.DataError, match=match):
        data.from_arrays(x, y, **kwargs)
