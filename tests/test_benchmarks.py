"""Smoke tests of the benchmark scripts: tiny sizes on CPU, into a temporary folder.

Each runs a script's ``main`` as the command line would and checks the JSON it writes:
provenance (commit, device, command, seed, torch version) and sane values. The numbers
themselves are not checked — these scripts measure, they do not assert goals.
"""
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--d-model", "8", "--n-layers", "1", "--d-state", "4"]


@pytest.fixture(autouse=True)
def _keep_threads():
    """The scripts set torch's thread count (1 on CPU): restore it for the other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _one_json(folder: Path, prefix: str) -> dict:
    files = sorted(folder.glob(f"{prefix}-*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _check_provenance(d: dict, script: str, seed: int):
    prov = d["provenance"]
    assert prov["commit"] == "c0ffee" and prov["device"] and prov["device_type"] == "cpu"
    assert prov["torch"] == torch.__version__ and prov["seed"] == seed == d["seed"]
    assert f"benchmarks/{script}.py" in prov["command"] and "--commit c0ffee" in prov["command"]
    assert d.get("profile", "smoke") == "smoke" and d["device_type"] == "cpu"
    assert set(d["tf32"]) >= {"cuda.matmul.allow_tf32", "float32_matmul_precision"}


def test_serial_inference(tmp_path, capsys):
    args = ["--device", "cpu", "--profile", "smoke", *TINY, "--batches", "1", "3",
            "--out", str(tmp_path), "--commit", "c0ffee", "--seed", "5"]
    assert load_script("serial_inference").main(args) == 0
    d = _one_json(tmp_path, "serial-inference")
    _check_provenance(d, "serial_inference", 5)
    models = {"s4d", "frssm", "pssm", "ddsn", "sif"}
    assert {r["model"] for r in d["rows"]} == models and len(d["rows"]) == 2 * len(models)
    for r in d["rows"]:
        assert r["steps_per_s"] > 0 and r["sequence_steps_per_s"] == \
            pytest.approx(r["batch"] * r["steps_per_s"])
    for name, layers in d["state_bytes_per_layer"].items():
        assert len(layers) == 1
        s = layers[0]
        assert s["constant_in_L"] and s["ssm_bytes"] > 0
        assert s["total_bytes"] == s["ssm_bytes"] + s["spike_bytes"]
        assert (s["spike_bytes"] == 0) == (name == "s4d"), name   # only GELU keeps no state
    assert "steps/s" in capsys.readouterr().out


def test_train_step(tmp_path, capsys):
    args = ["--device", "cpu", "--lengths", "16", "--batch", "2", "--repeats", "1",
            "--models", "s4d", "frssm", "lif", "--out", str(tmp_path), "--commit", "c0ffee",
            "--seed", "3", "--threads", "1", "--compile", "frssm", "--compile-backend", "eager"]
    assert load_script("train_step").main(args) == 0
    d = _one_json(tmp_path, "bench-train-step")
    _check_provenance(d, "train_step", 3)
    assert d["synthetic"] is True and d["lengths"] == [16]
    assert [r["model"] for r in d["rows"]] == ["s4d", "frssm", "lif"] and d["complete"]
    assert all(r["seconds"] > 0 for r in d["rows"]) and d["rows"][0]["vs_s4d"] == 1
    lif = d["rows"][-1]                 # its own timing: one warm-up call, --repeats timed
    assert (lif["warmup_calls"], lif["timed_calls"]) == (1, 1)
    assert (d["rows"][0]["warmup_calls"], d["rows"][0]["timed_calls"]) == (2, 1)   # the Timer
    measured = d["goals_reported_not_asserted"]["measured"]
    assert set(measured) == {"frssm_vs_s4d_L16", "lif_over_frssm_L16"}
    flips = d["float32_serial_vs_parallel"]                 # reported, not asserted equal
    assert set(flips) == {"frssm", "pssm", "ddsn", "sif"}   # spiking models with a parallel form
    for name, f in flips.items():                          # the script's model has 2 layers
        assert len(f["flip_fraction"]) == 2 and math.isfinite(f["max_logit_diff"]), name
        assert all(0 <= v <= 1 for v in f["flip_fraction"]), name
    (comp,) = d["compiled_vs_eager"]           # frssm compiled against its eager row above
    eager = next(r for r in d["rows"] if r["model"] == "frssm")
    assert (comp["model"], comp["length"], comp["backend"]) == ("frssm", 16, "eager")
    assert comp["eager_seconds"] == eager["seconds"] and comp["first_call_s"] > 0
    assert comp["eager_over_compiled"] == pytest.approx(eager["seconds"] / comp["seconds"])
    out = capsys.readouterr().out
    assert "x s4d" in out and "eager/compiled" in out


def test_train_step_skips_what_would_not_fit(tmp_path):
    """--max-seconds: rows projected past the limit are skipped with the reason, the file is
    still written (complete); lif at a longer length gets one call and no warm-up."""
    ts = load_script("train_step")
    rows = [{"model": "lif", "length": 16, "seconds": 2.0}, {"model": "s4d", "length": 16,
                                                              "seconds": 0.1}]
    assert ts.projection(rows, "lif", 64, 1) == 8.0       # linear in L: 2 s x 64/16
    assert ts.projection(rows, "lif", 16, 1) is None      # nothing shorter measured
    assert ts.projection(rows, "frssm", 64, 3) is None
    args = ["--device", "cpu", "--lengths", "8", "16", "--batch", "2", "--repeats", "1",
            "--models", "s4d", "lif", "--lif-max-length", "16", "--max-seconds", "0",
            "--out", str(tmp_path), "--commit", "c0ffee", "--threads", "1", "--compile", "s4d"]
    assert ts.main(args) == 0
    d = _one_json(tmp_path, "bench-train-step")
    assert d["complete"] and len(d["rows"]) == 4
    assert all(r["skipped"] and "--max-seconds 0" in r["skip_reason"] for r in d["rows"])
    assert d["goals_reported_not_asserted"]["measured"] == {}
    (comp,) = d["compiled_vs_eager"]                   # nothing eager to compare with
    assert comp["skipped"] and comp["skip_reason"] == "no eager row measured at this length"


def test_parallel_vs_serial(tmp_path, capsys):
    args = ["--device", "cpu", "--lengths", "8", "--repeats", "1", "--out", str(tmp_path),
            "--commit", "c0ffee", "--seed", "2", "--threads", "1",
            "--refractory-shape", "2", "40", "3", "--refractory-R", "1", "3",
            "--refractory-min-time", "0.01"]
    assert load_script("parallel_vs_serial").main(args) == 0
    d = _one_json(tmp_path, "bench-parallel-vs-serial")
    _check_provenance(d, "parallel_vs_serial", 2)
    timed = [r for r in d["pairs"] if "skipped" not in r]
    assert timed and all(r["parallel"]["seconds"] > 0 and r["serial"]["seconds"] > 0
                         for r in timed)
    assert {r["neuron"] for r in d["neurons"]} == {"ddsn", "psn", "sliding_psn"}
    assert set(d["ratios_vs_ddsn"]) == {"psn_over_ddsn_L8", "sliding_psn_over_ddsn_L8"}
    assert d["complete"]
    forms = d["refractory_forms"]
    assert forms["shape"] == {"batch": 2, "length": 40, "channels": 3}
    assert {r["R"] for r in forms["rows"]} == {1, 3}
    names = {r["form"] for r in forms["rows"]}
    assert {"loop", "per_step_scan", "chunked_default"} <= names and "fused" not in names  # CPU
    assert all(r["median_s"] > 0 and r["runs"] >= 1 for r in forms["rows"])
    assert all(r["loop_over_form"] == 1 for r in forms["rows"] if r["form"] == "loop")
    assert "par/ser" in capsys.readouterr().out


def test_scifar_epoch(tmp_path, capsys):
    args = ["--device", "cpu", "--profile", "smoke", *TINY, "--n-train", "100", "--batch", "8",
            "--steps", "1", "--out", str(tmp_path), "--commit", "c0ffee"]
    assert load_script("scifar_epoch").main(args) == 0
    d = _one_json(tmp_path, "scifar-epoch")
    _check_provenance(d, "scifar_epoch", 0)
    assert d["synthetic"] is True and "cannot be downloaded" in d["data_note"] and d["complete"]
    assert d["n_train_sequences"] == 90                        # 100 minus the 10% val split
    assert [r["model"] for r in d["rows"]] == ["s4d", "frssm", "pssm"]
    for r in d["rows"]:
        assert r["steps_per_epoch"] == math.ceil(90 / 8) and r["steps_timed"] == 1
        assert r["label"] == "estimated from 1 step, CPU" and not r["whole_epoch"]
        assert r["epoch_seconds"] > 0 and r["peak_memory"]["bytes"] > 0
    assert set(d["ratios_vs_s4d"]) == {"frssm_vs_s4d", "pssm_vs_s4d"}
    assert all(v > 0 for v in d["ratios_vs_s4d"].values())
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "estimated from 1 step, CPU" in out


def test_extrapolation(tmp_path, capsys):
    args = ["--device", "cpu", "--profile", "smoke", "--out", str(tmp_path / "res"),
            "--work", str(tmp_path / "work"), "--commit", "c0ffee",
            "--model-set", "frssm:refractory=1"]
    ex = load_script("extrapolation")
    assert ex.main(args) == 0
    d = _one_json(tmp_path / "res", "extrapolation")
    _check_provenance(d, "extrapolation", 0)
    assert set(d["models"]) == {"ddsn", "frssm", "sif", "s4d"}
    assert d["train"]["per_model"] == {"frssm": {"refractory": 1}}
    assert d["models"]["frssm"]["model_config"]["refractory"] == 1          # its own setting
    assert d["models"]["sif"]["model_config"]["refractory"] == 2            # the default
    assert d["models"]["frssm"]["run"].endswith("-refractory=1")
    assert math.isclose(d["learned_bound"]["mse"], ex.MSE_BOUND / 6)
    for name, m in d["models"].items():
        assert [r["length"] for r in m["rows"]] == [16, 48]
        # learned: the serial MSE at the training length (16) against 0.2 x 1/6
        assert m["learned"]["mse_at_train_length"] == m["rows"][0]["mse"]
        assert m["learned"]["met"] == (m["rows"][0]["mse"] <= ex.MSE_BOUND / 6)
        for r in m["rows"]:                         # the second pass: marks in the last 16 steps
            assert r["recent"]["window"] == 16 and math.isfinite(r["recent"]["mse"])
            assert r["recent"]["nan_count"] == 0 and r["recent"]["seed"] == 20_000 + r["length"]
        assert math.isfinite(m["test_mse_parallel"]) and Path(m["checkpoint"]).is_file()
        for r in m["rows"]:
            assert math.isfinite(r["mse"]) and r["mse"] >= 0, (name, r)
            assert r["nan_count"] == 0 and r["nonfinite_state"] == 0, (name, r)
            assert r["steps_per_s"] > 0 and r["max_abs_y"] > 0
            if name == "s4d":
                assert r["max_abs_membrane"] is None
            else:
                assert r["max_abs_membrane"] > 0
            if name == "frssm":                                 # Θ(y − θ): y is the membrane
                assert r["max_abs_membrane"] == r["max_abs_y"]
            if name == "ddsn":          # h is a convex combination of y: |h| <= max |y|
                assert r["max_abs_membrane"] <= r["max_abs_y"] * (1 + 1e-5)
    assert "MSE" in capsys.readouterr().out


def test_extrapolation_model_set_is_checked():
    ex = load_script("extrapolation")
    assert ex.parse_model_set("frssm:refractory=4") == ("frssm", "refractory", 4)
    for bad in ("refractory=4", "nosuch:refractory=4", "frssm:nosuch=1"):
        with pytest.raises(ValueError):
            ex.parse_model_set(bad)


def test_extrapolation_watch_leaves_forward_serial_unchanged():
    from spikelib.models import build
    ex = load_script("extrapolation")
    torch.manual_seed(0)
    model = build("ddsn", d_input=2, n_classes=1, d_model=8, n_layers=2, d_state=4,
                  readout="last").eval()
    x = torch.randn(3, 20, 2)
    with torch.no_grad():
        plain = model.forward_serial(x)
        with ex.watching(model, ex.Watch("cpu", membrane_is_y=False)) as w:
            watched = model.forward_serial(x)
        assert torch.equal(plain, watched) and w.has_membrane and w.max_m.item() > 0
    assert all("step" not in vars(layer.spike) for layer in model.layers)


def test_benchmarks_holds_only_benchmarks():
    """GPU orchestration (the runbook, its probe and plan, the sync check) lives in gpu/."""
    names = {p.name for p in (ROOT / "benchmarks").iterdir() if p.is_file()}
    assert not names & {"gpu_runbook.sh", "fmnist_plan.py", "fmnist_probe.py", "sync_check.py"}
    assert {"runbook.sh", "verify.py", "plan.py", "probe.py", "sync_check.py", "README.md"} <= \
        {p.name for p in (ROOT / "gpu").iterdir()}


def test_train_step_runs_the_models_as_training_does(tmp_path, monkeypatch):
    """Every timed call runs with the modules' NaN scans off (as spikelib.train runs them: a
    scan reads a value back from the GPU every call), and the switch is restored after."""
    from spikelib.temporal import finite_checks_enabled
    ts = load_script("train_step")
    seen, build = [], ts.build

    def watched(*args, **kw):
        model = build(*args, **kw)
        forward = model.forward
        model.forward = lambda *a, **k: (seen.append(finite_checks_enabled()), forward(*a, **k))[1]
        return model
    monkeypatch.setattr(ts, "build", watched)
    args = ["--device", "cpu", "--lengths", "8", "--batch", "2", "--repeats", "1", "--models",
            "s4d", "--out", str(tmp_path), "--commit", "c0ffee", "--threads", "1"]
    assert ts.main(args) == 0
    assert seen and not any(seen) and finite_checks_enabled()
    assert _one_json(tmp_path, "bench-train-step")["finite_checks"].startswith("off")
