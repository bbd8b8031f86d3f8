"""spikelib.models: parallel ≡ serial (float64; float32 flips only within round-off), spikes,
validation, groups, op counts against counted operations, bf16 autocast, masked-PSN schedule."""
import copy
import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from conftest import DispatchLog
from spikelib import diagnostics, metrics
from spikelib.memory import S4D
from spikelib.models import MODELS, ModelConfig, build
from spikelib.psn import MaskedPSN

B, L, D_IN = 2, 24, 3
SMALL = dict(d_input=D_IN, n_classes=5, d_model=8, n_layers=2, d_state=4, theta_init=0.5)
MARGIN = 1e-9   # spikes must agree wherever |membrane − θ| > MARGIN (fp64 round-off ~1e-14)
PARALLEL = [("s4d", {}), ("frssm", {}), ("frssm", {"refractory": 0}), ("pssm", {"psn_order": 5}),
            ("ddsn", {}), ("ddsn", {"ddsn_spike": "integer"}), ("sif", {}),
            ("sif", {"readout": "last"}), ("frssm", {"polarity": "on_off"}),
            ("frssm", {"polarity": "on_off", "refractory_grad": "straight_through"}),
            ("pssm", {"psn_order": 5, "polarity": "on_off"})]


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
        dist = diagnostics.distances(model, x)
    assert min(d.min().item() for d in dist) > MARGIN     # no decision within the margin
    torch.testing.assert_close(logits_s, logits, rtol=0, atol=1e-8)
    if name == "s4d":
        assert spikes == spikes_s == []                     # GELU activations are not spikes
        return
    assert len(spikes) == len(spikes_s) == SMALL["n_layers"]
    for s, s_ser in zip(spikes, spikes_s):
        assert s.shape == (B, L, SMALL["d_model"]) and torch.equal(s, s_ser)
    assert 0 < sum(s.abs().sum().item() for s in spikes)   # the check saw spikes


def test_lif_serial_forms_agree():
    model, x = _model("lif"), _x()
    with torch.no_grad():
        a, sa = model(x, return_spikes=True)
        b, sb = model.forward_serial(x, return_spikes=True)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-8)
    assert all(torch.equal(p, q) for p, q in zip(sa, sb))


EPS32 = torch.finfo(torch.float32).eps
# float32 round-off of a threshold input v (|v32 − v64|, B 8, L 128, four inputs; Intel Xeon,
# torch 2.14.1): ≤ 3.5e-6 for y, the PSN window and the decay-gate membrane (the serial S4D
# recurrence is the largest), 6.8e-5 for the soft-reset IF's running sum (its cumsum over L).
# DELTA is about 10× that: a decision farther than DELTA from its threshold cannot flip.
DELTA = {"frssm": 3e-5, "pssm": 3e-5, "ddsn": 3e-5, "sif": 7e-4}
FLOAT32 = [("frssm", {}), ("frssm", {"polarity": "on_off"}), ("pssm", {"psn_order": 5}),
           ("ddsn", {}), ("ddsn", {"ddsn_spike": "integer"}), ("sif", {})]


def _first_flips(forms, ref):
    """Per sequence b, where the spike trains ``forms`` (lists of (B, L, H) per layer) first
    differ from ``ref``: (t, layer, channels that differ), earliest t first, then lowest
    layer; None where they agree everywhere."""
    B, out = ref[0].shape[0], []
    for b in range(B):
        first = None
        for layer, r in enumerate(ref):
            diff = torch.zeros_like(r[b], dtype=torch.bool)                  # (L, H)
            for f in forms:
                diff |= f[layer][b].double() != r[b].double()
            times = diff.any(-1).nonzero()
            if len(times) and (first is None or times[0].item() < first[0]):
                t = times[0].item()
                first = (t, layer, diff[t].nonzero().flatten())
        out.append(first)
    return out


