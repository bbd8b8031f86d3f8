"""Time one training run's steps before it is launched: the runbook's probe (gpu/runbook.sh).

The runbook starts one probe per planned Fashion-MNIST run, all at once, with the arguments it
will later give ``python -m spikelib.train`` (after ``--``; ``--epochs`` is left out, the plan
picks it). A probe builds what that command would train — the same ``RunConfig``, resolved by
``spikelib.config.resolve``, the real data on the device, ``model.calibrate``, the optimizer of
``spikelib.train.make_optimizer`` — and times, then throws everything away:

    warm-up   ``--warmup`` training steps, one evaluation batch, one diagnostics call (FFT
              plans, the Triton kernel, the allocator), untimed
    phase A   ``--steps`` training steps (``spikelib.train.train_epoch`` over that many batches
              of epoch 0's order: the training loop itself), ``--eval-batches`` test batches
              through ``spikelib.train.evaluate`` with a spike counter (the end-of-run test pass;
              the per-epoch validation pass does less), one ``spikelib.diagnostics.probe`` call
              (run once per epoch)
    phase B   (``--phase-b N``) the same again, once N probes (the main runs and the
              ablation: the lif probe is not waited for) have finished phase A

Phase A starts when every probe of the stage is warm (a file barrier in ``--sync``), so its
times are those of all runs sharing the device; phase B, for the main runs only, times them
without the refractory ablation (the lif probe, launch-bound, may still be finishing). Each
block is timed with the clock of ``torch.utils.benchmark`` (:func:`clock`: it waits for the
device first). ``startup_s`` is the time from ``--launched`` (the runbook's clock when it
started the process) until the model was built and calibrated — what a training process spends
before its first step.

Writes ``--report`` (JSON): the measured times, the run's size (steps per epoch, validation and
test batches) and ``ok``; on an error ``ok: false`` and the error, exit status 1. Timing only:
no result file, no checkpoint, no accuracy.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path


def clock() -> float:
    """Seconds now, after waiting for queued CUDA work (``torch.utils.benchmark.timer``)."""
    import torch.utils.benchmark
    return torch.utils.benchmark.timer()


def barrier(folder: Path, tag: str, name: str, expect: int, timeout: float) -> dict:
    """Mark ``name`` as having reached ``tag`` and wait until ``expect`` processes have (or
    ``timeout`` seconds pass: a process that died never arrives)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{tag}.{name}").touch()
    t0 = time.monotonic()
    while True:
        arrived = len(list(folder.glob(f"{tag}.*")))
        if arrived >= expect or time.monotonic() - t0 > timeout:
            return {"waited_s": time.monotonic() - t0, "arrived": arrived, "expected": expect}
        time.sleep(0.05)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                usage="%(prog)s [options] -- <python -m spikelib.train arguments>")
    p.add_argument("--name", required=True, help="the run's name (report and barrier files)")
    p.add_argument("--role", choices=("main", "ablation", "lif"), default="main")
    p.add_argument("--report", required=True, help="JSON file to write")
    p.add_argument("--sync", required=True, help="barrier folder shared by the stage's probes")
    p.add_argument("--expect", type=int, required=True, help="probes in phase A")
    p.add_argument("--phase-b", type=int, default=0, metavar="N",
                   help="main runs: time phase B once N probes (the main and ablation runs; "
                        "lif is not waited for) have finished phase A")
    p.add_argument("--launched", type=float, default=None,
                   help="time.time() when the process was started (default: now)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a phase's training steps after this long (checked between steps; "
                        "one step at a time then, for slow models such as lif)")
    p.add_argument("--barrier-timeout", type=float, default=60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        parser().error("the training arguments follow '--'")
    cut = argv.index("--")
    a = parser().parse_args(argv[:cut])
    train_args = argv[cut + 1:]
    launched = time.time() if a.launched is None else a.launched
    report = {"name": a.name, "role": a.role, "train_args": train_args, "ok": False}
    sync = Path(a.sync)
    try:
        report |= probe(a, train_args, launched, sync)
        report["ok"] = True
    except (Exception, SystemExit) as err:    # noqa: BLE001 (reported; argparse exits)
        report["error"] = f"{type(err).__name__}: {err}"
        report["traceback"] = traceback.format_exc()
        print(report["traceback"], file=sys.stderr)
        sync.mkdir(parents=True, exist_ok=True)
        for tag in ("ready", "done-a"):        # never make the other probes wait for this one
            if tag == "ready" or a.role != "lif":
                (sync / f"{tag}.{a.name}").touch()
    Path(a.report).parent.mkdir(parents=True, exist_ok=True)
    Path(a.report).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{a.name}: {'ok' if report['ok'] else 'FAILED ' + report['error']}; "
          f"startup {report.get('startup_s', float('nan')):.1f} s -> {a.report}")
    return 0 if report["ok"] else 1


