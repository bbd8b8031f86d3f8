"""Project-level checks: the dependency lists agree, the README commands are what CI runs."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += extra
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:", 1)[1]
    reqs = [line.strip()[2:] for line in pip_block.splitlines() if line.strip().startswith("- ")]
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


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
