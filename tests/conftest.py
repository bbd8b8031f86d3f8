"""Shared fixtures: a generated CIFAR-format folder and the real Fashion-MNIST files."""
import os
import pickle
from pathlib import Path

import numpy as np
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


def write_cifar_fixture(root: Path, per_batch: int = CIFAR_PER_BATCH, seed: int = 0) -> Path:
    """A small folder in the layout of ``cifar-10-batches-py``: pickled dicts (protocol 2,
    latin1 readable) with 'data' (n, 3072) uint8 in channel-major order and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        entry = {"batch_label": f"fixture batch {i}",
                 "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)], "num_cases_per_batch":
                     per_batch, "num_vis": 3072}, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """Data root holding a generated CIFAR-format fixture (NOT CIFAR-10: random pixels)."""
    return write_cifar_fixture(tmp_path_factory.mktemp("cifar_fixture"))


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
