"""What every benchmark script shares: its common flags, the device and thread set-up, the
timer, the provenance it records and the file it writes
(``results/<stem>-<device>[-<profile>].json``)."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

from spikelib.device import device_name, pick_device
from spikelib.results import find_root, provenance


def measure(fn, repeats: int) -> benchmark.Measurement:
    """Time ``fn()`` with ``torch.utils.benchmark.Timer``: it keeps the script's thread count,
    warms up (two calls), synchronises CUDA around the timed block and returns the mean of
    ``repeats`` calls (``.mean``; ``.times`` holds it too)."""
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(repeats)


def clock() -> float:
    """Seconds now, after waiting for queued CUDA work: ``torch.utils.benchmark.timer``. The
    difference of two calls times a region that is not one repeated statement (a sequence of
    distinct training steps)."""
    return benchmark.timer()


def tf32_state() -> dict:
    """The TF32 switches as found (benchmarks record them and change none)."""
    return {"cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def device_slug(device: str | torch.device) -> str:
    """'cpu', or the GPU's name in lower case with dashes: the suffix of benchmark files."""
    if torch.device(device).type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


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
