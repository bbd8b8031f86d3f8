"""Training: ``train(RunConfig) -> dict`` for notebooks, ``python -m spikelib.train`` for shells.

The recipe (the S4 example's, reported as our choice): AdamW, lr 0.01, weight decay 0.01 except
on θ, norms, biases, SSM and PSN parameters (SSM parameters keep their own lr 1e-3, see
``SequenceClassifier.param_groups``); a cosine schedule over the fixed total number of steps;
batch 64; bf16 autocast on CUDA (the FFT, kernels and scans stay fp32 inside the modules).

Reproducibility: the epoch's shuffle comes from a ``torch.Generator`` seeded by (seed, epoch);
each epoch ends with an atomic checkpoint holding model, optimizer, scheduler and every RNG
state as plain tensors/lists, so ``torch.load(weights_only=True)`` reads it. A run stopped with
``--stop-after-epoch N`` and continued with ``--resume`` ends with exactly the metrics of the
uninterrupted run (on CPU). A checkpoint from another configuration, or a corrupt file, is a
``ValueError``; nothing silently starts over.

Profiles (``--profile``, default ``$SPIKELIB_PROFILE``, else ``smoke``):

- ``smoke``: a small model (d_model 32, 2 layers, d_state 16) on 512 training and 256 val/test
  sequences for 2 epochs — seconds on a CPU; checks the pipeline, measures nothing.
- ``cpu``: the same small model on the whole dataset for 3 epochs — 13–21 minutes per model
  on one CPU core (sequential Fashion-MNIST, measured for s4d, frssm, pssm, ddsn, sif); real
  numbers of a small model trained briefly.
- ``full``: the model defaults (d_model 128, 4 layers, d_state 64), the whole dataset and
  ``FULL_EPOCHS`` — the runs the book reports as results; hours per epoch without a GPU.

Example::

    python -m spikelib.train --model frssm --dataset fmnist --profile smoke --seed 0
    python -m spikelib.train --model pssm --dataset cifar10 --profile full --set psn_order=16
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import resource
import sys
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikelib import data as sdata
from spikelib import metrics
from spikelib.models import MODELS, ModelConfig, build
from spikelib.results import provenance, write_result

SMALL_MODEL = {"d_model": 32, "n_layers": 2, "d_state": 16}
PROFILES = {     # epochs None: FULL_EPOCHS[dataset]; limits None: the whole split
    "smoke": {"epochs": 2, "limit_train": 512, "limit_eval": 256, "model": SMALL_MODEL},
    "cpu": {"epochs": 3, "limit_train": None, "limit_eval": None, "model": SMALL_MODEL},
    "full": {"epochs": None, "limit_train": None, "limit_eval": None, "model": {}},
}
PROBE_BATCH = 256   # validation sequences of the per-epoch diagnostics (SequenceClassifier.probe)
FULL_EPOCHS = {"fmnist": 20, "cifar10": 100, "cifar10-grey": 100, "adding": 30}
CKPT_FORMAT = "spikelib-checkpoint-1"
# RunConfig fields that do not change what is computed (may differ on --resume).
_OPERATIONAL = {"device", "out", "results", "run_name", "resume", "stop_after_epoch", "commit",
                "data_root", "download", "progress", "threads"}


@dataclass
class RunConfig:
    """One training run. ``None`` fields take the profile's default in :func:`resolve`."""
    model: str = "frssm"
    dataset: str = "fmnist"
    model_config: dict = field(default_factory=dict)  # ModelConfig overrides (e.g. d_model=64)
    profile: str | None = None       # 'smoke' | 'cpu' | 'full'; None: $SPIKELIB_PROFILE, else 'smoke'
    seed: int = 0
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.01
    limit_train: int | None = None   # first N training sequences (after the seeded split)
    limit_eval: int | None = None    # first N val and N test sequences
    length: int | None = None        # sequence length of 'adding'
    synthetic: bool = False          # SYNTHETIC full-size tensors: timing only, no accuracy
    verify: bool = True              # False: read CIFAR pickles without torchvision's MD5 check
    device: str = "auto"             # 'auto' | 'cpu' | 'cuda' | 'cuda:1' ...
    out: str = "runs"                # checkpoints and logs: <out>/<run_name>/
    results: str = "results"         # <results>/<run_name>.json
    run_name: str | None = None      # default: default_run_name(cfg)
    resume: bool = False
    stop_after_epoch: int | None = None
    commit: str | None = None        # recorded when there is no .git
    data_root: str | None = None     # default $SPIKELIB_DATA, else ./data
    download: bool = False           # allow torchvision to download (needs internet)
    progress: bool | None = None     # tqdm bars; None: only on a TTY
    threads: int | None = None       # torch.set_num_threads on CPU

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"RunConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def _profile(cfg: RunConfig) -> str:
    """The run's profile: ``cfg.profile``, else ``$SPIKELIB_PROFILE``, else 'smoke'."""
    return cfg.profile or os.environ.get("SPIKELIB_PROFILE") or "smoke"


