"""Project-level checks: the dependency lists agree with each other and with what the code
imports, the README commands are what CI runs, the book's launch cell, API page and publishing
workflow are wired as the README says."""
import ast
import importlib.metadata
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

import jupytext
from IPython.core.inputtransformer2 import TransformerManager

import spikelib

ROOT = Path(__file__).resolve().parents[1]
META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("*.md") if "\nkernelspec:" in p.read_text())


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements(extras=None) -> dict[str, str]:
    """Runtime requirements plus the named extras (all of them by default), by package name."""
    reqs = list(META["dependencies"])
    for extra, extra_reqs in META["optional-dependencies"].items():
        if extras is None or extra in extras:
            reqs += extra_reqs
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:", 1)[1]
    reqs = [line.strip()[2:] for line in pip_block.splitlines() if line.strip().startswith("- ")]
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    # the oracle extra is installed with --no-deps by the Makefile, so not from environment.yml
    assert _environment_requirements() == _pyproject_requirements(("test", "book"))


def _imported(tree: ast.AST, *, lazy: bool) -> set[str]:
    """Top-level names of the modules a syntax tree imports (absolute imports only); with
    ``lazy=False`` only those run at import time, not the ones inside function bodies."""
    names, todo = set(), [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        if lazy or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(ast.iter_child_nodes(node))
    return names


def _undeclared(imported: set[str], allowed: dict[str, str], local=()) -> set[str]:
    dists = importlib.metadata.packages_distributions()
    return {name for name in imported - set(sys.stdlib_module_names) - {"spikelib", *local}
            if not {_name(d) for d in dists.get(name, [name])} & set(allowed)}


LAZY_MODULES = {"_refractory_triton.py"}


def test_spikelib_imports_only_declared_packages():
    """Importing spikelib needs only its runtime requirements (sympy and matplotlib are book
    extras); a package imported inside a function must at least be in some extra."""
    runtime, everything = _pyproject_requirements(()), _pyproject_requirements()
    for path in sorted((ROOT / "spikelib").glob("*.py")):
        tree = ast.parse(path.read_text())
        # the Triton kernel module is itself imported lazily (on CUDA only; tested in
        # test_refractory): its top-level imports may come from the `cuda` extra
        at_import = _pyproject_requirements(("cuda",)) if path.name in LAZY_MODULES else runtime
        assert not _undeclared(_imported(tree, lazy=False), at_import), path.name
        assert not _undeclared(_imported(tree, lazy=True), everything), path.name


def test_tests_benchmarks_and_chapters_import_only_declared_packages():
    tests = _pyproject_requirements(("test", "oracle"))
    for path in sorted((ROOT / "tests").glob("*.py")):
        assert not _undeclared(_imported(ast.parse(path.read_text()), lazy=True), tests,
                               local=("conftest",)), path.name
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        assert not _undeclared(_imported(ast.parse(path.read_text()), lazy=True),
                               _pyproject_requirements(()), local=("_bench",)), path.name
    for path in sorted((ROOT / "gpu").glob("*.py")):
        assert not _undeclared(_imported(ast.parse(path.read_text()), lazy=True),
                               _pyproject_requirements(()), local=("sync_check",)), path.name
    book = _pyproject_requirements(("book",))
    for path in CHAPTERS:
        cells = [c.source for c in jupytext.read(path).cells if c.cell_type == "code"]
        trees = [ast.parse(TransformerManager().transform_cell(c)) for c in cells]  # magics
        assert not _undeclared(set().union(*(_imported(t, lazy=True) for t in trees)), book,
                               local=("_runs",)), path.name
    launch = ast.parse((ROOT / "book" / "_launch.py").read_text())
    assert not _undeclared(_imported(launch, lazy=True), {}), "the launch cell: stdlib only"
    runs = ast.parse((ROOT / "book" / "_runs.py").read_text())
    assert not _undeclared(_imported(runs, lazy=True), {}), "book/_runs.py: spikelib only"


def test_oracle_tests_skip_without_spikingjelly():
    """Every test file that imports SpikingJelly guards it with pytest.importorskip; the
    Makefile installs the oracle extra of pyproject.toml (with --no-deps)."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text()
        if re.search(r"^\s*(from|import) spikingjelly", text, re.M):
            uses = len(re.findall(r"^\s*(?:from|import) spikingjelly", text, re.M))
            assert text.count('pytest.importorskip("spikingjelly")') >= uses, path.name
    assert "spikingjelly==2.0.0" in _pyproject_requirements(("oracle",))["spikingjelly"]
    makefile = (ROOT / "Makefile").read_text()
    assert '["optional-dependencies"]["oracle"]' in makefile
    assert "--no-deps $$($(ORACLE))" in makefile


def test_makefile_torch_pair_satisfies_pyproject():
    pins = dict(re.findall(r"(torch|torchvision)==([\d.]+)", (ROOT / "Makefile").read_text()))
    reqs = _pyproject_requirements()
    for pkg in ("torch", "torchvision"):
        lower = re.search(r">=([\d.]+)", reqs[pkg]).group(1)
        as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
        assert as_tuple(pins[pkg]) >= as_tuple(lower), (pkg, pins[pkg], reqs[pkg])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^make test$", ci, re.M)
    system_line = re.search(r"apt-get install -y ([^\n]+)", readme).group(1).split()
    for pkg in system_line:
        assert pkg in ci, f"README's system package {pkg} is not installed by .ci/run"


def test_book_pins_jupyter_book_1x():
    assert "jupyter-book>=1.0.4.post1,<2" in _pyproject_requirements()["jupyter-book"]
    config = (ROOT / "_config.yml").read_text()
    assert "nb_execution_raise_on_error: true" in config
    assert "execute_notebooks: force" in config


def test_license_matches_pyproject():
    assert META["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the spikelib authors" in text


def test_every_chapter_starts_with_the_launch_cell():
    """The first cell of every notebook chapter loads book/_launch.py (written once)."""
    assert len(CHAPTERS) >= 12
    for path in CHAPTERS:
        first = jupytext.read(path).cells[0]
        assert first.cell_type == "code" and first.metadata.get("load") == "_launch.py", path.name


def test_every_code_cell_fits_the_page():
    """Every line of every code cell of every chapter is at most 79 columns (the page shows
    about 75; the library itself keeps its 100), so no cell scrolls sideways."""
    wide = [f"{path.name}: {len(line)} cols: {line[:50]}"
            for path in CHAPTERS for cell in jupytext.read(path).cells
            if cell.cell_type == "code" for line in cell.source.splitlines()
            if len(line) > 79]
    assert not wide, "\n".join(wide)


def test_the_book_is_short():
    """Issue 22: at most 3,000 lines of MyST in the chapters and appendices (the API and
    references pages aside) and at most eight chapters (Part II counts) besides the appendices."""
    pages = [p for p in (ROOT / "book").glob("*.md") if p.stem not in ("api", "references")]
    lines = sum(len(p.read_text().splitlines()) for p in pages)
    assert lines <= 3000, lines
    toc = (ROOT / "_toc.yml").read_text()
    parts = re.split(r"^  - caption: ", toc, flags=re.M)[1:]
    chapters = [f for part in parts if not part.startswith('"Appendices')
                for f in re.findall(r"file: (\S+)", part)]
    assert 0 < len(chapters) <= 8, chapters


def test_glue_names_are_unique_and_defined():
    """A glue name is defined by one chapter only, and every ``{glue:text}`` reads one that a
    ``glue()`` call defines (an f-string name stands for every name it can make)."""
    defined, used = {}, {}
    for path in CHAPTERS:
        text = path.read_text()
        for name in re.findall(r'glue\(\s*f?"([^"]+)"', text):
            defined.setdefault(name, set()).add(path.name)
        for name in re.findall(r"\{glue:text\}`([^`:]+)", text):
            used.setdefault(name, set()).add(path.name)
    twice = {n: p for n, p in defined.items() if len(p) > 1 and "{" not in n}
    assert not twice, twice
    patterns = [re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(n)))
                for n in defined if "{" in n]
    undefined = {n: p for n, p in used.items() if n not in defined
                 and not any(pat.fullmatch(n) for pat in patterns)}
    assert not undefined, undefined


def test_launch_url_is_configured_once_and_filled_by_the_workflow():
    config = (ROOT / "_config.yml").read_text()
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    url = re.search(r"^repository:\n  url: (\S+)$", config, re.M).group(1)
    # the workflow replaces exactly this placeholder with the repository it runs in
    assert f"s|{url}|https://github.com/${{{{ github.repository }}}}|" in workflow
    assert re.search(r"^\s+run: make book$", workflow, re.M)
    assert "actions/upload-pages-artifact" in workflow and "actions/deploy-pages" in workflow
    # nowhere else: the launch cell gets it from the build (_ext/launch_links.py)
    for path in [ROOT / "book" / "_launch.py", ROOT / "README.md", *CHAPTERS]:
        assert url not in path.read_text(), path.name


def test_api_page_covers_every_module_and_is_in_the_toc():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", api, re.M))
    public = {f"spikelib.{m.name}" for m in pkgutil.iter_modules(spikelib.__path__)
              if not m.name.startswith("_")}
    assert public <= documented, public - documented
    assert "file: book/api" in (ROOT / "_toc.yml").read_text()


def test_console_scripts_and_typing_marker():
    """``spikelib-train`` and ``spikelib-results`` run the modules' ``main``; the package ships
    ``py.typed`` (PEP 561) as package data."""
    import importlib
    scripts = META["scripts"]
    assert set(scripts) == {"spikelib-train", "spikelib-results"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
    assert (ROOT / "spikelib" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in data["package-data"]["spikelib"]


RESULTS_LAYER = ("config", "checkpoint", "train", "metrics", "device", "distributed", "data",
                 "provenance", "resultfiles", "summary", "results", "_io")


def test_the_results_layer_declares_its_public_names():
    """Every module of the results layer has ``__all__``, naming only what it defines or
    deliberately re-exports, never an imported standard module."""
    import importlib
    import types
    for name in RESULTS_LAYER:
        mod = importlib.import_module(f"spikelib.{name}")
        assert mod.__all__, name
        for n in mod.__all__:
            assert hasattr(mod, n) and not isinstance(getattr(mod, n), types.ModuleType), (name, n)
