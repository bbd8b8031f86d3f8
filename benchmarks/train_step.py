"""One training step (forward + backward) of every model, timed relative to s4d in one run.

SYNTHETIC data (random colour-CIFAR-shaped tensors, batch 16, d_input 3, 10 classes): timing only.
Each model uses its own ``forward`` — parallel over time, except ``lif`` (serial BPTT). Model
size: the §6 defaults (d_model 128, 4 layers, d_state 64). Precision: bf16 autocast on CUDA (as
in training; FFTs and scans stay fp32 inside the modules), fp32 on CPU.

Defaults: L = 1024 and 8192 on a GPU; L = 256 and 1024 on CPU with lif only at 256 (its Python
loop over time is slow). Also reported (not asserted): the fraction of spikes that flip between
``forward`` and ``forward_serial`` in float32, and the goals frssm/pssm ≤ 1.3× s4d and
frssm ≥ 20× faster than lif at L = 1024 (≥ 100× at 8192).

lif runs last at each length. Its serial loop is launched step by step, so it is slow: at the
shortest length it gets one warm-up call and ``--lif-repeats`` timed calls (default
``--repeats``), above it one timed call and no warm-up (its per-step kernels are those warmed at
the shortest length). ``--max-seconds`` (the runbook's time limit): a row whose projection —
the same model's measured time at the previous length × the length ratio × its calls — would
end past the limit is skipped and says so; the file is rewritten after every length
(``"complete": false`` until the end), so a run stopped from outside keeps what it measured.

``--compile frssm`` (the runbook's choice): after everything else, the listed models again
under ``torch.compile`` (``--compile-backend``, default inductor) at the lengths up to
``--compile-max-length`` (default the shortest): the first call (which compiles) is timed on its
own, then the step as above; ``compiled_vs_eager`` holds eager seconds / compiled seconds, both
measured in this run — a ratio reported, never asserted. Every step runs with the modules'
NaN scans off (``finite_checks(False)``), as ``spikelib.train`` runs them.

    python benchmarks/train_step.py                 # auto device
    python benchmarks/train_step.py --device cpu --lengths 256 1024 --repeats 3
    python benchmarks/train_step.py --device cpu --lengths 256 --models s4d frssm --compile frssm

Writes results/bench-train-step-<device>.json (with provenance).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from _bench import clock, common_args, measure, record, result_path, setup
from spikelib.diagnostics import serial_agreement
from spikelib.models import MODELS, build
from spikelib.results import write_result
from spikelib.temporal import finite_checks


def step_time(model, x, y, device, repeats: int, warmup: int | None = None) -> float:
    """Seconds of forward + backward (+ zero_grad) on one batch: the mean of ``repeats``
    calls after the Timer's warm-up of two calls (``_bench.measure``); with ``warmup`` given
    (lif), that many untimed calls, then ``repeats`` calls timed together by the synchronising
    clock (``_bench.clock``)."""
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        model.zero_grad(set_to_none=True)
    if warmup is None:
        return measure(step, repeats).mean
    for _ in range(warmup):
        step()
    t0 = clock()
    for _ in range(repeats):
        step()
    return (clock() - t0) / repeats


def projection(rows: list[dict], model: str, length: int, calls: int) -> float | None:
    """Seconds ``calls`` calls of ``model`` at ``length`` would take, from its measured row at
    the longest shorter length (time linear in L: a plan for skipping, never reported as a
    measurement); None without one."""
    done = [r for r in rows if r["model"] == model and r.get("seconds") and
            r["length"] < length]
    if not done:
        return None
    last = max(done, key=lambda r: r["length"])
    return last["seconds"] * length / last["length"] * calls


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
    with finite_checks(False):                     # as spikelib.train runs the models
        return run(argv)


def batch_for(seed: int, L: int, batch: int, device):
    """SYNTHETIC x (batch, L, 3) and labels (batch,), drawn from seed + L."""
    g = torch.Generator().manual_seed(seed + L)
    x = torch.randn(batch, L, 3, generator=g).to(device)
    return x, torch.randint(0, 10, (batch,), generator=g).to(device)


def run(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=None)
    p.add_argument("--lif-max-length", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--lif-repeats", type=int, default=None,
                   help="timed calls of lif at the shortest length (default --repeats)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="skip rows projected to end past this many seconds after the start")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--compile", nargs="+", default=[], choices=MODELS, metavar="MODEL",
                   help="also time these models under torch.compile (after the other rows)")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--compile-max-length", type=int, default=None,
                   help="compiled rows up to this length (default: the shortest)")
    a = common_args(p).parse_args(argv)      # --seed: model init; data: seed + L
    start = time.perf_counter()
    command, device, _ = setup(a, "train_step", argv)
    gpu = device.type == "cuda"
    lengths = sorted(a.lengths or ([1024, 8192] if gpu else [256, 1024]))
    lif_max = a.lif_max_length or (max(lengths) if gpu else min(lengths))
    repeats = a.repeats or (5 if gpu else 2)
    lif_repeats = a.lif_repeats or repeats
    models = ["s4d"] + [m for m in a.models if m not in ("s4d", "lif")] + \
        (["lif"] if "lif" in a.models else [])                      # lif last: the slow one
    precision = "bf16 autocast (FFT/scans fp32)" if gpu else "fp32"
    compile_lengths = [L for L in lengths if L <= (a.compile_max_length or lengths[0])]
    rows, goals, flip, compiled = [], {}, None, []

    def save(complete: bool):
        return write_result(result_path(a, "bench-train-step", device), {
            "benchmark": "train_step", "complete": complete, "synthetic": True,
            "batch": a.batch, "d_input": 3, "data_seed": "seed + the sequence length L",
            "model_config": "ModelConfig defaults (d_model 128, n_layers 4, d_state 64)",
            "precision": precision, "repeats": repeats, "lif_repeats": lif_repeats,
            "max_seconds": a.max_seconds,
            "timing": "torch.utils.benchmark.Timer.timeit(repeats): mean of repeats calls after "
                      "its warm-up of two calls; lif: one warm-up call and lif_repeats calls "
                      "at the shortest length, one call and no warm-up above it (kernels "
                      "warmed at the shortest length), timed by the synchronising clock",
            "lengths": lengths, "rows": rows,
            "goals_reported_not_asserted": {"frssm_pssm_vs_s4d_at_most": 1.3,
                                            "lif_over_frssm_at_1024_at_least": 20,
                                            "lif_over_frssm_at_8192_at_least": 100,
                                            "measured": goals},
            "compiled_vs_eager": compiled, "compile_backend": a.compile_backend,
            "finite_checks": "off (as spikelib.train runs the models)",
            "float32_serial_vs_parallel": flip, **record(a, device, command)})

    for L in lengths:
        x, y = batch_for(a.seed, L, a.batch, device)                  # SYNTHETIC (B, L, 3)
        base = None
        for name in models:
            if name == "lif" and L > lif_max:
                rows.append({"model": name, "length": L, "seconds": None, "skipped": True,
                             "skip_reason": f"lif only up to L = {lif_max}"})
                continue
            if name == "lif":      # one warm-up call at the shortest length, none above
                warmup, timed = (1, lif_repeats) if L == lengths[0] else (0, 1)
            else:
                warmup, timed = 2, repeats                  # the Timer's own warm-up
            calls = warmup + timed
            ahead = projection(rows, name, L, calls)
            elapsed = time.perf_counter() - start
            if a.max_seconds is not None and elapsed + (ahead or 0) > a.max_seconds:
                why = (f"--max-seconds {a.max_seconds:g}: {elapsed:.0f} s gone" +
                       ("" if ahead is None else f", about {ahead:.0f} s more projected from "
                        f"the measured shorter length (not a measurement)"))
                rows.append({"model": name, "length": L, "seconds": None, "skipped": True,
                             "skip_reason": why})
                print(f"L={L:6d} {name:6s} skipped: {why}", flush=True)
                continue
            torch.manual_seed(a.seed)
            model = build(name, d_input=3, n_classes=10).to(device).train()
            if gpu:
                torch.cuda.reset_peak_memory_stats(device)
            t = step_time(model, x, y, device, timed, warmup if name == "lif" else None)
            base = t if name == "s4d" else base
            row = {"model": name, "length": L, "seconds": t,
                   "vs_s4d": t / base if base else None, "timed_calls": timed,
                   "warmup_calls": warmup,
                   "peak_bytes": torch.cuda.max_memory_allocated(device) if gpu else None}
            rows.append(row)
            print(f"L={L:6d} {name:6s} {t * 1e3:10.1f} ms  "
                  f"{t / base if base else float('nan'):6.2f}x s4d", flush=True)
            del model
        goals.update(ratios(rows, L))
        save(False)

    flip = flips(device, a.seed)
    for L in compile_lengths:            # last: a compile cut off by a limit loses only itself
        for name in a.compile:
            save(False)
            compiled.append(compiled_row(a, rows, name, L, device, repeats, start))
    for k, v in goals.items():
        print(f"{k}: {v:.2f}")
    for k, v in flip.items():
        print(f"float32 serial vs parallel {k}: max |dlogit| {v['max_logit_diff']:.2e}, "
              f"flipped spikes {v['flip_fraction']}")
    out = save(True)
    print(f"wrote {out}")
    return 0


def compiled_row(a, rows: list[dict], name: str, L: int, device, repeats: int,
                 start: float) -> dict:
    """``name`` under torch.compile at length L against its eager row of this run: the first
    call (compiling) timed alone, then :func:`step_time`; or skipped, with the reason."""
    eager = next((r for r in rows if r["model"] == name and r["length"] == L and
                  r.get("seconds")), None)
    elapsed = time.perf_counter() - start
    why = ("no eager row measured at this length" if eager is None else
           f"--max-seconds {a.max_seconds:g}: {elapsed:.0f} s gone"
           if a.max_seconds is not None and elapsed > a.max_seconds else None)
    if why:
        print(f"L={L:6d} {name:6s} compiled: skipped: {why}", flush=True)
        return {"model": name, "length": L, "seconds": None, "skipped": True,
                "skip_reason": why}
    x, y = batch_for(a.seed, L, a.batch, device)
    torch.manual_seed(a.seed)
    model = build(name, d_input=3, n_classes=10).to(device).train()
    net = torch.compile(model, backend=a.compile_backend)
    first = step_time(net, x, y, device, 1, warmup=0)              # compiles, then runs
    t = step_time(net, x, y, device, repeats)
    ratio = eager["seconds"] / t
    print(f"L={L:6d} {name:6s} compiled ({a.compile_backend}) {t * 1e3:10.1f} ms  "
          f"eager/compiled {ratio:.2f} (first call, compiling: {first:.1f} s)", flush=True)
    return {"model": name, "length": L, "backend": a.compile_backend, "seconds": t,
            "first_call_s": first, "eager_seconds": eager["seconds"],
            "eager_over_compiled": ratio, "timed_calls": repeats}


def ratios(rows: list[dict], L: int) -> dict:
    """The goals' ratios at length L from the measured rows (those present)."""
    def sec(m):
        return next((r["seconds"] for r in rows if r["model"] == m and r["length"] == L), None)
    out = {}
    for m in ("frssm", "pssm"):
        if sec(m) and sec("s4d"):
            out[f"{m}_vs_s4d_L{L}"] = sec(m) / sec("s4d")
    if sec("lif") and sec("frssm"):
        out[f"lif_over_frssm_L{L}"] = sec("lif") / sec("frssm")
    return out


if __name__ == "__main__":
    sys.exit(main())
