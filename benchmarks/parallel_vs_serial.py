"""Parallel versus serial forms: forward + backward time of each temporal module, in one run.

Part 1, parallel / serial ratio of the same module (same result, two algorithms):
    s4d           spikelib.memory.S4D: FFT convolution (forward) vs recurrence (forward_serial)
    refractory    refractory_scan (chunked) vs refractory_loop (R = 4) on Bernoulli(0.3) crossings
    soft_if       spikelib.neurons.SoftResetIF: cumsum/cummax form vs the step loop
    ddsn          DynamicDecayNeuron: chunked scan vs the step loop
    sliding_psn   SlidingPSN (P = 32, per channel): conv1d vs the step loop
Part 2, the parallel neurons against each other (all parallel forms): time of DDSN, full PSN
(T×T weight, T = L) and sliding PSN, and the ratios PSN/DDSN and slidingPSN/DDSN (the paper,
second-hand: 21.7× forward and 28× backward vs PSN at 16k; about 2.2× vs sliding PSN).

Part 3, the exact refractory forms against each other at the CPU profile's training size
(batch 64, L 784, 32 channels; ``--refractory-shape``), R in {1, 2, 4, 8}, Bernoulli(0.2)
crossings (SYNTHETIC), forward only (the backward is one select for every form):
    loop           refractory_loop, the reference
    per_step_scan  refractory_scan(chunk=1): one map per time step, (L, B, C, R+1) int64 tables
                   (the algorithm spikelib used before the chunked scan, in the new layout)
    chunked_Q<q>   refractory_scan(chunk=q), a sweep over q; chunked_default = default_chunk(R)
    fused          refractory_fused, the Triton kernel (CUDA with triton only)
Every form is checked equal to the loop before it is timed. Timed with
torch.utils.benchmark.Timer (blocked_autorange, median and IQR); on CPU its timer is the calling
thread's CPU time (time.thread_time; one torch thread), so other processes on a shared machine
do not inflate it; on CUDA the default timer (synchronises the device).

Fixed shapes (parts 1 and 2): batch 16, 128 channels, fp32 (no autocast), S4D d_state 64.
Inputs are random (SYNTHETIC, timing only) and require grad; backward takes a fixed random
upstream gradient, so every module also returns ∂/∂input. Timed with
torch.utils.benchmark.Timer (``_bench.measure``): two warm-up runs, then the mean of
``--repeats`` runs, CUDA synchronised around them; peak CUDA memory over those runs. The TF32
switches are printed and recorded, never changed.

Defaults: GPU L ∈ {1024, 4096, 16384}, 5 repeats (serial loops, launch-bound: 2 repeats for
1024 < L ≤ 4096 and 1 above, each after the Timer's two warm-up runs — at L = 16384 a serial
loop thus runs three times); CPU L ∈ {256, 1024}, 3 repeats, serial loops only at the smallest
L (under a minute on 2 cores).

    python benchmarks/parallel_vs_serial.py                          # auto device
    python benchmarks/parallel_vs_serial.py --device cpu --lengths 256 --repeats 2

Writes results/bench-parallel-vs-serial-<device>.json (``--out`` a .json path or a folder),
rewritten after each part (``"complete": false`` until the end).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import torch
from torch.utils import benchmark

from _bench import common_args, measure, record, result_path, setup, tf32_state
from spikelib.device import device_name
from spikelib.results import write_result

BATCH, CHANNELS, R, ORDER, D_STATE = 16, 128, 4, 32, 64
REFRACTORY_SHAPE = (64, 784, 32)     # the CPU profile's training step: batch, L, d_model
REFRACTORY_RS = (1, 2, 4, 8)
REFRACTORY_CHUNKS = (8, 16, 32, 64, 128)
P_CROSS = 0.2                        # crossing rate (y > θ at 18–22 % of steps in a trained frssm)


def fwd_bwd(fn, x: torch.Tensor, g: torch.Tensor, module=None) -> bool:
    """One forward + backward; returns whether there was a graph to run backward through."""
    x.grad = None
    if module is not None:
        module.zero_grad(set_to_none=True)
    y = fn(x)
    if not y.requires_grad:
        return False
    y.backward(g)
    return True


def timed(fn, x, g, device, repeats: int, module=None) -> dict:
    """Seconds of forward + backward: the mean of ``repeats`` runs after the Timer's warm-up
    (``_bench.measure``), and the peak CUDA memory of those runs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    graph = []                                             # whether there was a backward pass
    m = measure(lambda: graph.append(fwd_bwd(fn, x, g, module)), repeats)
    return {"seconds": m.mean, "repeats": repeats, "backward": graph[-1],
            "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else None}


def pairs(device):
    """name -> (parallel fn, serial fn, module, kind of input)."""
    from spikelib.ddsn import DynamicDecayNeuron
    from spikelib.memory import S4D
    from spikelib.neurons import SoftResetIF
    from spikelib.psn import SlidingPSN
    from spikelib.refractory import refractory_loop, refractory_scan
    s4d = S4D(CHANNELS, d_state=D_STATE).to(device)
    sif = SoftResetIF(channels=CHANNELS).to(device)
    ddsn = DynamicDecayNeuron(CHANNELS).to(device)
    psn = SlidingPSN(ORDER, channels=CHANNELS).to(device)
    return {"s4d": (s4d.forward, s4d.forward_serial, s4d, "normal"),
            "refractory": (lambda c: refractory_scan(c, R), lambda c: refractory_loop(c, R),
                           None, "bernoulli"),
            "soft_if": (sif.forward, sif.forward_serial, sif, "positive"),
            "ddsn": (ddsn.forward, ddsn.forward_serial, ddsn, "normal"),
            "sliding_psn": (psn.forward, psn.forward_serial, psn, "normal")}


def refractory_forms(device, R: int) -> dict:
    """name -> (function c -> s, chunk length or None) for part 3."""
    from spikelib import refractory as rf
    forms = {"loop": (lambda c: rf.refractory_loop(c, R, validate=False), None),
             "per_step_scan": (lambda c: rf.refractory_scan(c, R, chunk=1, validate=False), 1)}
    for Q in REFRACTORY_CHUNKS:
        forms[f"chunked_Q{Q}"] = (lambda c, Q=Q: rf.refractory_scan(c, R, chunk=Q,
                                                                    validate=False), Q)
    forms["chunked_default"] = (lambda c: rf.refractory_scan(c, R, validate=False),
                                rf.default_chunk(R))
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        forms["fused"] = (lambda c: rf.refractory_fused(c, R, validate=False), None)
    return forms


def time_refractory(a, device) -> dict:
    """Part 3: every exact refractory form, median seconds by torch.utils.benchmark.Timer."""
    B, L, C = a.refractory_shape
    gen = torch.Generator().manual_seed(a.seed)
    c = (torch.rand(B, L, C, generator=gen) < P_CROSS).float().to(device)   # (B, L, C) SYNTHETIC
    clock = {"timer": time.thread_time} if device.type == "cpu" else {}
    rows = []
    print(f"\nrefractory forms, B={B} L={L} C={C}, crossings Bernoulli({P_CROSS}), forward only "
          f"({'thread CPU time' if clock else 'wall time, synchronised'}):", flush=True)
    print(f"{'R':>3s} {'form':16s} {'chunk':>6s} {'ms':>9s} {'IQR ms':>8s} {'loop/form':>10s}",
          flush=True)
    for R_ in a.refractory_R:
        forms = refractory_forms(device, R_)
        reference = forms["loop"][0](c)
        loop_s = None
        for name, (fn, chunk) in forms.items():
            assert torch.equal(fn(c), reference), (name, R_)            # exact, and a warm-up
            m = benchmark.Timer("fn(c)", globals={"fn": fn, "c": c}, label="refractory",
                                sub_label=name, description=f"R={R_}", **clock
                                ).blocked_autorange(min_run_time=a.refractory_min_time)
            loop_s = m.median if name == "loop" else loop_s
            rows.append({"R": R_, "form": name, "chunk": chunk, "median_s": m.median,
                         "iqr_s": m.iqr, "runs": len(m.times),
                         "loop_over_form": loop_s / m.median})
            print(f"{R_:3d} {name:16s} {'-' if chunk is None else chunk:>6} "
                  f"{m.median * 1e3:9.3f} {m.iqr * 1e3:8.3f} {loop_s / m.median:10.2f}",
                  flush=True)
    return {"shape": {"batch": B, "length": L, "channels": C}, "crossing_rate": P_CROSS,
            "timer": "torch.utils.benchmark.Timer.blocked_autorange; " +
                     ("time.thread_time (CPU time of the calling thread)" if clock else
                      "default timer (device synchronised)"),
            "forward_only": True, "rows": rows}


def make_input(kind: str, L: int, device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + L)
    x = torch.randn(BATCH, L, CHANNELS, generator=gen)               # (B, L, C) SYNTHETIC
    if kind == "bernoulli":                                          # candidate spikes c ∈ {0,1}
        x = (torch.rand(BATCH, L, CHANNELS, generator=gen) < 0.3).float()
    elif kind == "positive":
        x = 0.6 * x.abs()
    return x.to(device).requires_grad_()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help="sequence lengths L (default: GPU 1024 4096 16384; CPU 256 1024)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default GPU 5, CPU 3)")
    p.add_argument("--serial-max-length", type=int, default=None,
                   help="serial loops only up to this L (default: GPU all, CPU the smallest)")
    p.add_argument("--serial-repeats", type=int, default=None,
                   help="timed runs of every serial loop above L = 1024 (default: 2 up to "
                        "L = 4096, 1 above)")
    p.add_argument("--refractory-shape", type=int, nargs=3, default=REFRACTORY_SHAPE,
                   metavar=("B", "L", "C"), help="part 3 input shape (default: %(default)s)")
    p.add_argument("--refractory-R", type=int, nargs="+", default=REFRACTORY_RS,
                   help="part 3 refractory periods (default: %(default)s)")
    p.add_argument("--refractory-min-time", type=float, default=0.5,
                   help="part 3: seconds of runs per form (Timer.blocked_autorange)")
    return common_args(p)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    command, device, _ = setup(a, "parallel_vs_serial", argv)
    gpu = device.type == "cuda"
    lengths = sorted(a.lengths or ([1024, 4096, 16384] if gpu else [256, 1024]))
    repeats = a.repeats or (5 if gpu else 3)
    serial_max = a.serial_max_length or (max(lengths) if gpu else min(lengths))

    def serial_repeats(L: int) -> int:
        if L <= 1024:
            return repeats
        return a.serial_repeats or min(repeats, 2 if L <= 4096 else 1)

    start = time.perf_counter()
    tf32 = tf32_state()
    label = f"{device_name(device)} ({'gpu' if gpu else 'cpu'})"
    print(f"parallel vs serial on {label}; B={BATCH}, C={CHANNELS}, R={R}, P={ORDER}, fp32; "
          f"L={lengths}; repeats {repeats}; serial loops up to L={serial_max}; "
          f"threads {torch.get_num_threads()}; TF32: {tf32}", flush=True)

    rows, neurons, ratios, refractory = [], [], {}, None

    def save(complete: bool):
        """The file so far: rewritten after each part (``complete`` false until the end), so
        a run stopped from outside keeps the parts it measured."""
        wall = time.perf_counter() - start
        return write_result(result_path(a, "bench-parallel-vs-serial", device), {
            "benchmark": "parallel_vs_serial", "complete": complete, "synthetic": True,
            "device_label": label, "precision": "fp32 (no autocast)",
            "shapes": {"batch": BATCH, "channels": CHANNELS, "refractory_R": R,
                       "psn_order": ORDER, "s4d_d_state": D_STATE,
                       "ddsn": "DynamicDecayNeuron defaults"},
            "lengths": lengths, "repeats": repeats, "serial_max_length": serial_max,
            "serial_repeats": {str(L): serial_repeats(L) for L in lengths if L <= serial_max},
            "timing": "forward + backward (upstream gradient fixed): "
                      "torch.utils.benchmark.Timer.timeit(repeats), the mean of repeats runs "
                      "after its warm-up of two runs",
            "pairs": rows, "neurons": neurons, "ratios_vs_ddsn": ratios,
            "refractory_forms": refractory,
            "paper_second_hand": {"psn_over_ddsn_16k_forward": 21.7,
                                  "psn_over_ddsn_16k_backward": 28.0,
                                  "sliding_psn_over_ddsn": 2.2,
                                  "note": "not comparable 1:1: their PSN/DDSN code and shapes"},
            "wall_seconds": wall, **record(a, device, command)})

    torch.manual_seed(a.seed)
    table = pairs(device)
    print(f"\n{'module':12s} {'L':>6s} {'parallel ms':>12s} {'serial ms':>12s} "
          f"{'par/ser':>8s} {'ser/par':>8s}", flush=True)
    for L in lengths:
        for name, entry in table.items():
            par_fn, ser_fn, module, kind = entry
            x = make_input(kind, L, device, a.seed)
            g = torch.randn(x.shape, generator=torch.Generator().manual_seed(a.seed + 1)
                            ).to(device)
            par = timed(par_fn, x, g, device, repeats, module)
            row = {"module": name, "length": L, "parallel": par}
            if L <= serial_max:
                ser = timed(ser_fn, x, g, device, serial_repeats(L), module)
                row |= {"serial": ser, "ratio_parallel_over_serial": par["seconds"] /
                        ser["seconds"], "speedup_serial_over_parallel": ser["seconds"] /
                        par["seconds"]}
                print(f"{name:12s} {L:6d} {par['seconds'] * 1e3:12.2f} "
                      f"{ser['seconds'] * 1e3:12.2f} {row['ratio_parallel_over_serial']:8.3f} "
                      f"{row['speedup_serial_over_parallel']:8.1f}", flush=True)
            else:
                row["serial"] = None
                print(f"{name:12s} {L:6d} {par['seconds'] * 1e3:12.2f} {'-':>12s}", flush=True)
            rows.append(row)
            del x, g
    save(False)

    from spikelib.ddsn import DynamicDecayNeuron
    from spikelib.psn import PSN, SlidingPSN
    print(f"\n{'neuron':12s} {'L':>6s} {'fwd+bwd ms':>12s} {'vs ddsn':>8s} {'peak MiB':>9s}",
          flush=True)
    for L in lengths:
        x = make_input("normal", L, device, a.seed)
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(a.seed + 1)).to(device)
        base = None
        for name, make in (("ddsn", lambda: DynamicDecayNeuron(CHANNELS)),
                           ("psn", lambda: PSN(L)),
                           ("sliding_psn", lambda: SlidingPSN(ORDER, channels=CHANNELS))):
            torch.manual_seed(a.seed)
            with device:                                   # build on the device (PSN: L×L)
                m = make()
            r = timed(m.forward, x, g, device, repeats, m)
            base = r["seconds"] if name == "ddsn" else base
            neurons.append({"neuron": name, "length": L, **r, "vs_ddsn": r["seconds"] / base})
            if name != "ddsn":
                ratios[f"{name}_over_ddsn_L{L}"] = r["seconds"] / base
            peak = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2 ** 20:9.0f}"
            print(f"{name:12s} {L:6d} {r['seconds'] * 1e3:12.2f} {r['seconds'] / base:8.2f} "
                  f"{peak:>9s}", flush=True)
            del m
        del x, g
    save(False)

    refractory = time_refractory(a, device)

    print(f"\ntotal {time.perf_counter() - start:.1f} s", flush=True)
    path = save(True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
