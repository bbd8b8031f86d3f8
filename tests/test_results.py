"""spikelib.results and the modules it gathers (provenance, resultfiles, summary): source
hashes and stale results, the summary table and the choices made on validation, the plot and the
command line, the one atomic writer."""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from spikelib import _io, metrics, provenance, resultfiles, results, summary

OPS = {"spiking": True, "length": 4, "mix_fan_out": 4, "encoder_macs": 8, "mix_macs": [32],
       "glu_macs": [8], "readout_macs": 20, "readout_adds": 8, "state_macs": [64],
       "neuron_macs": [0]}


def _training(model, seed, acc, root, *, sets=None, prov=None, rate=(0.1, 0.3), name=None,
              val=None, config=None, history=None, test_loss=None):
    cfg = {"model": model, "dataset": "fmnist", "profile": "cpu", "seed": seed,
           "model_config": sets or {}, **(config or {})}
    r = {"model": model, "dataset": "fmnist", "profile": "cpu", "seed": seed, "task":
         "classification", "test_acc": acc, "test_loss": 1 - acc if test_loss is None
         else test_loss, "synthetic": False, "config": cfg,
         "firing_rate": list(rate) if rate else None,
         "ops": {**OPS, "spiking": bool(rate)}, "sops": [10.0, 30.0] if rate else None,
         "history": history or [{"epoch": 1, "val_acc": (val or acc) - 0.1, "train_loss": 1.0,
                                 "val_loss": 1.0},
                                {"epoch": 2, "val_acc": val or acc, "train_loss": 0.5,
                                 "val_loss": 0.6}],
         "provenance": prov or results.provenance(commit="c0ffee1234567") | {"dirty": False}}
    if not rate:
        r["ops"]["mix_macs"] = [32]
    suffix = "".join(f"-{k}={v}" for k, v in (sets or {}).items())
    name = name or f"fmnist-{model}-cpu-s{seed}{suffix}"
    path = root / "results" / f"{name}.json"
    if r["provenance"].get("source_hash"):
        results.write_result(path, r)
    else:                                   # a file written before sources were hashed
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


def test_code_status_current_stale_unknown(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("a.py", "b.py", "c.py"):
        (pkg / name).write_text(f"# {name}\n")
    files = results.source_files(pkg)
    assert set(files) == {"a.py", "b.py", "c.py"} and len(set(files.values())) == 3
    result = {"provenance": {"source_hash": results.source_hash(files), "source_files": files}}
    assert results.code_status(result, results.source_files(pkg)) == \
        {"status": "current", "changed": []}
    (pkg / "b.py").write_text("# b.py, edited\n")
    (pkg / "c.py").unlink()
    (pkg / "d.py").write_text("# new\n")
    assert results.code_status(result, results.source_files(pkg)) == \
        {"status": "stale", "changed": ["b.py", "c.py", "d.py"]}
    old = {"provenance": {"commit": "abc", "device": "cpu", "command": "python -m x"}}
    assert results.code_status(old) == {"status": "unknown", "changed": None}   # not an error
    # a result made now by the installed spikelib is current
    assert results.code_status({"provenance": results.provenance(commit="x")})["status"] == \
        "current"


def test_code_status_checks_every_segment_and_takes_a_path(tmp_path):
    """A run resumed after a code change: its last segment (and provenance) match the sources
    now, its first does not — stale, naming the epochs."""
    now = provenance.source_files()
    prov = provenance.provenance(commit="x")
    resumed = {"provenance": prov, "segments": [
        {"epochs": [0, 1], "source_hash": "0ldc0de"},
        {"epochs": [1, 3], "source_hash": prov["source_hash"]}]}
    status = results.code_status(resumed, now)
    assert status["status"] == "stale" and status["changed"] == ["epochs 1-1: sources 0ldc0de"]
    resumed["segments"][0]["source_hash"] = prov["source_hash"]
    assert results.code_status(resumed, now) == {"status": "current", "changed": []}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(resumed))
    assert results.code_status(path, now) == results.code_status(str(path), now)
    assert results.code_status(path, now)["status"] == "current"


