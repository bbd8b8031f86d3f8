"""The GPU runbook (gpu/runbook.sh): every stage dry-run on CPU, its plan and its checks.

The three calls — ``check``, ``verify+bench`` (the first GPU command) and ``fmnist`` (the
second) — run once each, as the device machine runs them but with ``DEVICE=cpu TINY=1`` (tiny
models, a few steps), into a temporary folder — results, runs, logs and the tar; never
``results/`` — on a generated stand-in for Fashion-MNIST (random pixels in the four
``*-ubyte.gz`` files, NOT Fashion-MNIST), so the unpacking is exercised as well. A call passes
only if every step exited 0 (the runbook's own exit status says so) and no log holds a Python
traceback: an ImportError inside a stage fails here, not on the GPU. The whole file: about 1.5
minutes of one idle CPU core (longer when other processes share it).
"""
import gzip
import json
import os
import re
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
SCRIPT = ROOT / "gpu" / "runbook.sh"


FP = load_script("plan", "gpu")


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


def run_call(stage: str, tmp: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEVICE": "cpu", "TINY": "1", "PY": sys.executable,
           "OMP_NUM_THREADS": "1", "OUT": str(tmp / "out"), "LOGROOT": str(tmp / "logs"),
           "RES": str(tmp / "res"), "WORK": str(tmp / "work"), "DATA": str(tmp / "data"), **env}
    return subprocess.run(["bash", str(SCRIPT), stage, "c0ffee"], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """check, verify+bench and fmnist (main run s4d, ablation frssm R = 1, lif) on one tmp
    folder, with the default budgets."""
    tmp = tmp_path_factory.mktemp("runbook")
    write_fake_fmnist(tmp / "data" / "fashion-mnist-gz")
    before = sorted((ROOT / "results").iterdir())
    out = {"tmp": tmp}
    for call, env in (("check", {}), ("verify+bench", {}),
                      ("fmnist", {"FM_MODELS": "s4d", "FM_REFRACTORY": "1"})):
        out[call.replace("+", "-")] = run_call(call, tmp, **env)
    out["results_untouched"] = sorted((ROOT / "results").iterdir()) == before
    return out


def _ok(proc: subprocess.CompletedProcess, name: str, tmp: Path):
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert f"call {name}: every step succeeded" in proc.stdout
    for log in (tmp / "logs").glob(f"{name}-*/**/*.log"):
        assert "Traceback" not in log.read_text(), log


def _tar(tmp: Path, stage: str) -> tarfile.TarFile:
    return tarfile.open(tmp / "out" / f"spikelib-{stage}.tar.gz")


def test_usage():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    for args in (["nonsense", "abc"], ["bench"], ["verify+nonsense", "abc"],
                 ["bench+bench", "abc"], ["verify", "bench", "abc"]):
        bad = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
        assert bad.returncode == 2 and "usage" in bad.stderr, args
    assert not (ROOT / "benchmarks" / "gpu_runbook.sh").exists()       # moved to gpu/
    assert not list((ROOT / "benchmarks").glob("fmnist_*.py"))


def test_budgets_add_up_to_the_device_window(stages):
    """The two GPU calls with their default budgets, a start-up of 2 minutes and 2 minutes for
    the transfers, the pause between the calls and a margin fit the 15 device-minutes; each
    call states its sum, and gpu/README.md states the same arithmetic."""
    budget = {}
    for name in ("verify-bench", "fmnist"):
        m = re.search(r"call (\S+): budget (\d+) s = ([^(]+)\(", stages[name].stdout)
        assert m and m.group(1) == name, stages[name].stdout[:2000]
        parts = [int(v) for v in re.findall(r"(\d+)", m.group(3))]
        assert sum(parts) == int(m.group(2))
        budget[name] = int(m.group(2))
    assert budget == {"verify-bench": 90 + 165, "fmnist": 380}
    assert 120 + sum(budget.values()) + 120 <= 15 * 60
    readme = (ROOT / "gpu" / "README.md").read_text()
    assert "verify 90 + bench 165 = 255 s" in readme and "fmnist 380 s" in readme


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


def test_verify_stage(stages):
    """verify opens the first call: every check ran on CPU or says why not (CUDA only), and
    the file names the device and is packed with the call."""
    tmp = stages["tmp"]
    _ok(stages["verify-bench"], "verify-bench", tmp)
    v = json.loads((tmp / "res" / "verify-cpu-tiny.json").read_text())
    assert v["complete"] and v["ok"] and v["failed"] == [] and v["tiny"]
    assert v["device_type"] == "cpu" and v["device"] and v["gpu"] is None
    assert v["fused_fallback"] is None and v["running"] is None
    assert v["provenance"]["commit"] == "c0ffee"
    checks = v["checks"]
    assert list(checks) == ["triton_kernel", "train", "resume", "parallel_serial", "sync",
                            "compile"]
    assert checks["triton_kernel"]["ok"] is None and "CUDA" in checks["triton_kernel"]["skipped"]
    assert all(checks[k]["ok"] is True for k in list(checks)[1:])
    train = checks["train"]
    assert set(train["models"]) == {"s4d", "frssm", "pssm", "lif", "ddsn", "sif"}
    for name, m in train["models"].items():
        assert len(m["losses"]) == 20 and m["falling"] and m["finite"], name
        assert set(m["residual_dtypes"].values()) == {"torch.float32"}, name
    assert train["models"]["lif"]["length"] < train["models"]["frssm"]["length"]
    assert "fused AdamW" in next(iter(train["skipped_parts"]))          # CUDA only
    assert checks["resume"]["bit_identical"]
    assert all(m["float64_max_logit_diff"] <= 1e-8 for m in
               checks["parallel_serial"]["models"].values())
    assert checks["compile"]["losses_compiled"] == pytest.approx(
        checks["compile"]["losses_eager"], rel=1e-3)
    assert checks["compile"]["eager_over_compiled_step"] > 0
    with _tar(tmp, "verify-bench") as tar:
        assert "./results/verify-cpu-tiny.json" in tar.getnames()


def test_bench_stage(stages):
    tmp = stages["tmp"]
    _ok(stages["verify-bench"], "verify-bench", tmp)
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
    (comp,) = ts["compiled_vs_eager"]                       # frssm at the shortest length
    assert comp["model"] == "frssm" and comp["length"] == 16 and comp["eager_over_compiled"] > 0
    sc = json.loads((res / "scifar-epoch-cpu-smoke.json").read_text())
    assert sc["complete"] and all(r["label"].startswith("estimated from") for r in sc["rows"])
    world = json.loads(next((tmp / "logs").glob("verify-bench-*/torchrun/torchrun-world1.json"))
                       .read_text())
    assert world["complete"] and world["provenance"]["world_size"] == 1
    assert world["provenance"]["commit"] == "c0ffee"
    with _tar(tmp, "verify-bench") as tar:
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
    fmnist_probe = load_script("probe", "gpu")
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
    proc = run_call("fmnist", tmp_path)                       # tmp_path/data does not exist
    assert proc.returncode == 1 and "no Fashion-MNIST" in proc.stdout
    assert "data\t1" in proc.stdout                             # the steps table
    assert (tmp_path / "out" / "spikelib-fmnist.tar.gz").is_file()   # packed all the same


# ------------------------------------------------------------------------------------------
# gpu/verify.py and gpu/sync_check.py: the failures they must report

def test_verify_fails_loudly(tmp_path, monkeypatch, capsys):
    """A check that fails, one that raises and one that never started (out of time) each make
    the exit status 1 and are named in ``failed``; the file is written all the same."""
    verify = load_script("verify", "gpu")
    seen = []

    def sync(device, s, a):              # the file names the check under way (a kill keeps it)
        seen.append(json.loads((tmp_path / "verify-cpu-tiny.json").read_text())["running"])
        return {"ok": False, "models": {"s4d": {"ok": True}, "frssm": {"ok": False}}}
    monkeypatch.setattr(verify, "check_sync", sync)

    def boom(device, s, a):
        raise RuntimeError("kernel launch failed")
    monkeypatch.setattr(verify, "check_parallel_serial", boom)
    args = ["--device", "cpu", "--tiny", "--out", str(tmp_path), "--commit", "c0ffee",
            "--checks", "triton_kernel", "parallel_serial", "sync"]
    assert verify.main(args) == 1
    v = json.loads((tmp_path / "verify-cpu-tiny.json").read_text())
    assert v["failed"] == ["parallel_serial", "sync"] and not v["ok"] and v["complete"]
    assert "kernel launch failed" in v["checks"]["parallel_serial"]["error"]
    assert v["checks"]["triton_kernel"]["ok"] is None                    # skipped, not failed
    assert seen == ["sync"] and v["running"] is None
    assert verify.main(args[:-3] + ["sync", "--max-seconds", "0"]) == 1
    v = json.loads((tmp_path / "verify-cpu-tiny.json").read_text())
    assert "out of time" in v["checks"]["sync"]["skipped"] and v["failed"] == ["sync"]
    assert v["complete"] and v["running"] is None
    out = capsys.readouterr().out
    assert "FAILED: sync" in out and "(failed: frssm)" in out and "kernel launch failed" in out


def test_verify_reads_the_residual_dtype():
    """The hooks see what each block hands on: a block that returns bf16 is reported so."""
    from spikelib.models import build
    verify = load_script("verify", "gpu")
    model = build("frssm", d_input=1, n_classes=2, d_model=8, n_layers=2, d_state=4)
    forward = model.layers[1].forward
    model.layers[1].forward = lambda x: tuple(t.bfloat16() for t in forward(x))
    seen = {}
    hooks = verify._dtype_hooks(model, seen)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 10, 1))
    for h in hooks:
        h.remove()
    assert seen["block0_out"] == "torch.float32" and seen["block1_out"] == "torch.bfloat16"
    assert seen["final_norm_in"] == "torch.bfloat16"


