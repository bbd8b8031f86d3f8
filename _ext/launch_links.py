"""Sphinx extension: launch links and downloadable notebooks for the book's chapters.

Jupyter Book 1.x writes each executed chapter as a notebook (``_build/jupyter_execute``) and
sphinx-book-theme copies it next to the page (``_build/html/_sources/<page>.ipynb``, the
``.ipynb`` download button). This extension does the two things the theme does not:

* the Binder and Colab buttons open ``<page>.ipynb`` (the theme links the MyST source
  ``<page>.md``, which Colab cannot open): the publishing workflow pushes the same notebooks
  to the ``repository.branch`` of ``_config.yml``;
* the launch cell (``book/_launch.py``, the first cell of every chapter) is given the
  repository's address: ``@REPOSITORY_URL@`` becomes ``repository.url`` of ``_config.yml`` in
  every written notebook, so ``repository.url`` is the one place the address is configured.
"""
from __future__ import annotations

from pathlib import Path

TOKEN = "@REPOSITORY_URL@"


def ipynb_launch_links(app, pagename, templatename, context, doctree):
    """Point the launch buttons of a notebook page at ``<page>.ipynb`` instead of its source."""
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url")
            if url:
                button["url"] = url.replace(f"{pagename}.md", f"{pagename}.ipynb")


def fill_repository_url(app, exception):
    """Write the configured repository address into every notebook the build wrote."""
    if exception is not None or app.builder.format != "html":
        return
    url = app.config.html_theme_options.get("repository_url", "")
    out = Path(app.outdir)
    for folder in (out / "_sources", out.parent / "jupyter_execute"):
        for nb in folder.rglob("*.ipynb"):
            text = nb.read_text(encoding="utf-8")
            if TOKEN in text:
                nb.write_text(text.replace(TOKEN, url), encoding="utf-8")


def setup(app):
    # after sphinx-book-theme's own launch buttons (priority 501)
    app.connect("html-page-context", ipynb_launch_links, priority=600)
    app.connect("build-finished", fill_repository_url)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
