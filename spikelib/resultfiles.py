"""The ``results/*.json`` files: written atomically with provenance, found and loaded back.

:func:`write_result` refuses a result without provenance and a source hash
(:func:`check_result`) and writes it through the one atomic writer (``spikelib._io``).
:func:`load_results` reads every file of a pattern; files written before sources were hashed
still load (their :func:`~spikelib.provenance.code_status` is 'unknown').
"""
from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path

import torch

from spikelib._io import write_atomic

__all__ = ["to_plain", "check_result", "write_result", "find_root", "load_results",
           "is_training_result", "REQUIRED_PROVENANCE"]

REQUIRED_PROVENANCE = ("commit", "device", "command", "source_hash")


def to_plain(obj):
    """Tensors, numpy scalars, tuples, paths, str subclasses (torch.__version__) -> plain JSON
    types; non-finite floats -> None."""
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):          # numpy scalar
        return to_plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def check_result(data: dict, where: str = "result", *, require_hash: bool = True) -> dict:
    """Raise ``ValueError`` unless ``data['provenance']`` names its commit, device, command and
    (with ``require_hash``) the hash of the sources that ran; returns ``data``."""
    prov = data.get("provenance")
    need = REQUIRED_PROVENANCE if require_hash else REQUIRED_PROVENANCE[:-1]
    missing = [k for k in need if not (isinstance(prov, dict) and prov.get(k))]
    if missing:
        raise ValueError(f"{where}: 'provenance' lacks {', '.join(missing)}; build it with "
                         "spikelib.provenance.provenance(commit, device, argv)")
    return data


def write_result(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` (with full provenance, see :func:`check_result`) as indented JSON to
    ``path`` atomically; returns the path."""
    path = Path(path)
    check_result(data, str(path))
    return write_atomic(path, json.dumps(to_plain(data), indent=1, allow_nan=False) + "\n")


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
    A file that is not JSON or lacks commit, device or command raises ``ValueError``.
    ``profile``: only results of that profile; ``root`` defaults to :func:`find_root`."""
    folder = Path(root) if root is not None else find_root()
    out = []
    for p in sorted(glob.glob(str(folder / "results" / pattern))):
        with open(p) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}: not valid JSON ({err})") from err
        check_result(d, p, require_hash=False)     # older files: code_status 'unknown'
        if profile is None or d.get("profile") == profile:
            d["_path"] = p
            out.append(d)
    return out


def is_training_result(r: dict) -> bool:
    """A file written by ``spikelib.train`` (not a benchmark)."""
    return "test_acc" in r and "model" in r and "dataset" in r and not r.get("benchmark")
