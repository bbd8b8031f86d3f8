"""Training: ``train(RunConfig) -> dict`` for notebooks, ``python -m spikelib.train`` for shells.

The recipe (the S4 example's): AdamW, weight decay on weight matrices only, a cosine schedule,
bf16 autocast on CUDA. Per epoch: one pass over the seeded order, then on rank 0 validation,
probe, an atomic checkpoint (every RNG state: ``--resume`` continues exactly) and one console
line; at the end the test pass writes ``<results>/<run>.json``. A step never reads the device
back. An existing result or checkpoint stops a new run (``--resume`` / ``--overwrite``); the
run's name says what differs from the profile's default (``spikelib.config``). Under
``torchrun`` each process trains its shard of every global batch (``spikelib.distributed``)::

    python -m spikelib.train --model frssm --dataset fmnist --profile smoke --seed 0
    python -m spikelib.train --model frssm --profile cpu --results results   # the committed table
    torchrun --standalone --nproc_per_node=4 -m spikelib.train --model frssm --profile full
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikelib import data as sdata
from spikelib import diagnostics, metrics, refractory
from spikelib import distributed as D
from spikelib.checkpoint import load_checkpoint, restore, rng_state, save_checkpoint, save_weights
from spikelib.config import RunConfig, config_from_args, default_run_name, identity, resolve
from spikelib.device import peak_memory
from spikelib.models import build
from spikelib.provenance import provenance
from spikelib.resultfiles import write_result
from spikelib.temporal import finite_checks

__all__ = ["train", "main", "RunConfig", "evaluate", "train_epoch", "make_optimizer", "loss_fn",
           "epoch_order", "seed_of"]

PROBE_BATCH = 256   # validation sequences of the per-epoch diagnostics (diagnostics.probe)
LOG_EVERY = 50      # steps between reads of the running loss for a visible progress bar
# what each stretch of epochs run by one process records (``segments``: more than one if resumed)
SEGMENT_KEYS = ("commit", "dirty", "source_hash", "date", "device", "world_size")


def seed_of(*key: int) -> int:
    """A 63-bit seed drawn from numpy's SeedSequence(key)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch``: a permutation of range(n) from a torch.Generator seeded
    with ``seed_of(seed, epoch)`` — independent of every global RNG."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed_of(seed, epoch)))


def loss_fn(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(out.float().squeeze(-1), y.float())
    return F.cross_entropy(out.float(), y)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def make_optimizer(model, lr: float, weight_decay: float, total_steps: int,
                   device: torch.device | str | None = None):
    """AdamW over ``model.param_groups`` (fused kernels on CUDA) and a cosine schedule over
    ``total_steps``."""
    fused = True if device is not None and torch.device(device).type == "cuda" else None
    opt = torch.optim.AdamW(model.param_groups(lr, weight_decay), lr=lr,
                            weight_decay=weight_decay, fused=fused)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return opt, sched


@torch.no_grad()
def evaluate(model, ds: sdata.SequenceDataset, batch_size: int, task: str,
             device: torch.device | str = "cpu",
             counter: metrics.SpikeCounter | None = None) -> dict:
    """Mean loss (and accuracy for classification) of ``model`` on ``ds`` in eval mode; with a
    ``counter``, the spikes of every batch are added to it. Sums stay on the device."""
    device = torch.device(device)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct, n = torch.zeros((), dtype=torch.int64, device=device), 0
    for x, y in sdata.batches(ds, batch_size):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device):
            if counter is not None:
                out, spikes = model(x, return_spikes=True)
                counter.add(spikes)
            else:
                out = model(x)
        total += loss_fn(out, y, task).double() * len(y)
        if task == "classification":
            correct += (out.argmax(-1) == y).sum()
        n += len(y)
    return {"loss": total.item() / n,
            "acc": correct.item() / n if task == "classification" else None}