def _pin_thresholds_on_decisions(model, x):
    """Set each channel's θ of layer 0 (frssm, pssm) to a value its threshold input takes, so
    that some decisions sit on the threshold (float64 distance 0) and float32 may round them
    either way."""
    layer = model.layers[0]
    if not any(layer is lay for lay, _ in model.thresholds()):
        return
    with torch.no_grad():
        v, _ = diagnostics.threshold_view(layer.spike, layer.ssm(layer.norm(model.encoder(x))))
    v = v[0, v.shape[1] // 2:]                                             # (L/2, H)
    theta = layer.spike.theta.detach().clone()
    top = v.max(dim=0).values
    theta[top > 0] = top[top > 0].to(theta.dtype)
    layer.spike.set_theta(theta)


@pytest.mark.parametrize("name, kw", FLOAT32, ids=[f"{n}-{'-'.join(map(str, k.values()))}"
                                                   for n, k in FLOAT32])
def test_float32_flips_only_at_decisions_within_round_off(name, kw):
    """float32: the parallel and serial forms round differently (FFT against recurrence, scan
    against loop), so a decision within their round-off of the threshold may come out either
    way; one farther away must not. A flip changes what follows it (the refractory countdown,
    the soft reset's charge, the next layer's input), so the property is checked where the
    float32 parallel, float32 serial and float64 spikes first differ in each sequence: every
    channel that differs there is a decision whose float64 distance to its threshold
    (``diagnostics.distances`` on a float64 copy) is at most DELTA. Sequences with no flip
    have logits within float32 round-off of the float64 ones (observed ≤ 5.6 eps32·max|logit|;
    bound 50). frssm and pssm get thresholds pinned on decisions, so that decisions within
    round-off occur (on random inputs none came that close) and the forms do flip."""
    model = _model(name, dtype=torch.float32, **kw)
    x = torch.randn(8, 128, D_IN, generator=torch.Generator().manual_seed(5))
    _pin_thresholds_on_decisions(model, x)
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        par, s_par = model(x, return_spikes=True)
        ser, s_ser = model.forward_serial(x, return_spikes=True)
        ref, s_ref = m64(x.double(), return_spikes=True)
        dist = diagnostics.distances(m64, x.double())
    if name in ("frssm", "pssm"):
        assert min(d.min().item() for d in dist) < 1e-6           # pinned decisions exist
    scale = ref.abs().max().item()
    for b, first in enumerate(_first_flips([s_par, s_ser], s_ref)):
        if first is None:
            for out in (par, ser):
                assert (out[b].double() - ref[b]).abs().max().item() <= 50 * EPS32 * scale
        else:
            t, layer, channels = first
            assert dist[layer][b, t, channels].max().item() <= DELTA[name], (b, first)


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
    spike = model.layers[0].spike
    assert spike.log_theta.grad is not None and torch.isfinite(spike.log_theta.grad).all()
    assert spike.log_theta.grad.abs().sum() > 0
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


def _masked_lambda_expected(epoch: int, epochs: int) -> float:
    """λ after ``on_epoch(epoch, epochs)``, from the schedule λ = min(1, 8·epoch/(epochs − 1))
    of Fang et al. 2023 in exact rationals (1 for a single epoch)."""
    if epochs == 1:
        return 1.0
    return float(min(Fraction(1), Fraction(8 * epoch, epochs - 1)))


def test_masked_psn_lambda_schedule_on_every_layer():
    """``on_epoch`` sets λ on every masked-PSN layer, for several run lengths, as the formula
    above says (which never calls ``spikelib.psn.masked_lambda``)."""
    model = _model("pssm", psn_kind="masked", psn_order=3, seq_len=L, n_layers=3)
    spikes = [layer.spike for layer in model.layers]
    assert len(spikes) == 3 and all(isinstance(s, MaskedPSN) for s in spikes)
    seen = set()
    for epochs in (1, 2, 9, 10, 17, 33):
        for epoch in range(epochs):
            model.on_epoch(epoch, epochs)
            want = _masked_lambda_expected(epoch, epochs)
            assert [float(s.lambda_) for s in spikes] == [want] * 3, (epoch, epochs)
            seen.add(want)
    assert {0.0, 0.25, 0.5, 0.75, 8 / 9, 1.0} <= seen          # the ramp, not only its ends


def test_masked_psn_is_exactly_causal_at_lambda_one():
    """At λ = 1 every layer's effective weight is W ⊙ M_k exactly: zero above the diagonal and
    outside the band of k steps (M_k written out here); the model's spikes before t then do
    not depend on the input after t. At λ = 0 the weight is W itself and the past does."""
    k = 3
    model = _model("pssm", psn_kind="masked", psn_order=k, seq_len=L)
    band = torch.tensor([[1.0 if 0 <= t - j < k else 0.0 for j in range(L)] for t in range(L)],
                        dtype=torch.float64)
    x = _x()
    future = x.clone()
    future[:, L // 2 + 1:] = torch.randn(B, L - L // 2 - 1, D_IN, dtype=torch.float64,
                                         generator=torch.Generator().manual_seed(9))
    for epoch, lam in ((0, 0.0), (8, 1.0)):
        model.on_epoch(epoch, 9)
        for layer in model.layers:
            w, w_eff = layer.spike.weight, layer.spike.effective_weight()
            assert float(layer.spike.lambda_) == lam
            assert torch.equal(w_eff, w * band if lam == 1.0 else w)
            if lam == 1.0:
                assert not torch.triu(w_eff, diagonal=1).any() and not (w_eff * (1 - band)).any()
        with torch.no_grad():
            _, before = model(x, return_spikes=True)
            _, after = model(future, return_spikes=True)
        past = [torch.equal(a[:, : L // 2 + 1], b[:, : L // 2 + 1]) for a, b in zip(before, after)]
        assert all(past) if lam == 1.0 else not all(past)


# bf16 autocast: the logits against float32, in units of bf16's unit round-off 2^-8 of
# max|logit| (B 4, L 64, seed 0; Intel Xeon, torch 2.14.1): 1.0 (s4d) to 4.1 (ddsn); up to 6.7
# over six seeds. Most of it comes from spikes that flip at decisions within bf16 round-off
# of θ, and which ones flip depends on the machine's bf16 kernels, so the bound, 32 units
# (1/8 of max|logit|), leaves more room than a bound on deterministic round-off would.
BF16 = [(m, {}) for m in MODELS] + [("pssm", {"psn_kind": "masked", "psn_order": 4,
                                              "seq_len": 64})]


@pytest.mark.parametrize("name, kw", BF16, ids=list(MODELS) + ["pssm-masked"])
def test_bf16_autocast_runs_close_to_float32_with_the_ssm_in_float32(name, kw):
    """Under ``torch.autocast('cpu', dtype=torch.bfloat16)`` every model runs, its logits are
    finite and within 32·2^-8·max|logit| of the float32 ones; inside, the S4D kernel and FFT
    stay float32: every FFT sees float32/complex64 only, no complex32 appears, and each S4D
    output is exactly its float32 output on the same input, rounded to the output dtype."""
    model = _model(name, dtype=torch.float32, **kw)
    x = torch.randn(4, 64, D_IN, generator=torch.Generator().manual_seed(0))
    seen = []
    hooks = [layer.ssm.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0],
                                                                                 out)))
             for layer in model.layers]
    with torch.no_grad():
        ref = model(x)
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16), DispatchLog() as log:
            out = model(x)
        for h in hooks:
            h.remove()
        assert len(seen) == SMALL["n_layers"]
        for ssm, u, y in seen:
            assert isinstance(ssm, S4D) and torch.equal(y, ssm(u.float()).to(y.dtype))
    assert log.dtypes("fft") and log.dtypes("fft") <= {torch.float32, torch.complex64}
    assert torch.complex32 not in {d for _, dtypes, _, _ in log.calls for d in dtypes}
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())
    assert (out.float() - ref).abs().max().item() <= 32 * 2 ** -8 * ref.abs().max().item()


