"""Where a training step makes the CPU wait for the GPU (prints, writes no file).

Runs ``spikelib.train.train_epoch`` — spikelib's training step: forward, loss, backward, fused
AdamW, schedule, with the modules' NaN scans off as ``spikelib.train.train`` runs it — for
``--steps`` steps of each model on SYNTHETIC data already on the device. On CUDA, under
``torch.cuda.set_sync_debug_mode("warn")``: every synchronising call (``.item()``,
``bool(tensor)``, a blocking copy ...) is traced to the innermost frame in spikelib and counted.
On CPU (nothing syncs there) a stand-in counts spikelib's own reads of tensor values into Python
(``.item()``, ``.tolist()``, ``bool``/``float``/``int`` of a tensor, called from spikelib code):
each would wait for a GPU. One read at the end of ``train_epoch`` is expected (the epoch's loss
and accuracy sums); a place counted once per step or more is a per-step sync, and the script
exits 1.

    python gpu/sync_check.py --device cuda
    python gpu/sync_check.py --device cuda --models frssm --steps 5 --length 256

``gpu/verify.py`` calls :func:`check` (small sizes) as one of its checks.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from spikelib import data as sdata
from spikelib.device import pick_device
from spikelib.models import MODELS, build
from spikelib.temporal import finite_checks
from spikelib.train import epoch_order, make_optimizer, train_epoch

PACKAGE = str(Path(__file__).resolve().parents[1] / "spikelib")
READS = ("item", "tolist", "__bool__", "__float__", "__int__")


def _place(filename: str, lineno: int) -> str:
    return f"{Path(filename).name}:{lineno}"


@contextlib.contextmanager
def cuda_syncs(seen: Counter):
    """Count CUDA's synchronising calls by the innermost spikelib frame of their stack."""
    def note(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        ours = [f for f in traceback.extract_stack() if f.filename.startswith(PACKAGE)]
        seen[_place(ours[-1].filename, ours[-1].lineno) if ours else "outside"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield seen
        finally:
            torch.cuda.set_sync_debug_mode("default")


@contextlib.contextmanager
def host_reads(seen: Counter):
    """Count the reads of tensor values into Python made directly by spikelib code (the CPU
    stand-in for :func:`cuda_syncs`), by 'file.py:line method' (the tests use it too)."""
    saved = {n: torch.Tensor.__dict__.get(n) for n in READS}
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *args, _orig=orig, _name=name, **kw):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(PACKAGE):
                seen[f"{_place(caller.f_code.co_filename, caller.f_lineno)} {_name}"] += 1
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


def where_syncs(model, ds, steps: int, batch: int, device) -> Counter:
    """file:line (spikelib) -> number of synchronising calls (CUDA) or host reads (CPU) in
    ``steps`` steps of train_epoch."""
    device = torch.device(device)
    opt, sched = make_optimizer(model, 0.01, 0.01, steps, device)
    order = epoch_order(len(ds), 0, 0)[:steps * batch]
    seen = Counter()
    watch = cuda_syncs if device.type == "cuda" else host_reads
    with finite_checks(False):
        train_epoch(model, opt, sched, ds, batch, "classification", order[:batch], device,
                    progress=False)                             # warm-up, outside the count
        with watch(seen):
            train_epoch(model, opt, sched, ds, batch, "classification", order, device,
                        progress=False)
    return seen


def check(device, models=("s4d", "frssm", "pssm", "ddsn", "sif"), steps: int = 10,
          batch: int = 16, length: int = 784, d_model: int = 32) -> dict:
    """Per model (2 layers of width ``d_model`` on SYNTHETIC data already on ``device``):
    ``syncs`` in ``steps`` training steps, ``per_step`` (the places counted at least once per
    step: must be empty), ``all`` (every place) and ``ok``."""
    g = torch.Generator().manual_seed(0)
    n = (steps + 1) * batch
    x = torch.randint(0, 256, (n, length, 1), generator=g, dtype=torch.uint8)     # SYNTHETIC
    ds = sdata.SequenceDataset(x, torch.randint(0, 10, (n,), generator=g),
                               sdata.FMNIST_MEAN, sdata.FMNIST_STD).to(device)
    out = {}
    for name in models:
        torch.manual_seed(0)
        model = build(name, d_input=1, n_classes=10, d_model=d_model, n_layers=2,
                      d_state=16).to(device)
        seen = where_syncs(model, ds, steps, batch, device)
        bad = {k: v for k, v in seen.items() if v >= steps}
        out[name] = {"ok": not bad, "syncs": sum(seen.values()), "steps": steps,
                     "per_step": bad, "all": dict(seen)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--models", nargs="+", default=["s4d", "frssm", "pssm", "ddsn", "sif"],
                   choices=MODELS)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=784)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    device = pick_device(a.device)
    if a.threads or device.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    found = check(device, a.models, a.steps, a.batch, a.length)
    how = "synchronising calls" if device.type == "cuda" else "host reads (CPU stand-in)"
    for name, r in found.items():
        print(f"{name:6s} {r['syncs']:4d} {how} in {a.steps} steps; per step: "
              f"{r['per_step'] or 'none'}; all: {r['all']}", flush=True)
    return 0 if all(r["ok"] for r in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
