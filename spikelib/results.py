"""The results layer in one import, its plot and its command line.

The work is split by job: :mod:`spikelib.provenance` (where a result came from, whether the
code now still makes it), :mod:`spikelib.resultfiles` (writing and loading ``results/*.json``)
and :mod:`spikelib.summary` (the table and the choices made from it, on validation). This module
re-exports their interface, draws the learning curves (:func:`plot`) and is the command line:
``python -m spikelib.results`` (or ``spikelib-results``) prints one row per configuration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from spikelib.config import PROFILES
from spikelib.provenance import code_status, provenance, source_files, source_hash
from spikelib.resultfiles import (
    check_result,
    find_root,
    is_training_result,
    load_results,
    to_plain,
    write_result,
)
from spikelib.summary import (
    diverged,
    format_summary,
    goal_verdict,
    group_runs,
    markdown,
    plain,
    promote,
    select_best,
    settings,
    summary_table,
    val_mean,
)

__all__ = ["provenance", "source_files", "source_hash", "code_status", "check_result",
           "write_result", "find_root", "load_results", "is_training_result", "to_plain",
           "settings", "diverged", "group_runs", "val_mean", "select_best", "promote",
           "goal_verdict", "summary_table", "format_summary", "markdown", "plain", "plot",
           "main"]

_PLOT_HINT = ("--plot needs matplotlib, which is not a core dependency: pip install matplotlib "
              "(or pip install -e '.[book]')")


def _figure(path: str | os.PathLike | None):
    """A matplotlib Figure, checking ``path`` (folder exists, format known) first."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_PLOT_HINT) from err
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    if path is not None:
        path = Path(path)
        kinds = FigureCanvasBase(fig).get_supported_filetypes()
        if path.suffix.lstrip(".").lower() not in kinds:
            raise ValueError(f"--plot: {str(path)!r} has no image suffix matplotlib writes; "
                             f"use one of {', '.join('.' + k for k in sorted(kinds))}")
        if not path.parent.is_dir():
            raise ValueError(f"--plot: the folder {str(path.parent)!r} does not exist")
    return fig


def plot(results: list[dict], path: str | os.PathLike | None = None):
    """Learning curves (final-epoch-aligned validation accuracy, or MSE, per epoch) and test
    accuracy against mean firing rate: one line and one point per configuration (mean over its
    seeds, the band from the lowest to the highest seed), legend outside the axes; a matplotlib
    Figure, saved to ``path`` if given (ValueError for a path it cannot write). matplotlib is
    imported only here (ImportError with the install hint without it)."""
    fig = _figure(path)                              # first: the install hint, the path
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator
    curves, scatter = fig.subplots(1, 2)
    palette = colormaps["tab20"].colors
    groups = [runs for runs in group_runs(results).values() if not runs[0].get("synthetic")]
    for i, runs in enumerate(groups):
        ok = [r for r in runs if not diverged(r)] or runs
        regression = runs[0].get("task") == "regression"
        key = "val_loss" if regression else "val_acc"
        label = " ".join(filter(None, (runs[0]["model"], settings(runs[0]),
                                       f"({runs[0].get('profile')}, "
                                       f"{len(ok)} seed{'s' if len(ok) > 1 else ''})")))
        by_epoch: dict[int, list[float]] = {}
        for r in ok:
            for e in r.get("history") or []:
                if e.get(key) is not None:
                    by_epoch.setdefault(e["epoch"], []).append(e[key])
        epochs = sorted(by_epoch)
        mean = [statistics.fmean(by_epoch[e]) for e in epochs]
        color = palette[i % 20]
        curves.plot(epochs, mean, marker="os^"[i // 20 % 3], ms=3, color=color, label=label,
                    ls=("-", "--", ":")[i // 20 % 3])
        if len(ok) > 1:
            curves.fill_between(epochs, [min(by_epoch[e]) for e in epochs],
                                [max(by_epoch[e]) for e in epochs], color=color, alpha=0.15)
        accs = [r["test_acc"] for r in ok if r.get("test_acc") is not None]
        rates = [sum(r["firing_rate"]) / len(r["firing_rate"]) for r in ok
                 if r.get("firing_rate")]
        if accs and rates:
            scatter.errorbar(statistics.fmean(rates), statistics.fmean(accs),
                             yerr=[[statistics.fmean(accs) - min(accs)],
                                   [max(accs) - statistics.fmean(accs)]],
                             fmt="o", color=color, capsize=2)
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set(xlabel="epoch", ylabel="validation accuracy (regression: MSE)",
               title="learning curves (mean over seeds; band: lowest to highest)")
    scatter.set(xlabel="mean firing rate", ylabel="test accuracy",
                title="test accuracy against firing rate (colours as left)")
    if groups:
        fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _filter(found: list[dict], models: list[str], sets: list[str]) -> list[dict]:
    keep = [r for r in found if not models or r.get("model") in models]
    return [r for r in keep if not sets or (settings(r) or "defaults") in sets]


def main(argv: list[str] | None = None) -> int:
    """``python -m spikelib.results``: the table (and ``--plot FILE``); 2 on an error."""
    p = argparse.ArgumentParser(prog="python -m spikelib.results",
                                description="One row per configuration of the training results "
                                            "in results/ (seeds grouped).")
    p.add_argument("--root", default=None, help="folder holding results/ (default: found from "
                                                "the working directory upwards)")
    p.add_argument("--pattern", default="*.json", help="file names in results/")
    p.add_argument("--profile", default=None, choices=tuple(PROFILES),
                   help="only this profile")
    p.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    p.add_argument("--settings", action="append", default=[],
                   help="only this setting, as the table names it, e.g. refractory=4, or "
                        "'defaults' (repeatable)")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="save learning curves and accuracy against firing rate to FILE "
                        "(.png, .pdf, .svg ...; needs matplotlib)")
    a = p.parse_args(argv)
    try:
        found = _filter(load_results(a.pattern, a.profile, a.root), a.model, a.settings)
        if a.plot:
            _figure(a.plot)                                 # a bad path fails before the table
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = format_summary(summary_table(found))
    if not rows:
        print("no training results match", file=sys.stderr)
        return 1
    print((markdown if a.markdown else plain)(rows))
    if any(r["code"] != "current" for r in rows):
        print("code: 'stale' = made by other spikelib sources than those installed now "
              "(spikelib.results.code_status lists the files); 'unknown' = written before "
              "sources were hashed")
    if any("diverged" in r["seeds"] for r in rows):
        print("diverged: a seed with a non-finite loss, left out of the row's numbers")
    if a.plot:
        plot(found, a.plot)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
