"""The GPU runbook (benchmarks/gpu_runbook.sh): every stage dry-run on CPU, and its plan.

Each stage runs once, as the device machine runs it but with ``DEVICE=cpu TINY=1`` (tiny models,
a few steps), into a temporary folder — results, runs, logs and the tar; never ``results/`` —
on a generated stand-in for Fashion-MNIST (random pixels in the four ``*-ubyte.gz`` files, NOT
Fashion-MNIST), so the unpacking is exercised as well. A stage passes only if every step
exited 0 (the runbook's own exit status says so) and no log holds a Python traceback: an
ImportError inside a stage fails here, not on the GPU. About 35 s of CPU for all three.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_runbook.sh"

FP = load_script("fmnist_plan")


def write_fake_fmnist(folder: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """The four files in Fashion-MNIST's gzipped IDX format, random content (NOT the data)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) +
                    rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) +
                    rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    return folder


def run_stage(stage: str, tmp: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEVICE": "cpu", "TINY": "1", "PY": sys.executable,
           "OMP_NUM_THREADS": "1", "OUT": str(tmp / "out"), "LOGROOT": str(tmp / "logs"),
           "RES": str(tmp / "res"), "WORK": str(tmp / "work"), "DATA": str(tmp / "data"), **env}
    return subprocess.run(["bash", str(SCRIPT), stage, "c0ffee"], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """check, bench and fmnist (main run s4d, ablation frssm R = 1, lif) on one tmp folder."""
    tmp = tmp_path_factory.mktemp("runbook")
    write_fake_fmnist(tmp / "data" / "fashion-mnist-gz")
    before = sorted((ROOT / "results").iterdir())
    out = {"tmp": tmp}
    for stage, env in (("check", {}), ("bench", {}),
                       ("fmnist", {"FM_MODELS": "s4d", "FM_REFRACTORY": "1"})):
        out[stage] = run_stage(stage, tmp, **env)
    out["results_untouched"] = sorted((ROOT / "results").iterdir()) == before
    return out


def _ok(proc: subprocess.CompletedProcess, stage: str, tmp: Path):
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert f"stage {stage}: every step succeeded" in proc.stdout
    for log in (tmp / "logs").glob(f"{stage}-*/**/*.log"):
        assert "Traceback" not in log.read_text(), log


def _tar(tmp: Path, stage: str) -> tarfile.TarFile:
    return tarfile.open(tmp / "out" / f"spikelib-{stage}.tar.gz")


def test_usage():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    for args in (["nonsense", "abc"], ["bench"]):              # bad stage; no commit
        bad = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
        assert bad.returncode == 2 and "usage" in bad.stderr


def test_check_stage(stages):
    tmp = stages["tmp"]
    _ok(stages["check"], "check", tmp)
    assert "spikelib imports from" in stages["check"].stdout
    raw = tmp / "data" / "FashionMNIST" / "raw"                 # unpacked where spikelib reads
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"])
    with _tar(tmp, "check") as tar:
        assert any(n.endswith("summary.txt") for n in tar.getnames())


def test_bench_stage(stages):
    tmp = stages["tmp"]
    _ok(stages["bench"], "bench", tmp)
    res = tmp / "res"
    ts = json.loads((res / "bench-train-step-cpu.json").read_text())
    assert ts["complete"] and ts["lengths"] == [16, 32]
    lif = [r for r in ts["rows"] if r["model"] == "lif"]
    assert [(r["length"], r["warmup_calls"]) for r in lif] == [(16, 1), (32, 0)]
    assert {"lif_over_frssm_L16", "lif_over_frssm_L32"} <= set(
        ts["goals_reported_not_asserted"]["measured"])
    pv = json.loads((res / "bench-parallel-vs-serial-cpu.json").read_text())
    assert pv["complete"] and {r["neuron"] for r in pv["neurons"]} == {"ddsn", "psn",
                                                                       "sliding_psn"}
    sc = json.loads((res / "scifar-epoch-cpu-smoke.json").read_text())
    assert sc["complete"] and all(r["label"].startswith("estimated from") for r in sc["rows"])
    world = json.loads(next((tmp / "logs").glob("bench-*/torchrun/torchrun-world1.json"))
                       .read_text())
    assert world["complete"] and world["provenance"]["world_size"] == 1
    assert world["provenance"]["commit"] == "c0ffee"
    with _tar(tmp, "bench") as tar:
        names = tar.getnames()
    for f in ("bench-train-step-cpu.json", "bench-parallel-vs-serial-cpu.json",
              "scifar-epoch-cpu-smoke.json"):
        assert f"./results/{f}" in names
    assert any(n.endswith("torchrun/torchrun-world1.json") for n in names)
    assert stages["results_untouched"]                          # nothing went to results/


def test_fmnist_stage(stages):
    from spikelib.checkpoint import load_weights
    tmp = stages["tmp"]
    _ok(stages["fmnist"], "fmnist", tmp)
    summary = json.loads((tmp / "res" / "fmnist-runbook-cpu.json").read_text())
    E = summary["epochs"]
    assert 1 <= E <= 2 and summary["epochs_range"] == [1, 2] and summary["all_complete"]
    assert "profile" not in summary and summary["run_profile"] == "smoke"   # not a run itself
    runs = {"fmnist-s4d-smoke-s0", "fmnist-frssm-R1-smoke-s0", "fmnist-lif-smoke-s0"}
    # every run was probed; tiny runs fit, so the ablation and lif join and nothing is absent
    assert set(summary["probes"]) == runs and set(summary["runs"]) == runs
    assert summary["absent"] == {} and summary["provenance"]["commit"] == "c0ffee"
    with _tar(tmp, "fmnist") as tar:
        names = set(tar.getnames())
        for run in runs:
            r = json.loads((tmp / "res" / f"{run}.json").read_text())
            assert r["complete"] and r["config"]["epochs"] == E == len(r["history"])
            assert f"--epochs {E}" in r["provenance"]["command"]      # the count is recorded
            assert summary["runs"][run]["complete"] and summary["runs"][run]["epochs"] == E
            assert {f"./results/{run}.json", f"./weights/{run}.pt"} <= names
            tar.extract(f"./weights/{run}.pt", tmp / "unpacked", filter="data")
            model, meta = load_weights(tmp / "unpacked" / "weights" / f"{run}.pt")
            assert meta["run"] == run and model.cfg.name == r["model"]
        assert "./results/fmnist-runbook-cpu.json" in names
    ablation = json.loads((tmp / "res" / "fmnist-frssm-R1-smoke-s0.json").read_text())
    assert ablation["model_config"]["refractory"] == 1


# ------------------------------------------------------------------------------------------
# the plan, on made-up probe reports (seconds chosen for round numbers, not measurements)

def report(name, role, step_s, phases=("A", "B"), ok=True, slower_in_a=2.0):
    """A probe report: 100 steps, 10 val and 20 test batches per run; eval batch = step / 2,
    diagnostics = one step, startup 10 s; with a phase B, phase A is `slower_in_a` times
    slower (more runs shared the device)."""
    def phase(k):
        s = step_s * (slower_in_a if k == "A" and "B" in phases else 1.0)
        return {"steps": 50, "train_step_s": s, "eval_batches": 10, "eval_batch_s": s / 2,
                "diag_s": s}
    return {"name": name, "role": role, "ok": ok, "model": name, "startup_s": 10.0,
            "steps_per_epoch": 100, "val_batches": 10, "test_batches": 20,
            "phases": {k: phase(k) for k in phases}, "train_args": ["--model", name]}


def test_epochs_that_fit_is_the_largest_that_fits():
    r = report("s4d", "main", 0.1, phases=("A",))     # epoch 10 + 0.5 + 0.1 = 10.6 s; fixed 11 s
    assert FP.epoch_seconds(r, "A") == pytest.approx(10.6)
    assert FP.total_seconds(r, "A", 0) == pytest.approx(11.0)
    for available in (20.0, 100.0, 250.0, 1000.0):
        E = FP.epochs_that_fit(r, "A", available)
        assert FP.SAFETY * FP.total_seconds(r, "A", E) <= available + 1e-9
        assert FP.SAFETY * FP.total_seconds(r, "A", E + 1) > available
    assert FP.epochs_that_fit(r, "A", 5.0) == 0


def test_plan_clips_to_five_to_twenty():
    main = [report(m, "main", 0.1, phases=("A",)) for m in ("s4d", "frssm")]
    assert FP.plan(main, 10_000)["epochs"] == 20                     # 700+ fit: capped
    p = FP.plan(main, 1.25 * (11 + 8 * 10.6) + 0.1)                 # 8 fit, not 9
    assert p["epochs"] == 8 and not p["below_minimum"] and p["runs"] == ["s4d", "frssm"]
    low = FP.plan(main, 1.25 * (11 + 3 * 10.6) + 0.1)               # 3 < 5: said so
    assert low["epochs"] == 3 and low["below_minimum"] and low["runs"] == ["s4d", "frssm"]
    none = FP.plan(main, 5.0)
    assert none["epochs"] == 0 and none["runs"] == [] and set(none["absent"]) == {"s4d",
                                                                                   "frssm"}


def test_plan_optional_runs_join_only_if_free():
    main = [report(m, "main", 0.1) for m in ("s4d", "frssm")]     # phase A twice as slow
    abl = [report(f"R{r}", "ablation", 0.1, phases=("A",)) for r in (0, 1)]
    lif = report("lif", "lif", 5.0, phases=("A",))                 # serial BPTT: slow steps
    roomy = FP.plan(main + abl + [lif], 10_000)      # phase B fits 20; phase A (2x) too
    assert roomy["epochs"] == 20 and roomy["runs"] == ["s4d", "frssm", "R0", "R1"]
    assert "serial BPTT" in roomy["absent"]["lif"] and "projection" in roomy["absent"]["lif"]
    # phase B fits 15 epochs, phase A only about half: the ablation would cost epochs
    tight = FP.plan(main + abl, 1.25 * (11 + 15 * 10.6) + 1)
    assert tight["epochs"] == 15 and tight["runs"] == ["s4d", "frssm"]
    assert set(tight["absent"]) == {"R0", "R1"} and "fewer than the 15" in tight["absent"]["R0"]


def test_plan_leaves_out_failed_probes():
    reports = [report("s4d", "main", 0.1, phases=("A",)),
               report("pssm", "main", 0.1, phases=("A",), ok=False) | {"error": "OOM"}]
    p = FP.plan(reports, 10_000)
    assert p["runs"] == ["s4d"] and "probe failed (OOM)" in p["absent"]["pssm"]
    with pytest.raises(ValueError):
        FP.plan(reports, 100, min_epochs=6, max_epochs=5)


def test_full_profile_weights_fit_the_returned_files():
    """The returned tar holds every run's weights: at the full profile (d_model 128, 4 layers,
    d_state 64) each state dict is about 0.8 MiB here, so nine runs stay far below one 16 MiB
    file (pack splits it anyway if not)."""
    import io

    from spikelib.config import RunConfig, resolve
    from spikelib.models import build
    for m in ("s4d", "pssm", "ddsn"):
        _, mcfg = resolve(RunConfig(model=m, dataset="fmnist", profile="full"))
        buf = io.BytesIO()
        torch.save(build(**mcfg.to_dict()).state_dict(), buf)
        assert len(buf.getvalue()) < 1.5 * 2 ** 20, m


def test_probe_reports_a_failure_without_blocking_the_others(tmp_path):
    """A probe that raises writes ok: false with the error, marks both barriers for itself (so
    the other probes do not wait for it) and exits 1; the plan then leaves its run out."""
    fmnist_probe = load_script("fmnist_probe")
    args = ["--name", "bad", "--report", str(tmp_path / "bad.json"), "--sync",
            str(tmp_path / "sync"), "--expect", "2", "--", "--model", "nosuch"]
    assert fmnist_probe.main(args) == 1            # argparse: invalid choice for --model
    assert "SystemExit" in json.loads((tmp_path / "bad.json").read_text())["error"]
    args[-1] = "s4d"
    args += ["--set", "nosuch=1"]                  # parses, then the config raises ValueError
    assert fmnist_probe.main(args) == 1
    r = json.loads((tmp_path / "bad.json").read_text())
    assert not r["ok"] and "nosuch" in r["error"]
    assert {p.name for p in (tmp_path / "sync").iterdir()} == {"ready.bad", "done-a.bad"}
    assert "probe failed" in FP.plan([r], 1000)["absent"]["bad"]


def test_fmnist_stage_without_data_fails_clearly(tmp_path):
    proc = run_stage("fmnist", tmp_path)                       # tmp_path/data does not exist
    assert proc.returncode == 1 and "no Fashion-MNIST" in proc.stdout
    assert "data\t1" in proc.stdout                             # the steps table
    assert (tmp_path / "out" / "spikelib-fmnist.tar.gz").is_file()   # packed all the same
