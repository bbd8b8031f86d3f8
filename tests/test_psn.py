"""spikelib.psn against SpikingJelly 2.0.0 (the oracle, weights copied across) and its own
serial forms: membranes to 1e-10 in float64, identical spikes, equal gradients."""
import math

import pytest
import torch

from spikelib.psn import PSN, MaskedPSN, SlidingPSN, masked_lambda
from spikelib.surrogate import ATan

F64 = torch.float64


def _sj(module: str = "neuron"):
    """SpikingJelly's activation_based.<module> (the `oracle` extra): a test that needs it skips
    without it, while the tests of spikelib alone still run."""
    pytest.importorskip("spikingjelly")
    return pytest.importorskip(f"spikingjelly.activation_based.{module}")


def _identity(h):          # an oracle "surrogate" that returns the membrane itself
    return h


def _close(a, b, rel=1e-10):
    scale = max(b.abs().max().item(), 1e-300)
    assert (a - b).abs().max().item() <= rel * scale, (a - b).abs().max().item()


def _compare(ours, oracle, x, params):
    """Spikes identical and gradients equal for x (B, T, C); oracle takes (T, B, C).
    ``params``: [(our parameter, oracle parameter, factor)]: our gradient = factor × the
    oracle's (−θ for log θ against the oracle's bias = −θ: ∂/∂log θ = θ ∂/∂θ = −θ ∂/∂bias)."""
    g = torch.randn_like(x)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    sa = ours(xa)
    sb = oracle(xb.transpose(0, 1)).transpose(0, 1)
    assert torch.equal(sa, sb)
    assert 0 < sa.mean().item() < 1                     # the test exercises both outcomes
    (sa * g).sum().backward()
    (sb * g).sum().backward()
    _close(xa.grad, xb.grad)
    for p, q, factor in params:
        _close(p.grad, factor * q.grad)


def _matches_oracle(ours, oracle, x, params, shift=0.0):
    """Membranes equal while the oracle's surrogate is the identity (it then returns its
    membrane: ours minus ``shift``), then spikes and gradients with ATan(2)."""
    _close(ours.membrane(x) - shift, oracle(x.transpose(0, 1)).transpose(0, 1))
    oracle.surrogate_function = _sj("surrogate").ATan(2.0)
    _compare(ours, oracle, x, params)


# ---------------------------------------------------------------------------- full PSN
def _copy_to_oracle(ours, oracle):
    """Our W and θ (T, 1) as the oracle's weight and bias = −θ."""
    with torch.no_grad():
        oracle.weight.copy_(ours.weight)
        oracle.bias.copy_(-ours.theta)


def _random_theta(m, gen_seed=0):
    """A positive θ per time step, unlike the initial 1 everywhere."""
    gen = torch.Generator().manual_seed(gen_seed)
    m.set_theta(0.5 + torch.rand(m.T, 1, generator=gen, dtype=torch.float64))


def test_psn_matches_spikingjelly():
    torch.manual_seed(0)
    T, B, C = 12, 3, 5
    ours = PSN(T).double()
    _random_theta(ours)
    oracle = _sj().PSN(T, surrogate_function=_identity).double()
    _copy_to_oracle(ours, oracle)
    x = torch.randn(B, T, C, dtype=F64) * 2
    _matches_oracle(ours, oracle, x, [(ours.weight, oracle.weight, 1),
                                      (ours.log_theta, oracle.bias, -ours.theta.detach())],
                    shift=ours.theta)


def test_psn_init_and_shape_checks():
    torch.manual_seed(0)
    m = PSN(16)
    assert m.weight.abs().max() <= 1 / math.sqrt(16) and m.weight.std() > 0.1
    assert torch.equal(m.theta, torch.ones(16, 1))       # SpikingJelly's bias −1: θ = 1
    assert PSN(4, theta_init=0.5).theta.eq(0.5).all()
    with pytest.raises(ValueError, match="T = 16"):
        m(torch.randn(2, 15, 3))
    with pytest.raises(ValueError, match="T"):
        PSN(0)
    with pytest.raises(ValueError, match="theta_init"):
        PSN(4, theta_init=-1.0)


@pytest.mark.parametrize("make", [lambda: PSN(6), lambda: MaskedPSN(2, 6, lambda_init=1.0)])
def test_psn_threshold_stays_positive(make):
    """θ of the full and masked PSN is exp(log θ), learnable, as every other θ: no optimiser
    step makes it 0 or negative (a raw bias could, and then every step fires)."""
    m = make()
    assert isinstance(m.log_theta, torch.nn.Parameter) and "bias" not in dict(m.named_parameters())
    x = torch.full((1, 6, 2), -0.01)                     # a small negative drive: no spike
    m.weight.data.fill_(1.0)
    assert m(x).sum() == 0
    m.log_theta.grad = torch.full_like(m.log_theta, 1e3)
    torch.optim.SGD([m.log_theta], lr=1.0).step()        # a huge step downwards
    assert (m.theta > 0).all() and m(x).sum() == 0


