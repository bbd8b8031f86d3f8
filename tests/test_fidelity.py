"""spikelib.fidelity: sample-and-hold, lag features, the linear read-out and crossing runs
against hand-made cases; layer_signals against the model's own spikes."""
import pytest
import torch

from spikelib import fidelity
from spikelib.models import build


def test_held_holds_the_last_sample():
    s = torch.tensor([0, 1, 0, 0, 1, 0.]).view(1, -1, 1)
    v = torch.tensor([5, 6, 7, 8, 9, 10.]).view(1, -1, 1)
    assert fidelity.held(s, v).flatten().tolist() == [0, 6, 6, 6, 9, 9]
    assert fidelity.held(-s, v).flatten().tolist() == [0, 6, 6, 6, 9, 9]   # OFF spikes sample too
    with pytest.raises(ValueError, match="same shape"):
        fidelity.held(s, v[:, :3])


def test_hold_error_bounds():
    y = torch.randn(2, 50, 3)
    assert fidelity.hold_error(torch.ones_like(y), y) == pytest.approx(0.0, abs=1e-12)
    assert fidelity.hold_error(torch.zeros_like(y), y) == pytest.approx(1.0)
    sparse = (torch.rand_like(y) < 0.3).float()
    assert 0 < fidelity.hold_error(sparse, y)


def test_lagged_matches_a_loop():
    s = torch.randn(2, 7, 3)
    K = 4
    f = fidelity.lagged(s, K)
    assert f.shape == (2, 7, 12)
    for t in range(7):
        for h in range(3):
            for k in range(K):
                want = s[:, t - k, h] if t - k >= 0 else torch.zeros(2)
                assert torch.equal(f[:, t, h * K + k], want)


def test_readout_r2_recovers_a_causal_filter_and_not_noise():
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(24, 60, 4, generator=g) < 0.2).float()
    w = torch.randn(4 * 3, 2, generator=g)
    y = fidelity.lagged(s, 3) @ w + 0.5                               # exactly linear, K = 3
    r2 = fidelity.readout_r2(s[:12], y[:12], s[12:], y[12:], K=3, ridge=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-6)
    assert fidelity.readout_r2(s[:12], y[:12], s[12:], y[12:], K=1) < 0.9   # too short a window
    noise = torch.randn(24, 60, 2, generator=g)
    assert fidelity.readout_r2(s[:12], noise[:12], s[12:], noise[12:], K=3) < 0.05


def test_runs_counts_consecutive_crossings():
    c = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1.]).view(1, -1, 1)
    r = fidelity.runs(c)
    assert r["mean_run"] == pytest.approx(2.0) and r["crossings"] == pytest.approx(6 / 9)
    assert fidelity.runs(torch.zeros(1, 4, 2))["mean_run"] == 0.0


@pytest.mark.parametrize("R", [0, 2])
def test_layer_signals_frssm(R):
    torch.manual_seed(0)
    model = build(name="frssm", d_input=1, n_classes=3, d_model=8, n_layers=2, d_state=4,
                  refractory=R).eval()
    x = torch.randn(3, 40, 1)
    _, spikes = model(x, return_spikes=True)
    sig = fidelity.layer_signals(model, x)
    assert len(sig) == 2
    for row, s in zip(sig, spikes):
        assert torch.equal(row["s"], s.float()) and row["theta"].shape == (8,)
        assert bool(((row["s"] != 0) <= (row["c"] != 0)).all())      # spikes ⊆ crossings
        if R == 0:
            assert torch.equal(row["s"] != 0, row["c"] != 0)


def test_layer_signals_s4d_has_no_crossings():
    model = build(name="s4d", d_input=1, n_classes=3, d_model=8, n_layers=1, d_state=4)
    row = fidelity.layer_signals(model, torch.randn(2, 10, 1))[0]
    assert row["c"] is None and row["theta"] is None and row["y"].shape == (2, 10, 8)