def resolve(cfg: RunConfig) -> tuple[RunConfig, ModelConfig]:
    """Fill the profile defaults and build the :class:`ModelConfig`; validates everything."""
    profile = _profile(cfg)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {tuple(PROFILES)}, got {profile!r}")
    if cfg.model not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {cfg.model!r}")
    if cfg.dataset not in sdata.DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(sdata.DATASETS)}, "
                         f"got {cfg.dataset!r}")
    prof = PROFILES[profile]
    c = dataclasses.replace(
        cfg, profile=profile,
        epochs=_default(cfg.epochs, prof["epochs"] or FULL_EPOCHS[cfg.dataset]),
        limit_train=_default(cfg.limit_train, prof["limit_train"]),
        limit_eval=_default(cfg.limit_eval, prof["limit_eval"]),
        length=_default(cfg.length, sdata.ADDING_LENGTH) if cfg.dataset == "adding" else None)
    for name in ("limit_train", "limit_eval", "length", "threads"):
        v = getattr(c, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected a positive integer or None, got {v!r}")
    for name in ("epochs", "batch_size", "seed"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
            raise ValueError(f"{name}: expected an integer >= {0 if name == 'seed' else 1}, "
                             f"got {v!r}")
    for name in ("lr", "weight_decay"):
        if not (isinstance(getattr(c, name), (int, float)) and getattr(c, name) >= 0):
            raise ValueError(f"{name}: expected a number >= 0, got {getattr(c, name)!r}")
    if c.stop_after_epoch is not None and not 1 <= c.stop_after_epoch <= c.epochs:
        raise ValueError(f"stop_after_epoch: expected 1..{c.epochs}, got {c.stop_after_epoch}")
    info = sdata.info(c.dataset, c.length)
    fixed = {"name": c.model, "d_input": info.d_input, "n_classes": info.n_classes}
    for k, v in fixed.items():
        if k in c.model_config and c.model_config[k] != v:
            raise ValueError(f"model_config: {k}={c.model_config[k]!r} contradicts "
                             f"--model/--dataset ({v!r})")
    base = dict(prof["model"])
    if c.dataset == "adding":
        base["readout"] = "last"           # the sum is known only after the second marker
    base["seq_len"] = info.length          # used only by the masked PSN (weights T×T)
    mcfg = ModelConfig.from_dict({**asdict(ModelConfig()), **base, **c.model_config, **fixed})
    return c, mcfg.validate()


def default_run_name(cfg: RunConfig) -> str:
    """``<dataset>-<model>-<profile>-s<seed>``, then ``-<key>=<value>`` for each model-config
    override (sorted), then ``-synthetic`` for synthetic data: an ablation such as
    ``--set refractory=4`` gets its own checkpoints and results file instead of overwriting the
    default run's."""
    sets = "".join(f"-{k}={re.sub(r'[^A-Za-z0-9._-]+', '_', str(v))}"
                   for k, v in sorted(cfg.model_config.items()))
    profile = _profile(cfg)
    return f"{cfg.dataset}-{cfg.model}-{profile}-s{cfg.seed}{sets}" + \
        ("-synthetic" if cfg.synthetic else "")


def _default(value, default):
    return default if value is None else value


def identity(cfg: RunConfig, mcfg: ModelConfig) -> dict:
    """What must match for a checkpoint to be resumed: the computation, not the bookkeeping."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _OPERATIONAL}
    d["model_config"] = mcfg.to_dict()
    return d


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return dev


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch``: a permutation of range(n) from a torch.Generator seeded
    with numpy's SeedSequence((seed, epoch)) — independent of every global RNG."""
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(s))


def loss_fn(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(out.float().squeeze(-1), y.float())
    return F.cross_entropy(out.float(), y)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate(model, ds: sdata.SequenceDataset, batch_size: int, task: str,
             device: torch.device | str = "cpu",
             counter: metrics.SpikeCounter | None = None) -> dict:
    """Mean loss (and accuracy for classification) of ``model`` on ``ds`` in eval mode; with a
    ``counter``, the spikes of every batch are added to it."""
    device = torch.device(device)
    model.eval()
    total, correct, n = 0.0, 0, 0
    for x, y in sdata.batches(ds, batch_size):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device):
            if counter is not None:
                out, spikes = model(x, return_spikes=True)
                counter.add(spikes)
            else:
                out = model(x)
        total += loss_fn(out, y, task).item() * len(y)
        if task == "classification":
            correct += (out.argmax(-1) == y).sum().item()
        n += len(y)
    return {"loss": total / n, "acc": correct / n if task == "classification" else None}


def train_epoch(model, opt, sched, ds: sdata.SequenceDataset, batch_size: int, task: str,
                order: torch.Tensor, device: torch.device, progress=None) -> dict:
    """One pass over ``ds`` in ``order``; returns mean train loss and accuracy."""
    model.train()
    total, correct, n = 0.0, 0, 0
    bar = _bar(progress, math.ceil(len(order) / batch_size), "train")
    for x, y in sdata.batches(ds, batch_size, order=order):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device):
            out = model(x)
        loss = loss_fn(out, y, task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(y)
        if task == "classification":
            correct += (out.argmax(-1) == y).sum().item()
        n += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
    bar.close()
    return {"loss": total / n, "acc": correct / n if task == "classification" else None}


def _bar(progress, total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, disable=None if progress is None
                else not progress, dynamic_ncols=True)


def make_optimizer(model, lr: float, weight_decay: float, total_steps: int):
    """AdamW over ``model.param_groups`` and a cosine schedule over ``total_steps``."""
    opt = torch.optim.AdamW(model.param_groups(lr, weight_decay), lr=lr,
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return opt, sched


# ---------------------------------------------------------------------------------------------
# checkpoints

def rng_state() -> dict:
    """Every RNG state as tensors/lists (``torch.load(weights_only=True)`` safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": [version, list(internal), gauss]}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temporary file beside ``path``, then os.replace (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected_identity: dict) -> dict:
    """Load and check a checkpoint; ValueError if it is corrupt, truncated or from another run."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; run without --resume "
                                f"to start training")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, wrong file type ...
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: "
                         f"{err}); delete it and train again without --resume") from err
    need = {"format", "identity", "epoch", "model", "optimizer", "scheduler", "rng", "history"}
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT or need - set(ck):
        raise ValueError(f"checkpoint {path} is not a {CKPT_FORMAT} file")
    old = ck["identity"]
    diff = sorted(k for k in set(old) | set(expected_identity)
                  if old.get(k) != expected_identity.get(k))
    if diff:
        detail = "; ".join(f"{k}: checkpoint {old.get(k)!r} vs now {expected_identity.get(k)!r}"
                           for k in diff)
        raise ValueError(f"checkpoint {path} was written by another configuration ({detail}). "
                         f"Use the same settings, another --run-name, or no --resume.")
    return ck