@pytest.mark.parametrize("name", ["ddsn", "sif"])
def test_bf16_autocast_keeps_the_scans_in_float32(name):
    """The long accumulations over time — the decay scan (``linear_scan``: cumsum and addcmul)
    and the soft-reset IF's running sum and maximum (cumsum, cummax) — run in float32 under bf16
    autocast: a bf16 sum of L terms keeps only 8 significant bits."""
    model = _model(name, dtype=torch.float32)
    x = torch.randn(4, 64, D_IN, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), DispatchLog() as log:
        model(x)
    scans = log.dtypes("cumsum") | log.dtypes("cummax") | log.dtypes("addcmul")
    assert scans and scans <= {torch.float32}, scans


@pytest.mark.parametrize("name, kw",
                         [(m, {}) for m in MODELS] + [("frssm", {"polarity": "on_off"})],
                         ids=list(MODELS) + ["frssm-on_off"])
def test_op_counts_and_sops_against_counted_operations(name, kw):
    """``metrics.op_counts`` and ``SpikeCounter.sops`` against what the forward pass does: forward
    hooks on every Linear count its multiply-accumulates per sequence from the shapes it really
    sees (rows × fan-in × fan-out) and, on each layer's mixing Linear, Σ |input| × fan-out (a
    spike of value n is n events, each reaching 2H outputs); the GLU's products are counted
    from the dispatched ``glu`` ops."""
    model = _model(name, **kw)
    macs, events = {}, {}

    def hook(module, inputs, _):
        (u,) = inputs
        key = id(module)
        rows = u.numel() // u.shape[-1] / u.shape[0]                   # per sequence
        macs[key] = rows * module.in_features * module.out_features
        events[key] = u.abs().sum().item() * module.out_features / u.shape[0]

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in linears]
    with torch.no_grad(), DispatchLog() as log:
        _, spikes = model(_x(), return_spikes=True)
    for h in handles:
        h.remove()
    ops = metrics.op_counts(model, L)
    mix = [id(layer.mix) for layer in model.layers]
    assert ops["spiking"] == (name != "s4d") and ops["length"] == L
    assert ops["encoder_macs"] == macs[id(model.encoder)]
    assert ops["mix_macs"] == [macs[k] for k in mix]
    assert ops["readout_macs"] == macs[id(model.decoder)]
    glu = [shape for op, _, shape, _ in log.calls if op.startswith("glu")]
    assert len(glu) == SMALL["n_layers"]
    assert ops["glu_macs"] == [shape[1] * shape[2] for shape in glu]   # (B, L, H): L·H each
    assert ops["mix_fan_out"] == model.layers[0].mix.out_features
    if ops["spiking"]:
        sops = metrics.SpikeCounter.of(spikes).sops(ops["mix_fan_out"])
        assert sops == pytest.approx([events[k] for k in mix], rel=1e-12)
        assert all(v > 0 for v in sops)
        e = metrics.energy(ops, sops)
        assert e["mix_pJ"] == pytest.approx([metrics.E_AC_PJ * events[k] for k in mix])
    else:
        e = metrics.energy(ops, None)
        assert e["mix_pJ"] == pytest.approx([metrics.E_MAC_PJ * macs[k] for k in mix])
    assert e["state_update_pJ"] > 0


