"""Shared fixtures: a generated CIFAR-format folder and the real Fashion-MNIST files."""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR_PER_BATCH = 20     # 5 training batches -> 100 training images; test batch: 20


def pytest_configure(config):
    """Under pytest-xdist (one worker per core) give each worker one intra-op thread: two
    workers × two OpenMP threads on two cores spin at every barrier and run several times
    slower (measured: the serial LIF loop, 0.6 s → 26 s per step)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """Data root holding a generated CIFAR-format fixture (NOT CIFAR-10: random pixels)."""
    from spikelib.data import write_cifar_fixture
    return write_cifar_fixture(tmp_path_factory.mktemp("cifar_fixture"), CIFAR_PER_BATCH)


def fmnist_root() -> Path:
    return Path(os.environ.get("SPIKELIB_DATA") or ROOT / "data")


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST splits; fails with spikelib's missing-data message if absent."""
    from spikelib import data
    try:
        return data.load("fmnist", fmnist_root())
    except data.MissingDataError as err:
        pytest.fail(str(err))


@pytest.fixture
def host_reads():
    """A context manager that lists every read of a tensor's value into Python made directly
    by spikelib code (``.item()``, ``.tolist()``, ``bool``/``float``/``int`` of a tensor) — on
    a GPU each one waits for the device — as 'file.py:line method'."""
    import contextlib
    import sys
    import spikelib
    package = str(Path(spikelib.__file__).resolve().parent)
    names = ("item", "tolist", "__bool__", "__float__", "__int__")

    @contextlib.contextmanager
    def count():
        seen, saved = [], {n: torch.Tensor.__dict__.get(n) for n in names}
        for name in names:
            orig = getattr(torch.Tensor, name)

            def wrapped(self, *args, _orig=orig, _name=name, **kw):
                frame = sys._getframe(1)
                if frame.f_code.co_filename.startswith(package):
                    seen.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} "
                                f"{_name}")
                return _orig(self, *args, **kw)
            setattr(torch.Tensor, name, wrapped)
        try:
            yield seen
        finally:
            for name, old in saved.items():
                if old is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, old)
    return count