def train_epoch(model, opt, sched, ds: sdata.SequenceDataset, batch_size: int, task: str,
                order: torch.Tensor, device: torch.device, progress=None,
                ctx: D.Context = D.SINGLE, penalty=None, desc: str = "train") -> dict:
    """One pass over ``ds`` in ``order`` in global batches of ``batch_size``, of which this
    process trains its shard (:func:`spikelib.distributed.shard`); returns the mean train loss
    and accuracy over every process's examples.

    A shard's loss is weighted by its share of the global batch, so the averaged gradient is
    the global batch's mean even when a shorter last batch splits unevenly. ``penalty``
    (spikes -> a scalar, e.g. ``SequenceClassifier.rate_penalty``) is added to the optimised
    objective; the loss reported is the task's alone."""
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)      # Σ loss · examples
    correct, n = torch.zeros((), dtype=torch.int64, device=device), 0
    batches = order.to(ds.data.device).split(batch_size)      # indices moved once, not per step
    bar = _bar(progress, len(batches), desc)
    for step, batch in enumerate(batches):
        x, y = ds.batch(D.shard(batch, ctx))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device):
            out, spikes = model(x, return_spikes=True) if penalty else (model(x), None)
        loss = loss_fn(out, y, task)                              # reported: the task's loss
        objective = loss + penalty(spikes).to(loss.device) if penalty else loss
        share = len(y) * ctx.world / len(batch)                   # 1 but in an uneven last batch
        opt.zero_grad(set_to_none=True)
        (objective if share == 1 else objective * share).backward()
        opt.step()
        sched.step()
        total += loss.detach().double() * len(y)
        if task == "classification":
            correct += (out.argmax(-1) == y).sum()
        n += len(y)
        bar.update(1)
        if not bar.disable and (step + 1) % LOG_EVERY == 0:      # a host read, rarely
            bar.set_postfix(loss=f"{total.item() / n:.4f}", refresh=False)
    bar.close()
    sums = D.all_sum(torch.stack([total, correct.double(),
                                  torch.tensor(float(n), dtype=torch.float64, device=device)]),
                     ctx).tolist()
    return {"loss": sums[0] / sums[2],
            "acc": sums[1] / sums[2] if task == "classification" else None}


def _bar(progress, total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, disable=None if progress is None
                else not progress, dynamic_ncols=True)


def _check_fresh(cfg: RunConfig, run: str) -> None:
    """FileExistsError when a new run (no --resume, no --overwrite) would replace files."""
    if cfg.resume or cfg.overwrite:
        return
    for f in (Path(cfg.results) / f"{run}.json", Path(cfg.out) / run / "checkpoint.pt"):
        if f.exists():
            raise FileExistsError(f"{f} exists: pass --resume to continue that run, "
                                  f"--overwrite to replace it, or another --run-name")


