"""Neurons: SpikingJelly agreement, parallel ≡ serial ≡ step, Proposition A, refractoriness."""
import math

import pytest
import torch

from spikelib import neurons as N

F64 = torch.float64


def sj_node(kind, tau, theta, reset, detach):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron, surrogate
    kw = dict(v_threshold=theta, v_reset=0.0 if reset == "hard" else None,
              surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=detach,
              step_mode="m", store_v_seq=True)
    if kind == "lif":
        return neuron.LIFNode(tau=tau, decay_input=True, **kw)
    return neuron.IFNode(**kw)


def ours(kind, tau, theta, reset, detach, refractory=0):
    if kind == "lif":
        return N.LIFNeuron(tau=tau, theta=theta, reset=reset, refractory=refractory,
                           detach_reset=detach)
    return N.IFNeuron(theta=theta, reset=reset, refractory=refractory, detach_reset=detach)


# --- IF / LIF against the SpikingJelly oracle --------------------------------------------------

@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("kind, tau, theta", [("lif", 2.0, 1.0), ("lif", 3.5, 0.7),
                                              ("if", None, 1.0), ("if", None, 1.3)])
def test_reset_neurons_match_spikingjelly(kind, tau, theta, reset, detach):
    g = torch.Generator().manual_seed(12345)
    B, L, C = 3, 64, 5
    x0 = torch.randn(B, L, C, dtype=F64, generator=g) * 1.5 + 0.6      # ours: (B, L, C)
    w_s, w_v = torch.randn(B, L, C, dtype=F64, generator=g), torch.randn(B, L, C, dtype=F64,
                                                                           generator=g)
    xa = x0.clone().requires_grad_()
    s, v = ours(kind, tau, theta, reset, detach)(xa, return_v=True)
    xb = x0.transpose(0, 1).contiguous().requires_grad_()             # SpikingJelly: (L, B, C)
    node = sj_node(kind, tau, theta, reset, detach)
    s_ref = node(xb).transpose(0, 1)
    v_ref = node.v_seq.transpose(0, 1)
    assert 0.05 < s.mean() < 0.95                                      # both regimes exercised
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-10)
    ((s * w_s).sum() + (v * w_v).sum()).backward()
    ((s_ref * w_s).sum() + (v_ref * w_v).sum()).backward()
    grad_ref = xb.grad.transpose(0, 1)
    assert grad_ref.abs().max() > 0
    torch.testing.assert_close(xa.grad, grad_ref, rtol=0, atol=1e-10 * grad_ref.abs().max())


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_no_reset_matches_spikingjelly_and_parallel_form(kind):
    """reset='none': SpikingJelly's hard reset with an unreachable threshold has the same
    membrane; our parallel forward equals our serial loop (spikes and V)."""
    torch.manual_seed(3)
    x = torch.randn(2, 100, 4, dtype=F64)
    m = ours(kind, 2.0, 0.5, "none", True)
    s, v = m(x, return_v=True)
    s2, v2 = m.forward_serial(x, return_v=True)
    node = sj_node(kind, 2.0, 1e9, "hard", True)
    node(x.transpose(0, 1))
    v_ref = node.v_seq.transpose(0, 1)
    torch.testing.assert_close(v2, v_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-10 * v_ref.abs().max())
    assert torch.equal(s, s2) and torch.equal(s, (v >= 0.5).to(F64))


def test_step_state_is_explicit():
    m = N.LIFNeuron(refractory=2)
    x = torch.randn(4, 3)
    s, st = m.step(x)
    assert s.shape == (4, 3) and st["v"].shape == (4, 3) and st["r"].dtype == torch.long
    s_again, st_again = m.step(x)                                       # no hidden state
    assert torch.equal(s, s_again) and torch.equal(st["v"], st_again["v"])


# --- no-reset LIF: convolution ≡ recurrence ≡ step loop -----------------------------------------

