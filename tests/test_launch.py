"""The launch cell (book/_launch.py, the first cell of every chapter): inside a checkout it only
puts book/ on the import path; outside one it clones the repository, installs spikelib from the
clone and works there."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "book" / "_launch.py"


@pytest.fixture
def launch(monkeypatch):
    """book/_launch.py executed as the chapters run it (from book/ of this checkout), with the
    process state it may change restored afterwards; returns its namespace."""
    monkeypatch.chdir(ROOT / "book")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("SPIKELIB_DATA", raising=False)
    ns = {"__name__": "__main__"}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), ns)
    return ns


def test_inside_a_checkout_it_only_puts_book_on_the_path(launch):
    assert launch["_checkout"] == ROOT
    assert Path.cwd() == ROOT / "book" and "SPIKELIB_DATA" not in os.environ
    assert str(ROOT / "book") in sys.path           # book/_runs.py imports from anywhere


def test_outside_a_checkout_it_clones_installs_and_enters_the_clone(launch, tmp_path, monkeypatch):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    calls, run = [], subprocess.run

    def fake_run(cmd, **kw):       # clone for real (from this repository), record pip
        calls.append(cmd)
        return run(cmd, **kw) if cmd[0] == "git" else subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    root = launch["enter_checkout"](ROOT.as_uri())
    clone = tmp_path / "spikelib-book"
    assert root == clone and (clone / "results").is_dir() and (clone / "spikelib").is_dir()
    assert calls[0][:2] == ["git", "clone"]
    assert calls[1] == [sys.executable, "-m", "pip", "install", "-q", "-e", f"{clone}[book]"]
    assert Path.cwd() == clone / "book" and sys.path[0] == str(clone)
    assert os.environ["SPIKELIB_DATA"] == str(clone / "data")
    # run again (the next chapter): now inside the clone, nothing more happens
    assert launch["enter_checkout"](ROOT.as_uri()) == clone and len(calls) == 2


def test_without_a_repository_address_it_says_what_to_do(launch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="clone the book's repository"):
        launch["enter_checkout"]("@REPOSITORY_URL@")
