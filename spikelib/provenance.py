"""Where a result came from, and whether the code installed now still makes it.

:func:`provenance` records commit, dirty flag, command line, device, thread count, library
versions and a hash of the spikelib sources that ran (no host or user name). :func:`code_status`
compares every segment of a result (a resumed run has one per stretch of epochs) with the
sources installed now and names the files that changed.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from spikelib.device import cpu_name, device_name

__all__ = ["provenance", "source_files", "source_hash", "code_status", "git_changes"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str, cwd: str | os.PathLike = _PACKAGE_DIR) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_changes(cwd: str | os.PathLike = _PACKAGE_DIR) -> str | None:
    """``git status --porcelain`` of the tracked files outside the top-level ``results/`` of the
    checkout holding ``cwd`` ('' when clean, None without git)."""
    return _git("status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)results",
                cwd=cwd)


def provenance(commit: str | None = None, device: str | torch.device | None = None,
               argv: list[str] | None = None) -> dict:
    """Where a result came from: ``commit`` (HEAD, else the given value, else 'unknown'; a given
    value wins), ``dirty`` (uncommitted changes outside ``results/``; None without git),
    ``command`` (``argv``, default the process's command line), ``threads`` (torch's thread
    count now: call this after ``set_num_threads``), ``source_hash`` and ``source_files``
    (:func:`source_files` now: call it when a run starts)."""
    if argv is None:        # the interpreter as typed: ``python -m spikelib.train ...``
        argv = ["python", *getattr(sys, "orig_argv", sys.argv)[1:]]
    head = _git("rev-parse", "HEAD")
    status = git_changes() if head else None
    files = source_files()
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
        "source_hash": source_hash(files),
        "source_files": files,
    }


def source_files(package_dir: str | os.PathLike = _PACKAGE_DIR) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each ``spikelib/*.py``, by file name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(Path(package_dir).glob("*.py"))}


def source_hash(files: dict[str, str]) -> str:
    """One hash over all sources: SHA-256 (16 hex digits) of the sorted ``name hash`` lines."""
    lines = "".join(f"{name} {h}\n" for name, h in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def code_status(result: dict | str | os.PathLike, now: dict[str, str] | None = None) -> dict:
    """Was ``result`` (a loaded result or the path of its file) made by the spikelib installed
    now? ``{"status": "current" | "stale" | "unknown", "changed": [...]}``.

    current: the provenance and every segment (``segments``: one per stretch of epochs of a
    resumed run) carry the hash of the sources now (``now``: :func:`source_files`, computed if
    not given); stale otherwise, ``changed`` naming the files added, removed or edited since
    the last segment and each earlier segment made by other sources; unknown for a result
    written before sources were hashed (``changed`` None)."""
    if not isinstance(result, dict):
        with open(result) as f:
            result = json.load(f)
    prov = result.get("provenance") or {}
    if not prov.get("source_hash"):
        return {"status": "unknown", "changed": None}
    now = source_files() if now is None else now
    current = source_hash(now)
    changed: list[str] = []
    if prov["source_hash"] != current:
        old = prov.get("source_files") or {}
        changed = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k)) or \
            [f"sources {prov['source_hash']}"]
    for seg in result.get("segments") or []:       # earlier stretches of a resumed run
        if seg.get("source_hash") not in (current, prov["source_hash"]):
            a, b = seg.get("epochs") or ("?", "?")
            changed.append(f"epochs {a + 1 if isinstance(a, int) else a}-{b}: sources "
                           f"{seg.get('source_hash') or 'unhashed'}")
    return {"status": "stale" if changed else "current", "changed": changed}