def test_psn_is_not_causal():
    torch.manual_seed(0)
    m = PSN(8).double()
    x = torch.randn(2, 8, 3, dtype=F64)
    y = x.clone()
    y[:, -1] += 1.0
    assert (m.membrane(x)[:, 0] - m.membrane(y)[:, 0]).abs().max() > 0


# ---------------------------------------------------------------------------- masked PSN
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_masked_psn_matches_spikingjelly(lam):
    torch.manual_seed(1)
    k, T, B, C = 3, 10, 3, 4
    ours = MaskedPSN(k, T, lambda_init=lam).double()
    oracle = _sj().MaskedPSN(k, T, lambda_init=lam, surrogate_function=_identity,
                          step_mode="m").double()
    _random_theta(ours, 1)
    _copy_to_oracle(ours, oracle)
    x = torch.randn(B, T, C, dtype=F64) * 2
    _matches_oracle(ours, oracle, x, [(ours.weight, oracle.weight, 1),
                                      (ours.log_theta, oracle.bias, -ours.theta.detach())],
                    shift=ours.theta)


def test_masked_psn_causal_at_lambda_one():
    torch.manual_seed(2)
    k, T = 4, 16
    m = MaskedPSN(k, T, lambda_init=1.0).double()
    x = torch.randn(2, T, 3, dtype=F64)
    h = m.membrane(x)
    for t in range(T - 1):
        y = x.clone()
        y[:, t + 1:] = torch.randn_like(y[:, t + 1:])   # change the future of step t
        assert torch.equal(m.membrane(y)[:, : t + 1], h[:, : t + 1])
        z = x.clone()                                    # and the window is k steps long
        if t - k >= 0:
            z[:, t - k] += 5.0
            assert torch.equal(m.membrane(z)[:, t], h[:, t])
    m.set_lambda(0.5)                                    # dense again below λ = 1
    y = x.clone()
    y[:, -1] += 1.0
    assert (m.membrane(y)[:, 0] - h[:, 0]).abs().max() > 0


def test_masked_lambda_schedule_and_checks():
    assert [masked_lambda(e, 17) for e in (0, 1, 2, 16)] == [0.0, 0.5, 1.0, 1.0]
    assert masked_lambda(0, 1) == 1.0
    with pytest.raises(ValueError, match="epoch"):
        masked_lambda(3, 3)
    m = MaskedPSN(2, 5)
    with pytest.raises(ValueError, match="lambda"):
        m.set_lambda(1.5)
    for k, T in ((0, 5), (6, 5)):
        with pytest.raises(ValueError, match="k"):
            MaskedPSN(k, T)
    m.set_lambda(0.25)
    assert "lambda_=0.25" in repr(m)


def test_masked_psn_state_dict_round_trip():
    """λ is a buffer: a fresh module loaded from the state dict has the same λ, weights and
    θ, and computes the same membrane and spikes (it differed before loading)."""
    torch.manual_seed(4)
    m = MaskedPSN(2, 5).double()
    m.set_lambda(0.25)
    _random_theta(m, 4)
    fresh = MaskedPSN(2, 5).double()
    x = torch.randn(3, 5, 4, dtype=F64) * 2
    assert float(fresh.lambda_) == 0.0 and not torch.equal(fresh.weight, m.weight)
    assert not torch.equal(fresh.membrane(x), m.membrane(x))
    fresh.load_state_dict(m.state_dict())
    assert float(fresh.lambda_) == 0.25 and "lambda_=0.25" in repr(fresh)
    for name in ("weight", "log_theta", "mask", "lambda_"):
        assert torch.equal(getattr(fresh, name), getattr(m, name)), name
    assert torch.equal(fresh.effective_weight(), m.effective_weight())
    assert torch.equal(fresh.membrane(x), m.membrane(x)) and torch.equal(fresh(x), m(x))
    assert 0 < m(x).mean() < 1                           # spikes of both kinds compared


# ---------------------------------------------------------------------------- sliding PSN
def _sliding_oracle(weight, theta, exp_init=True):
    o = _sj().SlidingPSN(weight.numel(), exp_init=exp_init, surrogate_function=_identity,
                      step_mode="m").double()
    with torch.no_grad():
        o.weight.copy_(weight)
        o.bias.fill_(-float(theta))                      # Θ(H + bias) = Θ(H − θ)
    return o


