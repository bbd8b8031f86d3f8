"""Check spikelib's CUDA path before any GPU number is taken: the first stage of the runbook.

Six checks at small sizes, each recorded as ``{"ok": true | false | null, ...}`` (null: not
run, with ``skipped``: why — only what needs CUDA is skipped on CPU), in the order below:

``triton_kernel``   ``refractory_fused`` (the compiled Triton kernel) against
                    ``refractory_loop`` (values) and ``refractory_scan`` (gradients: at L = 1 both
                    are the identity's, the loop's masks non-crossings) at L ∈ {1, 3, 1025} ×
                    R ∈ {1, 2, 8} (float32, bfloat16, bool), a non-contiguous input; and whether
                    ``Refractory.forward`` fell back to the scan (``fused_fallback``). CUDA only.
``train``           20 steps of ``spikelib.train.train_epoch`` (bf16 autocast and fused AdamW on
                    CUDA) of every model on one batch of a learnable synthetic task (H 32, L 256,
                    batch 16; lif at L 64): finite losses, falling (mean of the last 5 below the
                    first 5), and the residual stream in float32 (each block's output and the
                    final norm's input, read by forward hooks; on CPU from one forward under CPU
                    bf16 autocast, since training there is float32).
``resume``          ``spikelib.train.train``: a run stopped after epoch 1 and resumed against an
                    uninterrupted one — parameters, optimiser state and epoch-2 loss
                    bit-identical under ``torch.use_deterministic_algorithms(True)`` and
                    ``CUBLAS_WORKSPACE_CONFIG`` (if an op has no deterministic kernel: within
                    ``RESUME_TOL`` instead, said so); the checkpoint loaded on CPU gives the
                    device model's logits within ``MOVE_TOL`` (float64).
``parallel_serial`` ``forward`` against ``forward_serial`` of every model on the device: float64
                    spikes identical and logits within ``SERIAL_TOL64`` (unless a decision lies
                    within 1e-9 of its threshold: then reported, not judged); float32 spike flips
                    per layer and the largest logit difference (``diagnostics.serial_agreement``),
                    judged only against ``FLIP_MAX`` (round-off flips a near-threshold decision).
``sync``            ``gpu/sync_check.check``: no host sync per training step (CUDA's sync debug
                    mode; on CPU the stand-in counts spikelib's own reads of tensor values).
``compile``         frssm under ``torch.compile`` against eager from the same start (dropout 0):
                    the losses of 5 steps within ``COMPILE_TOL`` (relative; bf16 on CUDA, float32
                    on CPU), the compiled graph's breaks, and the step-time ratio eager/compiled
                    over the last 4 of those steps (measured once, never asserted).

Writes ``<out>/verify-<device>.json`` before and after every check (``complete`` false until the
end, ``running`` the check under way: what a kill from outside interrupted) with
the device's name (H100 or H200: ``gpu``), ``ok`` (every check that ran passed and none was cut
by ``--max-seconds``) and ``failed``; exit status 1 if not ok. ``--tiny`` shrinks everything for
the CPU dry run of the runbook (tests/test_runbook.py).

    python gpu/verify.py --device cuda --commit <sha> --out results
    python gpu/verify.py --device cpu --tiny --out /tmp/v
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import sync_check
import torch
import torch.utils.benchmark

from spikelib import data as sdata
from spikelib import diagnostics, refractory
from spikelib.config import RunConfig
from spikelib.device import device_name, pick_device
from spikelib.models import MODELS, build
from spikelib.provenance import provenance
from spikelib.resultfiles import write_result
from spikelib.temporal import finite_checks
from spikelib.train import make_optimizer, train, train_epoch

RESUME_TOL = 1e-6      # relative, if deterministic kernels are missing for some op
MOVE_TOL = 1e-9        # relative: the same weights on CPU and on the device (float64)
SERIAL_TOL64 = 1e-8    # relative: float64 forward vs forward_serial
FLIP_MAX = 0.01        # float32: at most this fraction of a layer's spikes may flip
COMPILE_TOL = {"cuda": 3e-2, "cpu": 1e-3}   # relative loss difference, compiled vs eager
CHECKS = ("triton_kernel", "train", "resume", "parallel_serial", "sync", "compile")

SIZES = {   # the GPU run; --tiny: the CPU dry run of the logic
    False: {"H": 32, "d_state": 16, "L": 256, "batch": 16, "lif_L": 64, "serial_L": 256,
            "serial_batch": 4, "resume_data": "fmnist", "resume_n": 64, "sync_L": 256,
            "compile_L": 256, "triton_L": (1, 3, 1025)},
    True: {"H": 8, "d_state": 4, "L": 32, "batch": 8, "lif_L": 16, "serial_L": 24,
           "serial_batch": 2, "resume_data": "fmnist-rows", "resume_n": 32, "sync_L": 32,
           "compile_L": 32, "triton_L": (1, 3, 1025)},
}
STEPS = 20
N_CLASSES = 4


def clock() -> float:
    """Seconds now, after waiting for queued CUDA work (``torch.utils.benchmark.timer``)."""
    return torch.utils.benchmark.timer()


def slug(device: torch.device) -> str:
    """'cpu', or the GPU's name in lower case with dashes (as benchmarks/_bench.device_slug)."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def gpu_info(device: torch.device) -> dict | None:
    """Name, memory and kind (H100, H200 or the name) of a CUDA device; None on CPU."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    kind = next((k for k in ("H100", "H200") if k in props.name), props.name)
    return {"name": props.name, "kind": kind, "memory_bytes": props.total_memory,
            "capability": list(torch.cuda.get_device_capability(device))}


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max(1, max |b|)."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1)).item()


def task(n: int, length: int, seed: int = 0) -> sdata.SequenceDataset:
    """A learnable SYNTHETIC task: class k ∈ {0..3} is noise around the level k − 1.5."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    x = torch.randn(n, length, 1, generator=g) * 0.5 + (y.float() - 1.5)[:, None, None]
    return sdata.SequenceDataset(x, y, name="verify-synthetic", synthetic=True)


