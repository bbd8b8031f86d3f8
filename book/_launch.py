# Launch cell, the same in every chapter: outside a checkout of the book's repository (Colab, a
# downloaded notebook) it clones the repository, installs spikelib from the clone and works
# there, so that the library, results/ and data/ are found as in a checkout. Inside a checkout
# (a clone, Binder, `make book`) it only puts book/ on the import path, for the chapters'
# helper book/_runs.py, wherever in the checkout the notebook runs.
import os
import subprocess
import sys
from pathlib import Path


def enter_checkout(repository: str, folder: str = "spikelib-book") -> Path:
    """Return the checkout holding the current folder; else clone ``repository`` into
    ``./folder`` (once), install spikelib with the book's packages and change to its ``book/``."""
    here = Path.cwd()
    for root in (here, *here.parents):
        if (root / "_toc.yml").is_file() and (root / "spikelib").is_dir():
            return root
    root = here / folder
    if not (root / "_toc.yml").is_file():
        if not repository.startswith(("https://", "file://")):
            raise RuntimeError("this notebook was built without a repository address: clone "
                               "the book's repository and open the notebook from there")
        subprocess.run(["git", "clone", "--depth", "1", repository, str(root)], check=True,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{root}[book]"],
                   check=True)
    sys.path.insert(0, str(root))       # the running kernel imports spikelib from the clone
    os.environ.setdefault("SPIKELIB_DATA", str(root / "data"))   # as `make` sets it
    os.chdir(root / "book")             # where the chapters run in a checkout
    return root


_checkout = enter_checkout("@REPOSITORY_URL@")  # the book's repository: repository.url, _config.yml
if str(_checkout / "book") not in sys.path:
    sys.path.append(str(_checkout / "book"))