# ---------------------------------------------------------------------------------------------

def train(cfg: RunConfig) -> dict:
    """Train, evaluate and write ``<results>/<run_name>.json``; returns the result dict.

    With ``stop_after_epoch`` the run stops after that epoch's checkpoint and returns
    ``{"complete": False, ...}`` without writing a result file.
    """
    cfg, mcfg = resolve(cfg)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = cfg.run_name or default_run_name(cfg)
    run_dir = Path(cfg.out) / run
    ident = identity(cfg, mcfg)

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.synthetic:
        splits = sdata.synthetic(cfg.dataset, seed=cfg.seed)
    else:
        splits = sdata.load(cfg.dataset, cfg.data_root, download=cfg.download,
                            verify=cfg.verify, length=cfg.length, seed=cfg.seed)
    splits = splits.limit(cfg.limit_train, cfg.limit_eval)
    task = splits.info.task
    if device.type == "cuda":
        splits = sdata.Splits(splits.train.to(device), splits.val.to(device),
                              splits.test.to(device), splits.info, splits.synthetic)
        torch.cuda.reset_peak_memory_stats(device)

    model = build(**mcfg.to_dict()).to(device)
    steps = math.ceil(len(splits.train) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.epochs * steps)
    history, start = [], 0
    if cfg.resume:
        ck = load_checkpoint(run_dir / "checkpoint.pt", ident)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise ValueError(f"checkpoint {run_dir / 'checkpoint.pt'} does not fit the model "
                             f"({err})") from err
        set_rng_state(ck["rng"])
        history, start = list(ck["history"]), int(ck["epoch"])

    if start == 0 and (run_dir / "log.jsonl").exists():
        (run_dir / "log.jsonl").unlink()                 # a fresh run starts a fresh log
    run_dir.mkdir(parents=True, exist_ok=True)
    if start == 0:          # data-dependent θ (theta_init_mode='rms'): the first training batch
        first = epoch_order(len(splits.train), cfg.seed, 0)[:cfg.batch_size]
        model.calibrate(splits.train.batch(first)[0].to(device))
    probe_x, probe_y = splits.val.batch(torch.arange(min(PROBE_BATCH, len(splits.val))))
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        if hasattr(model, "on_epoch"):
            model.on_epoch(epoch, cfg.epochs)
        order = epoch_order(len(splits.train), cfg.seed, epoch)
        tr = train_epoch(model, opt, sched, splits.train, cfg.batch_size, task, order, device,
                         cfg.progress)
        t_train = time.perf_counter() - t0
        va = evaluate(model, splits.val, cfg.batch_size, task, device)
        history.append({"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"],
                        "val_loss": va["loss"], "val_acc": va["acc"],
                        "lr": sched.get_last_lr()[0], "train_s": t_train,
                        "wall_s": time.perf_counter() - t0,
                        "probe": model.probe(probe_x.to(device), probe_y.to(device), task)})
        save_checkpoint(run_dir / "checkpoint.pt", {
            "format": CKPT_FORMAT, "identity": ident, "epoch": epoch + 1,
            "run_config": cfg.to_dict(), "model_config": mcfg.to_dict(),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng_state(), "history": history})
        with open(run_dir / "log.jsonl", "a") as f:
            f.write(_json_line(history[-1]))
        if cfg.stop_after_epoch is not None and epoch + 1 == cfg.stop_after_epoch \
                and epoch + 1 < cfg.epochs:
            return {"complete": False, "run": run, "epochs_done": epoch + 1, "history": history,
                    "checkpoint": str(run_dir / "checkpoint.pt")}

    prov = provenance(cfg.commit, device)
    counter = metrics.SpikeCounter()
    te = evaluate(model, splits.test, cfg.batch_size, task, device, counter)
    length = counter.length or splits.info.length
    ops = model.op_counts(length)
    spikes = counter.summary(ops["mix_fan_out"])
    result = {
        "run": run, "complete": True, "synthetic": splits.synthetic,
        "model": cfg.model, "dataset": cfg.dataset, "task": task, "profile": cfg.profile,
        "seed": cfg.seed, "config": cfg.to_dict(), "model_config": mcfg.to_dict(),
        "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
        "history": history, "test_loss": te["loss"], "test_acc": te["acc"],
        "firing_rate": spikes["firing_rate"] if ops["spiking"] else None,
        "integer_spikes": spikes["integer_spikes"] if ops["spiking"] else None,
        "sops": spikes["sops"] if ops["spiking"] else None,
        "energy": metrics.energy(ops, spikes["sops"] if ops["spiking"] else None),
        "ops": ops, "params": sum(p.numel() for p in model.parameters()),
        "epoch_wall_s": [h["wall_s"] for h in history],
        "peak_memory": _peak_memory(device),
        "provenance": prov,
    }
    if splits.synthetic:   # never report an accuracy (or a loss) on synthetic data
        for k in ("test_loss", "test_acc"):
            result[k] = None
        result["history"] = [{k: v for k, v in h.items() if "loss" not in k and "acc" not in k}
                             for h in history]
    result["path"] = str(write_result(Path(cfg.results) / f"{run}.json", result))
    return result