def small(name: str, s: dict, **kw):
    torch.manual_seed(0)
    return build(name, d_input=1, n_classes=N_CLASSES, d_model=s["H"], n_layers=2,
                 d_state=s["d_state"], **kw)


# -- the checks -----------------------------------------------------------------------------

def check_triton_kernel(device, s, a) -> dict:
    """On CUDA; on CPU only in Triton's interpreter (TRITON_INTERPRET=1: the tests)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return {"ok": None, "skipped": "needs CUDA (Triton); the kernel itself is checked in "
                                       "Triton's interpreter by tests/test_refractory.py"}
    if not refractory._triton_available():
        return {"ok": False, "error": "triton is not installed: Refractory uses the scan"}
    from spikelib.refractory import Refractory, fused_fallback, refractory_fused, refractory_scan
    from spikelib.refractory import refractory_loop as loop
    g = torch.Generator(device=device).manual_seed(0)
    bad, cases = [], 0
    for L in s["triton_L"]:
        for R in (1, 2, 8):
            for dtype in (torch.float32, torch.bfloat16, torch.bool):
                c = torch.rand(3, L, 5, generator=g, device=device) < 0.6
                c = c.to(dtype)
                cases += 1
                if not torch.equal(refractory_fused(c, R), loop(c, R)):
                    bad.append(f"values L={L} R={R} {dtype}")
            c = (torch.rand(3, L, 5, generator=g, device=device) < 0.6).float()
            gr = torch.randn(3, L, 5, generator=g, device=device)
            grads = []
            for form in (refractory_fused, refractory_scan):   # scan: what CPU training uses
                x = c.clone().requires_grad_()
                form(x, R).backward(gr)
                grads.append(x.grad)
            if not torch.equal(*grads):
                bad.append(f"gradient L={L} R={R}")
    base = (torch.rand(4, 6, 37, generator=g, device=device) < 0.6).float()
    for c in (base.transpose(1, 2), base[:, 1:5].transpose(1, 2)[:, ::3]):   # (4, 37|13, 4)
        assert not c.is_contiguous()
        for R in (1, 2, 8):
            cases += 1
            if not torch.equal(refractory_fused(c, R), loop(c, R)):
                bad.append(f"non-contiguous {tuple(c.shape)} stride {c.stride()} R={R}")
    c = (torch.rand(2, 50, 3, generator=g, device=device) < 0.6).float()
    module_ok = torch.equal(Refractory(2)(c), loop(c, 2))        # the dispatch the models use
    return {"ok": not bad and module_ok and fused_fallback() is None, "cases": cases,
            "mismatches": bad, "module_equals_loop": module_ok, "fallback": fused_fallback()}


def _dtype_hooks(model, seen: dict) -> list:
    """Forward hooks recording (once) the dtype of each block's output (the residual stream)
    and of the final norm's input; they return None, so the outputs stay as they are."""
    def note(key, t):
        seen.setdefault(key, str(t.dtype))

    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: note(f"block{k}_out", o[0]))
             for k, layer in enumerate(model.layers)]
    hooks.append(model.norm.register_forward_pre_hook(lambda m, i: note("final_norm_in", i[0])))
    return hooks


