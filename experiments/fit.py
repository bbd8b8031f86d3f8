"""Does R = 2 fit its training set worse, or generalise worse? Trained weights scored in eval mode.

    python experiments/fit.py                  # H = 32, seeds 0-2: the penalty's and R = 2's
    python experiments/fit.py weights/fmnist-frssm-cpu-s0-refractory=8.pt --out r8.json

Training logs only the running accuracy of each epoch (dropout on, weights still moving), a proxy
for how well the final network fits its training set. This scores each weights file as it is, in
eval mode, on the training split and on the test split (which must give back the recorded test
accuracy: the same weights and data), so that the training accuracy and the excess of training
over test accuracy are those of one network.

Writes ``--out`` after each weights file, one entry per file: a file already scored with the same
settings is kept (a stopped call resumes; ``--overwrite`` scores it again), another setting
replaces that file's entry, and the entries of files not named stay.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

# this folder is on sys.path, as when run as a script
from swap import ROOT, measure_each, scored, weights_or_default

from spikelib import data
from spikelib.checkpoint import load_weights
from spikelib.config import config_from_args
from spikelib.provenance import provenance


def measure(path: Path, splits, batch: int) -> dict:
    """Train and test accuracy, loss and firing rate of one weights file, in eval mode."""
    model, meta = load_weights(path)
    cmd = meta["provenance"]["command"].split()          # the run that trained the weights
    seed = config_from_args(cmd[cmd.index("spikelib.train") + 1:]).seed
    t0 = time.perf_counter()
    test = scored(model, splits.test, batch)
    if abs(test["acc"] - meta["test_acc"]) > 1e-9:
        raise SystemExit(f"{path.name}: {100 * test['acc']:.2f} % on test, not the "
                         f"{100 * meta['test_acc']:.2f} % recorded: other data or weights?")
    train = scored(model, splits.train, batch)
    return {"run": meta["run"], "seed": seed, "d_model": model.cfg.d_model,
            "refractory": model.cfg.refractory, "rate_penalty": model.cfg.rate_penalty,
            "train": train, "test": test, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="*", type=Path,
                   help="weights files (default: H = 32, seeds 0-2, spikingFRssm at R = 0 with "
                        "λ = 1 and at R = 2, from weights/)")
    p.add_argument("--batch", type=int, default=64, help="the CPU profile's batch (as trained)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "fit-cpu.json")
    p.add_argument("--overwrite", action="store_true", help="score files already in --out")
    a = p.parse_args(argv)
    if a.batch < 1:
        p.error("--batch must be >= 1")
    paths = weights_or_default(p, a.weights)
    torch.set_num_threads(1)
    prov = provenance(device="cpu")
    splits = data.load("fmnist")

    def one(path: Path) -> dict:
        row = measure(path, splits, a.batch)
        print(f"{path.name}: train {100 * row['train']['acc']:.2f} %, test "
              f"{100 * row['test']['acc']:.2f} % ({row['seconds']:.0f} s)", flush=True)
        return row

    measure_each(paths, a.out, "fit", {"batch": a.batch, "source_hash": prov["source_hash"]},
                 a.overwrite, one, prov)
    return 0


if __name__ == "__main__":
    sys.exit(main())
