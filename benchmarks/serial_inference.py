"""Serial inference: time steps per second of ``forward_serial`` (O(1) state) and state bytes.

Each model runs ``SequenceClassifier.forward_serial`` — a Python loop over ``step`` that carries
one (S4D state, spiking state) pair per layer and a running sum for the mean readout — on random
inputs (SYNTHETIC, timing only) at batch 1 and batch 64, in eval mode under
``torch.inference_mode``, fp32 (no autocast: at batch 1 the loop is bound by kernel launches, not
arithmetic). Reported: the mean seconds of ``--repeats`` runs after torch.utils.benchmark.Timer's
warm-up (two runs), time steps per second (L / t, one sequence) and sequence-steps per second
(B·L / t). On CPU one thread by
default (``--threads``): the tensors of one step are tiny, and a second OpenMP thread stalls the
loop whenever another process holds a core.

State size: the bytes of every tensor in one layer's state for ONE sequence (batch 1), split into
the S4D part (complex (H, N/2)) and the spiking part, measured after 1 step and after 64 steps —
the two are equal for every model (the state is O(1) in L; the script reports it and fails if
not). The readout's running sum (H floats) is reported separately.

Model: the ModelConfig defaults (d_model 128, 4 layers, d_state 64), d_input 1, 10 classes.

    python benchmarks/serial_inference.py                      # auto device, its defaults
    python benchmarks/serial_inference.py --device cpu --length 256 --repeats 3

Writes results/serial-inference-<device>.json (with provenance).
"""
from __future__ import annotations

import argparse
import sys

import torch

from _bench import common_args, measure, record, result_path, setup, tf32_state
from spikelib.device import device_name
from spikelib.models import MODELS, build
from spikelib.results import write_result

DEFAULT_MODELS = ("s4d", "frssm", "pssm", "ddsn", "sif")
# per profile: (length L, repeats)
PROFILES = {"gpu": (1024, 5), "cpu": (256, 3), "smoke": (16, 1)}



def nbytes(obj) -> int:
    """Bytes of every tensor inside nested tuples / lists / dicts (None counts 0)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(v) for v in obj)
    return 0


@torch.inference_mode()
def state_sizes(model, length: int, device: torch.device) -> list[dict]:
    """Per layer: bytes of the (S4D, spike) state of one sequence after 1 and after L steps."""
    x = torch.randn(1, length, model.cfg.d_input, device=device)
    state, after_one = None, None
    for t in range(length):
        _, state = model.step(x[:, t], state)
        if t == 0:
            after_one = [(nbytes(st["ssm"]), nbytes(st["spike"])) for st in state["layers"]]
    rows = []
    for i, (st, first) in enumerate(zip(state["layers"], after_one)):
        ssm, spk = st["ssm"], st["spike"]
        rows.append({"layer": i, "ssm_bytes": nbytes(ssm), "spike_bytes": nbytes(spk),
                     "total_bytes": nbytes(ssm) + nbytes(spk),
                     "total_bytes_after_1_step": sum(first),
                     "constant_in_L": nbytes(ssm) + nbytes(spk) == sum(first)})
    return rows


def serial_time(model, x: torch.Tensor, repeats: int) -> float:
    """Seconds of ``model.forward_serial(x)`` under ``torch.inference_mode``: the mean of
    ``repeats`` runs after the Timer's warm-up (``_bench.measure``)."""
    def run():
        with torch.inference_mode():
            model.forward_serial(x)
    return measure(run, repeats).mean


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    p.add_argument("--length", type=int, default=None, help="time steps per timed run")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeats", type=int, default=None)
    return common_args(p, PROFILES, model_overrides=True)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    command, device, profile = setup(a, "serial_inference", argv)
    length = a.length or PROFILES[profile][0]
    repeats = a.repeats or PROFILES[profile][1]
    overrides = {k: v for k, v in (("d_model", a.d_model), ("n_layers", a.n_layers),
                                   ("d_state", a.d_state)) if v is not None}
    tf32 = tf32_state()
    print(f"serial inference on {device_name(device)} ({device.type}), profile {profile}, "
          f"L={length}, repeats {repeats}, fp32; TF32: {tf32}", flush=True)

    rows, states = [], {}
    for name in a.models:
        torch.manual_seed(a.seed)
        model = build(name, d_input=1, n_classes=10, **overrides).to(device).eval()
        states[name] = state_sizes(model, min(length, 64), device)
        if not all(r["constant_in_L"] for r in states[name]):
            raise RuntimeError(f"{name}: the serial state grew with L: {states[name]}")
        for batch in a.batches:
            g = torch.Generator().manual_seed(a.seed + batch)
            x = torch.randn(batch, length, 1, generator=g).to(device)   # SYNTHETIC (B, L, 1)
            t = serial_time(model, x, repeats)
            rows.append({"model": name, "batch": batch, "length": length, "seconds": t,
                         "steps_per_s": length / t,
                         "sequence_steps_per_s": batch * length / t})
            print(f"{name:6s} B={batch:3d} {length / t:12.1f} steps/s "
                  f"{batch * length / t:14.1f} seq-steps/s   state/layer "
                  f"{states[name][0]['total_bytes']:8d} B (1 sequence)", flush=True)
        del model

    cfg = build(DEFAULT_MODELS[0], d_input=1, n_classes=10, **overrides).cfg
    readout_bytes = cfg.d_model * 4
    print(f"\n{'model':6s} {'B':>3s} {'steps/s':>12s} {'seq-steps/s':>14s} "
          f"{'S4D B/layer':>12s} {'spike B/layer':>14s}")
    for r in rows:
        s = states[r["model"]][0]
        print(f"{r['model']:6s} {r['batch']:3d} {r['steps_per_s']:12.1f} "
              f"{r['sequence_steps_per_s']:14.1f} {s['ssm_bytes']:12d} {s['spike_bytes']:14d}")
    print(f"readout running sum: {readout_bytes} B per sequence (mean readout)")

    path = write_result(result_path(a, "serial-inference", device, profile), {
        "benchmark": "serial_inference", "profile": profile, "synthetic": True,
        "precision": "fp32 (no autocast)", "mode": "eval, inference_mode",
        "model_config": cfg.to_dict() | {"name": None},
        "length": length, "batches": a.batches, "repeats": repeats,
        "timing": "torch.utils.benchmark.Timer.timeit(repeats): mean of repeats runs after "
                  "its warm-up of two runs",
        "rows": rows, "state_bytes_per_layer": states,
        "state_note": "bytes of one layer's (S4D, spike) state for ONE sequence (batch 1); "
                      "equal after 1 and after L steps (O(1) in L)",
        "readout_state_bytes": readout_bytes, **record(a, device, command)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
