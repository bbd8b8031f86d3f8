"""Training: ``train(RunConfig) -> dict`` for notebooks, ``python -m spikelib.train`` for shells.

The recipe (the S4 example's, reported as our choice): AdamW, lr 0.01, weight decay 0.01 except
on θ, norms, biases, SSM and PSN parameters (SSM parameters keep their own lr 1e-3, see
``SequenceClassifier.param_groups``); a cosine schedule over the fixed total number of steps;
batch 64; bf16 autocast on CUDA (the FFT, kernels and scans stay fp32 inside the modules).

:func:`train` reads top to bottom: set up (process group, data, model, optimizer, resume), then
per epoch one pass over the seeded order and, on rank 0, validation, probe, checkpoint and log
line; at the end rank 0 tests and writes ``<results>/<run>.json``. A training step never waits
for the device: the data are checked once where they are loaded (``spikelib.data``), the loss
and accuracy sums stay on the device until the epoch ends, and AdamW is fused on CUDA.

Reproducibility: the epoch's shuffle comes from a ``torch.Generator`` seeded by (seed, epoch);
each epoch ends with an atomic checkpoint (``spikelib.checkpoint``) holding model, optimizer,
scheduler and every RNG state, so a run stopped with ``--stop-after-epoch N`` and continued with
``--resume`` ends with exactly the metrics of the uninterrupted run (on CPU).

Data parallel: under ``torchrun`` every process trains its share of each global batch of
``batch_size`` under ``DistributedDataParallel`` (``spikelib.distributed``); rank 0 alone
evaluates, probes and writes checkpoints and results. Configuration and the command line:
``spikelib.config``. Example::

    python -m spikelib.train --model frssm --dataset fmnist --profile smoke --seed 0
    python -m spikelib.train --model pssm --dataset cifar10 --profile full --set psn_order=16
    torchrun --standalone --nproc_per_node=4 -m spikelib.train --model frssm --profile full
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikelib import data as sdata
from spikelib import diagnostics, metrics
from spikelib import distributed as D
from spikelib._checks import finite_checks
from spikelib.checkpoint import load_checkpoint, restore, rng_state, save_checkpoint, save_weights
from spikelib.config import (  # noqa: F401
    FULL_EPOCHS,
    PROFILES,
    RunConfig,
    config_from_args,
    default_run_name,
    identity,
    resolve,
)
from spikelib.device import peak_memory
from spikelib.models import build
from spikelib.results import provenance, write_result

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
                ctx: D.Context = D.SINGLE, penalty=None) -> dict:
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
    bar = _bar(progress, len(batches), "train")
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


def train(cfg: RunConfig) -> dict:
    """Train, evaluate and write ``<results>/<run_name>.json``; returns the result dict.

    With ``stop_after_epoch`` the run stops after that epoch's checkpoint and returns
    ``{"complete": False, ...}`` without writing a result file. Under torchrun every process
    calls this; rank 0 returns the result, the others ``{"complete": ..., "rank": r}``. The
    process group stays joined for further calls (:func:`main` leaves it at the end). The data
    are checked once, on load (``spikelib.data``); the modules' NaN scans are off meanwhile.
    """
    cfg, mcfg = resolve(cfg)
    ctx, device = D.setup(cfg.device, cfg.dist_timeout)   # joins torchrun's group, once
    try:
        with finite_checks(False):
            return _train(cfg, mcfg, ctx, device)
    except RuntimeError as err:
        if not D.from_peer(err, ctx):
            raise
        raise D.PeerError(f"rank {ctx.rank} of {ctx.world}: a collective failed or waited "
                          f"longer than --dist-timeout {cfg.dist_timeout:g} s, so another "
                          f"process has failed or hangs (see its output): {err}") from err


def _train(cfg: RunConfig, mcfg, ctx: D.Context, device: torch.device) -> dict:
    prov = provenance(cfg.commit, device) | {"world_size": ctx.world}   # before anything runs
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
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
    probe_x, probe_y = splits.val.batch(torch.arange(min(PROBE_BATCH, len(splits.val))))
    penalty = model.rate_penalty if model.spiking and mcfg.rate_penalty > 0 else None
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        model.on_epoch(epoch, cfg.epochs)
        order = epoch_order(n, cfg.seed, epoch)
        tr = train_epoch(net, opt, sched, splits.train, cfg.batch_size, task, order, device,
                         cfg.progress if ctx.main else False, ctx, penalty)
        t_train = time.perf_counter() - t0
        rngs = D.gather(rng_state(), ctx)                        # every rank's random state
        segments[-1]["epochs"][1] = epoch + 1
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
        "energy": metrics.energy(ops, spikes["sops"] if spiking else None),
        "ops": ops, "params": sum(p.numel() for p in model.parameters()),
        "epoch_wall_s": [h["wall_s"] for h in history],
        "peak_memory": peak_memory(device),
        "provenance": prov, "segments": segments,
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


def main(argv: list[str] | None = None) -> int:
    try:
        res = train(config_from_args(argv))
    except (ValueError, FileNotFoundError, D.PeerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1 if isinstance(err, D.PeerError) else 2
    finally:
        D.teardown()
    if res.get("rank", 0) != 0:
        pass
    elif not res["complete"]:
        print(f"stopped after epoch {res['epochs_done']}; checkpoint {res['checkpoint']}")
    else:
        print(f"{res['run']}: test loss {res['test_loss']}, test acc {res['test_acc']}, "
              f"epoch wall s {[round(t, 1) for t in res['epoch_wall_s']]} -> {res['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