def probe(a, train_args: list[str], launched: float, sync: Path) -> dict:
    import torch

    from spikelib import data as sdata
    from spikelib import diagnostics, metrics
    from spikelib.config import config_from_args, default_run_name, resolve
    from spikelib.device import device_name, pick_device
    from spikelib.models import build
    from spikelib.train import PROBE_BATCH, epoch_order, evaluate, make_optimizer, train_epoch

    cfg, mcfg = resolve(config_from_args(train_args))
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    splits = (sdata.synthetic(cfg.dataset, seed=cfg.seed) if cfg.synthetic else
              sdata.load(cfg.dataset, cfg.data_root, length=cfg.length, seed=cfg.seed))
    splits = splits.limit(cfg.limit_train, cfg.limit_eval)
    if device.type == "cuda":
        splits = sdata.Splits(splits.train.to(device), splits.val.to(device),
                              splits.test.to(device), splits.info, splits.synthetic)
    task, n, B = splits.info.task, len(splits.train), cfg.batch_size
    per_epoch = math.ceil(n / B)
    model = build(**mcfg.to_dict()).to(device)
    opt, sched = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.epochs * per_epoch, device)
    order = epoch_order(n, cfg.seed, 0)
    model.calibrate(splits.train.batch(order[:B])[0].to(device))
    startup = time.time() - launched

    cursor = [0]

    def take(k: int):                      # the next k batches of epoch 0's order, wrapping
        idx = torch.arange(cursor[0], cursor[0] + k * B) % n
        cursor[0] = (cursor[0] + k * B) % n
        return order[idx]

    eval_set = splits.test.head(max(a.eval_batches, 1) * B)
    probe_x, probe_y = splits.val.batch(torch.arange(min(PROBE_BATCH, len(splits.val))))
    probe_x, probe_y = probe_x.to(device), probe_y.to(device)

    def train_steps(k: int) -> dict:
        if k < 1:
            return {"steps": 0, "train_step_s": None}
        start = clock()
        done = 0
        while done < k:
            one = 1 if a.max_seconds else k       # the loop itself, or one step at a time
            train_epoch(model, opt, sched, splits.train, B, task, take(one), device,
                        progress=False)
            done += one
            if a.max_seconds and clock() - start > a.max_seconds:
                break
        return {"steps": done, "train_step_s": (clock() - start) / done}

    def phase(tag: str) -> dict:
        t0 = clock()
        out = train_steps(a.steps)
        t = clock()
        evaluate(model, eval_set, B, task, device, metrics.SpikeCounter())
        out["eval_batches"] = math.ceil(len(eval_set) / B)
        out["eval_batch_s"] = (clock() - t) / out["eval_batches"]
        t = clock()
        diagnostics.probe(model, probe_x, probe_y, task)
        out["diag_s"] = clock() - t
        out["wall_s"] = clock() - t0
        print(f"{a.name} phase {tag}: {out['train_step_s'] * 1e3:.1f} ms/step over "
              f"{out['steps']} steps, {out['eval_batch_s'] * 1e3:.1f} ms/eval batch, "
              f"diagnostics {out['diag_s']:.2f} s", flush=True)
        return out

    train_steps(a.warmup)                                     # untimed: plans, kernels
    evaluate(model, splits.test.head(B), B, task, device, metrics.SpikeCounter())
    diagnostics.probe(model, probe_x, probe_y, task)
    phases = {}
    waits = {"ready": barrier(sync, "ready", a.name, a.expect, a.barrier_timeout)}
    phases["A"] = phase("A")
    if a.role != "lif":                      # phase B does not wait for the slow lif probe
        waits["done-a"] = barrier(sync, "done-a", a.name, a.phase_b, a.barrier_timeout)
    if a.phase_b:
        phases["B"] = phase("B")
    return {"run_name": cfg.run_name or default_run_name(cfg), "model": cfg.model,
            "device": device_name(device), "device_type": device.type,
            "startup_s": startup, "batch_size": B, "n_train": n, "steps_per_epoch": per_epoch,
            "val_batches": math.ceil(len(splits.val) / B),
            "test_batches": math.ceil(len(splits.test) / B), "phases": phases,
            "barriers": waits, "warmup_steps": a.warmup}


if __name__ == "__main__":
    sys.exit(main())
