"""spikelib.ddsn: the chunked scan against the loop (fp64, extreme gates, any chunk), its
gradients, fp32 error bound, and the dynamic-decay neuron's parallel ≡ serial ≡ streaming forms,
the convex-combination bound at L = 30,000, spike modes and argument checks."""
import math

import pytest
import torch

from conftest import DispatchLog
from spikelib.ddsn import DynamicDecayNeuron, linear_scan, linear_scan_loop
from spikelib.temporal import finite_checks

F64 = torch.float64
EPS32 = torch.finfo(torch.float32).eps


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _gates(B, L, C, generator=None, low=-3.0):
    """log a uniform in [low, 0): a mix of fast and slow decay."""
    return low * torch.rand(B, L, C, dtype=F64, generator=generator)


def serial_membrane(n: DynamicDecayNeuron, x, state=None):
    """h_t read from the ``step`` state, and the final state."""
    hs = []
    for t in range(x.shape[1]):
        _, state = n.step(x[:, t], state)
        hs.append(state["h"])
    return torch.stack(hs, 1), state


def _neuron(C=4, **kw):
    torch.manual_seed(0)
    n = DynamicDecayNeuron(C, **kw).double()
    with torch.no_grad():                       # a gate that really depends on the input
        n.gate_weight.normal_(0.0, 1.0)
    return n


# ------------------------------------------------------------------------------ the scan
@pytest.mark.parametrize("L", [1, 7, 64, 1000])
def test_scan_matches_loop_fp64(L):
    torch.manual_seed(L)
    la, b, h0 = _gates(3, L, 5), torch.randn(3, L, 5, dtype=F64), torch.randn(3, 5, dtype=F64)
    for chunk in (16, 64):
        assert _rel(linear_scan(la, b, h0, chunk), linear_scan_loop(la, b, h0)) <= 1e-10
        assert _rel(linear_scan(la, b, None, chunk), linear_scan_loop(la, b)) <= 1e-10


