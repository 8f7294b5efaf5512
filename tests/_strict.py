"""Warnings are errors in the tests, except the third-party deprecations listed here.

Each entry names the module that raises the warning (a regex on the module's ``__name__``, as
``warnings.filterwarnings`` matches it), never a blanket category: our own warnings, and any
other package's, stay errors. ``conftest.py`` applies these to every test; the scripts the
tests launch in a fresh process call ``make_warnings_strict()``.
"""

import warnings

THIRD_PARTY = [
    # orbax-checkpoint 0.12.8 annotates with jax.sharding.SingleDeviceSharding, which jax 0.12.1
    # deprecates; raised when orbax is imported (orbax/checkpoint/_src/multihost/colocated_transport.py)
    ("ignore", r"jax\.sharding\.SingleDeviceSharding is deprecated", DeprecationWarning, r"orbax\.checkpoint\."),
]


def strict_filter_args():
    """The same filters as ``pytest.mark.filterwarnings`` arguments, after ``"error"``."""
    return ["error"] + [
        f"{action}:{message}:{category.__name__}:{module}" for action, message, category, module in THIRD_PARTY
    ]


def make_warnings_strict():
    warnings.simplefilter("error")
    for action, message, category, module in THIRD_PARTY:
        warnings.filterwarnings(action, message=message, category=category, module=module)