def check_train(device, s, a) -> dict:
    cuda = device.type == "cuda"
    out, ok = {}, True
    for name in MODELS:
        L = s["lif_L"] if name == "lif" else s["L"]
        ds = task(s["batch"], L).to(device)
        model = small(name, s).to(device)
        opt, sched = make_optimizer(model, 0.01, 0.01, STEPS, device)
        dtypes = {}
        hooks = _dtype_hooks(model, dtypes) if cuda else []
        order = torch.arange(s["batch"])
        losses = []
        with finite_checks(False):                      # as spikelib.train.train runs it
            for _ in range(STEPS):
                losses.append(train_epoch(model, opt, sched, ds, s["batch"], "classification",
                                          order, device, progress=False)["loss"])
        for h in hooks:
            h.remove()
        if not cuda:                        # CPU trains in float32: the dtypes from bf16 autocast
            hooks = _dtype_hooks(model, dtypes)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(ds.batch(order)[0])
            for h in hooks:
                h.remove()
        finite = all(math.isfinite(v) for v in losses)
        falling = finite and sum(losses[-5:]) < sum(losses[:5])
        fp32 = bool(dtypes) and all(v == "torch.float32" for v in dtypes.values())
        out[name] = {"ok": finite and falling and fp32, "length": L, "losses": losses,
                     "finite": finite, "falling": falling, "residual_dtypes": dtypes,
                     "fused_adamw": bool(opt.defaults.get("fused"))}
        ok &= out[name]["ok"] and out[name]["fused_adamw"] == cuda
    return {"ok": ok, "steps": STEPS, "batch": s["batch"], "d_model": s["H"], "models": out,
            "precision": "bf16 autocast (train_epoch), fused AdamW" if cuda else
                         "float32, AdamW (residual dtypes from one forward under CPU bf16 "
                         "autocast)",
            "skipped_parts": {} if cuda else {
                "bf16 training, fused AdamW": "need CUDA (train_epoch trains in float32 on CPU)"}}


