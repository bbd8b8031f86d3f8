"""spikelib.data: the CIFAR pipeline on a generated fixture, Fashion-MNIST, adding, errors."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CIFAR_PER_BATCH
from spikelib import data


def _fixture_images(root, name):
    with open(root / "cifar-10-batches-py" / name, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return entry["data"], entry["labels"]


def test_cifar_fixture_colour_pipeline(cifar_root):
    s = data.load("cifar10", cifar_root, verify=False)
    n_train = 5 * CIFAR_PER_BATCH
    n_val = round(n_train * 5_000 / 50_000)              # 45k/5k scaled to the fixture
    assert (len(s.train), len(s.val), len(s.test)) == (n_train - n_val, n_val, CIFAR_PER_BATCH)
    assert s.info == data.DatasetInfo("cifar10", 1024, 3, 10, "classification")
    x, y = s.test.batch(torch.arange(len(s.test)))
    assert x.shape == (CIFAR_PER_BATCH, 1024, 3) and x.dtype == torch.float32
    raw, labels = _fixture_images(cifar_root, "test_batch")
    # independent: row-major pixel t = 32 r + c; channel k stored at data[k * 1024 + t]
    seq = raw.reshape(-1, 3, 1024).transpose(0, 2, 1) / 255.0
    want = (seq - np.array(data.CIFAR_MEAN)) / np.array(data.CIFAR_STD)
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-5)
    assert y.tolist() == labels


def test_cifar_fixture_split_is_seeded_and_disjoint(cifar_root):
    a = data.load("cifar10", cifar_root, verify=False)
    b = data.load("cifar10", cifar_root, verify=False)
    assert torch.equal(a.val.data, b.val.data) and torch.equal(a.train.targets, b.train.targets)
    tr, va = data.split_indices(100, 10, 42)
    assert not torch.equal(va, data.split_indices(100, 10, 43)[1])
    tr, va = set(tr.tolist()), set(va.tolist())
    assert len(tr | va) == 100 and not tr & va and len(va) == 10


def test_cifar_fixture_grey_matches_pil(cifar_root):
    s = data.load("cifar10-grey", cifar_root, verify=False)
    x, _ = s.test.batch(torch.arange(3))
    assert x.shape == (3, 1024, 1)
    raw, _ = _fixture_images(cifar_root, "test_batch")
    for i in range(3):
        img = Image.fromarray(raw[i].reshape(3, 32, 32).transpose(1, 2, 0)).convert("L")
        grey = np.asarray(img, dtype=np.float64).reshape(1024) / 255.0
        want = (grey - 122.6 / 255) / (61.0 / 255)
        np.testing.assert_allclose(x[i, :, 0].numpy(), want, rtol=0, atol=1e-5)


def test_strict_path_rejects_the_fixture(cifar_root):
    with pytest.raises(ValueError, match="MD5"):
        data.load("cifar10", cifar_root)           # verify=True: torchvision's checksums


def test_cifar_fixture_writer_is_deterministic(tmp_path, cifar_root):
    a = data.write_cifar_fixture(tmp_path / "a", per_batch=3, seed=1)
    b = data.write_cifar_fixture(tmp_path / "b", per_batch=3, seed=1)
    c = data.write_cifar_fixture(tmp_path / "c", per_batch=3, seed=2)
    files = sorted(p.name for p in (cifar_root / "cifar-10-batches-py").iterdir())
    read = {r: {n: (r / "cifar-10-batches-py" / n).read_bytes() for n in files} for r in (a, b, c)}
    assert read[a] == read[b] and read[a]["test_batch"] != read[c]["test_batch"]
    (x, y), (xt, yt) = data.read_cifar_batches(a / "cifar-10-batches-py")
    assert x.shape == (15, 32, 32, 3) and xt.shape == (3, 32, 32, 3) and len(y) == 15
    with pytest.raises(ValueError, match="per_batch"):
        data.write_cifar_fixture(tmp_path / "d", per_batch=0)


def test_unchecked_reader_refuses_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        data.read_cifar_batches(folder)


@pytest.mark.parametrize("name", ["fmnist", "fmnist-rows", "cifar10", "cifar10-grey"])
def test_missing_data_message(tmp_path, name):
    with pytest.raises(data.MissingDataError) as err:
        data.load(name, tmp_path / "nowhere")
    msg = str(err.value)
    assert "download=True" in msg and str((tmp_path / "nowhere").resolve()) in msg
    assert "random data" in msg
    if name.startswith("fmnist"):
        assert "make data" in msg


def test_data_root_env(monkeypatch, tmp_path):
    """An explicit root wins over $SPIKELIB_DATA; the variable wins over ./data; an empty
    variable counts as unset."""
    monkeypatch.setenv("SPIKELIB_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.data_root("x") == Path("x") and data.data_root(tmp_path / "y") == tmp_path / "y"
    monkeypatch.setenv("SPIKELIB_DATA", "")
    assert data.data_root() == Path("data")
    monkeypatch.delenv("SPIKELIB_DATA")
    assert data.data_root() == Path("data") and data.data_root("x") == Path("x")


def test_fmnist_splits_and_normalisation(fmnist):
    assert (len(fmnist.train), len(fmnist.val), len(fmnist.test)) == (55_000, 5_000, 10_000)
    assert fmnist.train.data.dtype == torch.uint8 and fmnist.train.data.shape[1:] == (784, 1)
    x, y = fmnist.train.batch(torch.arange(4096))
    assert x.shape == (4096, 784, 1) and y.dtype == torch.long
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02
    # val is a fixed slice of the seeded permutation of the 60k training images
    _, va = data.split_indices(60_000, 5_000, 42)
    assert len(set(va.tolist())) == 5_000


def test_fmnist_rows_is_the_same_image_read_row_by_row(fmnist):
    from conftest import fmnist_root
    rows = data.load("fmnist-rows", fmnist_root())
    assert rows.info == data.info("fmnist-rows")
    assert (rows.info.length, rows.info.d_input) == (28, 28)
    assert [len(s) for s in (rows.train, rows.val, rows.test)] == [55_000, 5_000, 10_000]
    idx = torch.tensor([0, 1, 777, 54_999])
    for part in ("train", "val", "test"):
        xr, yr = getattr(rows, part).batch(idx % len(getattr(rows, part)))
        xp, yp = getattr(fmnist, part).batch(idx % len(getattr(fmnist, part)))
        assert xr.shape == (4, 28, 28) and torch.equal(yr, yp)
        # step r, channel c of the row sequence is step 28 r + c of the pixel sequence
        assert torch.equal(xr.reshape(4, 784, 1), xp)


def test_adding_problem():
    a = data.adding(64, 30, seed=3)
    x, y = a.batch(torch.arange(64))
    assert x.shape == (64, 30, 2)
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((64,), 2.0))
    assert (marks[:, :15].sum(1) == 1).all() and (marks[:, 15:].sum(1) == 1).all()
    torch.testing.assert_close((x[..., 0] * marks).sum(1), y)
    assert torch.equal(data.adding(64, 30, seed=3).data, a.data)
    assert not torch.equal(data.adding(64, 30, seed=4).data, a.data)
    # window: the same question about the last `window` steps; window = length is the plain set
    assert torch.equal(data.adding(64, 30, seed=3, window=30).data, a.data)
    w = data.adding(64, 300, seed=5, window=30)
    xw, yw = w.batch(torch.arange(64))
    mw = xw[..., 1]
    assert (mw[:, :270].sum(1) == 0).all()
    assert (mw[:, 270:285].sum(1) == 1).all() and (mw[:, 285:].sum(1) == 1).all()
    torch.testing.assert_close((xw[..., 0] * mw).sum(1), yw)
    with pytest.raises(ValueError, match="window"):
        data.adding(4, 30, window=31)
    s = data.load("adding", length=16, seed=0)
    assert s.info.d_input == 2 and s.info.task == "regression" and len(s.test) > 0


def test_synthetic_is_labelled_and_full_size():
    s = data.synthetic("cifar10", n_train=40, n_test=8)
    assert s.synthetic and s.train.synthetic and s.test.synthetic
    assert s.train.data.shape[1:] == (1024, 3) and len(s.val) == 4
    x, _ = next(data.batches(s.train, 16))
    assert x.shape == (16, 1024, 3)


def test_batches_cover_the_order():
    ds = data.adding(10, 4, seed=0)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    ys = torch.cat([y for _, y in data.batches(ds, 3, order=order)])
    assert torch.equal(ys, ds.targets[order])
    assert sum(1 for _ in data.batches(ds, 3, drop_last=True)) == 3


def _splits(x, y, info):
    ds = data.SequenceDataset(x, y)
    return data.Splits(ds, ds, ds, info)


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (x.float().masked_fill(x == 7, float("nan")), y), "NaN"),
    (lambda x, y: (x[..., :0], y), "shape"),
    (lambda x, y: (x.to(torch.int32), y), "dtype"),
    (lambda x, y: (x, y.to(torch.int32)), "int64"),
    (lambda x, y: (x, y + 10), "labels outside"),
])
def test_splits_are_checked_once_where_loaded(change, match):
    """load()/synthetic() check their tensors once (shape, dtype, finite values, labels), so
    the training step never has to; each defect is a ValueError naming the split."""
    info = data.info("fmnist")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 784, 1), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (6,), generator=g)
    assert _splits(x, y, info).check().train.data is x              # a good set passes
    with pytest.raises(ValueError, match=f"fmnist train.*{match}|{match}.*fmnist train"):
        _splits(*change(x, y), info).check()


def test_loaders_return_checked_splits(monkeypatch):
    """Loading calls the check itself (once per load, not per batch)."""
    calls = []
    monkeypatch.setattr(data.Splits, "check", lambda self: calls.append(self.info.name) or self)
    data.load("adding", length=8)
    data.synthetic("fmnist", n_train=20, n_test=4)
    assert calls == ["adding", "fmnist"]


def test_regression_targets_must_be_finite():
    bad = data.adding(4, 8, seed=0)
    bad.targets[0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        data.Splits(bad, bad, bad, data.info("adding", 8)).check()
