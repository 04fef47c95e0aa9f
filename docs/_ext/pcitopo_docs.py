"""Sphinx directives that take their content from pcitopo itself, at build time.

``.. pcitopo-help:: [COMMAND]``
    the ``--help`` text of ``pcitopo`` or one of its commands, as a literal block.

``.. pcitopo-graph:: PATH``
    the topology of a libvirt domain file (relative to the docs folder) drawn
    by Graphviz from ``pcitopo show --format dot``. With ``:assign:`` the
    domain is planned first (``pcitopo assign``, optionally ``:policy: NAME``),
    so the picture shows the controllers pcitopo adds. ``:caption:`` as for
    ``.. graphviz::``.

Both run :func:`pcitopo.cli.main` in-process, so the pages always show what
the code does; a command that fails makes the build fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.ext.graphviz import figure_wrapper, graphviz
from sphinx.util.docutils import SphinxDirective


def _run(argv: list[str]) -> str:
    from pcitopo.cli import main

    out, err = io.StringIO(), io.StringIO()
    # argparse prints --help to sys.stdout and wraps at $COLUMNS: fix both
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv, stdout=out, stderr=err)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    if code != 0:
        raise ExtensionError(f"pcitopo {' '.join(argv)} exited {code}: {err.getvalue().strip()}")
    return out.getvalue()


class HelpDirective(SphinxDirective):
    """``pcitopo [COMMAND] --help`` as a literal block."""

    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        argv = [*self.arguments, "--help"]
        text = _run(argv).rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class GraphDirective(SphinxDirective):
    """A domain's topology drawn from ``pcitopo show --format dot``."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {
        "assign": directives.flag,
        "policy": directives.unchanged,
        "caption": directives.unchanged,
        "alt": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        source = Path(self.env.srcdir) / self.arguments[0]
        if not source.is_file():
            raise self.error(f"pcitopo-graph: no file {source}")
        self.env.note_dependency(str(source))
        path = str(source)
        with tempfile.TemporaryDirectory(prefix="pcitopo-docs-") as tmp:
            if "assign" in self.options:
                planned = str(Path(tmp) / source.name)
                argv = ["assign", path, "-o", planned]
                if self.options.get("policy"):
                    argv += ["--policy", self.options["policy"]]
                _run(argv)
                path = planned
            dot = _run(["show", path, "--format", "dot"])
        node = graphviz()
        node["code"] = dot
        node["options"] = {"docname": self.env.docname}
        node["alt"] = self.options.get("alt", f"PCI topology of {self.arguments[0]}")
        if "caption" in self.options:
            figure = figure_wrapper(self, node, self.options["caption"])
            return [figure]
        return [node]


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("pcitopo-help", HelpDirective)
    app.add_directive("pcitopo-graph", GraphDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
