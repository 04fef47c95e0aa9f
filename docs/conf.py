"""Sphinx configuration for pcitopo's documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html``; run the examples:
``sphinx-build -W -b doctest docs docs/_build/doctest``.
"""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

import pcitopo  # noqa: E402

project = "pcitopo"
author = "the pcitopo authors"
copyright = "the pcitopo authors, MIT license"
release = pcitopo.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.graphviz",
    "pcitopo_docs",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "where every PCI device of a VM goes", "fixed_sidebar": True}

# Pictures: Graphviz's dot renders them at build time.
graphviz_output_format = "svg"

# API reference: the docstrings as written; signatures keep their annotations.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Only the explicit ``.. doctest::`` and ``.. testcode::`` blocks of the pages run under
# ``-b doctest``. The ``>>>`` examples in docstrings are run by pytest (``--doctest-modules``)
# in their module's namespace; here they are only shown. Every page imports what it uses;
# the setup only tells where the example domains are.
doctest_test_doctest_blocks = ""
doctest_global_setup = f"""
EXAMPLES = {str(DOCS / "examples")!r}
"""
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1
