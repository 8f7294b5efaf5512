"""Strict JAX for every test: implicit rank promotion raises, warnings are errors."""

import jax
import pytest

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
        item.add_marker(pytest.mark.filterwarnings("error"))
