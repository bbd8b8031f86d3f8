"""Provenance and the ``results/*.json`` files the book reads.

Every number the book shows comes from a JSON file written by :func:`write_result` (atomically:
a temporary file in the same folder, then ``os.replace``) and read back with
:func:`load_results`. :func:`provenance` records where a number came from — commit, dirty flag,
command line, device, library versions, and a hash of the spikelib sources that ran — and
deliberately no host name or user name. :func:`code_status` tells whether a result was made by
the code installed now and, if not, which files changed since.

``python -m spikelib.results`` prints one table of every training result (seeds grouped:
:func:`summary_table`, :func:`format_summary`, :func:`markdown`) and, with ``--plot FILE``,
saves learning curves and accuracy against firing rate (:func:`plot`).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from spikelib.device import cpu_name, device_name

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
    """Where a result came from.

    ``commit``: ``git rev-parse HEAD`` of the spikelib checkout, else the given value (the CLI's
    ``--commit``, for a copy without ``.git``), else ``"unknown"``; an explicit value wins.
    ``dirty``: uncommitted changes to tracked files outside ``results/`` (None when git is
    unavailable) — the results a run writes do not make the next run dirty.
    ``command``: ``argv`` (default: the process's command line, interpreter path shortened to
    ``python``). ``source_hash`` and ``source_files``: :func:`source_files` now — call this
    when a run starts, so a tree edited during the run does not change what it records. No
    host or user name is recorded.
    """
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


def code_status(result: dict, now: dict[str, str] | None = None) -> dict:
    """Was ``result`` made by the spikelib installed now? ``{"status": "current" | "stale" |
    "unknown", "changed": [file names]}``: current when its ``provenance.source_hash`` equals
    the hash of the sources now (``now``: :func:`source_files`, computed if not given); stale
    otherwise, with the files added, removed or edited since; unknown for a result written
    before sources were hashed (``changed`` None)."""
    prov = result.get("provenance") or {}
    if not prov.get("source_hash"):
        return {"status": "unknown", "changed": None}
    now = source_files() if now is None else now
    if prov["source_hash"] == source_hash(now):
        return {"status": "current", "changed": []}
    old = prov.get("source_files") or {}
    return {"status": "stale",
            "changed": sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))}


def _plain(obj):
    """Tensors, numpy scalars, tuples, paths, str subclasses (torch.__version__) -> plain JSON
    types; non-finite floats -> None."""
    if isinstance(obj, str):
        return str(obj)
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


# ---------------------------------------------------------------------------------------------
# the table of training results

def is_training_result(r: dict) -> bool:
    """A file written by ``spikelib.train`` (not a benchmark)."""
    return "test_acc" in r and "model" in r and "dataset" in r and not r.get("benchmark")


def settings(r: dict) -> str:
    """The run's ModelConfig overrides as ``key=value`` (sorted), '' for the defaults."""
    overrides = (r.get("config") or {}).get("model_config") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def summary_table(results: list[dict], now: dict[str, str] | None = None) -> list[dict]:
    """One row per (dataset, model, settings, profile) over the training results among
    ``results`` (from :func:`load_results`), seeds grouped. Numbers, not text (see
    :func:`format_summary`): ``metric`` ('test_acc' or, for regression, 'test_mse'), its
    ``mean`` and ``spread`` (sample standard deviation over seeds; None for one seed), the
    ``firing_rate`` (mean over layers, then seeds; None without spikes), ``energy_pJ`` (mean
    ``total_pJ`` per sequence), the ``devices``, ``commits`` (10 digits, ``*`` when dirty) and
    ``code`` (:func:`code_status` of each file, joined when they differ)."""
    now = source_files() if now is None else now
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if is_training_result(r):
            key = (r["dataset"], r["model"], settings(r), r.get("profile") or "?",
                   bool(r.get("synthetic")))
            groups.setdefault(key, []).append(r)
    rows = []
    for (dataset, model, sets, profile, synthetic), runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r.get("seed", 0))
        regression = runs[0].get("task") == "regression"
        values = [r["test_loss" if regression else "test_acc"] for r in runs]
        values = [v for v in values if v is not None]
        rates = [sum(r["firing_rate"]) / len(r["firing_rate"]) for r in runs
                 if r.get("firing_rate")]
        energy = [r["energy"]["total_pJ"] for r in runs if (r.get("energy") or {}).get("total_pJ")]
        rows.append({
            "dataset": dataset, "model": model, "settings": sets, "profile": profile,
            "synthetic": synthetic, "seeds": [r.get("seed") for r in runs],
            "metric": "test_mse" if regression else "test_acc",
            "mean": statistics.fmean(values) if values else None,
            "spread": statistics.stdev(values) if len(values) > 1 else None,
            "firing_rate": statistics.fmean(rates) if rates else None,
            "energy_pJ": statistics.fmean(energy) if energy else None,
            "devices": sorted({r["provenance"].get("device", "?") for r in runs}),
            "commits": sorted({r["provenance"]["commit"][:10]
                               + ("*" if r["provenance"].get("dirty") else "") for r in runs}),
            "code": "/".join(sorted({code_status(r, now)["status"] for r in runs})),
            "files": [os.path.basename(r.get("_path", r.get("run", "?"))) for r in runs],
        })
    return rows


