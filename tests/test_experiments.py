"""The experiment scripts of «Settle the refractory question» (experiments/), at tiny sizes."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import load_script
from spikelib.checkpoint import save_weights
from spikelib.models import build


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _weights(tmp_path: Path, name: str, **kw) -> Path:
    torch.manual_seed(0)
    model = build(name, d_input=1, n_classes=10, d_model=8, n_layers=1, d_state=4, **kw)
    return save_weights(tmp_path / f"{name}.pt", model, {"run": f"tiny-{name}"})


def test_descent_slope_of_an_exact_gradient_is_its_norm(tmp_path):
    """S4D has an exact gradient: the central-difference slope along -g/|g| equals |g| to
    second order in eps, and a random direction's slope is far smaller."""
    descent = load_script("descent", "experiments")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 24, 1, generator=g), torch.randint(0, 10, (16,), generator=g)
    row = descent.measure(_weights(tmp_path, "s4d"), x, y, [1e-3, 1e-2], 2, 0)
    assert row["model"] == "s4d" and row["grad_norm"] > 0
    for slope in row["slope"]:
        assert slope / row["grad_norm"] == pytest.approx(1.0, abs=0.05)
    assert max(abs(s) for r in row["random_slope"] for s in r) < 0.5 * row["grad_norm"]


def test_descent_file_keeps_measured_entries(tmp_path, capsys, monkeypatch):
    """The file carries provenance; a second run keeps what it measured, --overwrite re-measures,
    and a different batch size drops the old entries (never pooled). Short random sequences
    stand in for Fashion-MNIST."""
    descent = load_script("descent", "experiments")

    def batch(idx):
        g = torch.Generator().manual_seed(len(idx))
        return torch.randn(len(idx), 24, 1, generator=g), torch.randint(0, 10, (len(idx),),
                                                                         generator=g)
    monkeypatch.setattr(descent.data, "load", lambda name: SimpleNamespace(
        train=SimpleNamespace(batch=batch)))
    w, out = _weights(tmp_path, "frssm"), tmp_path / "descent.json"
    args = [str(w), "--n", "4", "--eps", "0.01", "--random", "1", "--out", str(out)]
    assert descent.main(args) == 0
    d = json.loads(out.read_text())
    assert d["provenance"]["source_hash"] and len(d["entries"]) == 1
    entry = d["entries"][0]
    assert entry["run"] == "tiny-frssm" and len(entry["slope"]) == 1 and entry["n"] == 4
    capsys.readouterr()
    descent.main(args)
    assert "kept" in capsys.readouterr().out
    descent.main([*args, "--overwrite"])
    assert "measured" in capsys.readouterr().out
    descent.main([*args[:2], "8", *args[3:]])
    text = capsys.readouterr().out
    assert "measured" in text and "1 earlier ones not kept" in text
    with pytest.raises(SystemExit):
        descent.main([*args, "--eps", "0"])


def test_refractory_queue_copies_only_the_weights_of_its_result(tmp_path, monkeypatch):
    """Weights are published only when their provenance is the result file's: a re-made run
    whose result was lost must not pass off its weights as those of the older result."""
    queue = load_script("refractory", "experiments")
    monkeypatch.setattr(queue, "ROOT", tmp_path)
    into = tmp_path / "checkout"
    (into / "weights").mkdir(parents=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "runs" / "r").mkdir(parents=True)
    prov = {"commit": "c0ffee", "source_hash": "abc", "date": "2026-12-06T00:00:00+00:00"}
    (tmp_path / "results" / "r.json").write_text(json.dumps({"provenance": prov}))
    model = build("s4d", d_input=1, n_classes=10, d_model=8, n_layers=1, d_state=4)
    save_weights(tmp_path / "runs" / "r" / "weights.pt", model, {"provenance": {**prov,
                                                                                 "date": "later"}})
    assert queue._keep_weights("r", into) == []
    assert not (into / "weights" / "r.pt").exists()
    save_weights(tmp_path / "runs" / "r" / "weights.pt", model, {"provenance": prov})
    (tmp_path / "results" / "r.json").write_text(json.dumps({"provenance": {**prov, "note": 1}}))
    pt, meta = queue._keep_weights("r", into)                  # a note added to the result
    assert pt.is_file() and json.loads(meta.read_text())["provenance"]["date"] == prov["date"]


def test_descent_other_gradient_rule_is_its_own_entry(tmp_path, capsys, monkeypatch):
    """--refractory-grad measures the same spikingFRssm weights under another rule: the same
    loss (one forward pass), another gradient; both entries stay in the file, entries of
    weights not named in a call stay, and weights without a refractory spike are skipped."""
    descent = load_script("descent", "experiments")
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 24, 1, generator=g), torch.randint(0, 10, (8,), generator=g)
    monkeypatch.setattr(descent.data, "load", lambda name: SimpleNamespace(
        train=SimpleNamespace(batch=lambda idx: (x[idx], y[idx]))))
    fr = _weights(tmp_path, "frssm", theta_init=0.05, refractory=2)
    s4d, out = _weights(tmp_path, "s4d"), tmp_path / "descent.json"
    args = ["--n", "8", "--eps", "0.01", "--random", "0", "--out", str(out)]
    descent.main([str(fr), str(s4d), *args])
    descent.main([str(fr), *args, "--refractory-grad", "straight_through"])
    descent.main([str(s4d), *args, "--refractory-grad", "fired"])
    assert "skipped   s4d.pt" in capsys.readouterr().out
    entries = {(e["weights"], e["grad_rule"]): e
               for e in json.loads(out.read_text())["entries"]}
    assert set(entries) == {("frssm.pt", None), ("frssm.pt", "straight_through"),
                            ("s4d.pt", None)}
    own, st = entries["frssm.pt", None], entries["frssm.pt", "straight_through"]
    assert own["refractory_grad"] == st["refractory_grad"] == "mask"
    assert own["loss"] == pytest.approx(st["loss"], rel=1e-6)
    assert own["grad_norm"] != pytest.approx(st["grad_norm"], rel=1e-3)
    descent.main([str(fr), *args, "--refractory-grad", "mask"])     # its own rule: kept
    assert "kept      frssm.pt" in capsys.readouterr().out


