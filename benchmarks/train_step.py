"""One training step (forward + backward) of every model, timed relative to s4d in one run.

SYNTHETIC data (random colour-CIFAR-shaped tensors, batch 16, d_input 3, 10 classes): timing only.
Each model uses its own ``forward`` — parallel over time, except ``lif`` (serial BPTT). Model
size: the §6 defaults (d_model 128, 4 layers, d_state 64). Precision: bf16 autocast on CUDA (as
in training; FFTs and scans stay fp32 inside the modules), fp32 on CPU.

Defaults: L = 1024 and 8192 on a GPU; L = 256 and 1024 on CPU with lif only at 256 (its Python
loop over time is slow). Also reported (not asserted): the fraction of spikes that flip between
``forward`` and ``forward_serial`` in float32, and the goals frssm/pssm ≤ 1.3× s4d and
frssm ≥ 20× faster than lif at L = 1024.

    python benchmarks/train_step.py                 # auto device
    python benchmarks/train_step.py --device cpu --lengths 256 1024 --repeats 3

Writes results/bench-train-step-<device>.json (with provenance).
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from _bench import common_args, measure, record, result_path, setup
from spikelib.diagnostics import serial_agreement
from spikelib.models import MODELS, build
from spikelib.results import write_result


def step_time(model, x, y, device, repeats: int) -> float:
    """Seconds of forward + backward (+ zero_grad) on one batch: the mean of ``repeats``
    calls after the Timer's warm-up (``_bench.measure``)."""
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        model.zero_grad(set_to_none=True)
    return measure(step, repeats).mean


def flips(device, seed: int, length=256, batch=4) -> dict:
    """float32: fraction of spikes that differ between forward and forward_serial (reported)."""
    out = {}
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 3, generator=g).to(device)
    for name in MODELS:
        if name in ("s4d", "lif"):
            continue
        torch.manual_seed(seed)
        model = build(name, d_input=3, n_classes=10, d_model=32, n_layers=2, d_state=16)
        out[name] = serial_agreement(model.to(device), x)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=None)
    p.add_argument("--lif-max-length", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    a = common_args(p).parse_args(argv)      # --seed: model init; data: seed + L
    command, device, _ = setup(a, "train_step", argv)
    gpu = device.type == "cuda"
    lengths = a.lengths or ([1024, 8192] if gpu else [256, 1024])
    lif_max = a.lif_max_length or (max(lengths) if gpu else min(lengths))
    repeats = a.repeats or (5 if gpu else 2)
    models = ["s4d"] + [m for m in a.models if m != "s4d"]

    rows = []
    for L in lengths:
        g = torch.Generator().manual_seed(a.seed + L)
        x = torch.randn(a.batch, L, 3, generator=g).to(device)        # SYNTHETIC (B, L, 3)
        y = torch.randint(0, 10, (a.batch,), generator=g).to(device)
        base = None
        for name in models:
            if name == "lif" and L > lif_max:
                rows.append({"model": name, "length": L, "seconds": None, "skipped": True})
                continue
            torch.manual_seed(a.seed)
            model = build(name, d_input=3, n_classes=10).to(device).train()
            if gpu:
                torch.cuda.reset_peak_memory_stats(device)
            t = step_time(model, x, y, device, 1 if name == "lif" and L > 1024 else repeats)
            base = t if name == "s4d" else base
            row = {"model": name, "length": L, "seconds": t, "vs_s4d": t / base,
                   "peak_bytes": torch.cuda.max_memory_allocated(device) if gpu else None}
            rows.append(row)
            print(f"L={L:6d} {name:6s} {t * 1e3:10.1f} ms  {t / base:6.2f}x s4d", flush=True)
            del model

    def sec(m, L):
        return next((r["seconds"] for r in rows if r["model"] == m and r["length"] == L), None)
    goals = {}
    for L in lengths:
        s4d = sec("s4d", L)
        for m in ("frssm", "pssm"):
            if sec(m, L) is not None:
                goals[f"{m}_vs_s4d_L{L}"] = sec(m, L) / s4d
        if sec("lif", L) and sec("frssm", L):
            goals[f"lif_over_frssm_L{L}"] = sec("lif", L) / sec("frssm", L)
    flip = flips(device, a.seed)
    for k, v in goals.items():
        print(f"{k}: {v:.2f}")
    for k, v in flip.items():
        print(f"float32 serial vs parallel {k}: max |dlogit| {v['max_logit_diff']:.2e}, "
              f"flipped spikes {v['flip_fraction']}")

    precision = "bf16 autocast (FFT/scans fp32)" if gpu else "fp32"
    out = write_result(result_path(a, "bench-train-step", device), {
        "benchmark": "train_step", "synthetic": True, "batch": a.batch, "d_input": 3,
        "data_seed": "seed + the sequence length L",
        "model_config": "ModelConfig defaults (d_model 128, n_layers 4, d_state 64)",
        "precision": precision, "repeats": repeats,
        "timing": "torch.utils.benchmark.Timer.timeit(repeats): mean of repeats calls after "
                  "its warm-up of two calls",
        "lengths": lengths, "rows": rows,
        "goals_reported_not_asserted": {"frssm_pssm_vs_s4d_at_most": 1.3,
                                        "lif_over_frssm_at_1024_at_least": 20, "measured": goals},
        "float32_serial_vs_parallel": flip, **record(a, device, command)})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