def _json_line(d: dict) -> str:
    return json.dumps(d) + "\n"


def _peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": torch.cuda.max_memory_allocated(device)}
    return {"kind": "process_peak_rss",
            "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# ---------------------------------------------------------------------------------------------
# command line

def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value typed by the ModelConfig field); ValueError if unknown."""
    if "=" not in text:
        raise ValueError(f"--set: expected key=value, got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    hints = typing.get_type_hints(ModelConfig)
    if key not in hints:
        raise ValueError(f"--set: unknown model field {key!r}; fields: {', '.join(hints)}")
    kind = hints[key]
    options = typing.get_args(kind) or (kind,)
    if raw.lower() == "none" and type(None) in options:
        return key, None
    for t in options:
        if t is bool:
            if raw.lower() in ("true", "1", "yes", "false", "0", "no"):
                return key, raw.lower() in ("true", "1", "yes")
        elif t in (int, float, str):
            try:
                return key, t(raw)
            except ValueError:
                continue
    raise ValueError(f"--set: {key}={raw!r} is not a valid {kind}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spikelib.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = RunConfig()
    p.add_argument("--model", default=d.model, choices=MODELS)
    p.add_argument("--dataset", default=d.dataset, choices=sdata.DATASETS)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ModelConfig field, e.g. --set d_model=64 (repeatable)")
    p.add_argument("--profile", choices=tuple(PROFILES), default=None,
                   help="default: $SPIKELIB_PROFILE, else smoke")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=None, help="default: from the profile")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-eval", type=int, default=None)
    p.add_argument("--length", type=int, default=None, help="sequence length of 'adding'")
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=d.out, help="checkpoints and logs")
    p.add_argument("--results", default=d.results, help="result JSON folder")
    p.add_argument("--run-name", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-after-epoch", type=int, default=None)
    p.add_argument("--commit", default=None, help="commit to record when there is no .git")
    p.add_argument("--data-root", default=None, help="default: $SPIKELIB_DATA, else ./data")
    p.add_argument("--download", action="store_true", help="let torchvision download data")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read CIFAR pickles without the MD5 check (generated fixtures only)")
    p.add_argument("--synthetic", action="store_true",
                   help="SYNTHETIC full-size random data: timing only, no accuracy reported")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def config_from_args(argv: list[str] | None = None) -> RunConfig:
    a = vars(parser().parse_args(argv))
    a["model_config"] = dict(parse_override(s) for s in a.pop("overrides"))
    return RunConfig(**a)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
        res = train(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not res["complete"]:
        print(f"stopped after epoch {res['epochs_done']}; checkpoint {res['checkpoint']}")
    else:
        acc = res["test_acc"]
        print(f"{res['run']}: test loss {res['test_loss']}, test acc {acc}, "
              f"epoch wall s {[round(t, 1) for t in res['epoch_wall_s']]} -> {res['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