# -- the levers of the spiking gap (ours): ON/OFF spikes, straight-through refractory gradient,
# θ from the scale of y, θ's own learning rate; per-epoch probe

@pytest.mark.parametrize("name, kw", [
    ("frssm", {}), ("frssm", {"polarity": "on_off"}),
    ("frssm", {"refractory_grad": "straight_through"}),
    ("frssm", {"polarity": "on_off", "refractory_grad": "straight_through", "refractory": 1}),
    ("pssm", {"psn_order": 5}), ("pssm", {"psn_order": 5, "polarity": "on_off"}),
    ("s4d", {}), ("ddsn", {}), ("ddsn", {"ddsn_spike": "integer"}), ("lif", {})])
def test_parameter_gradients_parallel_equal_serial_float64(name, kw):
    """The parallel pass trains; the serial pass is the definition: their parameter gradients
    agree to float64 round-off (observed ≤ 1e-13 relative; bound 1e-10). (lif has no parallel
    form, but its forward still differs from forward_serial in the S4D: FFT vs recurrence.)"""
    agree = diagnostics.gradient_agreement(_model(name, **kw), _x(), _W)
    assert agree["same_unused"] and agree["max_rel_diff"] <= 1e-10, agree


_W = torch.randn(B, SMALL["n_classes"], generator=torch.Generator().manual_seed(2),
                 dtype=torch.float64)      # weights of the linear function of the logits