def check_resume(device, s, a) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(model="frssm", dataset=s["resume_data"], synthetic=True, profile="smoke",
                    epochs=2, batch_size=16, limit_train=s["resume_n"], limit_eval=16,
                    device=str(device), out=f"{tmp}/runs", results=f"{tmp}/results", seed=0,
                    commit=a.commit, progress=False, model_config={
                        "d_model": s["H"], "n_layers": 2, "d_state": s["d_state"]})
        before = torch.are_deterministic_algorithms_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                train(RunConfig(**base, run_name="whole"))
                train(RunConfig(**base, run_name="resumed", stop_after_epoch=1))
                train(RunConfig(**base, run_name="resumed", resume=True))
            finally:
                torch.use_deterministic_algorithms(before)
        nondet = sorted({str(w.message).split("\n")[0][:200] for w in caught
                         if "deterministic" in str(w.message)})
        ck = {k: torch.load(f"{tmp}/runs/{k}/checkpoint.pt", map_location="cpu",
                            weights_only=False) for k in ("whole", "resumed")}
    w, r = ck["whole"], ck["resumed"]
    pairs = [(k, w["model"][k], r["model"][k]) for k in w["model"]]
    for i, st in w["optimizer"]["state"].items():
        pairs += [(f"opt.{i}.{k}", v, r["optimizer"]["state"][i][k]) for k, v in st.items()
                  if isinstance(v, torch.Tensor)]
    identical = all(torch.equal(x, y) for _, x, y in pairs) and \
        w["history"][-1]["train_loss"] == r["history"][-1]["train_loss"]
    worst = max(rel_diff(x.float(), y.float()) for _, x, y in pairs)
    ok = identical or (bool(nondet) and worst <= RESUME_TOL)
    # the device's checkpoint on CPU: the same logits (float64: no decision flips by round-off)
    model_dev = build(**w["model_config"]).to(device).eval()
    model_dev.load_state_dict(w["model"])
    model_cpu = build(**w["model_config"]).eval()
    model_cpu.load_state_dict(w["model"])
    model_dev, model_cpu = model_dev.double(), model_cpu.double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 64, w["model_config"]["d_input"], generator=g, dtype=torch.float64)
    with torch.no_grad():
        moved = rel_diff(model_cpu(x), model_dev(x.to(device)).cpu())
    return {"ok": ok and moved <= MOVE_TOL, "bit_identical": identical,
            "deterministic_algorithms": True, "ops_without_deterministic_kernel": nondet,
            "max_rel_diff": worst, "tolerance_if_not_deterministic": RESUME_TOL,
            "epoch2_train_loss": [w["history"][-1]["train_loss"],
                                  r["history"][-1]["train_loss"]],
            "checkpoint_written_on": str(device), "loaded_on_cpu_logit_rel_diff": moved,
            "move_tolerance": MOVE_TOL, "dataset": f"{s['resume_data']} (SYNTHETIC)"}


def check_parallel_serial(device, s, a) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(s["serial_batch"], s["serial_L"], 1, generator=g, dtype=torch.float64)
    out, ok = {}, True
    for name in MODELS:
        model = small(name, s).to(device).double().eval()
        with torch.no_grad():
            close = min((d.min().item() for d in diagnostics.distances(model, x.to(device))),
                        default=math.inf)
        f64 = diagnostics.serial_agreement(model, x.to(device))
        scale = max(1.0, model(x.to(device)).abs().max().item())
        f32 = diagnostics.serial_agreement(model.float(), x.float().to(device))
        spiking = name != "s4d"          # s4d's "spikes" are GELU values: no flips to count
        judged = close > 1e-9
        exact = f64["max_logit_diff"] <= SERIAL_TOL64 * scale and \
            (not spiking or not any(f64["flip_fraction"]))
        flips_ok = not spiking or max(f32["flip_fraction"]) <= FLIP_MAX
        row = {"ok": (exact or not judged) and flips_ok and
               math.isfinite(f32["max_logit_diff"]),
               "float64_max_logit_diff": f64["max_logit_diff"],
               "float64_flip_fraction": f64["flip_fraction"] if spiking else None,
               "float32_max_logit_diff": f32["max_logit_diff"],
               "float32_flip_fraction": f32["flip_fraction"] if spiking else None,
               "closest_decision": close if math.isfinite(close) else None}
        if not judged:
            row["not_judged"] = "a float64 decision lies within 1e-9 of its threshold"
        out[name] = row
        ok &= row["ok"]
    return {"ok": ok, "length": s["serial_L"], "batch": s["serial_batch"],
            "float64_tolerance": SERIAL_TOL64, "float32_flip_max": FLIP_MAX, "models": out}


def check_sync(device, s, a) -> dict:
    found = sync_check.check(device, steps=5, batch=s["batch"], length=s["sync_L"],
                             d_model=s["H"])
    return {"ok": all(r["ok"] for r in found.values()), "steps": 5, "length": s["sync_L"],
            "how": "torch.cuda.set_sync_debug_mode" if device.type == "cuda" else
                   "spikelib's reads of tensor values (CPU stand-in for CUDA syncs)",
            "models": found}


