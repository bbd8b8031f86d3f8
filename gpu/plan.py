"""The Fashion-MNIST stage's plan and summary (gpu/runbook.sh fmnist): one epoch count for all.

``plan``: from the probes' reports (``gpu/probe.py``), the number of epochs E that every run
can complete — cosine schedule over E epochs, end-of-run test pass, weights written — before
the stage's time is up, and which runs train:

    epoch_s(run) = steps_per_epoch · train_step_s + val_batches · eval_batch_s + diag_s
    total_s(run, E) = startup_s + E · epoch_s(run) + test_batches · eval_batch_s
    fit(run) = the largest E with SAFETY · total_s(run, E) <= available seconds

1. The main runs (s4d frssm pssm ddsn sif) use their phase-B times (measured with only the main
   runs sharing the device; phase A if no optional run was probed): E = min over them of fit,
   clipped to [--min-epochs, --max-epochs] (5 and 20). If even --min-epochs does not fit, E is
   the largest count that does (at least 1), and the plan says so (``below_minimum``); if not
   one epoch fits, nothing trains.
2. The optional runs join only if they cost the main runs nothing: the refractory ablation (as
   one group) joins when, with the phase-A times (every probe running at once, so at least the
   contention of any subset), every main run and every ablation run fits E epochs; ``lif``
   (serial BPTT) likewise with its own measured steps. Otherwise the plan records why each is
   absent.

Every projection here is a plan from measured steps, not a measurement; the measured epochs are
in each run's result (``epoch_wall_s``).

``summary``: after training, one JSON beside the results (``fmnist-runbook-<device>.json``):
the epoch count and its rule, the probes' measured times, each run's status (complete or not,
test accuracy, epochs), why the absent runs are absent, provenance; and a copy of each run's
``weights.pt`` as ``<weights-out>/<run>.pt``. The runs' profile is recorded as
``run_profile``, not ``profile``, so that counts of full-profile runs do not take the summary
for one.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from pathlib import Path

SAFETY = 1.25     # headroom on every projection: a probe of ~50 steps is not a whole run
MIN_EPOCHS, MAX_EPOCHS = 5, 20


def epoch_seconds(report: dict, phase: str) -> float:
    p = report["phases"][phase]
    return (report["steps_per_epoch"] * p["train_step_s"] + report["val_batches"] *
            p["eval_batch_s"] + p["diag_s"])


def total_seconds(report: dict, phase: str, epochs: int) -> float:
    """Projected seconds of a whole run of ``epochs`` epochs, from its probe (a plan)."""
    p = report["phases"][phase]
    return (report["startup_s"] + epochs * epoch_seconds(report, phase) +
            report["test_batches"] * p["eval_batch_s"])


def epochs_that_fit(report: dict, phase: str, available: float, safety: float = SAFETY) -> int:
    """The largest E >= 0 with safety · total_seconds(E) <= available."""
    fixed = total_seconds(report, phase, 0)
    return max(0, math.floor((available / safety - fixed) / epoch_seconds(report, phase)))


def plan(reports: list[dict], available: float, min_epochs: int = MIN_EPOCHS,
         max_epochs: int = MAX_EPOCHS, safety: float = SAFETY) -> dict:
    """The epoch count and the runs (see the module docstring). ``reports``: the probes'
    JSON; ``available``: seconds from now until every run must have finished."""
    if not 1 <= min_epochs <= max_epochs:
        raise ValueError(f"min_epochs, max_epochs: expected 1 <= min <= max, got "
                         f"{min_epochs}, {max_epochs}")
    absent, fits = {}, {}
    ok = []
    for r in reports:
        if r.get("ok"):
            ok.append(r)
        else:
            absent[r["name"]] = f"its probe failed ({r.get('error', 'no report')}); not trained"
    main = [r for r in ok if r["role"] == "main"]
    extra = [r for r in ok if r["role"] != "main"]
    main_phase = "B" if main and all("B" in r["phases"] for r in main) else "A"
    for r in ok:
        fits[r["name"]] = {ph: epochs_that_fit(r, ph, available, safety) for ph in r["phases"]}
    fit_main = min((fits[r["name"]][main_phase] for r in main), default=0)
    below = fit_main < min_epochs
    epochs = min(fit_main, max_epochs) if not below else fit_main
    runs = [r["name"] for r in main] if epochs >= 1 else []
    if epochs < 1:
        for r in main:
            absent[r["name"]] = (f"not even one epoch fits: the main runs fit {fit_main} "
                                 f"epochs in {available:.0f} s (phase {main_phase})")
    groups = {"ablation": [r for r in extra if r["role"] == "ablation"],
              "lif": [r for r in extra if r["role"] == "lif"]}
    for role, group in groups.items():
        if not group:
            continue
        short = [(r["name"], fits[r["name"]]["A"]) for r in main + group
                 if fits[r["name"]]["A"] < epochs]
        if epochs >= 1 and not below and not short:
            runs += [r["name"] for r in group]
            continue
        for r in group:
            if epochs < 1 or below:
                why = f"the main runs fit only {fit_main} epochs (< {min_epochs}); no optional run"
            else:
                names = ", ".join(f"{n} {k}" for n, k in short)
                why = (f"with every probe running at once (phase A) these fit fewer than the "
                       f"{epochs} epochs of the main runs: {names}")
            if role == "lif":
                p = r["phases"]["A"]
                why = (f"lif trains with serial BPTT: measured {p['train_step_s']:.3f} s per "
                       f"training step over {p['steps']} steps (phase A, sharing the device); "
                       f"an epoch is {r['steps_per_epoch']} steps, so {epochs or 1} epochs "
                       f"would need about {total_seconds(r, 'A', epochs or 1):.0f} s "
                       f"(a projection from the measured steps, not a measured epoch) of the "
                       f"{available:.0f} s left; " + why)
            absent[r["name"]] = why
    by_name = {r["name"]: r for r in ok}
    shared = "A" if any(by_name[n]["role"] != "main" for n in runs) else main_phase
    phase_of = {n: shared if by_name[n]["role"] == "main" else "A" for n in runs}
    return {"epochs": epochs, "runs": runs, "absent": absent, "below_minimum": below,
            "main_phase": main_phase, "epochs_that_fit": fits, "available_s": available,
            "safety": safety, "min_epochs": min_epochs, "max_epochs": max_epochs,
            "projected_total_s": {n: total_seconds(by_name[n], phase_of[n], epochs)
                                  for n in runs},
            "rule": "E = min over the main runs of the epochs that fit (projected from the "
                    "probe, x safety), clipped to [min_epochs, max_epochs]; optional runs join "
                    "only if every run still fits E with all probes running",
            "note": "projected_total_s and epochs_that_fit are plans from measured probe "
                    "steps, not measurements"}


def device_slug(name: str, device_type: str) -> str:
    """'cpu', or the GPU's name in lower case with dashes (as benchmarks/_bench.device_slug)."""
    if device_type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def read_reports(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def cmd_plan(a) -> int:
    reports = read_reports(Path(a.probes))
    expected = set(a.expected or [])
    for name in sorted(expected - {r["name"] for r in reports}):    # killed before reporting
        reports.append({"name": name, "ok": False, "error": "no report (killed or timed out)"})
    p = plan(reports, a.available, a.min_epochs, a.max_epochs)
    p["probes"] = {r["name"]: {k: r.get(k) for k in ("role", "model", "ok", "error",
                                                     "startup_s", "phases", "steps_per_epoch",
                                                     "val_batches", "test_batches",
                                                     "device", "device_type")}
                   for r in reports}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(p, indent=1) + "\n")
    args = {r["name"]: r["train_args"] for r in reports if r.get("ok")}
    for name in p["runs"]:                      # what the runbook launches, one line per arg
        (out / f"{name}.args").write_text("\n".join([*args[name], "--epochs",
                                                     str(p["epochs"])]) + "\n")
    print(f"plan: {p['epochs']} epochs for {len(p['runs'])} runs at once "
          f"({', '.join(p['runs']) or 'none'}); {p['available_s']:.0f} s available, "
          f"safety x{p['safety']}" + ("; BELOW THE MINIMUM" if p["below_minimum"] else ""))
    for n, why in p["absent"].items():
        print(f"absent {n}: {why}")
    return 0