def test_sync_check_counts_reads_per_step_on_cpu(monkeypatch):
    """On CPU the stand-in counts spikelib's reads of tensor values: none per training step as
    train.py runs it (one read of the epoch's sums), but the modules' NaN scans, switched on,
    read once per step and are reported."""
    sync_check = load_script("sync_check", "gpu")
    methods = {n: getattr(torch.Tensor, n) for n in sync_check.READS}
    found = sync_check.check("cpu", models=("frssm",), steps=3, batch=4, length=16, d_model=8)
    assert found["frssm"]["ok"] and found["frssm"]["syncs"] >= 1
    assert all(k.startswith("train.py:") for k in found["frssm"]["all"])
    from spikelib.temporal import finite_checks
    monkeypatch.setattr(sync_check, "finite_checks", lambda enabled: finite_checks(True))
    bad = sync_check.check("cpu", models=("frssm",), steps=3, batch=4, length=16, d_model=8)
    assert not bad["frssm"]["ok"] and any(k.startswith("_checks.py:") for k in
                                          bad["frssm"]["per_step"])
    assert {n: getattr(torch.Tensor, n) for n in sync_check.READS} == methods   # restored


def test_verify_triton_check_in_the_interpreter():
    """The kernel check itself, run on CPU in Triton's interpreter (a fresh process: the
    variable must be set before the kernel module loads) at short lengths: it passes on the
    kernel, and names the mismatches of a kernel that ignores R > 1."""
    pytest.importorskip("triton")
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "gpu")!r})
import torch
import verify
from spikelib import refractory
s = dict(verify.SIZES[True], triton_L=(1, 3, 20))
r = verify.check_triton_kernel(torch.device("cpu"), s, None)
assert r["ok"] and r["cases"] == 33 and r["mismatches"] == [] and r["fallback"] is None, r
real = refractory.refractory_fused
refractory.refractory_fused = lambda c, R, **kw: real(c, min(R, 1), **kw)
r = verify.check_triton_kernel(torch.device("cpu"), s, None)
assert not r["ok"] and "values L=20 R=8 torch.float32" in r["mismatches"], r
assert "gradient L=20 R=2" in r["mismatches"] and "gradient L=20 R=1" not in r["mismatches"]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TRITON_INTERPRET": "1",
                                           "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr[-3000:]