def test_soft_reset_if_gradients_differ_between_forms_by_a_bounded_amount():
    """sif: equal values, different straight-through gradients. Both forms differentiate the
    same soft recursion W_t = min(W_{t−1} + x_t, 0), but the floor's straight-through estimate
    follows the branch the *integer* trajectory takes — the serial step's h_t > 0 against the
    parallel form's new running maximum — and on signed input the two branches differ at some
    steps. Observed on this input: relative L2 difference 0.105, cosine 0.995; bounds 0.3 and
    0.98 (a broken gradient in either form gives cosine near 0)."""
    agree = diagnostics.gradient_agreement(_model("sif"), _x(), _W)
    assert 0 < agree["rel_l2"] <= 0.3 and agree["cosine"] >= 0.98, agree


def test_on_off_spikes_are_signed_events_with_their_own_refractory_period():
    x = _x()
    with torch.no_grad():
        model = _model("frssm", polarity="on_off", refractory=2)
        _, spikes = model(x, return_spikes=True)
        h = model.encoder(x)
        y = model.layers[0].ssm(model.layers[0].norm(h))
        theta = model.layers[0].spike.theta
    s = spikes[0]
    assert set(s.unique().tolist()) == {-1.0, 0.0, 1.0}
    on, off = (s > 0).double(), (s < 0).double()
    assert ((y < theta) & (s > 0)).sum() == 0 and ((y > -theta) & (s < 0)).sum() == 0
    for train in (on, off):                                # ≤ 1 event per R + 1 = 3 steps
        c = train.cumsum(1)
        assert (c[:, 3:] - c[:, :-3]).max() <= 1
    # an OFF spike counts as an event: the firing rate is the mean of |s|
    rate = metrics.SpikeCounter.of([s]).rates()[0]
    assert rate == pytest.approx(s.abs().mean().item()) and rate > s.mean().abs().item()


def test_refractory_gradient_modes():
    """'mask': gradient wherever the neuron is free (also below θ), none on removed crossings;
    'fired': only on spikes; 'straight_through': also on removed crossings. Same spikes."""
    x = _x()
    grads = {}
    for mode in ("mask", "fired", "straight_through"):
        model = _model("frssm", refractory=4, refractory_grad=mode, n_layers=1)
        y = model.layers[0].ssm(model.layers[0].norm(model.encoder(x))).detach()
        y.requires_grad_()
        s = model.layers[0].spike(y)
        (g,) = torch.autograd.grad(s.sum(), y)
        grads[mode] = (g, s.detach(), (y >= model.layers[0].spike.theta).detach())
    g_mask, s, crossed = grads["mask"]
    g_st, s_st, _ = grads["straight_through"]
    g_fired, s_fired, _ = grads["fired"]
    assert torch.equal(s, s_st) and torch.equal(s, s_fired)     # same spikes
    removed = crossed & (s == 0)
    assert removed.any()
    assert (g_mask[removed] == 0).all() and (g_st[removed] > 0).all()
    assert (g_fired[s == 0] == 0).all() and torch.equal(g_fired[s != 0], g_mask[s != 0])
    below = ~crossed & (g_mask != 0)                           # free, below θ: surrogate gradient
    assert below.any()


def test_theta_from_rms_of_the_threshold_input():
    x = _x(length=40)
    for name, kw in (("frssm", {}), ("pssm", {"psn_order": 5})):
        model = _model(name, theta_init_mode="rms", theta_init=0.5, **kw)
        model.calibrate(x)
        h = model.encoder(x)
        with torch.no_grad():
            for layer in model.layers:
                v, theta = diagnostics.threshold_view(layer.spike, layer.ssm(layer.norm(h)))
                torch.testing.assert_close(theta, 0.5 * v.square().mean((0, 1)).sqrt())
                h, _ = layer(h)
    fixed = _model("frssm")
    before = fixed.state_dict()["layers.0.spike.log_theta"].clone()
    fixed.calibrate(x)                                         # 'value': a no-op
    assert torch.equal(fixed.state_dict()["layers.0.spike.log_theta"], before)


