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
