"""The table of training results, and every choice made from it — on validation only.

:func:`summary_table` groups the results by their full identity (every non-operational
``RunConfig`` field and the effective ``ModelConfig``; seeds apart), names what differs from the
profile's default (:func:`settings`), marks seeds that diverged (a non-finite loss anywhere in
their history: :func:`diverged`) and averages the others only. The helpers that pick —
:func:`select_best`, :func:`promote`, :func:`goal_verdict` — read the final epoch's validation
accuracy (``history[-1]["val_acc"]``, mean over seeds) and never ``test_acc``; the test
accuracy is then reported beside the choice.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics

from spikelib import config as C
from spikelib.metrics import SPLIT, energy_of
from spikelib.models import ModelConfig
from spikelib.provenance import code_status, source_files
from spikelib.resultfiles import is_training_result

__all__ = ["settings", "identity_key", "diverged", "group_runs", "val_mean", "mean_firing",
           "select_best", "promote", "goal_verdict", "summary_table", "format_summary",
           "markdown", "plain"]


def _config(r: dict) -> C.RunConfig:
    known = {f.name for f in dataclasses.fields(C.RunConfig)}
    cfg = {k: r[k] for k in ("model", "dataset", "profile", "seed", "synthetic") if k in r}
    cfg |= {k: v for k, v in (r.get("config") or {}).items() if k in known}
    return C.RunConfig.from_dict(cfg)


def _parts(r: dict) -> dict:
    try:
        return C.name_parts(_config(r))
    except ValueError:                      # a config this library no longer accepts
        return dict(sorted(((r.get("config") or {}).get("model_config") or {}).items()))


def settings(r: dict) -> str:
    """What makes the run differ from its profile's default run, as ``key=value`` (sorted,
    comma-joined; '' at the defaults): ``--set`` values and fields such as ``epochs``."""
    return ",".join(f"{k}={v}" for k, v in _parts(r).items())


def identity_key(r: dict) -> str:
    """The run's full identity without its seed, as a string: every non-operational config
    field and the effective model config (fields added since the file was written take their
    defaults)."""
    try:
        cfg, mcfg = C.resolve(_config(r))
        ident = C.identity(cfg, mcfg)
    except ValueError:
        ident = {"config": r.get("config")}
    ident.pop("seed", None)
    stored = r.get("model_config")
    if stored:
        ident["model_config"] = {**ModelConfig().to_dict(), **stored}
    return json.dumps(ident, sort_keys=True, default=str)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def diverged(r: dict) -> bool:
    """A non-finite (written as JSON: null) training or validation loss anywhere in the run's
    history; such a seed is named, never averaged."""
    if r.get("synthetic"):
        return False
    losses = [h[k] for h in r.get("history") or [] for k in ("train_loss", "val_loss") if k in h]
    return not all(_finite(v) for v in losses)


def group_runs(results: list[dict]) -> dict[str, list[dict]]:
    """The training results among ``results`` by :func:`identity_key`, seeds sorted."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if is_training_result(r):
            groups.setdefault(identity_key(r), []).append(r)
    return {k: sorted(v, key=lambda r: r.get("seed", 0)) for k, v in groups.items()}


def val_mean(runs: list[dict]) -> float | None:
    """Mean over the runs that did not diverge of the final epoch's validation accuracy (or
    loss, for a regression); None if there is none."""
    key = "val_loss" if runs and runs[0].get("task") == "regression" else "val_acc"
    vals = [r["history"][-1].get(key) for r in runs if r.get("history") and not diverged(r)]
    vals = [v for v in vals if _finite(v)]
    return statistics.fmean(vals) if vals else None


def mean_firing(runs: list[dict]) -> float | None:
    """Mean over layers, then over the runs that did not diverge, of the firing rate (a
    property of the model, label-free); None for the non-spiking model."""
    rates = [sum(r["firing_rate"]) / len(r["firing_rate"]) for r in runs
             if r.get("firing_rate") and not diverged(r)]
    return statistics.fmean(rates) if rates else None


def _healthy(runs):
    return [r for r in runs if not diverged(r)]


def select_best(results: list[dict], model: str, budget: float | None = None, *,
                min_seeds: int = 3) -> list[dict] | None:
    """The runs (seeds) of ``model``'s setting with the highest mean final validation accuracy
    among those with at least ``min_seeds`` seeds that did not diverge and a mean firing rate
    within ``budget`` (None: no budget); None if no setting qualifies."""
    best, best_val = None, -math.inf
    for runs in group_runs(results).values():
        ok = _healthy(runs)
        if runs[0]["model"] != model or len(ok) < min_seeds:
            continue
        rate, val = mean_firing(ok), val_mean(ok)
        if val is None or (budget is not None and (rate is None or rate > budget)):
            continue
        if val > best_val:
            best, best_val = runs, val
    return best


def promote(results: list[dict], model: str, budget: float | None = None) -> list[dict] | None:
    """The lever of a screening (one seed per setting) to train with more seeds: ``model``'s
    non-default setting with the highest validation accuracy within ``budget``."""
    levers = [r for r in results if r.get("model") == model and settings(r)]
    return select_best(levers, model, budget, min_seeds=1)