@pytest.mark.parametrize("L", [5, 100, 512])
def test_scan_chunk_one_and_whole_length(L):
    torch.manual_seed(1)
    la, b, h0 = _gates(2, L, 3), torch.randn(2, L, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    ref = linear_scan_loop(la, b, h0)
    for chunk in (1, L, L + 3):
        assert _rel(linear_scan(la, b, h0, chunk), ref) <= 1e-10


@pytest.mark.parametrize("L, chunk", [(65, 16), (1000, 64), (1001, 16), (47, 5), (300, 7)])
def test_scan_length_not_multiple_of_chunk(L, chunk):
    torch.manual_seed(L)
    la, b = _gates(2, L, 3), torch.randn(2, L, 3, dtype=F64)
    assert L % chunk != 0
    assert _rel(linear_scan(la, b, chunk=chunk), linear_scan_loop(la, b)) <= 1e-10


def test_scan_extreme_gates_fp64_long():
    """log a down to −70 and a = 1 − 1e−7, raw through the primitive, L = 16,389 (not a multiple
    of the chunk): no overflow, no NaN, equal to the loop. A running-product form would fail."""
    L = 16 * 1024 + 5
    g = torch.Generator().manual_seed(0)
    la = torch.empty(1, L, 4, dtype=F64)
    la[..., 0] = -70.0                                                 # α ≈ 4e-31
    la[..., 1] = math.log1p(-1e-7)                                     # α = 1 − 1e−7
    la[..., 2] = torch.where(torch.rand(L, generator=g) < 0.5, -70.0, math.log1p(-1e-7))
    la[..., 3] = -70.0 * torch.rand(L, generator=g, dtype=F64)
    b = torch.randn(1, L, 4, dtype=F64, generator=g)
    ref = linear_scan_loop(la, b)
    for chunk in (16, 64):
        h = linear_scan(la, b, chunk=chunk)
        assert torch.isfinite(h).all()
        assert _rel(h, ref) <= 1e-10
    # slow channel: h_t ≈ Σ b (a = 1 − 1e−7), bounded by Σ|b|; fast channel: h_t ≈ b_t
    assert (h[..., 0] - b[..., 0]).abs().max() < 1e-25
    la.requires_grad_(), b.requires_grad_()
    linear_scan(la, b).sum().backward()
    assert torch.isfinite(la.grad).all() and torch.isfinite(b.grad).all()


def test_scan_zero_gate_is_a_reset():
    """a_t = 0 (log a = −inf) restarts the recurrence: h_t = b_t, and nothing turns into NaN."""
    torch.manual_seed(11)
    la = _gates(2, 100, 3)
    la[:, [10, 50, 51, 52, 63, 64]] = -math.inf
    b = torch.randn(2, 100, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=F64)
    h = linear_scan(la, b, h0, chunk=16)
    assert torch.isfinite(h).all() and _rel(h, linear_scan_loop(la, b, h0)) <= 1e-10
    assert torch.equal(h[:, 10], b[:, 10])
    la.requires_grad_()
    h.sum().backward()
    linear_scan(la, b, chunk=16).sum().backward()
    assert torch.isfinite(b.grad).all() and torch.isfinite(la.grad).all()


def test_scan_gradcheck_fp64():
    torch.manual_seed(2)
    for L, chunk, with_h0 in ((1, 4, True), (6, 4, True), (9, 2, False), (5, 1, True),
                              (12, 16, False)):
        la = _gates(2, L, 2).requires_grad_()
        b = torch.randn(2, L, 2, dtype=F64, requires_grad=True)
        h0 = torch.randn(2, 2, dtype=F64, requires_grad=True) if with_h0 else None
        args = (la, b, h0) if with_h0 else (la, b)
        fn = (lambda a, b_, h: linear_scan(a, b_, h, chunk)) if with_h0 else \
            (lambda a, b_: linear_scan(a, b_, None, chunk))
        assert torch.autograd.gradcheck(fn, args)


def test_scan_gradient_matches_loop_autograd_long():
    torch.manual_seed(3)
    L = 1000
    la = _gates(2, L, 3).requires_grad_()
    b = torch.randn(2, L, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    w = torch.randn(2, L, 3, dtype=F64)
    grads = []
    for fn in (lambda: linear_scan(la, b, h0), lambda: linear_scan_loop(la, b, h0)):
        grads.append(torch.autograd.grad((fn() * w).sum(), (la, b, h0)))
    for ga, gb in zip(*grads):
        assert _rel(ga, gb) <= 1e-10


# max|h32 − h64| / (eps32 · (max|h64| + max|b|)), observed at L = 4096 (Intel Xeon, torch
# 2.14.1; fp32 rounding of a fixed sequence of ops, so the same order on any machine):
# fast gates ≤ 0.39 for every chunk; slow gates 22.2 for the plain loop (chunk 1: errors
# accumulate over the ~2000-step memory of a ≈ 1 − 5e-4) and 1.4–1.7 in chunks (each chunk
# starts afresh). Bounds: about 10× these.
SCAN_FP32_BOUND = {(False, 1): 4, (False, 16): 4, (False, 64): 4,
                   (True, 1): 220, (True, 16): 16, (True, 64): 16}


@pytest.mark.parametrize("slow, chunk", SCAN_FP32_BOUND)
def test_scan_fp32_against_fp64(slow, chunk):
    """The fp32 scan against the fp64 loop: every step adds rounding errors of size
    eps·(|h| + |b|) that decay (a_t ≤ 1), never grow; the bound in units of
    eps32·(max|h64| + max|b|) is SCAN_FP32_BOUND (measured, see there)."""
    torch.manual_seed(4)
    L = 4096
    la = -1e-3 * torch.rand(2, L, 8, dtype=F64) if slow else _gates(2, L, 8, low=-2.0)
    b = torch.randn(2, L, 8, dtype=F64)
    ref = linear_scan_loop(la, b)
    unit = EPS32 * (ref.abs().max() + b.abs().max())
    h32 = linear_scan(la.float(), b.float(), chunk=chunk)
    assert h32.dtype == torch.float32
    assert (h32.double() - ref).abs().max() <= SCAN_FP32_BOUND[slow, chunk] * unit


def test_scan_autocast_keeps_fp32():
    torch.manual_seed(5)
    la, b = _gates(2, 200, 4).float(), torch.randn(2, 200, 4)
    plain = linear_scan(la, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = linear_scan(la, b)
    assert under.dtype == torch.float32 and torch.equal(under, plain)


def test_scan_bad_arguments():
    la, b = torch.zeros(2, 5, 3), torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="shapes"):
        linear_scan(la, b[:, :4])
    with pytest.raises(ValueError, match="log_a"):
        linear_scan(la[0], b[0])
    with pytest.raises(ValueError, match="h0"):
        linear_scan(la, b, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="chunk"):
        linear_scan(la, b, chunk=0)
    with pytest.raises(ValueError, match="time step"):
        linear_scan(la[:, :0], b[:, :0])
    with pytest.raises(ValueError, match="floating"):
        linear_scan(la.long(), b.long())
    with pytest.raises(ValueError, match="at least one sequence"):
        linear_scan(la[:0], b[:0])


@pytest.mark.parametrize("bad", [1e-3, float("inf"), float("nan")])
def test_scan_rejects_log_a_above_zero(bad):
    """a = exp(log a) > 1 grows without bound, where the scan is not stable (its docstring
    says so): a positive or NaN log a is a ValueError naming log_a — a value check, so it is
    off with the other value checks (training: no host read)."""
    la, b = -torch.rand(2, 20, 3, dtype=F64), torch.randn(2, 20, 3, dtype=F64)
    la[1, 7, 2] = bad
    for scan in (linear_scan, linear_scan_loop):
        with pytest.raises(ValueError, match="log_a: expected log_a <= 0"):
            scan(la, b)
    la[1, 7, 2] = float("-inf")                      # a reset (a = 0) is fine
    linear_scan(la, b)
    la[1, 7, 2] = 1e-3
    with finite_checks(False):
        assert linear_scan(la, b).shape == b.shape


# ------------------------------------------------------------------------------ the neuron
@pytest.mark.parametrize("L", [1, 7, 64, 1000])
def test_neuron_parallel_equals_serial_fp64(L):
    n = _neuron(gate_kernel=4)
    x = 1.5 * torch.randn(2, L, 4, dtype=F64, generator=torch.Generator().manual_seed(L))
    h_par = n.membrane(x)
    h_ser, _ = serial_membrane(n, x)
    assert _rel(h_par, h_ser) <= 1e-10
    s_par, s_ser = n(x), n.forward_serial(x)
    assert torch.equal(s_par, s_ser) and set(s_par.unique().tolist()) <= {0.0, 1.0}


def test_neuron_gradients_parallel_equal_serial():
    n = _neuron(gate_kernel=3)
    x = torch.randn(2, 50, 4, dtype=F64, generator=torch.Generator().manual_seed(6))
    w = torch.randn_like(x)
    grads = []
    for fn in (n, n.forward_serial):
        xr = x.clone().requires_grad_()
        loss = (fn(xr) * w).sum() + (n.membrane(xr) if fn is n else serial_membrane(n, xr)[0]
                                     ).pow(2).sum()
        grads.append(torch.autograd.grad(loss, (xr, n.gate_weight, n.gate_bias)))
    for ga, gb in zip(*grads):
        assert _rel(ga, gb) <= 1e-10


@pytest.mark.parametrize("k", [1, 4])
def test_neuron_streaming_continues_exactly(k):
    n = _neuron(gate_kernel=k)
    x = torch.randn(2, 90, 4, dtype=F64, generator=torch.Generator().manual_seed(7))
    full_h, full_state = serial_membrane(n, x)
    full_s = n(x)
    for m in (1, 2, 37):
        # parallel on x[:m], then parallel on x[m:] from the kept state (h and conv buffer)
        s1, st = n(x[:, :m], return_state=True)
        assert st["h"].shape == (2, 4) and st["buf"].shape == (2, 4, k - 1)
        s2, st2 = n(x[:, m:], state=st, return_state=True)
        assert torch.equal(torch.cat([s1, s2], 1), full_s)
        assert _rel(n.membrane(x[:, m:], state=st), full_h[:, m:]) <= 1e-10
        assert _rel(st2["h"], full_state["h"]) <= 1e-10 and torch.equal(st2["buf"],
                                                                         full_state["buf"])
        # serial steps on x[:m], then the parallel form continues (and vice versa)
        _, st_serial = serial_membrane(n, x[:, :m])
        assert _rel(n.membrane(x[:, m:], state=st_serial), full_h[:, m:]) <= 1e-10
        s_rest, _ = n.forward_serial(x[:, m:], state=st, return_state=True)
        assert torch.equal(s_rest, full_s[:, m:])


def test_neuron_bounded_and_finite_at_30k():
    """Convex combination: |h_t| ≤ max_{i≤t} |x_i| at L = 30,000 (trained-at-2k regime), also
    with gates pushed to both ends (α at the −20 clamp, α → 1)."""
    n = _neuron(C=4)
    with torch.no_grad():
        n.gate_bias.copy_(torch.tensor([-60.0, 0.0, 3.0, 40.0], dtype=F64))
    L = 30_000
    x = 3 * torch.randn(1, L, 4, dtype=F64, generator=torch.Generator().manual_seed(8))
    x[:, 5000:5100] += 50.0                                             # a burst
    h = n.membrane(x)
    assert torch.isfinite(h).all()
    running_max = x.abs().cummax(dim=1).values
    assert (h.abs() <= running_max * (1 + 1e-12)).all()
    n32 = DynamicDecayNeuron(4)
    n32.load_state_dict(n.state_dict())
    h32 = n32.membrane(x.float())
    # fp32: |h32| exceeds the running max by ≤ 0.38 eps32 relative, and |h32 − h64| ≤
    # 8.4 eps32·max|x| (observed: the α → 1 channel; Intel Xeon, torch 2.14.1; fp32 rounding,
    # so the same order on any machine); bounds 4 eps32 and 80 eps32·max|x|, about 10×
    assert torch.isfinite(h32).all()
    assert (h32.abs() <= running_max * (1 + 4 * EPS32)).all()
    assert (h32.double() - h).abs().max() <= 80 * EPS32 * x.abs().max()


def test_neuron_fp32_against_fp64():
    n = _neuron()
    x = torch.randn(2, 2048, 4, dtype=F64, generator=torch.Generator().manual_seed(9))
    ref = n.membrane(x)
    n32 = DynamicDecayNeuron(4)
    n32.load_state_dict(n.state_dict())
    err = (n32.membrane(x.float()).double() - ref).abs().max()
    # observed 0.85 eps32·max|x| at L = 2048 (Intel Xeon, torch 2.14.1; fp32 rounding of the
    # gate and the scan, so the same order on any machine); bound about 10×
    assert err <= 8 * EPS32 * x.abs().max()


def test_gate_and_init():
    torch.manual_seed(0)
    n = DynamicDecayNeuron(16, gate_tau=0.25)
    alpha0 = n.log_alpha(n.gate_bias).exp()                             # α at zero input
    assert abs(alpha0.min().item() - 0.5) < 1e-4 and abs(alpha0.max().item() - 0.99) < 1e-4
    assert n.gate_weight.abs().max() <= 0.1 / math.sqrt(4)
    z = torch.linspace(-50, 50, 101, dtype=F64)
    la = n.log_alpha(z)
    expect = torch.sigmoid(z) ** (1 / 0.25)
    keep = expect > math.exp(-20)
    assert torch.allclose(la.exp()[keep], expect[keep], rtol=1e-12, atol=0)
    assert la.min().item() == -20.0 and la.max().item() < 0


def test_spike_modes():
    torch.manual_seed(10)
    x = 3 * torch.randn(2, 40, 4, dtype=F64)
    nb = _neuron(theta=0.5)
    h = nb.membrane(x)
    assert torch.equal(nb(x), (h >= 0.5).to(F64))
    # binary: the ATan surrogate gradient (α = 2) of Θ(h − θ)
    hr = h.detach().requires_grad_()
    g = torch.autograd.grad(nb.fire(hr).sum(), hr)[0]
    assert torch.allclose(g, 1 / (1 + (math.pi * (h - 0.5)) ** 2))
    ni = _neuron(spike="integer", spike_levels=3)
    ni.load_state_dict(nb.state_dict())
    s = ni(x)
    assert torch.equal(s, torch.round(h).clamp(0, 3)) and s.max() == 3 and s.min() == 0
    assert torch.equal(ni.forward_serial(x), s)
    g = torch.autograd.grad(ni.fire(hr).sum(), hr)[0]                  # straight-through
    assert torch.equal(g, ((h > -0.5) & (h < 3.5)).to(F64))
    n1 = _neuron(spike="integer", spike_levels=1)
    assert set(n1(x).unique().tolist()) <= {0.0, 1.0}


def test_neuron_bad_arguments():
    for kw in ({"channels": 0}, {"channels": 4, "gate_kernel": 0},
               {"channels": 4, "gate_tau": 0.0}, {"channels": 4, "spike": "ternary"},
               {"channels": 4, "spike_levels": 0}, {"channels": 4, "theta": float("nan")},
               {"channels": 4, "chunk": 0}):
        with pytest.raises(ValueError, match=next(iter(kw)) if len(kw) == 1 else
                           list(kw)[1]):
            DynamicDecayNeuron(**kw)
    n = DynamicDecayNeuron(4)
    with pytest.raises(ValueError, match="channels"):
        n(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="x"):
        n(torch.randn(5, 4))
    _, state = n(torch.randn(2, 5, 4), return_state=True)
    for f in (n, n.membrane, n.forward_serial):            # the parallel forms take a state too
        with pytest.raises(ValueError, match="state: 'h' holds a batch of 2, expected 3"):
            f(torch.randn(3, 5, 4), state)
        with pytest.raises(ValueError, match="state: missing key 'buf'"):
            f(torch.randn(2, 5, 4), {"h": state["h"]})


def test_scan_depth_grows_like_log_L():
    """Dispatched aten ops of the forward scan: Q steps and a fixed set of ops per level,
    log_Q L levels, so for L = Q^k each factor Q in L adds the same number of ops; a loop over
    time would add L."""
    counts = []
    for L in (8 ** 2, 8 ** 3, 8 ** 4, 8 ** 5):
        la, b = -torch.rand(1, L, 2), torch.randn(1, L, 2)
        with torch.no_grad(), DispatchLog() as log:
            linear_scan(la, b, chunk=8)
        counts.append(log.count)
    steps = [b - a for a, b in zip(counts, counts[1:])]
    assert len(set(steps)) == 1 and 0 < steps[0] <= 10 * 8, counts     # constant per level
    assert counts[-1] < 3 * counts[0], counts                          # 512× longer, < 3× ops
