"""Sequence datasets with seeded splits: sequential CIFAR-10, sequential Fashion-MNIST, adding.

Every dataset is a tensor of sequences (N, L, C) — an image read pixel by pixel in row-major
order is a sequence of L = H·W steps with C = colour channels; read row by row
(``fmnist-rows``) it is L = H steps of C = W pixels — plus targets. Images are stored
as uint8 and normalised per batch, so a full sCIFAR split stays at 184 MB.

========================  =========  ===============================  ======================
name                      (L, C)     normalisation (ours: S4 recipe)  split (seed 42)
========================  =========  ===============================  ======================
``cifar10`` (colour)      (1024, 3)  mean (0.4914, 0.4822, 0.4465),   45k / 5k / 10k
                                     std (0.2023, 0.1994, 0.2010)
``cifar10-grey``          (1024, 1)  mean 122.6/255, std 61/255       45k / 5k / 10k
``fmnist``                (784, 1)   mean 0.2860, std 0.3530          55k / 5k / 10k
``fmnist-rows``           (28, 28)   mean 0.2860, std 0.3530          55k / 5k / 10k
``adding``                (L, 2)     none (values U[0, 1], markers)   generated from a seed
========================  =========  ===============================  ======================

Files are read through torchvision (``CIFAR10``, ``FashionMNIST``) and downloaded only when the
caller passes ``download=True``. Missing files raise :class:`MissingDataError` with the command
that fetches them; nothing ever falls back to random data. :func:`synthetic` makes random
full-size tensors for *timing only* (marked ``synthetic=True``; never report their accuracy).
:func:`load` and :func:`synthetic` check what they return once (:meth:`Splits.check`: shape,
dtype, finite values, label range), so the training loop never has to.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spikelib._checks import check_int

__all__ = ["DATASETS", "ADDING_LENGTH", "DatasetInfo", "SequenceDataset", "Splits",
           "MissingDataError", "data_root", "info", "split_indices", "load", "adding",
           "synthetic", "batches", "read_cifar_batches", "write_cifar_fixture"]

DATASETS = ("fmnist", "fmnist-rows", "cifar10", "cifar10-grey", "adding")

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_GREY_MEAN = (122.6 / 255,)
CIFAR_GREY_STD = (61.0 / 255,)
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
VAL_FRACTION = {"cifar10": 5_000 / 50_000, "cifar10-grey": 5_000 / 50_000,
                "fmnist": 5_000 / 60_000, "fmnist-rows": 5_000 / 60_000}
ADDING_SIZES = (20_000, 2_000, 2_000)  # train / val / test sequences (ours)
ADDING_LENGTH = 200


class MissingDataError(FileNotFoundError):
    """Raised when the files of a dataset are not on disk (the message says how to get them)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""
    name: str
    length: int
    d_input: int
    n_classes: int          # 1 for the regression task ``adding``
    task: str               # 'classification' | 'regression'


