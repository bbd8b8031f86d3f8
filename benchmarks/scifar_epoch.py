"""Seconds per sequential-CIFAR-10 training epoch, on SYNTHETIC full-size tensors.

Real CIFAR-10 cannot be downloaded on the machines this project runs on, so the data are
``spikelib.data.synthetic('cifar10')``: 50,000 random uint8 images of shape (1024, 3) through the
real normalisation and the real 45k / 5k split — the same tensor shapes, so the same work per
step, but timing only: no accuracy is measured or reported.

One training step is exactly train.py's: ``spikelib.train.train_epoch`` (forward, loss,
backward, AdamW step, cosine-schedule step; bf16 autocast on CUDA with the FFTs and scans in
fp32 inside the modules; fp32 on CPU), batch 64, the ModelConfig defaults (d_model 128,
4 layers, d_state 64), optimizer from ``spikelib.train.make_optimizer``. The epoch is the 45,000
training sequences in the seeded order of epoch 0: 704 steps.

GPU (default): the whole epoch is timed (wall clock, synchronised), unless ``--steps`` or
``--max-seconds`` stops it early. CPU (default): ``--steps 3`` timed steps after one warm-up step
(a full-size step takes seconds to tens of seconds on 2 cores), and the epoch is *estimated* as
median(step seconds) × steps per epoch — labelled "estimated from N steps, CPU" in the output
and the JSON, with the load average (other processes share the CPU). One thread by default on
CPU (``--threads``): on a shared machine a second OpenMP thread stalls whenever another process
holds a core (seen here: a sliding-PSN step took 1–3 s with two threads, 0.8 s with one, under
load). Peak memory:
``torch.cuda.max_memory_allocated`` per model on CUDA; on CPU the process's peak resident set
size (cumulative over the models run so far, so only an upper bound for the later ones).

    python benchmarks/scifar_epoch.py                          # auto device, its defaults
    python benchmarks/scifar_epoch.py --device cpu --steps 3
    python benchmarks/scifar_epoch.py --device cuda --steps 200  # estimate from 200 steps

Writes results/scifar-epoch-<device>.json (with provenance), rewritten after each model
(``"complete": false`` until the end).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch

from _bench import clock, common_args, record, result_path, setup, tf32_state
from spikelib import data as sdata
from spikelib.device import device_name, peak_memory
from spikelib.models import MODELS, build
from spikelib.results import write_result
from spikelib.train import epoch_order, make_optimizer, train_epoch

DEFAULT_MODELS = ("s4d", "frssm", "pssm")
# per profile: (timed steps: None = the whole epoch, warm-up steps, per-model time limit in s)
PROFILES = {"gpu": (None, 3, 150.0), "cpu": (3, 1, None), "smoke": (2, 1, None)}
GOAL_SECONDS_H100 = 60.0
DATA_NOTE = ("SYNTHETIC random uint8 tensors of sequential CIFAR-10's full shape (50,000 x 1024 "
             "x 3, 45k/5k split); real CIFAR-10 cannot be downloaded here. Timing only: no "
             "accuracy is measured or reported.")



def time_epoch(model, train_set, batch: int, device: torch.device, steps: int | None,
               warmup: int, max_seconds: float | None, seed: int) -> dict:
    """Warm up, then run train_epoch one step at a time over epoch 0's order; stop after
    ``steps`` steps, at the end of the epoch, or once ``max_seconds`` have passed. Each step
    takes the next batch, so this is a walk, not one statement repeated: it is timed with the
    synchronising clock of torch.utils.benchmark (``_bench.clock``) around every step."""
    per_epoch = math.ceil(len(train_set) / batch)
    opt, sched = make_optimizer(model, 0.01, 0.01, per_epoch + warmup, device)
    order = epoch_order(len(train_set), seed, 0)
    one = lambda idx: train_epoch(model, opt, sched, train_set, batch, "classification",  # noqa
                                  idx, device, progress=False)
    for i in range(warmup):                                    # warm-up: plans, allocator
        one(order[i * batch:(i + 1) * batch])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    limit = per_epoch if steps is None else min(steps, per_epoch)
    step_s = []
    t_start = t0 = clock()
    for i in range(limit):
        one(order[i * batch:(i + 1) * batch])
        t1 = clock()
        step_s.append(t1 - t0)
        t0 = t1
        if max_seconds is not None and t1 - t_start > max_seconds:
            break
    wall = clock() - t_start
    done = len(step_s)
    whole = done == per_epoch
    return {"steps_per_epoch": per_epoch, "steps_timed": done, "whole_epoch": whole,
            "epoch_seconds": wall if whole else statistics.median(step_s) * per_epoch,
            "epoch_seconds_from_mean": wall / done * per_epoch,
            "median_step_s": statistics.median(step_s), "step_s": step_s, "wall_s": wall,
            "peak_memory": peak_memory(device)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    p.add_argument("--dataset", choices=("cifar10", "cifar10-grey"), default="cifar10")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (default: whole epoch on GPU, 3 on CPU)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="per model: stop timing after this long and estimate (GPU default 150)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=1,
                   help="time the whole measurement this many times; report the median")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-train", type=int, default=None,
                   help="synthetic set size before the split (default 50,000: full size)")
    return common_args(p, PROFILES, model_overrides=True)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    command, device, profile = setup(a, "scifar_epoch", argv)
    steps0, warm0, max0 = PROFILES[profile]
    steps = a.steps if a.steps is not None else steps0
    warmup = a.warmup if a.warmup is not None else warm0
    max_seconds = a.max_seconds if a.max_seconds is not None else max0
    overrides = {k: v for k, v in (("d_model", a.d_model), ("n_layers", a.n_layers),
                                   ("d_state", a.d_state)) if v is not None}
    gpu = device.type == "cuda"
    tf32 = tf32_state()
    precision = "bf16 autocast (FFTs and scans fp32)" if gpu else "fp32"
    print(f"sCIFAR epoch on {device_name(device)} ({device.type}), profile {profile}, "
          f"batch {a.batch}, {precision}, {torch.get_num_threads()} threads; TF32: {tf32}",
          flush=True)
    print(DATA_NOTE, flush=True)

    splits = sdata.synthetic(a.dataset, n_train=a.n_train, n_test=a.batch, seed=a.seed)
    train_set = splits.train.to(device)
    info = splits.info
    rows = []
    cfg = build(DEFAULT_MODELS[0], d_input=info.d_input, n_classes=info.n_classes,
                **overrides).cfg

    def save(complete: bool):
        """The file so far: rewritten after each model (``complete`` false until the end)."""
        base = next((r["epoch_seconds"] for r in rows if r["model"] == "s4d"), None)
        return write_result(result_path(a, "scifar-epoch", device, profile), {
            "benchmark": "scifar_epoch", "complete": complete, "profile": profile,
            "synthetic": True, "data_note": DATA_NOTE, "dataset": a.dataset,
            "precision": precision, "batch": a.batch, "n_train_sequences": len(train_set),
            "model_config": cfg.to_dict() | {"name": None}, "warmup_steps": warmup,
            "steps_requested": steps, "max_seconds": max_seconds, "rows": rows,
            "ratios_vs_s4d": {f"{r['model']}_vs_s4d": r["epoch_seconds"] / base for r in rows
                              if base and r["model"] != "s4d"},
            "goals_reported_not_asserted": {"frssm_pssm_vs_s4d_at_most": 1.3,
                                            "seconds_per_epoch_on_one_h100_at_most":
                                                GOAL_SECONDS_H100},
            **record(a, device, command)})

    for name in a.models:
        runs = []
        for _ in range(a.repeats):
            torch.manual_seed(a.seed)
            model = build(name, d_input=info.d_input, n_classes=info.n_classes,
                          **overrides).to(device)
            runs.append(time_epoch(model, train_set, a.batch, device, steps, warmup,
                                   max_seconds, a.seed))
            del model
        best = sorted(runs, key=lambda r: r["epoch_seconds"])[len(runs) // 2]   # median run
        label = ("whole epoch timed" if best["whole_epoch"] else
                 f"estimated from {best['steps_timed']} step{'s' * (best['steps_timed'] != 1)}, "
                 f"{'GPU' if gpu else 'CPU'}")
        rows.append({"model": name, "label": label, "repeats": a.repeats,
                     "all_epoch_seconds": [r["epoch_seconds"] for r in runs], **best})
        peak = best["peak_memory"]
        print(f"{name:6s} {best['epoch_seconds']:10.1f} s/epoch ({label}; median step "
              f"{best['median_step_s'] * 1e3:.1f} ms), peak {peak['bytes'] / 2**20:.0f} MiB "
              f"({peak['kind']})", flush=True)
        save(False)

    base = next((r["epoch_seconds"] for r in rows if r["model"] == "s4d"), None)
    print(f"\n{'model':6s} {'s/epoch':>10s} {'vs s4d':>7s} {'peak MiB':>9s}  how")
    for r in rows:
        ratio = r["epoch_seconds"] / base if base else float("nan")
        print(f"{r['model']:6s} {r['epoch_seconds']:10.1f} {ratio:7.2f} "
              f"{r['peak_memory']['bytes'] / 2**20:9.0f}  {r['label']}")
    print(f"goals (reported, not asserted): frssm/pssm <= 1.3x s4d; <= {GOAL_SECONDS_H100:.0f} "
          f"s per epoch on one H100")

    path = save(True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