def test_theta_stays_positive_under_any_update():
    """θ = exp(log θ): an optimiser step of any size keeps every threshold positive (the
    masked PSN's too, which once was a raw bias)."""
    for name, kw in (("frssm", {}), ("pssm", {}), ("sif", {}),
                     ("pssm", {"psn_kind": "masked", "psn_order": 3, "seq_len": L})):
        model = _model(name, **kw)
        for p_name, p in model.named_parameters():
            if p_name.endswith("log_theta"):
                with torch.no_grad():
                    p.add_(-1e3)                                # a huge step downwards
        thetas = [m.theta for m in model.modules() if hasattr(m, "log_theta")]
        assert thetas and all((t > 0).all() for t in thetas)
        assert torch.isfinite(model(_x())).all()


def _theta_groups(model, lr=0.01, weight_decay=0.1):
    """(the ids of every log θ, the optimiser groups that hold any of them)."""
    theta_ids = {id(m.log_theta) for m in model.modules() if hasattr(m, "log_theta")}
    groups = model.param_groups(lr=lr, weight_decay=weight_decay)
    return theta_ids, [g for g in groups if {id(p) for p in g["params"]} & theta_ids]


def test_theta_lr_tags_thresholds_and_no_weight_decay():
    theta_ids, groups = _theta_groups(_model("frssm", theta_lr=0.05))
    assert len(theta_ids) == SMALL["n_layers"] and len(groups) == 1   # one group: θ only
    (g,) = groups
    assert {id(p) for p in g["params"]} == theta_ids
    assert g["lr"] == 0.05 and g["weight_decay"] == 0.0
    theta_ids, groups = _theta_groups(_model("frssm"))                 # no theta_lr: the run's
    assert groups and all(g["lr"] == 0.01 and g["weight_decay"] == 0.0 for g in groups)
    assert theta_ids <= {id(p) for g in groups for p in g["params"]}


def test_probe_reports_per_layer_diagnostics_without_randomness():
    model = _model("frssm", dropout=0.5)
    x, target = _x(), torch.tensor([0, 3])
    torch.manual_seed(0)
    rows = diagnostics.probe(model, x, target)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert diagnostics.probe(model, x, target) == rows and torch.equal(torch.rand(1), after)
    assert len(rows) == SMALL["n_layers"]
    for r in rows:
        assert 0 <= r["frac_above"] <= 1 and 0 <= r["energy_above"] <= r["energy_outside"] <= 1
        assert r["grad_rms"] > 0 and r["theta_min"] <= r["theta_mean"] <= r["theta_max"]


@pytest.mark.parametrize("kw, match", [
    ({"polarity": "both"}, "polarity"), ({"name": "sif", "polarity": "on_off"}, "polarity"),
    ({"refractory_grad": "st"}, "refractory_grad"), ({"theta_init_mode": "std"}, "theta_init_mode"),
    ({"theta_lr": -1.0}, "theta_lr")])
def test_bad_lever_values(kw, match):
    with pytest.raises(ValueError, match=match):
        build(**{"name": "frssm", **SMALL, **kw})