def format_summary(rows: list[dict]) -> list[dict[str, str]]:
    """The rows of :func:`summary_table` as text cells, ready for :func:`markdown`."""
    out = []
    for r in rows:
        if r["synthetic"] or r["mean"] is None:
            score = "synthetic: timing only" if r["synthetic"] else "–"
        elif r["metric"] == "test_acc":
            score = f"{100 * r['mean']:.2f}" + ("" if r["spread"] is None
                                               else f" ± {100 * r['spread']:.2f}") + " %"
        else:
            score = f"MSE {r['mean']:.4f}" + ("" if r["spread"] is None
                                             else f" ± {r['spread']:.4f}")
        out.append({
            "dataset": r["dataset"], "model": r["model"], "settings": r["settings"] or "–",
            "profile": r["profile"], "seeds": ",".join(str(s) for s in r["seeds"]),
            "test": score,
            "firing": "–" if r["firing_rate"] is None else f"{r['firing_rate']:.3f}",
            "energy (nJ/seq)": "–" if r["energy_pJ"] is None else f"{r['energy_pJ'] / 1e3:.1f}",
            "device": ", ".join(r["devices"]), "commit": ", ".join(r["commits"]),
            "code": r["code"]})
    return out


def markdown(rows: list[dict]) -> str:
    """A list of dicts (same keys) as a markdown table; '' for no rows."""
    if not rows:
        return ""
    cols = list(rows[0])
    cell = lambda v: str(v).replace("|", "\\|").replace("*", "\\*")  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                      *("| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows)])


def plain(rows: list[dict]) -> str:
    """A list of dicts (same keys) as aligned plain text for a terminal."""
    if not rows:
        return ""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = lambda vals: "  ".join(str(v).ljust(width[c]) for c, v in zip(cols, vals))  # noqa
    return "\n".join([line(cols), line("-" * width[c] for c in cols),
                      *(line(r[c] for c in cols) for r in rows)]).rstrip()


def plot(results: list[dict], path: str | os.PathLike | None = None):
    """Learning curves (validation accuracy, or MSE for regression, per epoch; one line per
    run) and test accuracy against mean firing rate (one point per run), as a matplotlib
    Figure; saved to ``path`` if given. matplotlib is imported only here."""
    from matplotlib.figure import Figure
    runs = [r for r in results if is_training_result(r) and not r.get("synthetic")]
    fig = Figure(figsize=(10, 4), layout="constrained")
    curves, scatter = fig.subplots(1, 2)
    for r in runs:
        regression = r.get("task") == "regression"
        h = [e for e in r["history"] if e.get("val_loss" if regression else "val_acc") is not None]
        name = " ".join(filter(None, (r["model"], settings(r), f"s{r.get('seed')}",
                                      f"({r.get('profile')})")))
        curves.plot([e["epoch"] for e in h],
                    [e["val_loss"] if regression else e["val_acc"] for e in h], "o-", ms=3,
                    label=name)
        if r.get("firing_rate") and r.get("test_acc") is not None:
            rate = sum(r["firing_rate"]) / len(r["firing_rate"])
            scatter.plot(rate, r["test_acc"], "o")
            scatter.annotate(name, (rate, r["test_acc"]), fontsize=6)
    curves.set(xlabel="epoch", ylabel="validation accuracy (or MSE)", title="learning curves")
    scatter.set(xlabel="mean firing rate", ylabel="test accuracy",
                title="accuracy against firing rate")
    if runs:
        curves.legend(fontsize=6, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spikelib.results",
                                description="One table of every training result in results/.")
    p.add_argument("--root", default=None, help="folder holding results/ (default: found from "
                                                "the working directory upwards)")
    p.add_argument("--pattern", default="*.json", help="file names in results/")
    p.add_argument("--profile", default=None, help="only this profile (smoke, cpu, full)")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="save learning curves and accuracy against firing rate to FILE")
    a = p.parse_args(argv)
    try:
        found = load_results(a.pattern, a.profile, a.root)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = format_summary(summary_table(found))
    print((markdown if a.markdown else plain)(rows) or "no training results")
    if any(r["code"] != "current" for r in rows):
        print("code: 'stale' = made by other spikelib sources than those installed now "
              "(spikelib.results.code_status lists the files); 'unknown' = written before "
              "sources were hashed")
    if a.plot:
        plot(found, a.plot)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
