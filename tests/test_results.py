"""spikelib.results: source hashes and stale results, the summary table, the command line."""
import statistics
import subprocess
import sys

import pytest

from spikelib import results


def _training(model, seed, acc, root, *, sets=None, prov=None, rate=(0.1, 0.3), name=None):
    r = {"model": model, "dataset": "fmnist", "profile": "cpu", "seed": seed, "task":
         "classification", "test_acc": acc, "test_loss": 1 - acc, "synthetic": False,
         "config": {"model_config": sets or {}}, "firing_rate": list(rate) if rate else None,
         "energy": {"total_pJ": 2e5}, "history": [{"epoch": 1, "val_acc": acc - 0.1},
                                                   {"epoch": 2, "val_acc": acc}],
         "provenance": prov or results.provenance(commit="c0ffee1234567") | {"dirty": False}}
    suffix = "".join(f"-{k}={v}" for k, v in (sets or {}).items())
    name = name or f"fmnist-{model}-cpu-s{seed}{suffix}"
    results.write_result(root / "results" / f"{name}.json", r)


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


def test_summary_table_groups_seeds(tmp_path):
    for seed, acc in enumerate((0.80, 0.82, 0.87)):
        _training("frssm", seed, acc, tmp_path)
    _training("frssm", 0, 0.70, tmp_path, sets={"refractory": 4},
              prov=results.provenance(commit="d1rty") | {"dirty": True})
    _training("s4d", 0, 0.90, tmp_path, rate=None,
              prov={"commit": "0ld", "device": "cpu", "command": "python -m spikelib.train"})
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


def test_matplotlib_is_imported_only_to_plot():
    code = ("import sys, spikelib.results, spikelib.train; "
            "assert 'matplotlib' not in sys.modules, 'imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
