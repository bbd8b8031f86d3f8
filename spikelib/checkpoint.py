"""Checkpoints of a training run (saved atomically, loaded with an identity check) and the
trained weights a reader opens later.

A checkpoint is a dict of plain tensors, lists and numbers — model, optimizer and scheduler
states, the epochs' history, the run's ``identity`` (what must match to resume) and every RNG
state (``rng``: this process's; ``rng_ranks``: one per torchrun process) — so
``torch.load(weights_only=True)`` reads it. Another configuration, another number of processes
or a corrupt file is a ``ValueError``; nothing silently starts over.

Weights (:func:`save_weights`, :func:`load_weights`): parameters and buffers in the model's
dtype, its ``ModelConfig`` as a plain dict and a little metadata; no optimizer.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from spikelib._io import torch_save_atomic
from spikelib.resultfiles import to_plain

__all__ = ["save_checkpoint", "load_checkpoint", "restore", "rng_state", "set_rng_state",
           "save_weights", "load_weights", "FORMAT", "WEIGHTS_FORMAT"]

FORMAT = "spikelib-checkpoint-1"
WEIGHTS_FORMAT = "spikelib-weights-1"
_NEEDED = {"format", "identity", "epoch", "model", "optimizer", "scheduler", "rng", "history"}


def rng_state() -> dict:
    """Every RNG state of this process as tensors/lists (``weights_only`` safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": [version, list(internal), gauss]}


def set_rng_state(s: dict) -> None:
    """Restore :func:`rng_state`'s states; ValueError if it holds more GPUs' than are here."""
    if s["cuda"] and torch.cuda.is_available():
        if len(s["cuda"]) > torch.cuda.device_count():
            raise ValueError(f"rng_state: the checkpoint holds the CUDA random states of "
                             f"{len(s['cuda'])} GPUs, this process sees "
                             f"{torch.cuda.device_count()}; resume where at least as many are "
                             f"visible (CUDA_VISIBLE_DEVICES) to continue exactly")
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then
    ``os.replace``: a crash leaves the previous checkpoint or the new one, never half a file."""
    return torch_save_atomic({"format": FORMAT, **payload}, path)


def save_weights(path: str | os.PathLike, model, meta: dict | None = None) -> Path:
    """A trained model's weights, its config and ``meta`` (plain JSON-like values), atomically;
    read back with :func:`load_weights` (in the same dtype) or ``torch.load(path,
    weights_only=True)``."""
    dtype = next(model.parameters()).dtype
    return torch_save_atomic({"format": WEIGHTS_FORMAT, "model_config": model.cfg.to_dict(),
                              "dtype": str(dtype).removeprefix("torch."),
                              "state_dict": model.state_dict(),
                              "meta": to_plain(dict(meta or {}))}, path)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode, meta) from a :func:`save_weights` file; ValueError if it is not
    one or does not fit its own config."""
    from spikelib.models import ModelConfig, SequenceClassifier
    path = Path(path)
    try:
        w = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise ValueError(f"weights {path}: unreadable ({type(err).__name__}: {err})") from err
    if not isinstance(w, dict) or w.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"weights {path}: not a {WEIGHTS_FORMAT} file")
    dtype = getattr(torch, w.get("dtype", "float32"), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"weights {path}: unknown dtype {w.get('dtype')!r}")
    model = SequenceClassifier(ModelConfig.from_dict(w["model_config"])).to(device, dtype)
    try:
        model.load_state_dict(w["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"weights {path} do not fit their config ({err})") from err
    return model.eval(), w["meta"]


def load_checkpoint(path: str | os.PathLike, expected_identity: dict) -> dict:
    """Load and check a checkpoint; ValueError if it is corrupt, truncated or from another run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; run without --resume "
                                f"to start training")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, wrong file type ...
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: "
                         f"{err}); delete it and train again without --resume") from err
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or _NEEDED - set(ck):
        raise ValueError(f"checkpoint {path} is not a {FORMAT} file")
    old = ck["identity"]
    diff = sorted(k for k in set(old) | set(expected_identity)
                  if old.get(k) != expected_identity.get(k))
    if diff:
        detail = "; ".join(f"{k}: checkpoint {old.get(k)!r} vs now {expected_identity.get(k)!r}"
                           for k in diff)
        raise ValueError(f"checkpoint {path} was written by another configuration ({detail}). "
                         f"Use the same settings, another --run-name, or no --resume.")
    return ck


def restore(ck: dict, model, opt, sched, path: str | os.PathLike, rank: int = 0,
            world: int = 1) -> None:
    """Load model, optimizer and scheduler states and this process's RNG state from ``ck``
    (read by :func:`load_checkpoint`); ValueError if they do not fit or if the checkpoint was
    written by another number of processes (the random streams would not continue)."""
    ranks = ck.get("rng_ranks") or [ck["rng"]]
    if len(ranks) != world:
        raise ValueError(f"checkpoint {path} was written by {len(ranks)} process(es), this run "
                         f"has {world}; resume with the same number (torchrun "
                         f"--nproc_per_node/--nnodes) to continue exactly")
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"checkpoint {path} does not fit the model ({err})") from err
    set_rng_state(ranks[rank])
