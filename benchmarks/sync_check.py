"""Where a training step makes the CPU wait for the GPU (CUDA only; prints, writes no file).

Runs ``spikelib.train.train_epoch`` — spikelib's training step: forward, loss, backward, fused
AdamW, schedule — for ``--steps`` steps of each model on SYNTHETIC data already on the GPU,
under ``torch.cuda.set_sync_debug_mode("warn")``. Every synchronising call (``.item()``,
``bool(tensor)``, a blocking copy ...) is traced to the innermost frame in spikelib and counted.
One read at the end of ``train_epoch`` is expected (the epoch's loss and accuracy sums); a
place counted once per step or more is a per-step sync, and the script exits 1.

    python benchmarks/sync_check.py --device cuda
    python benchmarks/sync_check.py --device cuda --models frssm --steps 5 --length 256
"""
from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from _bench import setup
from spikelib import data as sdata
from spikelib.models import MODELS, build
from spikelib.train import epoch_order, make_optimizer, train_epoch

PACKAGE = str(Path(__file__).resolve().parents[1] / "spikelib")


def where_syncs(model, ds, steps: int, batch: int, device) -> Counter:
    """file:line (innermost spikelib frame) -> number of synchronising calls in ``steps``
    steps of train_epoch."""
    opt, sched = make_optimizer(model, 0.01, 0.01, steps, device)
    order = epoch_order(len(ds), 0, 0)[:steps * batch]
    train_epoch(model, opt, sched, ds, batch, "classification", order[:batch], device,
                progress=False)                                 # warm-up, outside the count
    seen = Counter()

    def note(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        ours = [f for f in traceback.extract_stack() if f.filename.startswith(PACKAGE)]
        seen[f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "outside"] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(model, opt, sched, ds, batch, "classification", order, device,
                        progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N (CPU: skipped)")
    p.add_argument("--models", nargs="+", default=["s4d", "frssm", "pssm", "ddsn", "sif"],
                   choices=MODELS)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=784)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    _, device, _ = setup(a, "sync_check", argv)
    if device.type != "cuda":
        print("sync_check: CUDA only (torch.cuda.set_sync_debug_mode); skipped on", device)
        return 0
    g = torch.Generator().manual_seed(0)
    n = (a.steps + 1) * a.batch
    x = torch.randint(0, 256, (n, a.length, 1), generator=g, dtype=torch.uint8)   # SYNTHETIC
    ds = sdata.SequenceDataset(x, torch.randint(0, 10, (n,), generator=g),
                               sdata.FMNIST_MEAN, sdata.FMNIST_STD).to(device)
    per_step = False
    for name in a.models:
        torch.manual_seed(0)
        model = build(name, d_input=1, n_classes=10, d_model=32, n_layers=2,
                      d_state=16).to(device)
        seen = where_syncs(model, ds, a.steps, a.batch, device)
        bad = {k: v for k, v in seen.items() if v >= a.steps}
        per_step |= bool(bad)
        print(f"{name:6s} {sum(seen.values()):4d} syncs in {a.steps} steps; per step: "
              f"{bad or 'none'}; all: {dict(seen)}", flush=True)
    return 1 if per_step else 0


if __name__ == "__main__":
    sys.exit(main())
