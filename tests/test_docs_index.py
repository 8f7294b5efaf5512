"""The built API reference lists every public name: each name of ``jaxopt_lectures.__all__``
and ``jaxopt_lectures.lab.__all__`` is an entry of the general index (``genindex.html``).

Reads the HTML that ``make docs`` writes to ``docs/_build/html`` (CI builds it before the
tests); skipped where the docs have not been built.
"""

import importlib
import pathlib
import types

import pytest

BUILT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "_build" / "html"
GENINDEX = BUILT / "genindex.html"


@pytest.mark.parametrize("module_name", ["jaxopt_lectures", "jaxopt_lectures.lab"])
def test_every_public_name_is_in_the_built_index(module_name):
    if not GENINDEX.exists():
        pytest.skip(f"the docs are not built here ({GENINDEX} is missing; `make docs` builds them)")
    index = GENINDEX.read_text(encoding="utf-8")
    module = importlib.import_module(module_name)
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        # a submodule is indexed as "module-<its name>", anything else by its qualified name
        anchor = f"#module-{obj.__name__}" if isinstance(obj, types.ModuleType) else f"#{module_name}.{name}"
        if f'{anchor}"' not in index:
            missing.append(name)
    assert not missing, f"{module_name}: names of __all__ with no entry in {GENINDEX}: {missing}"


def test_the_optimizer_pages_typeset_formulas_with_the_local_mathjax():
    page = BUILT / "api" / "optimizers.html"
    if not page.exists():
        pytest.skip(f"the docs are not built here ({page} is missing; `make docs` builds them)")
    html = page.read_text(encoding="utf-8")
    assert 'src="../_static/tex-svg.js' in html, "the page does not load MathJax from _static"
    assert (BUILT / "_static" / "tex-svg.js").is_file()
    assert r"\hat m_t" in html, "adam's formula is not on the page"
    assert "cdn" not in html.lower(), "the page refers to a CDN"
