"""Provenance and the ``results/*.json`` files the book reads.

Every number the book shows comes from a JSON file written by :func:`write_result` (atomically:
a temporary file in the same folder, then ``os.replace``) and read back with
:func:`load_results`. :func:`provenance` records where a number came from — commit, dirty flag,
command line, device, library versions — and deliberately no host name or user name.
"""
from __future__ import annotations

import datetime
import glob
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str, cwd: str | os.PathLike = _PACKAGE_DIR) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str | torch.device | None = None) -> str:
    """GPU name for a CUDA device, else the CPU model."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_name()


def git_changes(cwd: str | os.PathLike = _PACKAGE_DIR) -> str | None:
    """``git status --porcelain`` of the tracked files outside the top-level ``results/`` of the
    checkout holding ``cwd`` ('' when clean, None without git)."""
    return _git("status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)results",
                cwd=cwd)


def provenance(commit: str | None = None, device: str | torch.device | None = None,
               argv: list[str] | None = None) -> dict:
    """Where a result came from.

    ``commit``: ``git rev-parse HEAD`` of the spikelib checkout, else the given value (the CLI's
    ``--commit``, for a copy without ``.git``), else ``"unknown"``; an explicit value wins.
    ``dirty``: uncommitted changes to tracked files outside ``results/`` (None when git is
    unavailable) — the results a run writes do not make the next run dirty.
    ``command``: ``argv`` (default: the process's command line, interpreter path shortened to
    ``python``). No host or user name is recorded.
    """
    if argv is None:        # the interpreter as typed: ``python -m spikelib.train ...``
        argv = ["python", *getattr(sys, "orig_argv", sys.argv)[1:]]
    head = _git("rev-parse", "HEAD")
    status = git_changes() if head else None
    return {
        "commit": commit or head or "unknown",
        "dirty": None if status is None else bool(status),
        "command": shlex.join(argv),
        "device": device_name(device),
        "device_type": torch.device(device).type if device is not None else "cpu",
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _plain(obj):
    """Tensors, numpy scalars, tuples, paths -> JSON types; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):          # numpy scalar
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


REQUIRED_PROVENANCE = ("commit", "device", "command")


def check_result(data: dict, where: str = "result") -> dict:
    """Raise ``ValueError`` unless ``data['provenance']`` names its commit, device and command
    (what :func:`provenance` writes); returns ``data``. Every results file must say where it
    came from: :func:`write_result` and :func:`load_results` both call this."""
    prov = data.get("provenance")
    missing = [k for k in REQUIRED_PROVENANCE if not (isinstance(prov, dict) and prov.get(k))]
    if missing:
        raise ValueError(f"{where}: 'provenance' lacks {', '.join(missing)}; build it with "
                         "spikelib.results.provenance(commit, device, argv)")
    return data


def write_result(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically; returns the path.

    ``data`` must carry ``provenance`` (see :func:`check_result`)."""
    path = Path(path)
    check_result(data, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(data), indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder, from ``start`` (default: cwd) upwards, holding ``_toc.yml`` or
    ``results/``; with no ``start``, then upwards from the installed package (an editable
    install's checkout) — the book's notebooks run from ``book/`` or a build folder."""
    starts = [Path(start or os.getcwd()).resolve()]
    if start is None:  # notebooks under nbval run elsewhere: fall back to the checkout of spikelib
        starts.append(Path(__file__).resolve().parent)
    for here in starts:
        for folder in (here, *here.parents):
            if (folder / "_toc.yml").is_file() or (folder / "results").is_dir():
                return folder
    raise FileNotFoundError(f"no folder holding _toc.yml or results/ above {starts[0]}")


def load_results(pattern: str = "*.json", profile: str | None = None,
                 root: str | os.PathLike | None = None) -> list[dict]:
    """Every ``<root>/results/<pattern>`` as a dict (sorted by file name), each with ``_path``.
    A file that is not JSON or lacks provenance (:func:`check_result`) raises ``ValueError``.

    ``profile``: keep only results whose ``profile`` field equals it ('smoke' | 'cpu' | 'full').
    ``root`` defaults to :func:`find_root`.
    """
    folder = Path(root) if root is not None else find_root()
    out = []
    for p in sorted(glob.glob(str(folder / "results" / pattern))):
        with open(p) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}: not valid JSON ({err})") from err
        check_result(d, p)
        if profile is None or d.get("profile") == profile:
            d["_path"] = p
            out.append(d)
    return out


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (a no-op elsewhere): call around every timed region."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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