def test_rate_penalty_lowers_the_firing_rate_it_is_charged_for():
    """λ · mean |s| in the objective: a few steps with a large λ cut the firing rate, the same
    steps with λ = 0 do not; the reported loss is the task's alone (ours)."""
    from spikelib import data as sdata
    from spikelib import train as T
    ds = sdata.adding(64, length=20, seed=0)
    rates, losses = {}, {}
    for lam in (0.0, 50.0):
        torch.manual_seed(0)
        model = build("frssm", d_input=2, n_classes=1, d_model=8, n_layers=1, d_state=4,
                      theta_init=0.1, refractory=0, rate_penalty=lam)
        opt, sched = T.make_optimizer(model, 0.05, 0.0, 8)
        losses[lam] = T.train_epoch(model, opt, sched, ds, 8, "regression", torch.arange(64),
                                    torch.device("cpu"), penalty=model.rate_penalty)["loss"]
        with torch.no_grad():
            _, spikes = model.eval()(ds.batch(torch.arange(64))[0], return_spikes=True)
        rates[lam] = spikes[0].abs().mean().item()
    assert rates[50.0] < 0.5 * rates[0.0], rates
    assert losses[50.0] < 10 * losses[0.0]                  # no penalty term in the report
    model = build("frssm", **SMALL, rate_penalty=2.0)
    s = [torch.ones(1, 3, 8), torch.zeros(1, 3, 8)]
    assert model.rate_penalty(s).item() == pytest.approx(1.0)      # 2 · mean(1, 0)
    assert build("s4d", **SMALL, rate_penalty=2.0).rate_penalty(s).item() == 0.0
    with pytest.raises(ValueError, match="rate_penalty"):
        build("frssm", **SMALL, rate_penalty=-1.0)


# -- the non-spiking model, bad input and state, the residual stream, weight decay ----------

def test_s4d_returns_no_spikes():
    """s4d does not spike: ``return_spikes=True`` gives an empty list in every form (its GELU
    activations were once returned under that name), and it has no rate penalty."""
    model, x = _model("s4d", rate_penalty=1.0), _x()
    with torch.no_grad():
        logits, spikes = model(x, return_spikes=True)
        logits_s, spikes_s = model.forward_serial(x, return_spikes=True)
        (_, spikes_t), _ = model.step(x[:, 0], None, return_spikes=True)
    assert spikes == spikes_s == spikes_t == [] and logits.shape == logits_s.shape == (B, 5)
    assert not model.spiking and not model.penalises_rate
    assert model.rate_penalty(spikes).item() == 0.0


def test_penalises_rate_is_the_models_decision():
    """Whether training adds the rate penalty is decided once, by the model: a spiking model
    with λ > 0."""
    assert build("frssm", **SMALL, rate_penalty=0.1).penalises_rate
    assert not build("frssm", **SMALL).penalises_rate                  # λ = 0
    assert not build("s4d", **SMALL, rate_penalty=0.1).penalises_rate  # no spikes


@pytest.mark.parametrize("name, kw", [(m, {}) for m in MODELS] + [
    ("pssm", {"psn_kind": "masked", "psn_order": 3, "seq_len": L})])