def _duration(s: float) -> str:
    if s < 9.95:
        return f"{s:.1f}s"
    s = round(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def epoch_line(h: dict, epochs: int, remaining_s: float | None) -> str:
    """One console line per epoch: epoch n/N, losses and accuracy rounded, firing rate (the
    probe's mean over layers), the epoch's time and an estimate of the time left."""
    rates = [p["firing_rate"] for p in h.get("probe") or [] if p.get("firing_rate") is not None]
    parts = [f"epoch {h['epoch']}/{epochs}", f"train loss {h['train_loss']:.4f}"]
    parts.append(f"val acc {100 * h['val_acc']:.2f} %" if h.get("val_acc") is not None
                 else f"val loss {h['val_loss']:.4f}")
    if rates:
        parts.append(f"firing {sum(rates) / len(rates):.3f}")
    parts.append(f"{_duration(h['wall_s'])}")
    if remaining_s is not None:
        parts.append(f"~{_duration(remaining_s)} left")
    return " | ".join(parts)


def train(cfg: RunConfig, log: Callable[[str], None] | None = None) -> dict:
    """Train, evaluate and write ``<results>/<run_name>.json``; returns the result dict.

    With ``stop_after_epoch`` the run stops after that epoch's checkpoint and returns
    ``{"complete": False, ...}`` without writing a result file. A new run whose result file or
    checkpoint exists raises FileExistsError (see ``resume``, ``overwrite``). ``log``: called
    with one line per epoch (:func:`epoch_line`) on rank 0. Under torchrun every process calls
    this; rank 0 returns the result, the others ``{"complete": ..., "rank": r}``; the process
    group stays joined (:func:`main` leaves it). torch's thread count is restored on return.
    """
    cfg, mcfg = resolve(cfg)
    _check_fresh(cfg, cfg.run_name or default_run_name(cfg))
    ctx, device = D.setup(cfg.device, cfg.dist_timeout)   # joins torchrun's group, once
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        with finite_checks(False):
            return _train(cfg, mcfg, ctx, device, log)
    except RuntimeError as err:
        if not D.from_peer(err, ctx):
            raise
        raise D.PeerError(f"rank {ctx.rank} of {ctx.world}: a collective failed or waited "
                          f"longer than --dist-timeout {cfg.dist_timeout:g} s, so another "
                          f"process has failed or hangs (see its output): {err}") from err
    finally:
        torch.set_num_threads(threads)


def _train(cfg: RunConfig, mcfg, ctx: D.Context, device: torch.device, log=None) -> dict:
    prov = provenance(cfg.commit, device) | {"world_size": ctx.world}   # before anything runs
    run = cfg.run_name or default_run_name(cfg)
    run_dir = Path(cfg.out) / run
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.synthetic:
        splits = sdata.synthetic(cfg.dataset, seed=cfg.seed)
    else:
        splits = sdata.load(cfg.dataset, cfg.data_root, download=cfg.download,
                            verify=cfg.verify, length=cfg.length, seed=cfg.seed)
    splits = splits.limit(cfg.limit_train, cfg.limit_eval)
    task, n = splits.info.task, len(splits.train)
    D.check_batches(n, cfg.batch_size, ctx)
    if device.type == "cuda":
        splits = sdata.Splits(splits.train.to(device), splits.val.to(device),
                              splits.test.to(device), splits.info, splits.synthetic)
        torch.cuda.reset_peak_memory_stats(device)

    model = build(**mcfg.to_dict()).to(device)
    steps = math.ceil(n / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.epochs * steps, device)
    history, start, segments = [], 0, []
    if cfg.resume:
        ck = load_checkpoint(run_dir / "checkpoint.pt", identity(cfg, mcfg))
        restore(ck, model, opt, sched, run_dir / "checkpoint.pt", ctx.rank, ctx.world)
        history, start = list(ck["history"]), int(ck["epoch"])
        segments = list(ck.get("segments") or [{"epochs": [0, start]}])   # older checkpoints
    else:                   # the same global first batch on every rank, before DDP wraps it
        if ctx.main and (run_dir / "log.jsonl").exists():
            (run_dir / "log.jsonl").unlink()                 # a fresh run starts a fresh log
        first = epoch_order(n, cfg.seed, 0)[:cfg.batch_size]
        model.calibrate(splits.train.batch(first)[0].to(device))   # theta_init_mode='rms'
        if ctx.rank > 0:    # rank 0 keeps the single-process stream; the others their own
            torch.manual_seed(seed_of(cfg.seed, 1_000_003, ctx.rank))   # no epoch uses this key
    segments.append({"epochs": [start, start], **{k: prov[k] for k in SEGMENT_KEYS}})
    net = D.wrap(model, device, ctx)
    if cfg.compile:
        net = torch.compile(net)
    probe_x, probe_y = splits.val.batch(torch.arange(min(PROBE_BATCH, len(splits.val))))
    penalty = model.rate_penalty if model.penalises_rate else None
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        model.on_epoch(epoch, cfg.epochs)
        order = epoch_order(n, cfg.seed, epoch)
        tr = train_epoch(net, opt, sched, splits.train, cfg.batch_size, task, order, device,
                         cfg.progress if ctx.main else False, ctx, penalty,
                         desc=f"epoch {epoch + 1}/{cfg.epochs}")
        t_train = time.perf_counter() - t0
        rngs = D.gather(rng_state(), ctx)                        # every rank's random state
        segments[-1]["epochs"][1] = epoch + 1
        segments[-1]["fused_fallback"] = refractory.fused_fallback()   # Triton failed: why
        if ctx.main:
            va = evaluate(model, splits.val, cfg.batch_size, task, device)
            history.append({"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"],
                            "val_loss": va["loss"], "val_acc": va["acc"],
                            "lr": sched.get_last_lr()[0], "train_s": t_train,
                            "wall_s": time.perf_counter() - t0,
                            "probe": diagnostics.probe(model, probe_x.to(device),
                                                        probe_y.to(device), task)})
            save_checkpoint(run_dir / "checkpoint.pt", {
                "identity": identity(cfg, mcfg), "epoch": epoch + 1,
                "run_config": cfg.to_dict(), "model_config": mcfg.to_dict(),
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rngs[0], "rng_ranks": rngs,
                "history": history, "segments": segments})
            with open(run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(history[-1]) + "\n")
            if log is not None:
                done = history[start:]
                left = (cfg.epochs - epoch - 1) * sum(h["wall_s"] for h in done) / len(done)
                log(epoch_line(history[-1], cfg.epochs, left))
        if cfg.stop_after_epoch == epoch + 1 and epoch + 1 < cfg.epochs:
            return {"complete": False, "run": run, "rank": ctx.rank, "epochs_done": epoch + 1,
                    "history": history, "checkpoint": str(run_dir / "checkpoint.pt")}
    if not ctx.main:
        return {"complete": True, "run": run, "rank": ctx.rank}

    counter = metrics.SpikeCounter()
    te = evaluate(model, splits.test, cfg.batch_size, task, device, counter)
    ops = metrics.op_counts(model, counter.length or splits.info.length)
    spikes = counter.summary(ops["mix_fan_out"])
    spiking = ops["spiking"]
    result = {
        "run": run, "complete": True, "synthetic": splits.synthetic,
        "model": cfg.model, "dataset": cfg.dataset, "task": task, "profile": cfg.profile,
        "seed": cfg.seed, "config": cfg.to_dict(), "model_config": mcfg.to_dict(),
        "n_train": n, "n_val": len(splits.val), "n_test": len(splits.test),
        "history": history, "test_loss": te["loss"], "test_acc": te["acc"],
        "firing_rate": spikes["firing_rate"] if spiking else None,
        "integer_spikes": spikes["integer_spikes"] if spiking else None,
        "sops": spikes["sops"] if spiking else None,
        "energy": metrics.energy(ops, spikes["sops"] if spiking else None),   # whole_pJ
        "ops": ops, "params": sum(p.numel() for p in model.parameters()),
        "epoch_wall_s": [h["wall_s"] for h in history],
        "peak_memory": peak_memory(device),
        "provenance": prov | {"fused_fallback": refractory.fused_fallback()},
        "segments": segments,
    }
    if splits.synthetic:   # never report an accuracy (or a loss) on synthetic data
        for k in ("test_loss", "test_acc"):
            result[k] = None
        result["history"] = [{k: v for k, v in h.items() if "loss" not in k and "acc" not in k}
                             for h in history]
    if not splits.synthetic:        # the trained model, for readers (runs/<run>/weights.pt)
        result["weights"] = str(save_weights(run_dir / "weights.pt", model, {
            "run": run, "test_acc": te["acc"], "test_loss": te["loss"], "provenance": prov}))
    result["path"] = str(write_result(Path(cfg.results) / f"{run}.json", result))
    return result


def final_line(res: dict) -> str:
    """The last console line of a run: rounded test numbers, its time, the result file."""
    if res.get("test_acc") is not None:
        score = f"test loss {res['test_loss']:.4f}, test acc {100 * res['test_acc']:.2f} %"
    elif res.get("test_loss") is not None:
        score = f"test MSE {res['test_loss']:.4f}"
    else:
        score = "synthetic data: timing only"
    return (f"{res['run']}: {score}, {len(res['epoch_wall_s'])} epochs in "
            f"{_duration(sum(res['epoch_wall_s']))} -> {res['path']}")


def main(argv: list[str] | None = None) -> int:
    """``python -m spikelib.train`` (``spikelib-train``): 2 on a bad argument, 1 on a peer's
    failure under torchrun."""
    try:
        res = train(config_from_args(argv), log=lambda line: print(line, flush=True))
    except (ValueError, FileNotFoundError, FileExistsError, D.PeerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1 if isinstance(err, D.PeerError) else 2
    finally:
        D.teardown()
    if res.get("rank", 0) == 0 and not res["complete"]:
        print(f"stopped after epoch {res['epochs_done']}; checkpoint {res['checkpoint']}")
    elif res.get("rank", 0) == 0:
        print(final_line(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
