"""Parallel versus serial forms: forward + backward time of each temporal module, in one run.

Part 1, parallel / serial ratio of the same module (same result, two algorithms):
    s4d           spikelib.memory.S4D: FFT convolution (forward) vs recurrence (forward_serial)
    refractory    refractory_scan vs refractory_loop (R = 4) on Bernoulli(0.3) candidate spikes
    soft_if       spikelib.neurons.SoftResetIF: cumsum/cummax form vs the step loop
    ddsn          DynamicDecayNeuron: chunked scan vs the step loop
    sliding_psn   SlidingPSN (P = 32, per channel): conv1d vs the step loop
Part 2, the parallel neurons against each other (all parallel forms): time of DDSN, full PSN
(T×T weight, T = L) and sliding PSN, and the ratios PSN/DDSN and slidingPSN/DDSN (the paper,
second-hand: 21.7× forward and 28× backward vs PSN at 16k; about 2.2× vs sliding PSN).

Fixed shapes: batch 16, 128 channels, fp32 (no autocast), S4D d_state 64. Inputs are random
(SYNTHETIC, timing only) and require grad; backward takes a fixed random upstream gradient, so
every module also returns ∂/∂input. Timed with torch.utils.benchmark.Timer (``_bench.measure``):
two warm-up runs, then the mean of ``--repeats`` runs, CUDA synchronised around them; peak CUDA
memory over those runs. The TF32 switches are printed and recorded, never changed.

Defaults: GPU L ∈ {1024, 4096, 16384}, 5 repeats (serial loops, launch-bound: 2 repeats for
1024 < L ≤ 4096 and 1 above, each after the Timer's two warm-up runs — at L = 16384 a serial
loop thus runs three times); CPU L ∈ {256, 1024}, 3 repeats, serial loops only at the smallest
L (under a minute on 2 cores).

    python benchmarks/parallel_vs_serial.py                          # auto device
    python benchmarks/parallel_vs_serial.py --device cpu --lengths 256 --repeats 2

Writes results/bench-parallel-vs-serial-<device>.json (``--out`` a .json path or a folder).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

import torch

from _bench import common_args, measure, record, result_path, setup, tf32_state
from spikelib.device import device_name
from spikelib.results import write_result

BATCH, CHANNELS, R, ORDER, D_STATE = 16, 128, 4, 32, 64


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


def _optional(module: str):
    """A teammate's module, or (None, reason) while it does not exist yet."""
    try:
        return importlib.import_module(module), None
    except ModuleNotFoundError as err:
        if err.name != module:                  # a broken import inside it: show the error
            raise
        return None, f"{module} does not exist in this tree"


def pairs(device):
    """name -> (parallel fn, serial fn, module, make input) or a reason string."""
    from spikelib.ddsn import DynamicDecayNeuron
    from spikelib.psn import SlidingPSN
    out = {}
    memory, why = _optional("spikelib.memory")
    if memory is not None:
        m = memory.S4D(CHANNELS, d_state=D_STATE).to(device)
        out["s4d"] = (m.forward, m.forward_serial, m, "normal")
    else:
        out["s4d"] = why
    refractory, why = _optional("spikelib.refractory")
    if refractory is not None:
        out["refractory"] = (lambda c: refractory.refractory_scan(c, R),
                             lambda c: refractory.refractory_loop(c, R), None, "bernoulli")
    else:
        out["refractory"] = why
    neurons, why = _optional("spikelib.neurons")
    if neurons is not None and hasattr(neurons, "SoftResetIF"):
        m = neurons.SoftResetIF(channels=CHANNELS).to(device)
        out["soft_if"] = (m.forward, m.forward_serial, m, "positive")
    else:
        out["soft_if"] = why or "spikelib.neurons has no SoftResetIF"
    m = DynamicDecayNeuron(CHANNELS).to(device)
    out["ddsn"] = (m.forward, m.forward_serial, m, "normal")
    m = SlidingPSN(ORDER, channels=CHANNELS).to(device)
    out["sliding_psn"] = (m.forward, m.forward_serial, m, "normal")
    return out


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

    torch.manual_seed(a.seed)
    table = pairs(device)
    rows = []
    print(f"\n{'module':12s} {'L':>6s} {'parallel ms':>12s} {'serial ms':>12s} "
          f"{'par/ser':>8s} {'ser/par':>8s}", flush=True)
    for L in lengths:
        for name, entry in table.items():
            if isinstance(entry, str):
                rows.append({"module": name, "length": L, "skipped": entry})
                if L == lengths[0]:
                    print(f"{name:12s} SKIP: {entry}", flush=True)
                continue
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

    from spikelib.ddsn import DynamicDecayNeuron
    from spikelib.psn import PSN, SlidingPSN
    neurons, ratios = [], {}
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

    wall = time.perf_counter() - start
    print(f"\ntotal {wall:.1f} s", flush=True)
    path = write_result(result_path(a, "bench-parallel-vs-serial", device), {
        "benchmark": "parallel_vs_serial", "synthetic": True,
        "device_label": label, "precision": "fp32 (no autocast)",
        "shapes": {"batch": BATCH, "channels": CHANNELS, "refractory_R": R, "psn_order": ORDER,
                   "s4d_d_state": D_STATE, "ddsn": "DynamicDecayNeuron defaults"},
        "lengths": lengths, "repeats": repeats, "serial_max_length": serial_max,
        "serial_repeats": {str(L): serial_repeats(L) for L in lengths if L <= serial_max},
        "timing": "forward + backward (upstream gradient fixed): "
                  "torch.utils.benchmark.Timer.timeit(repeats), the mean of repeats runs after "
                  "its warm-up of two runs",
        "pairs": rows, "neurons": neurons, "ratios_vs_ddsn": ratios,
        "paper_second_hand": {"psn_over_ddsn_16k_forward": 21.7,
                              "psn_over_ddsn_16k_backward": 28.0,
                              "sliding_psn_over_ddsn": 2.2,
                              "note": "not comparable 1:1: their PSN/DDSN code and shapes"},
        "wall_seconds": wall, **record(a, device, command)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
