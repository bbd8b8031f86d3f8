"""spikelib.models: parallel ≡ serial (float64), spikes, validation, groups, op counts."""
import json

import pytest
import torch

from spikelib import metrics
from spikelib.models import MODELS, ModelConfig, build, serial_agreement

B, L, D_IN = 2, 24, 3
SMALL = dict(d_input=D_IN, n_classes=5, d_model=8, n_layers=2, d_state=4, theta_init=0.5)
MARGIN = 1e-9   # spikes must agree wherever |membrane − θ| > MARGIN (fp64 round-off ~1e-14)
PARALLEL = [("s4d", {}), ("frssm", {}), ("frssm", {"refractory": 0}), ("pssm", {"psn_order": 5}),
            ("ddsn", {}), ("ddsn", {"ddsn_spike": "integer"}), ("sif", {}),
            ("sif", {"readout": "last"})]


def _model(name, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return build(name, **{**SMALL, **kw}).to(dtype).eval()


def _x(dtype=torch.float64, length=L, seed=1):
    return torch.randn(B, length, D_IN, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("name, kw", PARALLEL, ids=[f"{n}-{'-'.join(map(str, k.values()))}"
                                                    for n, k in PARALLEL])
def test_parallel_equals_serial_float64(name, kw):
    model, x = _model(name, **kw), _x()
    with torch.no_grad():
        logits, spikes = model(x, return_spikes=True)
        logits_s, spikes_s = model.forward_serial(x, return_spikes=True)
        dist = model.distances(x)
    assert min(d.min().item() for d in dist) > MARGIN     # no decision within the margin
    torch.testing.assert_close(logits_s, logits, rtol=0, atol=1e-8)
    for s, s_ser in zip(spikes, spikes_s):
        assert s.shape == (B, L, SMALL["d_model"])
        if name == "s4d":
            torch.testing.assert_close(s_ser, s, rtol=0, atol=1e-8)
        else:
            assert torch.equal(s, s_ser)
    if name != "s4d":
        assert 0 < sum(s.sum().item() for s in spikes)     # the check saw spikes


def test_lif_serial_forms_agree():
    model, x = _model("lif"), _x()
    with torch.no_grad():
        a, sa = model(x, return_spikes=True)
        b, sb = model.forward_serial(x, return_spikes=True)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-8)
    assert all(torch.equal(p, q) for p, q in zip(sa, sb))


@pytest.mark.parametrize("name", [m for m in MODELS if m not in ("s4d", "lif")])
def test_float32_flips_are_reported(name, record_property):
    """float32: the two forms may round a decision differently; the fraction is reported only."""
    model = _model(name, dtype=torch.float32)
    agree = serial_agreement(model, _x(torch.float32, length=64))
    record_property(f"{name}_float32_flip_fraction", agree["flip_fraction"])
    record_property(f"{name}_float32_max_logit_diff", agree["max_logit_diff"])
    assert all(0.0 <= f <= 1.0 for f in agree["flip_fraction"])


def test_spike_properties():
    x = _x()
    with torch.no_grad():
        _, frssm = _model("frssm", refractory=3)(x, return_spikes=True)
        _, sif = _model("sif", spike_levels=2, theta_init=0.2)(x, return_spikes=True)
    for s in frssm:
        assert set(s.unique().tolist()) <= {0.0, 1.0}
        c = s.cumsum(1)                                    # ≤ 1 spike in any R + 1 = 4 steps
        window = c[:, 4:] - c[:, :-4]
        assert window.max() <= 1 and s[:, :4].sum(1).max() <= 1
    values = set(torch.cat([s.flatten() for s in sif]).tolist())
    assert values <= {0.0, 1.0, 2.0} and 2.0 in values  # integer spikes, clipped at N = 2


def test_gradients_reach_theta_and_ssm():
    model = build("frssm", **SMALL).double()
    model(_x()).square().sum().backward()
    spike = model.layers[0].spike.threshold
    assert spike.theta.grad is not None and torch.isfinite(spike.theta.grad).all()
    assert spike.theta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.layers[0].ssm.parameters() if p.requires_grad)


@pytest.mark.parametrize("bad, match", [
    (torch.randn(2, 5), "x"), (torch.randn(2, 5, 2), "x"),
    (torch.full((2, 5, 3), float("nan")), "x"), (torch.ones(2, 5, 3, dtype=torch.long), "x"),
])
def test_forward_validates_x(bad, match):
    model = build("s4d", **SMALL)
    with pytest.raises(ValueError, match=match):
        model(bad)
    with pytest.raises(ValueError, match=match):
        model.forward_serial(bad)


@pytest.mark.parametrize("kw, match", [
    ({"name": "gru"}, "name"), ({"d_state": 3}, "d_state"), ({"refractory": -1}, "refractory"),
    ({"readout": "max"}, "readout"), ({"foo": 1}, "unknown"), ({"dropout": 1.5}, "dropout"),
    ({"name": "pssm", "psn_kind": "masked"}, "seq_len"),
])
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        build(**{"name": "frssm", **SMALL, **kw})


def test_config_json_round_trip_and_build():
    cfg = ModelConfig(name="pssm", d_input=3, psn_order=7, readout="last")
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and build(**again.to_dict()).cfg == cfg


def test_masked_psn_option():
    model = _model("pssm", psn_kind="masked", psn_order=4, seq_len=L)
    model.on_epoch(0, 9)
    out, spikes = model(_x(), return_spikes=True)
    assert out.shape == (B, 5) and spikes[0].shape == (B, L, 8)
    with pytest.raises(NotImplementedError, match="parallel form only"):
        model.forward_serial(_x())


@pytest.mark.parametrize("name", MODELS)
def test_op_counts_and_energy(name):
    model = _model(name)
    with torch.no_grad():
        _, spikes = model(_x(), return_spikes=True)
    ops = model.op_counts(L)
    assert ops["spiking"] == (name != "s4d")
    assert ops["mix_macs"] == [L * 8 * 16] * 2 and ops["state_macs"][0] > 0
    e = metrics.energy(ops, metrics.sops(spikes, ops["mix_fan_out"]) if ops["spiking"] else None)
    assert e["total_pJ"] > 0 and e["state_update_pJ"] > 0
    if ops["spiking"]:                            # SOPs = rate × dense MACs of the mixing Linear
        rates = metrics.firing_rates(spikes)
        for r, s, m in zip(rates, metrics.sops(spikes, 16), ops["mix_macs"]):
            assert s == pytest.approx(r * m)