def test_new_results_need_a_source_hash_old_files_still_load(tmp_path):
    prov = results.provenance(commit="c")
    with pytest.raises(ValueError, match="source_hash"):
        results.write_result(tmp_path / "results" / "a.json",
                             {"provenance": {k: prov[k] for k in ("commit", "device", "command")}})
    legacy = {"model": "s4d", "dataset": "fmnist", "test_acc": 0.5, "provenance":
              {"commit": "0ld", "device": "cpu", "command": "python -m spikelib.train"}}
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "old.json").write_text(json.dumps(legacy))
    (loaded,) = results.load_results(root=tmp_path)
    assert results.code_status(loaded)["status"] == "unknown"


def test_summary_table_groups_seeds(tmp_path):
    for seed, acc in enumerate((0.80, 0.82, 0.87)):
        _training("frssm", seed, acc, tmp_path)
    _training("frssm", 0, 0.70, tmp_path, sets={"refractory": 4},
              prov=results.provenance(commit="d1rty") | {"dirty": True})
    _training("s4d", 0, 0.90, tmp_path, rate=None,
              prov={"commit": "0ld", "device": "cpu", "command": "python -m spikelib.train"},
              name="legacy")
    results.write_result(tmp_path / "results" / "bench-x-cpu.json",
                         {"benchmark": "x", "provenance": results.provenance(commit="b")})
    rows = results.summary_table(results.load_results(root=tmp_path))
    assert [(r["model"], r["settings"]) for r in rows] == \
        [("frssm", ""), ("frssm", "refractory=4"), ("s4d", "")]      # the benchmark is left out
    frssm = rows[0]
    assert frssm["seeds"] == [0, 1, 2] and frssm["metric"] == "test_acc"
    assert frssm["mean"] == pytest.approx(statistics.fmean([0.80, 0.82, 0.87]))
    assert frssm["spread"] == pytest.approx(statistics.stdev([0.80, 0.82, 0.87]))
    assert frssm["firing_rate"] == pytest.approx(0.2) and frssm["code"] == "current"
    assert rows[1]["spread"] is None and rows[2]["firing_rate"] is None
    assert rows[2]["code"] == "unknown" and rows[2]["commits"] == ["0ld"]
    text = results.format_summary(rows)
    assert text[0]["test"] == f"{100 * frssm['mean']:.2f} ± {100 * frssm['spread']:.2f} %"
    assert text[2]["firing"] == "–" and text[0]["commit"] == "c0ffee1234"
    assert text[1]["commit"] == "d1rty*"                       # uncommitted changes marked
    md = results.markdown(text).splitlines()
    assert md[0].startswith("| dataset | model | settings |") and len(md) == 2 + len(rows)


def test_summary_never_pools_different_runs(tmp_path):
    """A --lr 1e-4 run and a default run, both seed 0, and a 1-epoch run: three rows, each
    naming what differs from the defaults."""
    _training("frssm", 0, 0.80, tmp_path)
    _training("frssm", 0, 0.30, tmp_path, config={"lr": 1e-4}, name="lr")
    _training("frssm", 0, 0.50, tmp_path, config={"epochs": 1, "limit_train": 128}, name="e1")
    rows = results.summary_table(results.load_results(root=tmp_path))
    assert sorted((r["settings"], r["seeds"]) for r in rows) == \
        [("", [0]), ("epochs=1,limit_train=128", [0]), ("lr=0.0001", [0])]


def test_diverged_seeds_are_marked_and_never_averaged(tmp_path):
    """A classification seed with a NaN loss still scores ~10 %; a regression seed's NaN loss
    is written as null. Both are named in the row and left out of its numbers."""
    for seed, acc in enumerate((0.80, 0.84)):
        _training("frssm", seed, acc, tmp_path)
    nan_hist = [{"epoch": 1, "val_acc": 0.1, "train_loss": float("nan"), "val_loss": 1.0},
                {"epoch": 2, "val_acc": 0.1, "train_loss": 2.3, "val_loss": 2.3}]
    _training("frssm", 2, 0.10, tmp_path, history=nan_hist)
    _training("frssm", 3, 0.10, tmp_path, history=[{**h, "val_loss": None} for h in nan_hist])
    (row,) = results.summary_table(results.load_results(root=tmp_path))
    assert row["seeds"] == [0, 1, 2, 3] and row["diverged"] == [2, 3]
    assert row["mean"] == pytest.approx(0.82) and row["val"] == pytest.approx(0.82)
    assert results.format_summary([row])[0]["seeds"] == "0,1,2,3 (diverged: 2,3)"
    assert summary.goal_verdict([r for r in results.load_results(root=tmp_path)], [], 1, 1) \
        == "2 seeds: not judged"