def goal_verdict(runs: list[dict], baseline: list[dict], points: float, budget: float, *,
                 min_seeds: int = 3) -> str:
    """'met' when the runs' mean final validation accuracy is within ``points`` (percentage
    points) of the baseline's and their mean firing rate ≤ ``budget``; 'not met' otherwise;
    'baseline' for a model without spikes; 'n seed(s): not judged' below ``min_seeds``; a row
    with a diverged seed is judged on the others only if enough remain."""
    ok = _healthy(runs)
    rate = mean_firing(ok)
    if rate is None and not any(r.get("firing_rate") for r in runs):
        return "baseline"
    if len(ok) < min_seeds:
        return f"{len(ok)} seed{'s' if len(ok) != 1 else ''}: not judged"
    val, base = val_mean(ok), val_mean(_healthy(baseline))
    met = val is not None and base is not None and 100 * (val - base) >= -points and \
        rate is not None and rate <= budget
    return "met" if met else "not met"


def summary_table(results: list[dict], now: dict[str, str] | None = None) -> list[dict]:
    """One row per identity (:func:`group_runs`). Numbers, not text (see
    :func:`format_summary`): ``seeds`` (all), ``diverged`` (their seeds, left out of every
    mean), ``metric`` ('test_acc', or 'test_mse' for a regression), its ``mean`` and ``spread``
    (sample standard deviation; None for one seed), ``val`` (:func:`val_mean`, what choices
    read), ``firing_rate``, ``energy_pJ`` (mean ``whole_pJ`` per sequence, recomputed from the
    files' counts by :func:`~spikelib.metrics.energy_of`) and ``energy_split`` (its parts),
    ``devices``, ``commits`` (10 digits, ``*`` when dirty), ``code``
    (:func:`~spikelib.provenance.code_status`, joined when they differ) and ``files``."""
    now = source_files() if now is None else now
    rows = []
    for runs in group_runs(results).values():
        ok = _healthy(runs)
        regression = runs[0].get("task") == "regression"
        values = [r["test_loss" if regression else "test_acc"] for r in ok]
        values = [v for v in values if _finite(v)]
        bills = [b for b in (energy_of(r) for r in ok) if b is not None]
        split = {k: statistics.fmean(sum(b[k]) if isinstance(b[k], list) else b[k]
                                     for b in bills) for k in SPLIT} if bills else None
        rows.append({
            "dataset": runs[0]["dataset"], "model": runs[0]["model"], "settings": settings(runs[0]),
            "profile": runs[0].get("profile") or "?", "synthetic": bool(runs[0].get("synthetic")),
            "seeds": [r.get("seed") for r in runs],
            "diverged": [r.get("seed") for r in runs if diverged(r)],
            "metric": "test_mse" if regression else "test_acc",
            "mean": statistics.fmean(values) if values else None,
            "spread": statistics.stdev(values) if len(values) > 1 else None,
            "val": val_mean(ok), "firing_rate": mean_firing(ok),
            "energy_pJ": statistics.fmean(b["whole_pJ"] for b in bills) if bills else None,
            "energy_split": split,
            "devices": sorted({r["provenance"].get("device", "?") for r in runs}),
            "commits": sorted({r["provenance"]["commit"][:10]
                               + ("*" if r["provenance"].get("dirty") else "") for r in runs}),
            "code": "/".join(sorted({code_status(r, now)["status"] for r in runs})),
            "files": [os.path.basename(r.get("_path", r.get("run", "?"))) for r in runs],
        })
    return sorted(rows, key=lambda r: (r["dataset"], r["model"], r["settings"], r["profile"],
                                       r["synthetic"]))


def format_summary(rows: list[dict]) -> list[dict[str, str]]:
    """The rows of :func:`summary_table` as text cells, ready for :func:`markdown`."""
    out = []
    for r in rows:
        pct = r["metric"] == "test_acc"
        if r["synthetic"] or r["mean"] is None:
            score = "synthetic: timing only" if r["synthetic"] else "–"
        elif pct:
            score = f"{100 * r['mean']:.2f}" + ("" if r["spread"] is None
                                               else f" ± {100 * r['spread']:.2f}") + " %"
        else:
            score = f"MSE {r['mean']:.4f}" + ("" if r["spread"] is None
                                             else f" ± {r['spread']:.4f}")
        seeds = ",".join(str(s) for s in r["seeds"])
        if r["diverged"]:
            seeds += f" (diverged: {','.join(str(s) for s in r['diverged'])})"
        val = "–" if r["val"] is None else (f"{100 * r['val']:.2f} %" if pct
                                           else f"MSE {r['val']:.4f}")
        out.append({
            "dataset": r["dataset"], "model": r["model"], "settings": r["settings"] or "–",
            "profile": r["profile"], "seeds": seeds, "val (final)": val, "test": score,
            "firing": "–" if r["firing_rate"] is None else f"{r['firing_rate']:.3f}",
            "energy (nJ/seq)": "–" if r["energy_pJ"] is None else f"{r['energy_pJ'] / 1e3:,.1f}",
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
