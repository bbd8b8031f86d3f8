# The README's two commands: `make book` and `make test`. Both create .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# A torch/torchvision pair that imports together (CPU wheels work too: see README).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
FMNIST_SRC ?= /usr/share/datasets/fashion-mnist
DATA   ?= data
JOBS   ?= 2
export SPIKELIB_PROFILE ?= smoke
export SPIKELIB_DATA ?= $(abspath $(DATA))
export PYTHONHASHSEED := 0

.PHONY: book test lint pytest nbval browser data venv clean

# The tests' oracle (SpikingJelly): pyproject's `oracle` extra, installed without the
# requirements spikingjelly declares (see pyproject.toml).
ORACLE = $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["oracle"])'

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PAIR)
	$(BIN)/pip install -q -e '.[test,book]'
	$(BIN)/pip install -q --no-deps $$($(ORACLE))
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist: torchvision rejects the .gz files (their
# MD5 sums differ), so unpack them where FashionMNIST(download=False) looks.
data: $(DATA)/FashionMNIST/raw/t10k-labels-idx1-ubyte
$(DATA)/FashionMNIST/raw/t10k-labels-idx1-ubyte:
	@test -d $(FMNIST_SRC) || { echo "Fashion-MNIST not found in $(FMNIST_SRC): run 'apt-get install dataset-fashion-mnist' (or set FMNIST_SRC)"; exit 1; }
	mkdir -p $(DATA)/FashionMNIST/raw
	for f in $(FMNIST_SRC)/*-ubyte.gz; do gunzip -c $$f > $(DATA)/FashionMNIST/raw/$$(basename $$f .gz); done

# --all: pages read results/*.json, which Sphinx does not track, so every page is re-executed.
book: $(STAMP) data
	$(BIN)/jupyter-book build . --all -W -n --keep-going

# ruff (rules in pyproject.toml); no block of 5 or more similar lines repeated in spikelib/;
# the publishing workflow against GitHub's workflow schema (vendored in check-jsonschema: offline).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pylint --disable=all --enable=duplicate-code --min-similarity-lines=5 --score=n spikelib
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# --dist loadgroup keeps tests marked xdist_group (the shared torchrun launches) on one worker.
pytest: $(STAMP) data
	OMP_NUM_THREADS=1 $(BIN)/pytest -n $(JOBS) --dist loadgroup tests

# One torch thread per xdist worker: 2 workers on 2 cores, no oversubscription.
# nbval collects .ipynb only: pair each MyST notebook page (those with a kernelspec: the intro,
# every chapter and appendix; api and references are plain pages) to a notebook under
# _build/nbval and run it, beside the chapters' helper book/_runs.py (jupytext leaves the
# launch cell, which a myst-nb `load` fills, empty).
nbval: $(STAMP) data
	rm -rf _build/nbval && mkdir -p _build/nbval/book && cp book/_runs.py _build/nbval/book/
	for f in $$(grep -l '^kernelspec:' book/*.md); do $(BIN)/jupytext --quiet --to ipynb -o _build/nbval/$${f%.md}.ipynb $$f; done
	OMP_NUM_THREADS=1 $(BIN)/pytest -p no:python -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-kernel-startup-timeout 120 --nbval-cell-timeout 600 -n $(JOBS) --dist loadscope _build/nbval/book

browser: book
	$(BIN)/python tests/check_book_browser.py _build/html

test: lint pytest nbval browser

clean:
	rm -rf _build
