"""book/_runs.py, the chapters' one rule for grouping committed runs: a setting's current seeds
if it has any, else its older ones, never the two pooled."""
import copy
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "book"))
    return importlib.import_module("_runs")


def _seeds(n_current: int, n_older: int, name="fmnist-s4d-cpu-s0.json") -> list[dict]:
    base = json.loads((ROOT / "results" / name).read_text())
    out = []
    for i in range(n_current + n_older):
        r = copy.deepcopy(base)
        r["seed"] = i
        if i >= n_current:             # made by other sources than those installed now
            r["provenance"]["source_hash"] = "0" * 16
        out.append(r)
    return out


@pytest.mark.parametrize("n_current,n_older", [(2, 1), (0, 2), (3, 0)])
def test_current_seeds_are_never_pooled_with_older_ones(runs, n_current, n_older):
    rs = _seeds(n_current, n_older)
    assert runs.older([rs[0]]) == (n_current == 0)
    groups = runs.current_or_older(rs)
    assert list(groups) == [("s4d", "")]
    kept = [r["seed"] for r in groups[("s4d", "")]]
    assert kept == (list(range(n_current)) or list(range(n_older)))


def test_settings_form_separate_groups(runs):
    rs = _seeds(1, 0) + _seeds(1, 0, "fmnist-frssm-cpu-s0-refractory=0.json")
    assert set(runs.current_or_older(rs)) == {("s4d", ""), ("frssm", "refractory=0")}