def recurrence(x, tau):
    beta = 1 - 1 / tau
    h, out = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        h = beta * h + (1 - beta) * x[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def test_lif_kernel():
    k = N.lif_kernel(4.0, 50, F64, None)
    beta = 0.75
    torch.testing.assert_close(k, (1 - beta) * beta ** torch.arange(50, dtype=F64), rtol=1e-15,
                               atol=0)
    assert k.sum().item() == pytest.approx(1 - beta ** 50, rel=1e-14)
    assert torch.equal(N.lif_kernel(1.0, 5, F64, None), torch.tensor([1.0, 0, 0, 0, 0], dtype=F64))
    assert N.lif_kernel(2.0, 3, torch.float32, None).dtype == torch.float32


@pytest.mark.parametrize("L", [1, 7, 64, 1000])
@pytest.mark.parametrize("tau", [1.0, 2.0, 30.0])
def test_leaky_integrate_equals_recurrence(L, tau):
    torch.manual_seed(L)
    x = torch.randn(3, L, 4, dtype=F64)
    ref = recurrence(x, tau)
    tol = 1e-10 * ref.abs().max()
    h = N.leaky_integrate(x, tau)
    assert h.shape == x.shape and h.dtype == F64
    assert (h - ref).abs().max() <= tol
    _, v = N.LIFNeuron(tau=tau, reset="none").forward_serial(x, return_v=True)
    assert (v - ref).abs().max() <= tol
    # float32 against float64: the input's rounding plus the FFT's, whose error grows like the
    # log of the transform length 2L. Observed max|h32 − h64| / (eps32 max|h64|) at L = 1, 7,
    # 64, 1000: 0.77, 1.19, 1.33, 2.42 over τ (Intel Xeon, torch 2.14.1), i.e. 0.17–0.39 of
    # 1 + log2(2L); bound 2 (1 + log2 2L) eps32 max|h64|, 5–12× the observed error.
    h32 = N.leaky_integrate(x.float(), tau)
    assert h32.dtype == torch.float32
    eps32 = torch.finfo(torch.float32).eps
    bound = 2 * (1 + math.log2(2 * L)) * eps32 * ref.abs().max()
    assert (h32.double() - ref).abs().max() <= bound


def test_leaky_integrate_gradcheck():
    x = torch.randn(2, 6, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: N.leaky_integrate(z, 3.0), (x,))


# --- SoftResetIF: Proposition A (ours) ---------------------------------------------------------

def dyadic(shape, lo, hi, seed):
    """Random multiples of 1/8 in [lo, hi]: all partial sums are exact in float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(int(lo * 8), int(hi * 8) + 1, shape, generator=g).to(F64) / 8


def check_three_forms(m, x):
    s, v = m(x, return_v=True)
    s2, v2 = m.forward_serial(x, return_v=True)
    state, s3 = None, []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        s3.append(y)
    assert torch.equal(s, s2) and torch.equal(v, v2) and torch.equal(s, torch.stack(s3, 1))
    assert torch.equal(s, s.round()) and (s >= 0).all()
    return s, v


@pytest.mark.parametrize("theta", [1.0, 0.75, 2.5])
def test_soft_reset_if_binary_case(theta):
    m = N.SoftResetIF(theta=theta)
    x = dyadic((64, 40, 4), 0, theta, seed=1)                           # 0 ≤ x ≤ θ
    s, v = check_three_forms(m, x)
    assert set(s.unique().tolist()) == {0.0, 1.0}
    assert ((v >= 0) & (v < theta)).all()                               # 0 ≤ S_t − θ n_t < θ
    # the same bound recomputed from the spikes (exact: dyadic sums)
    err = torch.cumsum(x, 1) - theta * torch.cumsum(s, 1)
    assert ((err >= 0) & (err < theta)).all()
    # signed inputs with x ≤ θ are binary too, and equal the classic binary soft-reset IF
    xs = dyadic((64, 40, 4), -theta, theta, seed=2)
    s, v = check_three_forms(m, xs)
    assert set(s.unique().tolist()) == {0.0, 1.0}
    s_if, v_if = N.IFNeuron(theta=theta, reset="soft")(xs, return_v=True)
    assert torch.equal(s, s_if) and torch.equal(v, v_if)


@pytest.mark.parametrize("theta", [1.0, 0.75])
def test_soft_reset_if_integer_case(theta):
    m = N.SoftResetIF(theta=theta)
    x = dyadic((64, 40, 4), -2 * theta, 3 * theta, seed=3)              # signed, up to 3θ
    s, v = check_three_forms(m, x)
    assert s.max() >= 3                                                  # integer spikes occur
    assert (v < theta).all()
    # closed form of Proposition A, written out independently
    S = torch.cumsum(x, 1)
    n = torch.floor(torch.cummax(S, 1).values.clamp_min(0) / theta)
    assert torch.equal(torch.cumsum(s, 1), n) and torch.equal(v, S - theta * n)


@pytest.mark.parametrize("levels", [1, 2])
def test_soft_reset_if_clip_is_exact_in_both_forms(levels):
    x = dyadic((64, 40, 4), -1, 3, seed=4)
    m = N.SoftResetIF(4, theta_init=0.75, spike_levels=levels)
    s, _ = check_three_forms(m, x)
    s_full = N.SoftResetIF(4, theta_init=0.75)(x)
    assert (s_full > levels).any()                                       # the clip is active
    assert torch.equal(s, s_full.clamp(max=levels))


def test_soft_reset_if_per_channel_theta_and_gradient():
    m = N.SoftResetIF(4, theta_init=1.0).double()
    m.set_theta(torch.tensor([0.5, 0.75, 1.0, 2.0]))
    x = dyadic((32, 30, 4), -1, 2.5, seed=5)
    s, v = check_three_forms(m, x)
    assert (v < m.theta).all()
    xg = x.clone().requires_grad_()
    loss = (m(xg) * torch.randn_like(x)).sum()
    gx, gt = torch.autograd.grad(loss, (xg, m.log_theta))
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0
    assert torch.isfinite(gt).all() and (gt != 0).all()


def test_soft_reset_if_ste_gradient_positive_inputs():
    """For x > 0 both forms differentiate s_t ≈ x_t / θ: ∂(Σ w s)/∂x = w / θ."""
    torch.manual_seed(6)
    theta = torch.tensor([0.5, 1.0, 3.0], dtype=F64)
    m = N.SoftResetIF(3).double()
    m.set_theta(theta)
    x = (torch.rand(4, 50, 3, dtype=F64) * 2 + 1e-3).requires_grad_()
    w = torch.randn_like(x)
    (g_par,) = torch.autograd.grad((m(x) * w).sum(), x)
    (g_ser,) = torch.autograd.grad((m.forward_serial(x) * w).sum(), x)
    torch.testing.assert_close(g_par, w / theta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ser, w / theta, rtol=1e-12, atol=1e-12)
    # with a clip, the gradient vanishes where the clip is active (up to roundoff: the
    # backward of cumsum sums terms that cancel), in both forms
    mc = N.SoftResetIF(theta=0.25, spike_levels=2)
    clipped = N.SoftResetIF(theta=0.25)(x.detach()) > 2
    assert clipped.any() and not clipped.all()
    for fwd in (mc.forward, mc.forward_serial):
        (g,) = torch.autograd.grad((fwd(x) * w).sum(), x)
        torch.testing.assert_close(g, w / 0.25 * (~clipped), rtol=1e-12, atol=1e-12)


# --- threshold spike -------------------------------------------------------------------------

def test_threshold_spike():
    m = N.ThresholdSpike(5, theta_init=0.5).double()
    y = torch.randn(3, 20, 5, dtype=F64, requires_grad=True)
    s = m(y)
    assert torch.equal(s, (y >= 0.5).to(F64)) and torch.equal(s, m.forward_serial(y))
    s.sum().backward()
    assert m.log_theta.grad.shape == (5,) and (m.log_theta.grad < 0).all() and (y.grad > 0).all()
    fixed = N.ThresholdSpike(5, learn_theta=False)
    assert list(fixed.parameters()) == [] and "log_theta" in fixed.state_dict()
    assert m.step(y[:, 0])[1] == {}


# --- refractory period -----------------------------------------------------------------------

def refractory_reference(c, R):
    """s_t = c_t ∏_{k=1..R} (1 − s_{t−k})  (the definition)."""
    s = torch.zeros_like(c)
    for t in range(c.shape[1]):
        s[:, t] = c[:, t]
        for k in range(1, R + 1):
            if t - k >= 0:
                s[:, t] = s[:, t] * (1 - s[:, t - k])
    return s


@pytest.mark.parametrize("R", [1, 2, 4])
@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("kind", ["lif", "if"])
def test_refractory_spacing(kind, reset, R):
    torch.manual_seed(R)
    x = torch.rand(4, 120, 6, dtype=F64) * 3
    m = ours(kind, 2.0, 1.0, reset, True, refractory=R)
    s = m(x)
    assert torch.equal(s, m.forward_serial(x))
    assert s.sum() > 0
    for k in range(1, R + 1):                          # no two spikes closer than R + 1 steps
        assert (s[:, k:] * s[:, :-k]).sum() == 0
    assert s.sum() < ours(kind, 2.0, 1.0, reset, True)(x).sum()       # it does thin the train
    if reset == "none":    # the membrane is untouched, so s is the greedy thinning of c
        c = ours(kind, 2.0, 1.0, "none", True)(x)
        assert torch.equal(s, refractory_reference(c, R))


def test_refractory_constant_drive_fires_every_R_plus_1():
    x = torch.full((1, 30, 1), 1.0, dtype=F64)
    for R in range(4):
        s = N.IFNeuron(reset="none", refractory=R)(x)[0, :, 0]
        expect = (torch.arange(30) % (R + 1) == 0).to(F64)
        assert torch.equal(s, expect)


def test_refractory_gradient_flows():
    x = (torch.rand(2, 40, 3, dtype=F64) * 3).requires_grad_()
    s = N.LIFNeuron(refractory=2)(x)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


# --- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, arg", [
    (lambda: N.LIFNeuron(reset="subtract"), "reset"),
    (lambda: N.IFNeuron(reset=None), "reset"),
    (lambda: N.LIFNeuron(refractory=-1), "refractory"),
    (lambda: N.IFNeuron(refractory=1.5), "refractory"),
    (lambda: N.IFNeuron(refractory=True), "refractory"),
    (lambda: N.LIFNeuron(theta=0.0), "theta"),
    (lambda: N.IFNeuron(theta=-1.0), "theta"),
    (lambda: N.LIFNeuron(tau=0.5), "tau"),
    (lambda: N.LIFNeuron(tau=0.0), "tau"),
    (lambda: N.LIFNeuron(tau=True), "tau"),                      # a bool is not the number 1
    (lambda: N.IFNeuron(theta=True), "theta"),
    (lambda: N.SoftResetIF(3, theta_init=True), "theta_init"),
    (lambda: N.LIFNeuron(detach_reset="yes"), "detach_reset"),
    (lambda: N.lif_kernel(0.9, 4), "tau"),
    (lambda: N.lif_kernel(2.0, 0), "length"),
    (lambda: N.leaky_integrate(torch.zeros(1, 3, 1), -2.0), "tau"),
    (lambda: N.ThresholdSpike(0), "channels"),
    (lambda: N.ThresholdSpike(3, theta_init=0.0), "theta_init"),
    (lambda: N.SoftResetIF(theta=0.0), "theta"),
    (lambda: N.SoftResetIF(theta=1.0, channels=3), "theta"),
    (lambda: N.SoftResetIF(3, theta_init=-1.0), "theta_init"),
    (lambda: N.SoftResetIF(0), "channels"),
    (lambda: N.SoftResetIF(spike_levels=0), "spike_levels"),
])
def test_bad_arguments_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}:"):
        call()
