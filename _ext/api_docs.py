"""Sphinx extension: autodoc as the API page (book/api.md) needs it.

* Docstrings are shown as written, in a preformatted block of class ``docstring`` (which
  wraps instead of scrolling: _static/custom.css). spikelib's docstrings are plain text for
  ``help()`` and the source reader: unicode maths, shapes such as ``(B, L, C)``, ``*`` for
  products, backquotes. Parsed as reStructuredText they give warnings (fatal under ``-W``)
  and mangled maths; verbatim they read as in the code. Signatures are still rendered.
* Module constants are documented even without a doc comment (``DATASETS``, ``PROFILES``, the
  energy constants ...): autodoc's own ``data`` documenter only takes module attributes that
  carry a ``#:`` comment or a docstring, so ``:undoc-members:`` alone would leave them out.
"""
from __future__ import annotations

import inspect

from sphinx.ext.autodoc import DataDocumenter, ModuleDocumenter


def preformat(app, what, name, obj, options, lines):
    if not any(line.strip() for line in lines):
        return
    body = ["    " + line if line.strip() else "" for line in lines]
    lines[:] = [".. code-block:: text", "   :class: docstring", "", *body, ""]


class ModuleDataDocumenter(DataDocumenter):
    """Any module attribute that no other documenter takes (classes, functions and modules have
    their own, of higher priority), documented or not."""

    @classmethod
    def can_document_member(cls, member, membername, isattr, parent):
        return isinstance(parent, ModuleDocumenter) and not inspect.ismodule(member)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.add_autodocumenter(ModuleDataDocumenter, override=True)
    app.connect("autodoc-process-docstring", preformat)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
