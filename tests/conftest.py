"""Shared fixtures and helpers: a generated CIFAR-format folder, the real Fashion-MNIST files,
and :class:`DispatchLog`, which records the aten operations a block of code dispatches."""
import os
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


class DispatchLog(TorchDispatchMode):
    """Records every aten operation dispatched inside ``with DispatchLog() as log:``.

    ``log.count``: how many ran (e.g. the depth of a scan: a loop over time dispatches ≥ L);
    ``log.dtypes(name)``: the dtypes of the tensor arguments of the ops whose name contains
    ``name`` (e.g. ``"fft"``); ``log.multiplies()``: the real multiplications, from each
    multiplying op's output size and operand dtypes; ``log.calls``: everything recorded.
    Import it with ``from conftest import DispatchLog``.
    """

    def __init__(self):
        super().__init__()
        self.calls = []   # (op name, dtypes of its tensor arguments, output shape, inner size)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        self.calls.append((func.__name__, dtypes, shape, _inner(func.__name__, args)))
        return out

    @property
    def count(self) -> int:
        return len(self.calls)

    def dtypes(self, name: str) -> set:
        return {d for op, dtypes, _, _ in self.calls if name in op for d in dtypes}

    def multiplies(self) -> int:
        """Real multiplications of the floating-point ``mul``, ``addcmul`` and matrix products
        (``mm``, ``bmm``, ``addmm``): per output element one product (times the inner size for
        a matrix product), which costs 1 real multiplication for real operands, 2 for a complex
        times a real one and 4 for two complex ones. Other ops (adds, copies, the boolean
        products of the NaN check) count 0."""
        total = 0
        for op, dtypes, shape, inner in self.calls:
            name = op.split(".")[0]
            if name not in _PRODUCTS or shape is None:
                continue
            factors = dtypes[-2:]                 # addcmul/addmm: the last two are multiplied
            if not all(d.is_floating_point or d.is_complex for d in factors):
                continue
            per = {0: 1, 1: 2, 2: 4}[sum(d.is_complex for d in factors)]
            total += per * inner * _numel(shape)
        return total


_PRODUCTS = {"mul", "mul_", "addcmul", "addcmul_", "mm", "bmm", "addmm"}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _inner(op: str, args) -> int:
    """The contracted size of a matrix product (1 for elementwise ops)."""
    if op.split(".")[0] in ("mm", "bmm", "addmm"):
        return args[-1].shape[-2]
    return 1


@pytest.fixture
def host_reads():
    """A context manager that lists every read of a tensor's value into Python made directly
    by spikelib code (``.item()``, ``.tolist()``, ``bool``/``float``/``int`` of a tensor) — on
    a GPU each one waits for the device — as 'file.py:line method', filled when the block ends
    (``gpu/sync_check.py``'s ``host_reads``, the CPU stand-in for its CUDA check)."""
    import contextlib
    from collections import Counter

    sync_check = load_script("sync_check", "gpu")

    @contextlib.contextmanager
    def count():
        seen, found = Counter(), []
        with sync_check.host_reads(seen):
            yield found
        found.extend(place for place, n in seen.items() for _ in range(n))
    return count


def load_script(name: str, folder: str = "benchmarks"):
    """``<folder>/<name>.py`` (benchmarks, gpu, experiments) as a module, its folder on
    ``sys.path`` as when run as a script (the benchmarks import their ``_bench`` helpers from
    it). ``from conftest import load_script``."""
    import importlib.util
    import sys
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}",
                                                  ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