class SequenceDataset(torch.utils.data.Dataset):
    """N sequences ``data`` (N, L, C) with ``targets`` (N,), normalised on access.

    uint8 data are mapped to ``(data / 255 − mean) / std`` (per channel); float data are returned
    as they are. :meth:`batch` does it for a whole index tensor at once (the fast path used by
    :func:`batches`); ``__getitem__`` is the torch ``Dataset`` interface.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, mean=None, std=None, *,
                 name: str = "", synthetic: bool = False):
        if data.dim() != 3 or targets.shape[0] != data.shape[0]:
            raise ValueError(f"data: expected (N, L, C) with N targets, got {tuple(data.shape)} "
                             f"and {tuple(targets.shape)}")
        self.data, self.targets = data, targets
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)
        self.name, self.synthetic = name, synthetic

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i):
        x, y = self.batch(torch.as_tensor([i]))
        return x[0], y[0]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) indices -> x (B, L, C) float32, y (B,)."""
        idx = idx.to(self.data.device)
        x = self.data[idx]                                           # (B, L, C)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.mean is not None:
            mean, std = self.mean.to(x.device), self.std.to(x.device)
            x = (x - mean) / std                                     # (B, L, C)
        return x, self.targets[idx]

    def subset(self, idx) -> SequenceDataset:
        """The sequences at ``idx`` (a view of the same storage where possible)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = SequenceDataset(self.data[idx], self.targets[idx], name=self.name,
                              synthetic=self.synthetic)
        out.mean, out.std = self.mean, self.std
        return out

    def head(self, n: int | None) -> SequenceDataset:
        """The first ``n`` sequences (all if ``n`` is None or larger than the set)."""
        return self if n is None or n >= len(self) else self.subset(torch.arange(n))

    def to(self, device) -> SequenceDataset:
        """Move the stored (compact) tensors and the normalisation, e.g. to the GPU once before
        training (no host-to-device copy is left for :meth:`batch`)."""
        out = SequenceDataset(self.data.to(device), self.targets.to(device), name=self.name,
                              synthetic=self.synthetic)
        out.mean, out.std = (None if t is None else t.to(device) for t in (self.mean, self.std))
        return out


@dataclass
class Splits:
    """train / val / test sets of one dataset and its :class:`DatasetInfo`."""
    train: SequenceDataset
    val: SequenceDataset
    test: SequenceDataset
    info: DatasetInfo
    synthetic: bool = False

    def check(self) -> Splits:
        """Check every split once, where it is loaded (never per training step): data
        (N, L, C) with the dataset's L and C, uint8 pixels or finite floats; targets (N,),
        int64 labels in [0, n_classes) or finite float targets for regression. ValueError
        naming the split and what is wrong; returns ``self``."""
        meta = self.info
        for split in ("train", "val", "test"):
            ds = getattr(self, split)
            x, y, where = ds.data, ds.targets, f"{meta.name} {split}"
            if x.dim() != 3 or tuple(x.shape[1:]) != (meta.length, meta.d_input):
                raise ValueError(f"data: {where} has shape {tuple(x.shape)}, expected "
                                 f"(N, {meta.length}, {meta.d_input})")
            if x.dtype != torch.uint8 and not x.is_floating_point():
                raise ValueError(f"data: {where} has dtype {x.dtype}, expected uint8 or float")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"data: {where} contains NaN or Inf")
            if y.shape != (x.shape[0],):
                raise ValueError(f"targets: {where} has shape {tuple(y.shape)}, expected "
                                 f"({x.shape[0]},)")
            if meta.task == "classification":
                if y.dtype != torch.int64:
                    raise ValueError(f"targets: {where} has dtype {y.dtype}, expected int64 "
                                     f"class labels")
                if len(y) and not (0 <= int(y.min()) and int(y.max()) < meta.n_classes):
                    raise ValueError(f"targets: {where} has labels outside "
                                     f"[0, {meta.n_classes})")
            elif not (y.is_floating_point() and bool(torch.isfinite(y).all())):
                raise ValueError(f"targets: {where} must be finite floats (regression)")
        return self

    def limit(self, n_train: int | None = None, n_eval: int | None = None) -> Splits:
        """Keep the first ``n_train`` training and ``n_eval`` val/test sequences (smoke runs)."""
        return Splits(self.train.head(n_train), self.val.head(n_eval), self.test.head(n_eval),
                      self.info, self.synthetic)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$SPIKELIB_DATA``, else ``./data``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("SPIKELIB_DATA") or "data")


def info(name: str, length: int | None = None) -> DatasetInfo:
    """Shape and task of dataset ``name`` (``length`` only for ``adding``)."""
    if name == "cifar10":
        return DatasetInfo(name, 1024, 3, 10, "classification")
    if name == "cifar10-grey":
        return DatasetInfo(name, 1024, 1, 10, "classification")
    if name == "fmnist":
        return DatasetInfo(name, 784, 1, 10, "classification")
    if name == "fmnist-rows":
        return DatasetInfo(name, 28, 28, 10, "classification")
    if name == "adding":
        return DatasetInfo(name, length or ADDING_LENGTH, 2, 1, "regression")
    raise ValueError(f"name: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def split_indices(n: int, n_val: int, seed: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of range(n): (train indices, val indices), val = the first n_val
    entries of ``torch.randperm(n)`` under ``torch.Generator().manual_seed(seed)``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def load(name: str, root: str | os.PathLike | None = None, *, download: bool = False,
         verify: bool = True, split_seed: int = 42, length: int | None = None,
         seed: int = 0) -> Splits:
    """Load dataset ``name`` (one of :data:`DATASETS`) as train / val / test :class:`Splits`.

    ``download``: let torchvision fetch CIFAR-10 / Fashion-MNIST (needs internet).
    ``verify=False`` (CIFAR only): skip torchvision's MD5 check and read the
    ``cifar-10-batches-py`` pickles with spikelib's own restricted reader — for the generated
    test fixture or a trusted re-packed copy; results from it are not the official data.
    ``length`` and ``seed``: sequence length and generator seed of ``adding``.
    """
    meta = info(name, length)
    if name == "adding":
        n_train, n_val, n_test = ADDING_SIZES
        return Splits(adding(n_train, meta.length, seed), adding(n_val, meta.length, seed + 1),
                      adding(n_test, meta.length, seed + 2), meta).check()
    root = data_root(root)
    if name in ("fmnist", "fmnist-rows"):
        (xtr, ytr), (xte, yte) = _fmnist(root, download)               # (N, 28, 28)
        mean, std = FMNIST_MEAN, FMNIST_STD
        if name == "fmnist":
            xtr, xte = xtr.reshape(-1, 784, 1), xte.reshape(-1, 784, 1)  # (N, L, 1) pixels
        # fmnist-rows: (N, 28, 28) is already (N, L, C), row r at step r
    else:
        (xtr, ytr), (xte, yte) = _cifar(root, download, verify)          # (N, 32, 32, 3)
        if name == "cifar10-grey":
            xtr, xte = _grey(xtr), _grey(xte)
            mean, std = CIFAR_GREY_MEAN, CIFAR_GREY_STD
        else:
            mean, std = CIFAR_MEAN, CIFAR_STD
        c = xtr.shape[-1]
        xtr, xte = xtr.reshape(-1, 1024, c), xte.reshape(-1, 1024, c)  # row-major pixels
    full = SequenceDataset(xtr, ytr, mean, std, name=name)
    test = SequenceDataset(xte, yte, mean, std, name=name)
    tr, va = split_indices(len(full), round(VAL_FRACTION[name] * len(full)), split_seed)
    return Splits(full.subset(tr), full.subset(va), test, meta).check()


def adding(n: int, length: int = ADDING_LENGTH, seed: int = 0,
           window: int | None = None) -> SequenceDataset:
    """The adding problem (Hochreiter & Schmidhuber 1997): x (n, L, 2) float32, y (n,).

    Channel 0 holds values U[0, 1]; channel 1 marks two positions, one drawn uniformly from the
    first half and one from the second half; the target is the sum of the two marked values.
    Predicting the constant 1 gives MSE 1/6. Deterministic in ``seed`` (a torch.Generator).

    ``window`` (ours, for length extrapolation): draw the two marks from the halves of the *last*
    ``window`` steps instead — the question of an adding sequence of length ``window``, asked
    after ``length − window`` unmarked steps. ``window=length`` is the plain problem.
    """
    check_int(n, "n", 1)
    check_int(length, "length", 2)
    window = length if window is None else window
    check_int(window, "window", 2)
    if window > length:
        raise ValueError(f"window: expected at most length={length}, got {window}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)                              # (n, L)
    start, half = length - window, window // 2
    first = torch.randint(start, start + half, (n,), generator=g)
    second = torch.randint(start + half, length, (n,), generator=g)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]                           # (n,)
    return SequenceDataset(torch.stack([values, marks], dim=-1), y, name="adding")


def synthetic(name: str, n_train: int | None = None, n_test: int | None = None,
              seed: int = 0) -> Splits:
    """SYNTHETIC random tensors with the full shape of ``name`` — for timing only.

    Uniform uint8 pixels and uniform labels, through the same normalisation and split as the real
    data. Every returned set has ``synthetic=True``. Never report an accuracy on these.
    """
    meta = info(name)
    if name == "adding":
        raise ValueError("name: 'adding' is generated already; use adding(n, length, seed)")
    full_train = 60_000 if name.startswith("fmnist") else 50_000
    n_train = full_train if n_train is None else n_train
    n_test = 10_000 if n_test is None else n_test
    g = torch.Generator().manual_seed(seed)
    shape = (meta.length, meta.d_input)
    make = lambda n: (torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),  # noqa
                      torch.randint(0, 10, (n,), generator=g))
    mean, std = {"fmnist": (FMNIST_MEAN, FMNIST_STD), "fmnist-rows": (FMNIST_MEAN, FMNIST_STD),
                 "cifar10": (CIFAR_MEAN, CIFAR_STD),
                 "cifar10-grey": (CIFAR_GREY_MEAN, CIFAR_GREY_STD)}[name]
    full = SequenceDataset(*make(n_train), mean, std, name=name, synthetic=True)
    test = SequenceDataset(*make(n_test), mean, std, name=name, synthetic=True)
    tr, va = split_indices(n_train, round(VAL_FRACTION[name] * n_train), 42)
    return Splits(full.subset(tr), full.subset(va), test, meta, synthetic=True).check()


def batches(ds: SequenceDataset, batch_size: int, *, order: torch.Tensor | None = None,
            drop_last: bool = False):
    """Yield (x (B, L, C), y (B,)) in ``order`` (default: the stored order); the indices move
    to the data's device once, not per batch."""
    check_int(batch_size, "batch_size", 1)
    device = ds.data.device
    order = torch.arange(len(ds), device=device) if order is None else order.to(device)
    stop = len(order) - batch_size + 1 if drop_last else len(order)
    for i in range(0, max(stop, 0), batch_size):
        yield ds.batch(order[i:i + batch_size])


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H, W, 1) uint8, the ITU-R 601-2 luma L = 0.299 R + 0.587 G +
    0.114 B in PIL's fixed-point form (what torchvision's Grayscale does to a PIL image):
    L = (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    w = torch.tensor([19595, 38470, 7471], dtype=torch.int64)
    return (((x.to(torch.int64) * w).sum(-1, keepdim=True) + 32768) >> 16).to(torch.uint8)


def _missing(what: str, searched: Path, make_hint: str, download_hint: str) -> MissingDataError:
    return MissingDataError(
        f"{what} not found: searched {searched.resolve()}. {make_hint} Or let torchvision "
        f"download it ({download_hint}; needs internet). Set the location with --data-root or "
        f"SPIKELIB_DATA. spikelib never substitutes random data.")


def _fmnist(root: Path, download: bool):
    from torchvision.datasets import FashionMNIST
    try:
        sets = [FashionMNIST(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as err:
        raise _missing("Fashion-MNIST", root / "FashionMNIST" / "raw",
                       "Run `make data` in the repository (it unpacks Debian's "
                       "dataset-fashion-mnist files; `apt-get install dataset-fashion-mnist`).",
                       "download=True, CLI --download") from err
    return [(s.data.clone(), s.targets.clone()) for s in sets]


def _cifar(root: Path, download: bool, verify: bool):
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not download and not all((folder / f).is_file() for f in files):
        raise _missing("CIFAR-10", folder, "No `make data` target can fetch it here (no copy is "
                       "available offline); place the python-version batches in that folder.",
                       "download=True, CLI --download")
    if not verify:
        return read_cifar_batches(folder)
    from torchvision.datasets import CIFAR10
    try:
        sets = [CIFAR10(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as err:
        raise ValueError(f"CIFAR-10 in {folder.resolve()} failed torchvision's MD5 check "
                         f"({err}). Use the official cifar-10-python.tar.gz (download=True); "
                         f"verify=False (CLI --no-verify) reads unchecked files and is meant "
                         f"for generated fixtures only.") from err
    return [(torch.from_numpy(s.data), torch.as_tensor(s.targets)) for s in sets]


def read_cifar_batches(folder: str | os.PathLike):
    """Read ``data_batch_1..5`` and ``test_batch`` from a ``cifar-10-batches-py`` folder without
    checksums: [(x_train (N, 32, 32, 3) uint8, y_train), (x_test, y_test)].

    The pickles are read with an unpickler that admits only the globals a numpy array needs, so
    an unchecked file cannot run code.
    """
    folder = Path(folder)
    out = []
    for names in ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]):
        xs, ys = [], []
        for n in names:
            with open(folder / n, "rb") as f:
                entry = _ArrayUnpickler(f, encoding="latin1").load()
            entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
            data = np.asarray(entry["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{folder / n}: 'data' has shape {data.shape}, expected (N, 3072)")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))   # (N, H, W, C)
            ys.extend(entry["labels"])
        out.append((torch.from_numpy(np.ascontiguousarray(np.concatenate(xs))),
                    torch.as_tensor(ys, dtype=torch.long)))
    return out


def write_cifar_fixture(root: str | os.PathLike, per_batch: int = 20, seed: int = 0) -> Path:
    """Write a small folder in the layout of ``cifar-10-batches-py`` under ``root`` and return
    ``root`` — random pixels and labels, **not CIFAR-10**: for testing the pipeline with
    ``load('cifar10', root, verify=False)`` where the real files cannot be had.

    Five ``data_batch_i`` and a ``test_batch`` of ``per_batch`` images each, pickled (protocol 2,
    latin1-readable) as dicts with 'data' (n, 3072) uint8 in channel-major order and 'labels';
    plus ``batches.meta``. The same ``seed`` writes the same bytes."""
    per_batch = check_int(per_batch, "per_batch", 1)
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
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
    return Path(root)


class _ArrayUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
        for n in ("_reconstruct", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy") and "multiarray" in module:
            module = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
        return super().find_class(module, name)
