"""The public API: every name in ``__all__`` exists, and every public function and method of
``jaxopt_lectures`` and ``jaxopt_lectures.lab`` is fully annotated (parameters and return), so
users' type checkers read real types (``py.typed`` is shipped). mypy (``make typecheck``) checks
that the annotations are right; this checks that none is missing, including the inner closures'
public factories that mypy's ``disallow_untyped_defs`` is not switched on for."""

import importlib
import inspect
import types

import pytest

MODULES = ["jaxopt_lectures", "jaxopt_lectures.lab"]


def _public_callables(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr not in ("__init__", "__call__"):
                    continue
                if isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                elif isinstance(value, property):
                    value = value.fget
                if inspect.isfunction(value) and value.__module__.startswith("jaxopt_lectures"):
                    yield f"{name}.{attr}", value


def _missing_annotations(func):
    sig = inspect.signature(func)
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
    ]
    if sig.return_annotation is inspect.Signature.empty and func.__name__ != "__init__":
        missing.append("return")
    return missing


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_in_all_exists(module_name):
    module = importlib.import_module(module_name)
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice in __all__"
    absent = [name for name in module.__all__ if not hasattr(module, name)]
    assert not absent, f"{module_name}.__all__ lists names the module does not define: {absent}"


@pytest.mark.parametrize("module_name", MODULES)
def test_the_public_api_is_fully_annotated(module_name):
    module = importlib.import_module(module_name)
    gaps = {qual: m for qual, func in _public_callables(module) if (m := _missing_annotations(func))}
    assert not gaps, f"{module_name}: public functions with unannotated parameters or return: {gaps}"
