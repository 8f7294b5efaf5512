"""Strict JAX for every test: implicit rank promotion raises, warnings are errors (except the
third-party deprecations named, with the module that raises each, in ``_strict.py``)."""

import jax
import pytest

from _strict import strict_filter_args

jax.config.update("jax_numpy_rank_promotion", "raise")

try:  # hypothesis: a shared, CI-friendly profile (no deadline: first calls compile).
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "jaxopt",
        deadline=None,
        max_examples=25,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    settings.load_profile("jaxopt")
except ImportError:  # pragma: no cover
    pass


def pytest_collection_modifyitems(config, items):
    del config
    for item in items:
        item.add_marker(pytest.mark.filterwarnings(*strict_filter_args()))


@pytest.fixture
def kernel():
    """Skips the test when the fused-step C++ kernel cannot be had here (no g++, a failed
    build, ...), or when the arrays live on an accelerator: the kernel is a CPU custom call."""
    from jaxopt_lectures import _kernels

    if jax.default_backend() != "cpu":
        pytest.skip(f"the fused-step C++ kernel runs on the CPU only; the default backend is {jax.default_backend()}")
    reason = _kernels.unavailable_reason()
    if reason is not None:
        pytest.skip(f"the fused-step C++ kernel is unavailable: {reason}")


@pytest.fixture(params=["kernel", "xla"])
def backend(request):
    """Both implementations of the packed update: ``backend="kernel"`` (skipped where the
    kernel cannot run) and ``backend="xla"``."""
    if request.param == "kernel":
        request.getfixturevalue("kernel")
    return request.param


@pytest.fixture(scope="module")
def digits200():
    """The digits with 200 training examples: the small data set of the reliability cases."""
    from jaxopt_lectures.lab import data

    return data.load_digits(train_size=200)
