"""Can an R = 2 spikingFRssm reach what the rate penalty's network reaches? A warm start.

    python experiments/swap.py                  # H = 32, seeds 0-2: the penalty's and R = 2's
    python experiments/swap.py weights/fmnist-frssm-cpu-s1.pt --tune-epochs 2 --out two.json

At the same firing rate spikingFRssm trains to a lower accuracy with a refractory period (R = 2)
than with the rate penalty at R = 0, and fits its training set worse. Either no R = 2 network
of this size does as well (what it can express), or training from scratch does not find one
(optimisation). For each weights file: run it with every refractory period set to ``--R``
(nothing retrained), then train it ``--tune-epochs`` more at that R, without the rate penalty
(R = 2's own objective), at ``--lr`` on a cosine schedule. The penalty's weights tuned so are an
R = 2 network: if they score above R = 2's own weights tuned alike (the control), R = 2 can
express more than its training finds; a lower score settles nothing (one epoch from a broken
start, at another rate). The control says what the extra epoch alone is worth. Each file is
first run at its own R, which must give back its recorded test accuracy (the same weights,
data and batches).

Writes ``--out`` after each weights file, one entry per file: a file already measured with the
same settings is kept (a stopped call resumes; ``--overwrite`` measures it again), another
setting replaces that file's entry, and the entries of files not named stay.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from spikelib import data, metrics
from spikelib.checkpoint import load_weights
from spikelib.config import config_from_args
from spikelib.models import FixedRefractorySpike
from spikelib.provenance import provenance
from spikelib.refractory import Refractory
from spikelib.resultfiles import write_result
from spikelib.train import epoch_order, evaluate, make_optimizer, seed_of, train_epoch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [f"fmnist-frssm-cpu-s{seed}{sets}.pt" for sets in ("-rate_penalty=1.0-refractory=0", "")
           for seed in (0, 1, 2)]
EPOCHS_TRAINED = 3                 # the CPU profile's: the tuning epochs continue its order


def set_refractory(model, R: int) -> None:
    """Every spikingFRssm spike of ``model`` gets the refractory period R (its θ is kept)."""
    spikes = [m for m in model.modules() if isinstance(m, FixedRefractorySpike)]
    if not spikes:
        raise ValueError("not a spikingFRssm model: it has no refractory spike")
    for m in spikes:
        m.refractory = Refractory(R)


def scored(model, split, batch: int) -> dict:
    """Accuracy, loss and per-layer firing rate of ``model`` (eval mode) on one split."""
    counter = metrics.SpikeCounter()
    out = evaluate(model, split, batch, "classification", "cpu", counter)
    return {"acc": out["acc"], "loss": out["loss"], "firing_rate": counter.rates()}


def measure(path: Path, splits, R: int, epochs: int, lr: float, batch: int, log) -> dict:
    model, meta = load_weights(path)
    cmd = meta["provenance"]["command"].split()          # the run that trained the weights
    run = config_from_args(cmd[cmd.index("spikelib.train") + 1:])
    own, seed = model.cfg.refractory, run.seed
    t0 = time.perf_counter()
    back = scored(model, splits.test, batch)
    if abs(back["acc"] - meta["test_acc"]) > 1e-9:
        raise SystemExit(f"{path.name} at its own R = {own}: {100 * back['acc']:.2f} %, not the "
                         f"{100 * meta['test_acc']:.2f} % recorded: other data or weights?")
    set_refractory(model, R)
    start = back if R == own else scored(model, splits.test, batch)
    log(f"{path.name}: R = {own} (own) {100 * back['acc']:.2f} %; at R = {R} "
        f"{100 * start['acc']:.2f} % at rate {statistics.fmean(start['firing_rate']):.3f}")
    n = len(splits.train)
    steps = epochs * -(-n // batch)
    opt, sched = make_optimizer(model, lr, run.weight_decay, steps)
    torch.manual_seed(seed_of(seed, 1000))                      # dropout while tuning
    history = []
    for e in range(epochs):
        order = epoch_order(n, seed, EPOCHS_TRAINED + e)        # the order training would take
        tr = train_epoch(model, opt, sched, splits.train, batch, "classification", order,
                         torch.device("cpu"))
        history.append({"train_loss": tr["loss"], "train_acc": tr["acc"],
                        "val_acc": scored(model, splits.val, batch)["acc"]})
        log(f"  tune epoch {e + 1}/{epochs} at R = {R}: train acc {100 * tr['acc']:.2f} %, "
            f"val acc {100 * history[-1]['val_acc']:.2f} %")
    end = scored(model, splits.test, batch)
    log(f"  tuned: test {100 * end['acc']:.2f} % at rate "
        f"{statistics.fmean(end['firing_rate']):.3f} ({time.perf_counter() - t0:.0f} s)")
    return {"run": meta["run"], "seed": seed, "d_model": model.cfg.d_model, "trained_R": own,
            "rate_penalty": model.cfg.rate_penalty, "own": back, "swapped": start,
            "tune_history": history, "tuned": end, "seconds": time.perf_counter() - t0}


def weights_or_default(p: argparse.ArgumentParser, named: list[Path]) -> list[Path]:
    """The weights files named, else ``DEFAULT`` from weights/; a missing one is an error."""
    paths = named or [ROOT / "weights" / name for name in DEFAULT]
    missing = [str(q) for q in paths if not q.is_file()]
    if missing:
        p.error(f"no such weights file: {', '.join(missing)}")
    return paths


def measure_each(paths: list[Path], out: Path, kind: str, setup: dict, overwrite: bool,
                 measure_one, prov: dict) -> None:
    """``measure_one(path) -> dict`` for each weights file, one entry per file in ``out``,
    rewritten after each (a stopped call loses one file at most). A file already measured under
    the same ``setup`` (sources included) is kept unless ``overwrite``; another setup replaces
    its entry; the entries of files not named stay."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    kept = {e["weights"]: e for e in old.get("entries", [])}
    for path in paths:
        same = path.name in kept and {k: kept[path.name].get(k) for k in setup} == setup
        if same and not overwrite:
            print(f"kept {path.name}")
            continue
        kept[path.name] = {"weights": path.name, **setup, **measure_one(path)}
        write_result(out, {"kind": kind, "dataset": "fmnist",
                           "entries": sorted(kept.values(), key=lambda e: e["weights"]),
                           "provenance": prov})
    print(f"{out}: {len(kept)} weights files")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="*", type=Path,
                   help="spikingFRssm weights files (default: H = 32, seeds 0-2, R = 0 with "
                        "λ = 1 and R = 2, from weights/)")
    p.add_argument("--R", type=int, default=2, help="the refractory period to run and tune at")
    p.add_argument("--tune-epochs", type=int, default=1, help="epochs of training at --R")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak learning rate of the tuning (training's was 0.01; S4D parameters "
                        "keep their own, 1e-3, in both)")
    p.add_argument("--batch", type=int, default=64, help="the CPU profile's batch (as trained)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "swap-cpu.json")
    p.add_argument("--overwrite", action="store_true", help="measure files already in --out")
    a = p.parse_args(argv)
    if a.R < 0 or a.tune_epochs < 0 or a.lr <= 0 or a.batch < 1:
        p.error("--R and --tune-epochs must be >= 0, --lr > 0 and --batch >= 1")
    paths = weights_or_default(p, a.weights)
    torch.set_num_threads(1)
    prov = provenance(device="cpu")
    setup = {"R": a.R, "tune_epochs": a.tune_epochs, "lr": a.lr, "batch": a.batch,
             "source_hash": prov["source_hash"]}
    splits = data.load("fmnist")
    measure_each(paths, a.out, "swap", setup, a.overwrite, lambda path: measure(
        path, splits, a.R, a.tune_epochs, a.lr, a.batch, lambda s: print(s, flush=True)), prov)
    return 0


if __name__ == "__main__":
    sys.exit(main())