def check_compile(device, s, a) -> dict:
    import torch._dynamo
    ds = task(s["batch"], s["compile_L"], seed=2).to(device)
    order = torch.arange(s["batch"])
    start = small("frssm", s, dropout=0.0).to(device)
    runs = {}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for kind in ("eager", "compiled"):
        model = copy.deepcopy(start)
        net = torch.compile(model, backend=a.compile_backend) if kind == "compiled" else model
        opt, sched = make_optimizer(model, 0.01, 0.01, 5, device)
        losses, times = [], []
        with finite_checks(False):
            for _ in range(5):
                t0 = clock()
                losses.append(train_epoch(net, opt, sched, ds, s["batch"], "classification",
                                          order, device, progress=False)["loss"])
                times.append(clock() - t0)
        runs[kind] = {"losses": losses, "step_s": times}
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    e, c = runs["eager"], runs["compiled"]
    tol = COMPILE_TOL["cuda" if device.type == "cuda" else "cpu"]
    worst = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(c["losses"], e["losses"]))
    ratio = sum(e["step_s"][1:]) / sum(c["step_s"][1:])
    return {"ok": worst <= tol, "model": "frssm", "backend": a.compile_backend,
            "losses_eager": e["losses"], "losses_compiled": c["losses"],
            "max_rel_loss_diff": worst, "tolerance": tol, "graph_breaks": breaks,
            "first_compiled_step_s": c["step_s"][0],
            "eager_over_compiled_step": ratio,
            "ratio_note": "mean of steps 2-5 of each, measured once at this small size; "
                          "never asserted"}


def why(result: dict) -> str:
    """One line on a check that did not pass: the reason it was skipped, its error, or the
    models (or mismatches) that failed."""
    if result.get("skipped") or result.get("error"):
        return result.get("skipped") or result["error"]
    bad = [k for k, v in result.get("models", {}).items() if not v.get("ok")]
    return "failed: " + ", ".join(bad or result.get("mismatches") or ["see the JSON"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: the CPU dry run")
    p.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    p.add_argument("--max-seconds", type=float, default=None,
                   help="checks not started by then are recorded as failed (out of time)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the compile check (the dry run: aot_eager)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results", help="folder, or a .json path")
    p.add_argument("--commit", default=None, help="commit to record when there is no .git")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # before cuBLAS starts
    device = pick_device(a.device)
    if a.threads or device.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    s = SIZES[a.tiny]
    command = ["python", "gpu/verify.py", *(sys.argv[1:] if argv is None else argv)]
    path = Path(a.out) if a.out.endswith(".json") else \
        Path(a.out) / f"verify-{slug(device)}{'-tiny' if a.tiny else ''}.json"
    report = {"benchmark": "gpu_verify", "complete": False, "tiny": a.tiny, "sizes": s,
              "device": device_name(device), "device_type": device.type,
              "gpu": gpu_info(device), "checks": {}, "seconds": {},
              "provenance": provenance(a.commit, device, argv=command)}
    for name in a.checks:
        elapsed = time.perf_counter() - t_start
        if a.max_seconds is not None and elapsed > a.max_seconds:
            result = {"ok": False, "skipped": f"out of time: {elapsed:.0f} s gone of "
                                              f"--max-seconds {a.max_seconds:g}"}
        else:
            report["running"] = name          # what a kill from outside interrupted
            write_result(path, report)
            try:
                result = globals()[f"check_{name}"](device, s, a)
            except Exception as err:                          # noqa: BLE001 (recorded)
                result = {"ok": False, "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc()[-3000:]}
        report["checks"][name] = result
        report["seconds"][name] = time.perf_counter() - t_start - elapsed
        state = {True: "ok", False: "FAILED", None: "skipped"}[result["ok"]]
        print(f"verify {name:16s} {state:8s} {report['seconds'][name]:6.1f} s"
              + ("" if result["ok"] is True else f"  ({why(result)})"), flush=True)
        report["failed"] = [k for k, v in report["checks"].items() if v["ok"] is False]
        report["ok"] = not report["failed"]
        report["fused_fallback"] = refractory.fused_fallback()     # None: no Triton failure
        write_result(path, report)
    report["complete"], report["running"] = True, None
    report["total_s"] = time.perf_counter() - t_start
    write_result(path, report)
    verdict = "every check that ran passed" if report["ok"] else \
        "FAILED: " + ", ".join(report["failed"])
    print(f"verify: {verdict} in {report['total_s']:.0f} s on {report['device']} -> {path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