@pytest.mark.parametrize("P, T", [(1, 6), (4, 9), (8, 5)])
def test_sliding_psn_shared_matches_spikingjelly(P, T):
    torch.manual_seed(P)
    ours = SlidingPSN(P, exp_init=True, theta_init=0.7).double()
    oracle = _sliding_oracle(ours.weight.detach(), ours.theta.item())
    assert torch.equal(ours.weight.detach(), oracle.weight.detach())   # same exp init
    x = torch.randn(3, T, 4, dtype=F64) * 2
    _matches_oracle(ours, oracle, x, [(ours.weight, oracle.weight, 1),
                                      (ours.log_theta, oracle.bias, -ours.theta.detach())],
                    shift=ours.theta)


def test_sliding_psn_per_channel_matches_spikingjelly_channel_by_channel():
    """The oracle has one shared kernel: compare each of our channels with its own oracle."""
    torch.manual_seed(3)
    P, T, B, C = 5, 11, 3, 4
    ours = SlidingPSN(P, channels=C, exp_init=False).double()
    ours.set_theta(torch.tensor([0.2, 0.5, 0.05, 0.3]))
    assert ours.weight.shape == (C, P) and ours.theta.shape == (C,)
    assert ours.weight.abs().max() <= 1 / math.sqrt(P)
    x = torch.randn(B, T, C, dtype=F64) * 2
    g = torch.randn_like(x)
    xa = x.clone().requires_grad_()
    sa = ours(xa)
    (sa * g).sum().backward()
    for c in range(C):
        oracle = _sliding_oracle(ours.weight[c].detach(), ours.theta[c].item())
        oracle.surrogate_function = _sj("surrogate").ATan(2.0)
        xb = x[..., c:c + 1].clone().requires_grad_()
        sb = oracle(xb.transpose(0, 1)).transpose(0, 1)
        assert torch.equal(sa[..., c:c + 1], sb)
        (sb * g[..., c:c + 1]).sum().backward()
        _close(xa.grad[..., c:c + 1], xb.grad)
        _close(ours.weight.grad[c], oracle.weight.grad)
        _close(ours.log_theta.grad[c], -ours.theta[c].detach() * oracle.bias.grad)


@pytest.mark.parametrize("L", [1, 7, 64, 1000])
@pytest.mark.parametrize("channels", [None, 3])
def test_sliding_psn_forward_serial_step_agree(L, channels):
    """With an identity "spike" the three forms return H − θ: compare them at 1e-10."""
    torch.manual_seed(L)
    P = 6
    m = SlidingPSN(P, channels=channels, exp_init=False, theta_init=0.1).double()
    x = torch.randn(2, L, 3, dtype=F64)
    ref = m.membrane(x) - m.theta
    m.surrogate = _identity
    assert (m(x) - ref).abs().max() <= 1e-10 * ref.abs().max()
    assert (m.forward_serial(x) - ref).abs().max() <= 1e-10 * ref.abs().max()
    state = None
    for t in range(L):
        h_t, state = m.step(x[:, t], state)
        assert state["buf"].shape == (2, 3, P - 1)
        assert (h_t - ref[:, t]).abs().max() <= 1e-10 * ref.abs().max()
    m.surrogate = ATan(2.0)
    assert torch.equal(m.forward_serial(x), m(x))


def test_sliding_psn_streaming_state_and_checks():
    torch.manual_seed(5)
    m = SlidingPSN(4, channels=2).double()
    x = torch.randn(1, 30, 2, dtype=F64)
    full = m.forward_serial(x)
    state = None
    outs = []
    for t in range(30):
        s_t, state = m.step(x[:, t], state)
        outs.append(s_t)
    assert torch.equal(torch.stack(outs, 1), full)
    assert torch.equal(state["buf"], x[:, -3:].transpose(1, 2))   # the last P − 1 inputs
    for bad in ({"order": 0}, {"order": 3, "channels": 0}):
        with pytest.raises(ValueError):
            SlidingPSN(**bad)
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 5, 3, dtype=F64))
    with pytest.raises(ValueError, match="x"):
        m(torch.randn(5, 2, dtype=F64))
    assert SlidingPSN(3, learn_theta=False).theta.requires_grad is False
    with pytest.raises(ValueError, match="theta"):
        m.set_theta(torch.tensor([0.5, -0.1]))
    assert isinstance(SlidingPSN(3).surrogate, ATan)
