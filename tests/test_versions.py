"""The installed jax, flax and orbax-checkpoint lie inside the ranges the package supports.

The ranges are pyproject.toml's specifiers (jax in ``[project] dependencies``, flax and
orbax-checkpoint in the ``lab`` extra), which the README points at. A new release outside
them (``pip install -U`` past the upper bound, or a pin below the lower one) fails here with
the version and the range, before the numerical tests fail in harder-to-read ways.
"""

import importlib.metadata
import pathlib
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
README = PYPROJECT.parent / "README.md"
GUARDED = ("jax", "flax", "orbax-checkpoint")


def _supported():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["lab"]
    reqs = {}
    for line in lines:
        req = Requirement(line)
        if req.name in GUARDED:
            reqs[req.name] = (line, req)
    return reqs


def test_every_guarded_package_has_a_bounded_range():
    reqs = _supported()
    assert sorted(reqs) == sorted(GUARDED), f"pyproject.toml names no range for {set(GUARDED) - set(reqs)}"
    for name, (_, req) in reqs.items():
        ops = {spec.operator for spec in req.specifier}
        assert {">=", "<"} <= ops, f"{name}: the range {req.specifier} needs a lower (>=) and an upper (<) bound"


def test_the_readme_states_the_same_ranges():
    readme = README.read_text()
    for line, _ in _supported().values():
        assert f"`{line}`" in readme, f"README.md does not state `{line}` (pyproject.toml's range): update the README"


@pytest.mark.parametrize("name", GUARDED)
def test_installed_version_is_inside_the_supported_range(name):
    _, req = _supported()[name]
    try:
        installed = Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here")
    assert req.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed, outside the supported range {req.specifier} "
        f"(pyproject.toml, stated in the README). Test the package on {name} {installed} and widen the "
        f"range (README, pyproject.toml, .ci/oldest.txt for a new lower bound), or install a supported {name}."
    )