def test_summary_energy_is_the_whole_bill_recomputed_from_ops(tmp_path):
    _training("frssm", 0, 0.8, tmp_path)
    (row,) = results.summary_table(results.load_results(root=tmp_path))
    want = 4.6 * (8 + 8 + 20 + 64) + 0.9 * (8 + 40)        # state update included
    assert row["energy_pJ"] == pytest.approx(want)
    assert sum(row["energy_split"].values()) == pytest.approx(want)
    assert row["energy_split"]["state_update_pJ"] == pytest.approx(4.6 * 64)


class _NoTest(dict):
    """A result whose test numbers must not be read."""
    def __getitem__(self, key):
        if key in ("test_acc", "test_loss"):
            raise AssertionError(f"a selection helper read {key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in ("test_acc", "test_loss"):
            raise AssertionError(f"a selection helper read {key}")
        return super().get(key, default)


def test_selection_reads_validation_never_test(tmp_path):
    """Within the budget, the setting with the higher final validation accuracy wins even
    when its test accuracy is lower; the helpers never touch test_acc."""
    for seed in range(3):
        _training("pssm", seed, 0.90, tmp_path, val=0.70, sets={"rate_penalty": 1.0},
                  name=f"a{seed}")                                      # best on test
        _training("pssm", seed, 0.60, tmp_path, val=0.80, sets={"psn_order": 8},
                  name=f"b{seed}")                                      # best on validation
        _training("pssm", seed, 0.99, tmp_path, val=0.99, sets={"psn_order": 4},
                  rate=(0.5, 0.5), name=f"c{seed}")                     # over the budget
        _training("s4d", seed, 0.95, tmp_path, val=0.81, rate=None, name=f"s{seed}")
    found = [_NoTest(r) for r in results.load_results(root=tmp_path)]
    best = summary.select_best(found, "pssm", budget=0.3)
    assert {summary.settings(r) for r in best} == {"psn_order=8"} and len(best) == 3
    assert summary.settings(summary.select_best(found, "pssm")[0]) == "psn_order=4"
    one_seed = [r for r in found if r["seed"] == 0]
    assert summary.settings(summary.promote(one_seed, "pssm", budget=0.3)[0]) == "psn_order=8"
    s4d = [r for r in found if r["model"] == "s4d"]
    assert summary.goal_verdict(best, s4d, points=1.0, budget=0.3) == "met"   # 80 vs 81 (val)
    assert summary.goal_verdict(best, s4d, points=0.5, budget=0.3) == "not met"
    assert summary.goal_verdict(s4d, s4d, 1.0, 0.3) == "baseline"
    assert summary.val_mean(best) == pytest.approx(0.80)


def test_results_command_line_and_plot(tmp_path, capsys):
    for seed, acc in enumerate((0.8, 0.9)):
        _training("pssm", seed, acc, tmp_path)
    png = tmp_path / "curves.png"
    assert results.main(["--root", str(tmp_path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "pssm" in out and "85.00 ± 7.07 %" in out and "current" in out
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert results.main(["--root", str(tmp_path), "--markdown"]) == 0
    assert "| fmnist | pssm |" in capsys.readouterr().out


def test_plot_one_line_per_configuration_legend_outside(tmp_path):
    for seed in range(3):
        _training("frssm", seed, 0.8 + seed / 100, tmp_path)
    _training("frssm", 0, 0.7, tmp_path, sets={"refractory": 4})
    fig = results.plot(results.load_results(root=tmp_path))
    curves, scatter = fig.axes
    assert len(curves.get_lines()) == 2 and curves.get_legend() is None
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 2
    assert any("3 seeds" in t.get_text() for t in fig.legends[0].get_texts())
    assert len(curves.collections) == 1                  # the band of the three seeds


def test_results_command_line_errors(tmp_path, capsys, monkeypatch):
    _training("pssm", 0, 0.8, tmp_path)
    root = ["--root", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        results.main(root + ["--profile", "bogus"])
    assert exit_.value.code != 0
    assert results.main(root + ["--model", "lif"]) == 1            # nothing matches: not 0
    assert "no training results" in capsys.readouterr().err
    for bad in (str(tmp_path / "nowhere" / "x.png"), str(tmp_path / "out.xyz")):
        assert results.main(root + ["--plot", bad]) == 2
        assert "--plot" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert results.main(root + ["--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    with pytest.raises(ImportError, match="pip install"):
        results.plot([])


def test_results_filters(tmp_path, capsys):
    _training("pssm", 0, 0.8, tmp_path)
    _training("frssm", 0, 0.8, tmp_path)
    _training("frssm", 0, 0.7, tmp_path, sets={"refractory": 4})
    assert results.main(["--root", str(tmp_path), "--model", "frssm", "--settings",
                         "refractory=4"]) == 0
    body = capsys.readouterr().out.splitlines()[2:]
    assert len(body) == 1 and "refractory=4" in body[0]
    assert results.main(["--root", str(tmp_path), "--settings", "defaults"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_the_atomic_writer_mode_and_unique_temporary_files(tmp_path, monkeypatch):
    """Results are readable by others (0644 under umask 022, not mkstemp's 0600); every write
    goes through its own temporary file, so two writers never share one."""
    old = os.umask(0o022)
    try:
        p = results.write_result(tmp_path / "r.json", {"provenance": results.provenance("c")})
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644
    temps, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: temps.append(a) or real(a, b))
    from spikelib import checkpoint
    checkpoint.save_checkpoint(tmp_path / "ck.pt", {"a": 1})
    checkpoint.save_checkpoint(tmp_path / "ck.pt", {"a": 2})
    _io.write_atomic(tmp_path / "ck.pt", b"x")
    assert len(set(temps)) == 3 and all(str(tmp_path) in str(t) for t in temps)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ck.pt", "r.json"]


def test_the_results_layer_is_split_by_job():
    """provenance, result files and the summary are their own modules; results gathers them;
    every public module of the layer says what it exports."""
    for mod in (provenance, resultfiles, summary, results, metrics):
        assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__), mod.__name__
    assert {"argparse", "json", "os"}.isdisjoint(results.__all__)
    assert results.summary_table is summary.summary_table
    assert results.code_status is provenance.code_status
    assert results.write_result is resultfiles.write_result


def test_matplotlib_is_imported_only_to_plot():
    code = ("import sys, spikelib.results, spikelib.train; "
            "assert 'matplotlib' not in sys.modules, 'imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_committed_energy_headline_is_the_whole_bill():
    """Issue 19: the summary's energy of every committed CPU-profile row is the whole bill —
    recomputed from its files' counts, the sum of every part of the split, the S4D state update
    and the neurons' arithmetic included — and the state update is the same for S4D and a
    spiking model of the same size (the memory costs what it costs). Properties, not numbers:
    re-made runs change the values."""
    root = results.find_root(results.__file__)
    runs = results.load_results("fmnist-*-cpu-*.json", root=root)
    rows = {(r["model"], r["settings"]): r for r in results.summary_table(runs)}
    assert {("s4d", ""), ("pssm", "rate_penalty=1.0")} <= set(rows)
    for key, row in rows.items():
        split = row["energy_split"]
        assert math.isclose(row["energy_pJ"], sum(split.values()), rel_tol=1e-9), key
        assert split["state_update_pJ"] > 0 and split["neuron_pJ"] >= 0, key
    s4d, pssm = rows[("s4d", "")], rows[("pssm", "rate_penalty=1.0")]
    assert pssm["energy_split"]["neuron_pJ"] > 0 == s4d["energy_split"]["neuron_pJ"]
    assert math.isclose(s4d["energy_split"]["state_update_pJ"],
                        pssm["energy_split"]["state_update_pJ"], rel_tol=1e-9)
    one = next(r for r in runs if r["model"] == "s4d")
    assert metrics.energy_of(one)["whole_pJ"] > metrics.energy_of(one)["state_update_pJ"]
