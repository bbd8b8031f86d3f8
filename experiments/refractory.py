"""The runs that settle the refractory question, as one resumable queue.

    python experiments/refractory.py list              # every run, in priority order, and its state
    python experiments/refractory.py run --jobs 2      # train what is missing, one core each
    python experiments/refractory.py run --jobs 2 --commit   # and commit each result as it ends
    python experiments/refractory.py weights --publish ../main   # weights the checkout lacks

Runs record whether the checkout was clean, so run the queue from a clean worktree of the frozen
sources and publish each finished file into the checkout you work in:

    git worktree add --detach ../runs-tree HEAD
    cd ../runs-tree && python experiments/refractory.py run --jobs 2 --publish ../main

Sequential Fashion-MNIST on the CPU profile (3 epochs, 2 layers, d_state 16), seeds 0-2 a
setting unless a step says otherwise, in the order of the plan (cut from the end if time runs
short):

1. the compared table from the final sources: every model at its defaults, frssm's refractory
   ablation R in {0, 1, 4, 8} (R = 2 is the default), the rate penalty lambda = 1 for pssm and for
   frssm at R = 0;
2. sparsifiers at equal firing rates (frssm, H = 32): at R = 0 a higher threshold (theta_init 2,
   4) and the penalty (lambda 0.3, 3); theta frozen (theta_lr = 0) at R = 0 and R = 2; R = 2
   with the gradient passed everywhere (``straight_through``: the steepest direction per unit
   step on the R = 2 weights, ``experiments/descent.py``) and only where a spike was emitted
   (``refractory_grad=fired``, the library's rule before it passed it wherever the neuron is
   free); then pssm with lambda 0.3 and 3 (spikingFRssm's levers first);
4. the gap against width (d_model 64: s4d, frssm at its defaults, the best frssm setting within a
   firing rate of 0.15 chosen on validation, pssm with lambda = 1, seeds 0-2; d_model 128: the
   same, seeds 0-2 for s4d and the best setting, seed 0 for the other two), then against
   training length (H = 32, 6 epochs: s4d and the best setting, seeds 0-2; then frssm at its
   defaults, R = 2, beyond the issue's plan: does the refractory period's own gap move?);
5. lif (hard reset, serial BPTT), seeds 0-2.

A run is done when ``results/<run>.json`` exists and was made by the spikelib sources installed
now (its every segment's source hash); a run with a checkpoint from those sources resumes; any
other run starts afresh with ``--overwrite``. Every run's weights are copied to
``weights/<run>.pt`` with their provenance beside them (``weights`` copies those of runs that
ended before this was so). Step 3 (the signal-level counterpart) needs no training: the book and
``experiments/descent.py`` measure it on those weights.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (0, 1, 2)
GOAL_RATE = 0.15                                  # the firing budget of the plan's goal
FRSSM_R0 = ("--set", "refractory=0")


def _setting(model: str, *args: str) -> tuple[str, ...]:
    return ("--model", model, *args)


# the refractory question's runs first; the other models' defaults (the compared table) last
STEP1 = [_setting("s4d"), _setting("frssm"), _setting("frssm", *FRSSM_R0),
         _setting("frssm", *FRSSM_R0, "--set", "rate_penalty=1.0"),
         _setting("pssm", "--set", "rate_penalty=1.0")] + [
    _setting("frssm", "--set", f"refractory={r}") for r in (1, 4, 8)] + [
    _setting(m) for m in ("pssm", "ddsn", "sif")]
STEP2 = [_setting("frssm", *FRSSM_R0, "--set", f"theta_init={t}") for t in (2.0, 4.0)] + [
    _setting("frssm", *FRSSM_R0, "--set", f"rate_penalty={lam}") for lam in (0.3, 3.0)] + [
    _setting("frssm", *FRSSM_R0, "--set", "theta_lr=0.0"),
    _setting("frssm", "--set", "theta_lr=0.0")] + [
    _setting("frssm", "--set", f"refractory_grad={g}")     # R = 2 under the other two rules
    for g in ("straight_through", "fired")] + [
    _setting("pssm", "--set", f"rate_penalty={lam}") for lam in (0.3, 3.0)]


def plan(best: tuple[str, ...] | None) -> list[tuple[int, tuple[str, ...], int]]:
    """(step, setting, seed) in priority order; step 4 needs ``best`` (chosen after step 2)."""
    runs = [(1, s, seed) for s in STEP1 for seed in SEEDS]
    runs += [(2, s, seed) for s in STEP2 for seed in SEEDS]
    if best is not None:
        wide = {64: [(_setting("s4d"), SEEDS), (_setting("frssm"), SEEDS), (best, SEEDS),
                     (_setting("pssm", "--set", "rate_penalty=1.0"), SEEDS)],
                128: [(_setting("s4d"), SEEDS), (best, SEEDS), (_setting("frssm"), (0,)),
                      (_setting("pssm", "--set", "rate_penalty=1.0"), (0,))]}
        for width, rows in wide.items():
            runs += [(4, (*s, "--set", f"d_model={width}"), seed) for s, seeds in rows
                     for seed in seeds]
        runs += [(4, (*s, "--epochs", "6"), seed)
                 for s in (_setting("s4d"), best, _setting("frssm")) for seed in SEEDS]
    runs += [(5, _setting("lif"), seed) for seed in SEEDS]
    return runs


def argv(setting: tuple[str, ...], seed: int) -> list[str]:
    return [*setting, "--dataset", "fmnist", "--profile", "cpu", "--seed", str(seed),
            "--threads", "1", "--no-progress", "--results", "results"]


def run_name(setting: tuple[str, ...], seed: int) -> str:
    from spikelib.config import config_from_args, default_run_name
    return default_run_name(config_from_args(argv(setting, seed)))


def current_hash() -> str:
    from spikelib.provenance import source_files, source_hash
    return source_hash(source_files())


def _hashes(record: dict) -> set:
    """The source hashes of every segment, with None for one made from a dirty checkout."""
    segs = record.get("segments") or [record.get("provenance") or {}]
    return {None if s.get("dirty") is not False else s.get("source_hash")
            for s in [*segs, record.get("provenance") or {}]}


def state(name: str, now: str) -> str:
    """'done' (result from the sources now, clean checkout), 'resume' (a checkpoint from them),
    or 'start'."""
    res = ROOT / "results" / f"{name}.json"
    if res.is_file() and _hashes(json.loads(res.read_text())) == {now}:
        return "done"
    ck = ROOT / "runs" / name / "checkpoint.pt"
    if ck.is_file():
        import torch
        segs = torch.load(ck, map_location="cpu", weights_only=True).get("segments") or []
        if segs and _hashes({"segments": segs, "provenance": segs[-1]}) == {now}:
            return "resume"
    return "start"


def best_setting(now: str) -> tuple[str, ...] | None:
    """The frssm setting of steps 1-2 with the highest final-epoch validation accuracy (mean
    over seeds 0-2) among those with a mean firing rate <= GOAL_RATE; None until all are done.
    Chosen on validation: test accuracy is never read here."""
    scores = {}
    for s in [s for s in STEP1 + STEP2 if s[1] == "frssm"]:
        recs = []
        for seed in SEEDS:
            p = ROOT / "results" / f"{run_name(s, seed)}.json"
            if not p.is_file() or _hashes(r := json.loads(p.read_text())) != {now}:
                return None
            recs.append(r)
        rate = statistics.fmean(statistics.fmean(r["firing_rate"]) for r in recs)
        if rate <= GOAL_RATE:
            scores[s] = statistics.fmean(r["history"][-1]["val_acc"] for r in recs)
    return max(scores, key=scores.get) if scores else None


def _keep_weights(name: str, into: Path) -> list[Path]:
    """Copy runs/<name>/weights.pt to <into>/weights/<name>.pt with the provenance beside it
    (never into this checkout's tracked weights/: the next run would record a dirty tree);
    nothing if those weights are not the ones its result file was made with."""
    import torch
    res = json.loads((ROOT / "results" / f"{name}.json").read_text())
    src = ROOT / "runs" / name / "weights.pt"
    def identity(prov: dict | None) -> list:         # which run it was, not notes added later
        return [(prov or {}).get(k) for k in ("commit", "command", "date", "source_hash")]

    if not src.is_file() or identity(torch.load(src, map_location="cpu", weights_only=True)[
            "meta"].get("provenance")) != identity(res["provenance"]):
        print(f"weights of {name}: missing or not those of its result; not copied",
              file=sys.stderr)
        return []
    dst = into / "weights" / f"{name}.pt"
    shutil.copyfile(src, dst)
    meta = dst.with_suffix(".json")
    meta.write_text(json.dumps({"run": name, "provenance": res["provenance"]}, indent=1) + "\n")
    return [dst, meta]


def _commit(paths: list[Path], message: str, into: Path) -> None:
    """Copy ``paths`` under ROOT to the same places under ``into``, then commit ``paths`` (and
    any already there) in ``into``."""
    dest = [into / p.relative_to(ROOT) if p.is_relative_to(ROOT) else p for p in paths]
    for src, dst in zip(paths, dest):
        if src != dst:
            shutil.copyfile(src, dst)
    for _ in range(5):                        # another git command may hold the index briefly
        add = subprocess.run(["git", "add", "-f", *map(str, dest)], cwd=into)
        if add.returncode == 0 and subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *map(str, dest)],
                cwd=into).returncode == 0:
            return
        time.sleep(5)
    print(f"could not commit {message!r} in {into}; commit by hand", file=sys.stderr)


def main(args: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("list", "run", "weights"),
                   help="list the plan; run it; or copy the weights of done runs that "
                        "--publish CHECKOUT lacks and commit them there")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one core each")
    p.add_argument("--steps", default="1,2,4,5", help="which steps (comma-separated)")
    p.add_argument("--commit", action="store_true", help="git-commit each finished result")
    p.add_argument("--publish", type=Path, default=None, metavar="CHECKOUT",
                   help="copy each finished result (and seed-0 weights) into CHECKOUT and "
                        "commit it there (implies --commit)")
    a = p.parse_args(args)
    steps = {int(s) for s in a.steps.split(",")}
    now = current_hash()
    logs = ROOT / "runs" / "refractory-queue"
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, int, int, int]] = {}   # proc, step, seed, core
    cores = list(range(os.cpu_count() or 1))
    ended = True                    # plan (read every result and checkpoint) only when needed
    while True:
        if ended:
            best = best_setting(now)
            rows = [(step, run_name(s, seed), s, seed) for step, s, seed in plan(best)
                    if step in steps]
            states = {name: state(name, now) for _, name, _, _ in rows}
            ended = False
        if a.what == "weights":
            into = (a.publish or ROOT).resolve()
            paths = [q for _, name, _, _ in rows if states[name] == "done"
                     and not (into / "weights" / f"{name}.pt").is_file()
                     for q in _keep_weights(name, into)]
            if paths:
                _commit(paths, f"weights: {len(paths) // 2} finished runs (their result files "
                               "are committed)", into)
            print(f"copied the weights of {len(paths) // 2} runs into {into}")
            return 0
        if a.what == "list":
            for step, name, _, _ in rows:
                print(f"step {step}  {states[name]:6s}  {name}")
            if 4 in steps and best is None:
                print("step 4 waits for steps 1-2 (its best frssm setting is chosen on them)")
            return 0
        for name, (proc, step, _, _) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            ended = True
            ok = proc.returncode == 0 and state(name, now) == "done"
            print(f"{time.strftime('%H:%M')} {'done' if ok else 'FAILED'}: {name}", flush=True)
            if ok and (a.commit or a.publish):
                into = (a.publish or ROOT).resolve()
                paths = [ROOT / "results" / f"{name}.json", *_keep_weights(name, into)]
                _commit(paths, f"results: {name} (step {step}, CPU profile, final sources)",
                        into)
        if ended:
            continue                                       # re-plan before starting more
        waiting = [r for r in rows if r[1] not in running and states[r[1]] != "done"]
        if not waiting and not running:
            print("every planned run is done" + ("" if 4 not in steps or best
                                                 else "; step 4 could not be planned"))
            return 0
        while waiting and len(running) < min(a.jobs, len(cores)):
            step, name, s, seed = waiting.pop(0)
            how = ["--resume"] if states[name] == "resume" else ["--overwrite"]
            states[name] = "running"
            core = next(c for c in cores if c not in {r[3] for r in running.values()})
            cmd = ["taskset", "-c", str(core), sys.executable, "-m", "spikelib.train",
                   *argv(s, seed), *how]
            log = open(logs / f"{name}.log", "a")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
            running[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=env),
                             step, seed, core)
            print(f"{time.strftime('%H:%M')} start: {name} ({' '.join(how)})", flush=True)
        time.sleep(20)


if __name__ == "__main__":
    sys.exit(main())