def test_swap_warm_start_gives_back_its_run_and_thins_the_first_layer(tmp_path, capsys,
                                                                        monkeypatch):
    """experiments/swap.py: at its own R a weights file scores its recorded test accuracy (else
    it stops); a longer refractory period only removes the first layer's spikes; with no tuning
    epoch at its own R the weights stay what they were; a second call keeps the entry, other
    tuning settings measure it again, and a call on another file keeps it. Short random sequences
    stand in for Fashion-MNIST."""
    from spikelib.data import SequenceDataset
    swap = load_script("swap", "experiments")
    g = torch.Generator().manual_seed(5)
    sets = [SequenceDataset(torch.randn(n, 24, 1, generator=g),
                            torch.randint(0, 10, (n,), generator=g)) for n in (24, 8, 16)]
    monkeypatch.setattr(swap.data, "load", lambda name: SimpleNamespace(
        train=sets[0], val=sets[1], test=sets[2]))
    torch.manual_seed(0)
    model = build("frssm", d_input=1, n_classes=10, d_model=8, n_layers=2, d_state=4,
                  refractory=0, theta_init=0.05)
    acc = swap.scored(model, sets[2], 8)["acc"]
    meta = {"run": "tiny", "provenance": {"command": "python -m spikelib.train --seed=1"}}
    w = save_weights(tmp_path / "frssm.pt", model, {**meta, "test_acc": acc})
    out = tmp_path / "swap.json"
    args = [str(w), "--batch", "8", "--out", str(out)]
    assert swap.main([*args, "--R", "2"]) == 0
    (e,) = json.loads(out.read_text())["entries"]
    assert e["own"]["acc"] == acc and e["trained_R"] == 0 and e["seed"] == 1
    assert e["swapped"]["firing_rate"][0] < e["own"]["firing_rate"][0]
    assert len(e["tune_history"]) == 1 and 0 <= e["tuned"]["acc"] <= 1
    capsys.readouterr()
    swap.main([*args, "--R", "2"])
    assert capsys.readouterr().out.startswith("kept frssm.pt")
    swap.main([*args, "--R", "0", "--tune-epochs", "0"])       # replaces its entry
    (e,) = json.loads(out.read_text())["entries"]
    assert e["R"] == 0 and e["tuned"] == e["swapped"] == e["own"]
    w2 = save_weights(tmp_path / "other.pt", model, {**meta, "test_acc": acc})
    swap.main([str(w2), *args[1:], "--R", "2"])                 # the first entry stays
    assert [e["weights"] for e in json.loads(out.read_text())["entries"]] == [
        "frssm.pt", "other.pt"]
    save_weights(w, model, {**meta, "test_acc": acc + 0.5})
    with pytest.raises(SystemExit, match="not the"):
        swap.main([*args, "--overwrite"])


def test_fit_scores_the_training_split_as_the_test_split(tmp_path, capsys, monkeypatch):
    """experiments/fit.py: a weights file scores its recorded test accuracy (else it stops) and
    its training split in eval mode, the same function as on test (a split given as both scores
    the same); a second call keeps the entry, --overwrite scores it again."""
    from spikelib.data import SequenceDataset
    fit = load_script("fit", "experiments")
    g = torch.Generator().manual_seed(5)
    sets = [SequenceDataset(torch.randn(n, 24, 1, generator=g),
                            torch.randint(0, 10, (n,), generator=g)) for n in (24, 8, 16)]
    monkeypatch.setattr(fit.data, "load", lambda name: SimpleNamespace(
        train=sets[0], val=sets[1], test=sets[0]))          # train given as test too
    torch.manual_seed(0)
    model = build("frssm", d_input=1, n_classes=10, d_model=8, n_layers=2, d_state=4,
                  refractory=2, theta_init=0.05)
    acc = fit.scored(model, sets[0], 8)["acc"]
    meta = {"run": "tiny", "provenance": {"command": "python -m spikelib.train --seed 2"}}
    w = save_weights(tmp_path / "frssm.pt", model, {**meta, "test_acc": acc})
    out = tmp_path / "fit.json"
    args = [str(w), "--batch", "8", "--out", str(out)]
    assert fit.main(args) == 0
    (e,) = json.loads(out.read_text())["entries"]
    assert e["train"] == e["test"] and e["test"]["acc"] == acc
    assert (e["seed"], e["refractory"], e["d_model"]) == (2, 2, 8)
    assert 0 < sum(e["train"]["firing_rate"]) and e["train"]["loss"] > 0
    capsys.readouterr()
    fit.main(args)
    assert capsys.readouterr().out.startswith("kept frssm.pt")
    save_weights(w, model, {**meta, "test_acc": acc + 0.5})
    with pytest.raises(SystemExit, match="not the"):
        fit.main([*args, "--overwrite"])