def cmd_summary(a) -> int:
    from spikelib.results import provenance, write_result

    p = json.loads((Path(a.plan_dir) / "plan.json").read_text())
    probes = p["probes"]
    dev = next((v for v in probes.values() if v.get("device")), {"device": "?",
                                                                  "device_type": "cpu"})
    runs = {}
    for name in p["runs"]:
        res = Path(a.results) / f"{name}.json"
        if res.is_file() and res.stat().st_mtime < a.since:      # an older file, not this run
            res = Path(a.results) / f"{name}.json (none written in this call)"
        row = {"model": probes[name]["model"], "role": probes[name]["role"],
               "planned_epochs": p["epochs"],
               "projected_total_s": p["projected_total_s"][name], "complete": False}
        if res.is_file():
            d = json.loads(res.read_text())
            row.update(complete=bool(d.get("complete")), result=f"results/{name}.json",
                       epochs=d["config"]["epochs"], test_acc=d.get("test_acc"),
                       epoch_wall_s=d.get("epoch_wall_s"), params=d.get("params"),
                       fused_fallback=d.get("fused_fallback"))
        weights = Path(a.work) / name / "weights.pt"
        if res.is_file() and weights.is_file():
            dest = Path(a.weights_out) / f"{name}.pt"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(weights, dest)
            row["weights"] = f"weights/{name}.pt"
            row["weights_bytes"] = dest.stat().st_size
        log = Path(a.work) / name / "log.jsonl"
        if log.is_file():                       # the epochs it finished, complete or not
            row["epochs_logged"] = len(log.read_text().splitlines())
            shutil.copyfile(log, Path(a.plan_dir) / f"{name}.log.jsonl")
        runs[name] = row
    prov = provenance(a.commit, a.device)
    summary = {
        "benchmark": "fmnist_runbook", "run_profile": a.profile, "dataset": "fmnist",
        "device": dev["device"], "device_type": dev["device_type"],
        "epochs": p["epochs"], "epochs_rule": p["rule"],
        "epochs_range": [p["min_epochs"], p["max_epochs"]], "below_minimum": p["below_minimum"],
        "concurrent_runs": len(p["runs"]), "budget_s": a.budget, "safety": p["safety"],
        "available_s_at_plan": p["available_s"], "runs": runs, "absent": p["absent"],
        "all_complete": bool(runs) and all(r["complete"] for r in runs.values()),
        "probes": probes, "epochs_that_fit": p["epochs_that_fit"],
        "note": "every run trained the same number of epochs, chosen by the stage's probe "
                "(about 50 training steps of every run at once, discarded) so that all finish "
                "in one call; each run's command records it as --epochs. projected_* and "
                "epochs_that_fit are plans, not measurements; the measured times are the "
                "probes' phases and each result's epoch_wall_s",
        "seed": 0, "provenance": prov, "command": prov["command"]}
    path = write_result(Path(a.results) / f"fmnist-runbook-"
                        f"{device_slug(dev['device'], dev['device_type'])}.json", summary)
    done = sum(r["complete"] for r in runs.values())
    print(f"summary: {done}/{len(runs)} runs complete with {p['epochs']} epochs -> {path}")
    for n, r in runs.items():
        print(f"  {n:28s} {'complete' if r['complete'] else 'INCOMPLETE':10s} "
              f"test acc {r.get('test_acc')}  epochs logged {r.get('epochs_logged')}")
    for n, why in p["absent"].items():
        print(f"  absent {n}: {why}")
    return 0 if summary["all_complete"] or not runs else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("plan")
    pl.add_argument("--probes", required=True, help="folder of the probes' reports")
    pl.add_argument("--expected", nargs="*", help="run names that were probed")
    pl.add_argument("--available", type=float, required=True)
    pl.add_argument("--min-epochs", type=int, default=MIN_EPOCHS)
    pl.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    pl.add_argument("--out", required=True, help="folder for plan.json and <run>.args")
    su = sub.add_parser("summary")
    su.add_argument("--plan-dir", required=True)
    su.add_argument("--results", required=True)
    su.add_argument("--work", required=True, help="the runs' --out folder")
    su.add_argument("--weights-out", required=True)
    su.add_argument("--commit", required=True)
    su.add_argument("--device", required=True)
    su.add_argument("--profile", required=True)
    su.add_argument("--budget", type=float, required=True)
    su.add_argument("--since", type=float, default=0.0,
                    help="time.time() of the stage's start: older result files are not its runs")
    a = ap.parse_args(argv)
    return cmd_plan(a) if a.cmd == "plan" else cmd_summary(a)


if __name__ == "__main__":
    sys.exit(main())
