"""What every benchmark script shares: its common flags, the device and thread set-up, the
provenance it records and the file it writes (``results/<stem>-<device>[-<profile>].json``)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from spikelib.results import device_name, device_slug, find_root, provenance, tf32_state
from spikelib.train import pick_device


def common_args(p: argparse.ArgumentParser, profiles=None, model_overrides: bool = False):
    """Add --device, --profile (when ``profiles``), --d-model/--n-layers/--d-state (when
    ``model_overrides``), --seed, --threads, --out and --commit to ``p``."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    if profiles:
        p.add_argument("--profile", choices=tuple(profiles), default=None,
                       help="default sizes; default: gpu on CUDA, else cpu")
    if model_overrides:
        for flag in ("--d-model", "--n-layers", "--d-state"):
            p.add_argument(flag, type=int, default=None, help="ModelConfig override")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default on CPU: 1 — the tensors are small, and "
                        "on a shared machine a second OpenMP thread stalls whenever a core is "
                        "busy)")
    p.add_argument("--out", default=None,
                   help="result folder, or a .json path (default <repo>/results)")
    p.add_argument("--commit", default=None, help="commit to record when there is no .git")
    return p


def setup(a: argparse.Namespace, script: str, argv: list[str] | None):
    """-> (command line, device, profile or None); sets torch's thread count."""
    command = ["python", *sys.argv] if argv is None else \
        ["python", f"benchmarks/{script}.py", *argv]
    device = pick_device(a.device)
    if a.threads or device.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    profile = None
    if hasattr(a, "profile"):
        profile = a.profile or ("gpu" if device.type == "cuda" else "cpu")
    return command, device, profile


def record(a: argparse.Namespace, device: torch.device, command: list[str]) -> dict:
    """The fields every benchmark file has: device, TF32 switches (as found; none is changed),
    thread count, load average (a busy machine times slow), seed and provenance."""
    return {"device": device_name(device), "device_type": device.type, "tf32": tf32_state(),
            "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "seed": a.seed, "provenance": provenance(a.commit, device, argv=command)
            | {"seed": a.seed}}


def result_path(a: argparse.Namespace, stem: str, device: torch.device,
                profile: str | None = None) -> Path:
    """``--out`` if it names a .json file, else ``<out or repo/results>/<stem>-<device>.json``
    (``-<profile>`` appended for profiles other than the default gpu/cpu)."""
    if a.out and a.out.endswith(".json"):
        return Path(a.out)
    folder = Path(a.out) if a.out else find_root(Path(__file__).parent) / "results"
    return folder / f"{run_stem(stem, device, profile)}.json"


def run_stem(stem: str, device: torch.device, profile: str | None = None) -> str:
    """``<stem>-<device>``, with ``-<profile>`` for profiles other than the default gpu/cpu."""
    suffix = "" if profile in (None, "gpu", "cpu") else f"-{profile}"
    return f"{stem}-{device_slug(device)}{suffix}"