def test_model_rejects_an_empty_batch_or_sequence(name, kw):
    """A batch of 0 or a sequence of 0 steps: a ValueError naming x in forward and
    forward_serial and u_t in step (once an MKL FFT error, or an empty result serially)."""
    model = _model(name, **kw)
    for shape, what in (((0, L, D_IN), r"at least one sequence \(batch >= 1\)"),
                        ((B, 0, D_IN), "at least one time step")):
        for f in (model, model.forward_serial):
            with pytest.raises(ValueError, match=f"^x: expected {what}"):
                f(torch.zeros(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match="^u_t: expected at least one sequence"):
        model.step(torch.zeros(0, D_IN, dtype=torch.float64))


def test_model_step_names_a_bad_state():
    """A state from another batch size, missing a key or with another number of layers is a
    ValueError naming ``state`` (once a size mismatch deep inside, or KeyError: 'layers')."""
    model, x = _model("frssm"), _x()
    with torch.no_grad():
        _, state = model.step(x[:, 0], None)
        with pytest.raises(ValueError, match="state: 'sum' holds a batch of 2, expected 1"):
            model.step(x[:1, 0], state)
        with pytest.raises(ValueError, match=r"state: missing key 'layers'.*initial_state"):
            model.step(x[:, 0], {"sum": 0.0, "steps": 0})
        with pytest.raises(ValueError, match="state: 'layers' holds 1 layer states, expected 2"):
            model.step(x[:, 0], {**state, "layers": state["layers"][:1]})
        fresh = {**state, "layers": [None, {"ssm": None}]}
        with pytest.raises(ValueError, match="state: missing key 'spike'"):
            model.step(x[:, 0], fresh)


@pytest.mark.parametrize("name", ["frssm", "sif", "lif"])
def test_model_state_carries_across_calls(name):
    """forward_serial(x, state, return_state=True): two halves equal one call, spikes too."""
    model, x = _model(name), _x()
    with torch.no_grad():
        whole, spikes, _ = model.forward_serial(x, return_spikes=True, return_state=True)
        _, mid = model.forward_serial(x[:, :9], return_state=True)
        rest, spikes_rest, end = model.forward_serial(x[:, 9:], mid, return_spikes=True,
                                                      return_state=True)
    assert torch.equal(rest, whole) and end["steps"] == L
    assert all(torch.equal(a[:, 9:], b) for a, b in zip(spikes, spikes_rest))


def _force_dtype(modules, dtype):
    """Forward hooks that return each module's output in ``dtype`` (an autocast policy)."""
    return [m.register_forward_hook(lambda mod, inp, out: out.to(dtype)) for m in modules]


# Autocast policies: CPU autocast returns bf16 from Linear and LayerNorm; CUDA autocast runs
# LayerNorm in fp32 and Linear in bf16. Both are imposed here on CPU by forward hooks, on top
# of CPU autocast, since a CUDA device is not needed to see what the model does with them.
POLICIES = {"cpu": {}, "cuda": {torch.nn.Linear: torch.bfloat16, torch.nn.LayerNorm: torch.float32},
            "all-bf16": {torch.nn.Linear: torch.bfloat16, torch.nn.LayerNorm: torch.bfloat16}}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", MODELS)
def test_residual_stream_stays_float32_under_autocast(name, policy, monkeypatch):
    """nanoGPT keeps the residual stream in fp32 under autocast, and so do we: the encoder's
    output and every x + Dropout(GLU(...)) (what each block adds and what it returns) are fp32
    whatever dtype the autocast policy gives the Linear and LayerNorm outputs — in the
    parallel and in the serial form."""
    model = _model(name, dtype=torch.float32)
    seen = []
    residual = type(model.layers[0]).residual

    def spy(self, x, s):
        out = residual(self, x, s)
        seen.append((x.dtype, out.dtype))
        return out
    monkeypatch.setattr(type(model.layers[0]), "residual", spy)
    hooks = [h for kind, dtype in POLICIES[policy].items()
             for h in _force_dtype([m for m in model.modules() if isinstance(m, kind)], dtype)]
    hooks += [layer.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype,
                                                                             out[0].dtype)))
              for layer in model.layers]
    x = _x(torch.float32, length=6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        model.forward_serial(x)
    for h in hooks:
        h.remove()
    assert len(seen) == SMALL["n_layers"] * (2 + 6) and torch.isfinite(out).all()
    assert set(seen) == {(torch.float32, torch.float32)}, set(seen)


@pytest.mark.parametrize("name, kw", [(m, {}) for m in MODELS] + [
    ("pssm", {"psn_kind": "masked", "psn_order": 3, "seq_len": L})])
def test_weight_decay_on_linear_weight_matrices_only(name, kw):
    """One rule: the Linear layers' weight matrices decay, nothing else — the dynamic-decay
    gate's kernel no more than the PSN kernels (it once did, while they did not)."""
    model = _model(name, **kw)
    decayed = {id(p) for g in model.param_groups(0.01, 0.1) if g["weight_decay"]
               for p in g["params"]}
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert decayed == linear
    assert all(g["weight_decay"] in (0.0, 0.1) for g in model.param_groups(0.01, 0.1))


WEIGHTS = sorted((Path(__file__).resolve().parents[1] / "weights").glob("*.pt"))


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.stem for p in WEIGHTS])
def test_committed_weights_still_load(path):
    """The state dicts of the committed weights (frssm, s4d) fit the modules as they are now:
    ``load_weights`` loads them strictly, and the model runs both forms."""
    from spikelib.checkpoint import load_weights
    model, meta = load_weights(path)
    x = torch.randn(2, 12, model.cfg.d_input, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_serial(x), model(x), rtol=0, atol=1e-4)
    assert meta["test_acc"] > 0.5
