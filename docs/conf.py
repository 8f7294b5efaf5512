"""Sphinx configuration: the API reference from the docstrings, and the guides in docs/*.md.

``make docs`` builds it offline with warnings as errors. Formulas are typeset by MathJax 3
(its SVG output: one script, no web fonts), copied from the pinned ``django-static-mathjax``
package of the ``docs`` extra into the built pages, so no page loads anything from a CDN.
"""

import importlib.resources
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the working tree's package, also when it is not installed

import jaxopt_lectures  # noqa: E402

project = "jaxopt_lectures"
author = "jaxopt_lectures developers"
copyright = "the jaxopt_lectures developers"  # noqa: A001
release = version = jaxopt_lectures.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "seeds", "img"]

# autodoc: a module's __all__ decides what is documented, in its order
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": False}
autodoc_typehints = "signature"
# signatures name the package's aliases instead of spelling out their unions
autodoc_type_aliases = {
    "Scalar": "jaxopt_lectures.Scalar",
    "ScalarOrSchedule": "jaxopt_lectures.ScalarOrSchedule",
    "Schedule": "jaxopt_lectures.Schedule",
    "PyTree": "jaxopt_lectures._core.PyTree",
    "Mask": "jaxopt_lectures.transforms.regularization.Mask",
    "DTypeLike": "jax.typing.DTypeLike",
}
autodoc_preserve_defaults = True  # `mask=decay_matrices_only`, not the function's repr
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# MathJax from a local copy: tex-svg.js is self-contained (glyphs as SVG paths, no font files)
_MATHJAX = importlib.resources.files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg.js"
html_static_path = [str(_MATHJAX)]
mathjax_path = "tex-svg.js"

myst_heading_anchors = 3
html_theme = "alabaster"
html_title = f"jaxopt_lectures {release}"
# no context menu: its accessibility explorer is the one part of MathJax that would fetch a
# library (speech-rule-engine) from a CDN
mathjax3_config = {"options": {"enableMenu": False}}

# Sphinx 9.1 prints an alias inside a union (`Scalar | None`) by its repr,
# "TypeAliasForwardRef('jaxopt_lectures.Scalar')": print the alias's name as it does elsewhere
from sphinx.util import inspect as _sphinx_inspect  # noqa: E402

_sphinx_inspect.TypeAliasForwardRef.__repr__ = lambda self: self.name
