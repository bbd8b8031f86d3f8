"""spikelib.memory (S4D): FFT ≡ recurrence ≡ step, kernel ≡ its explicit sum, precision under
float32 and bf16 autocast, gradients, optimiser tags, validation."""
import cmath
import math
from unittest import mock

import pytest
import torch

from conftest import DispatchLog
from spikelib._checks import finite_checks
from spikelib.memory import S4D, S4DKernel, register

H, N = 4, 8


def _model(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return S4D(H, d_state=N, **kw).to(dtype)


def _u(B, L, dtype=torch.float64, seed=1):
    return torch.randn(B, L, H, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed)).to(dtype)


def _stepped(m, u):
    state, ys = None, []
    for t in range(u.shape[1]):
        y_t, state = m.step(u[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, dim=1), state


@pytest.mark.parametrize("L", [1, 7, 64, 1000])
def test_fft_equals_serial_equals_step_float64(L):
    m, u = _model(dt_min=1e-3, dt_max=0.5), _u(3, L)
    with torch.no_grad():
        y = m(u)
        ys = m.forward_serial(u)
        yt, state = _stepped(m, u)
    assert y.dtype == ys.dtype == yt.dtype == torch.float64 and y.shape == (3, L, H)
    assert state["x"].dtype == torch.complex128 and state["x"].shape == (3, H, N // 2)
    tol = 1e-10 * ys.abs().max().item()
    assert (y - ys).abs().max().item() <= tol
    assert (yt - ys).abs().max().item() <= tol


def test_kernel_equals_explicit_sum():
    """K_ℓ = 2 Re Σ_n C_n (e^{ΔA_n} − 1)/A_n e^{ΔA_n ℓ}, summed with Python complex numbers."""
    torch.manual_seed(3)
    k = S4DKernel(2, d_state=4, dt_min=0.01, dt_max=0.3).double()
    L = 20
    K = k(L)
    assert K.shape == (2, L) and K.dtype == torch.float64
    for h in range(2):
        dt = math.exp(k.log_dt[h].item())
        for ell in range(L):
            total = 0j
            for n in range(2):
                A = complex(-math.exp(k.log_A_real[h, n].item()), k.A_imag[h, n].item())
                C = complex(k.C[h, n, 0].item(), k.C[h, n, 1].item())
                total += C * (cmath.exp(dt * A) - 1) / A * cmath.exp(dt * A * ell)
            assert abs(K[h, ell].item() - 2 * total.real) <= 1e-12 * max(1.0, abs(total))
    dA, dB, C = k.discrete()
    assert dA.dtype == dB.dtype == C.dtype == torch.complex128 and dA.shape == (2, 2)


def test_init_s4d_lin():
    torch.manual_seed(0)
    k = S4DKernel(5, d_state=6, dt_min=1e-3, dt_max=1e-1)
    assert torch.allclose(-torch.exp(k.log_A_real), torch.full((5, 3), -0.5))
    assert torch.allclose(k.A_imag, math.pi * torch.arange(3.0).expand(5, 3))
    assert bool((k.log_dt >= math.log(1e-3)).all() and (k.log_dt <= math.log(1e-1)).all())
    assert k.C.shape == (5, 3, 2)


@pytest.mark.parametrize("L", [64, 1000])
def test_float32_within_bound(L):
    """|y32 − y64| ≤ 5 eps32 · scale, scale = max_h max|u_h| (Σ_ℓ |K_{h,ℓ}| + |D_h|) (the
    largest possible |y|). Observed (Intel Xeon, torch 2.14.1): 0.19 and 0.29 eps32·scale for
    the FFT at L = 64 and 1000, 0.18 and 0.59 for the recurrence (stable modes forget old
    rounding errors, and the FFT's grow like log L), so the bound is 8–27× the error."""
    m64 = _model()
    m32 = S4D(H, d_state=N)
    m32.load_state_dict(m64.state_dict())
    u = _u(3, L)
    with torch.no_grad():
        y = m64(u)
        K = m64.kernel(L)
        scale = (u.abs().amax(dim=(0, 1)) * (K.abs().sum(1) + m64.D.abs())).max().item()
        bound = 5 * torch.finfo(torch.float32).eps * scale
        for y32 in (m32(u.float()), m32.forward_serial(u.float())):
            assert y32.dtype == torch.float32
            assert (y32.double() - y).abs().max().item() <= bound


def test_bf16_autocast_keeps_fft_in_float32():
    """Under bf16 autocast the kernel, FFT and recurrence still run in float32 (autocast is off
    inside S4D): every FFT sees float32/complex64 only, the outputs for float32 input are
    bit-identical to the plain float32 ones, and for bf16 input the output is exactly the float32
    output on the (bf16) input, rounded to bf16."""
    m, u = _model(torch.float32), _u(2, 128, torch.float32)
    with torch.no_grad():
        ref, ref_serial = m(u), m.forward_serial(u)
        ub = u.bfloat16()
        ref_b = m(ub.float()).bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16), DispatchLog() as log:
            y = m(u)                                                # fp32 input
            yb = m(ub)                                              # bf16 input
            ys = m.forward_serial(u)
    assert log.dtypes("fft") and log.dtypes("fft") <= {torch.float32, torch.complex64}
    assert y.dtype == torch.float32 and yb.dtype == torch.bfloat16
    assert torch.equal(y, ref) and torch.equal(ys, ref_serial) and torch.equal(yb, ref_b)
    # bf16 only rounds the input and the output, each by at most 2^-8 relative (8-bit
    # significand): |yb − y| ≤ 2^-8 (max|u| (Σ|K| + |D|) + max|y|) — a proof, not a fit
    # (observed: 0.19 of it)
    K = m.kernel(u.shape[1])
    scale = (u.abs().amax(dim=(0, 1)) * (K.abs().sum(1) + m.D.abs())).max().item()
    assert (yb.float() - ref).abs().max().item() <= 2 ** -8 * (scale + ref.abs().max().item())


def test_gradients_reach_every_parameter_and_match_serial():
    m, u = _model(), _u(2, 30)
    w = torch.randn(2, 30, H, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    names = ["D", "kernel.log_dt", "kernel.C", "kernel.log_A_real", "kernel.A_imag"]
    (m(u) * w).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    assert sorted(grads) == sorted(names)
    for n in names:
        assert bool(torch.isfinite(grads[n]).all()) and grads[n].abs().max() > 0, n
    m.zero_grad()
    (m.forward_serial(u) * w).sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-8, atol=1e-10)


def test_optim_tags_and_register():
    m = S4D(3, d_state=4, lr=1e-3)
    for n in ("log_dt", "C", "log_A_real", "A_imag"):
        assert getattr(m.kernel, n)._optim == {"lr": 1e-3, "weight_decay": 0.0}, n
    assert not hasattr(m.D, "_optim")
    frozen = S4D(3, d_state=4, lr=0.0)
    buffers = dict(frozen.kernel.named_buffers())
    assert set(buffers) == {"log_dt", "log_A_real", "A_imag"}
    assert {n for n, _ in frozen.named_parameters()} == {"D", "kernel.C"}
    assert frozen.kernel.C._optim == {"weight_decay": 0.0}
    mod = torch.nn.Module()
    register(mod, "b", torch.ones(2), lr=0)
    register(mod, "p", torch.ones(2), lr=0.01)
    assert "b" in dict(mod.named_buffers()) and "p" in dict(mod.named_parameters())
    assert mod.p._optim == {"lr": 0.01, "weight_decay": 0.0}
    with torch.no_grad():                                           # frozen model still runs
        assert frozen(torch.randn(1, 5, 3)).shape == (1, 5, 3)


def _real_coefficients(m):
    """dA, dB and 2C of ``m`` split into real and imaginary parts (float64), D."""
    dA, dB, C = m.kernel.discrete(torch.float64)                              # (H N/2) each
    return (dA.real, dA.imag, dB.real, dB.imag, 2 * C.real, 2 * C.imag), m.D.detach()


def _real_step(coefficients, D, u_t, xr, xi):
    """One S4D step in real arithmetic, an independent oracle for ``S4D.step``: with
    x = xr + i xi, x ← dA x + dB u and y = Re(2C x) + D u = (2C)_r xr − (2C)_i xi + D u."""
    ar, ai, br, bi, cr, ci = coefficients
    u = u_t.unsqueeze(-1)                                                     # (B H 1)
    xr, xi = ar * xr - ai * xi + br * u, ar * xi + ai * xr + bi * u           # (B H N/2)
    y = torch.einsum("hn,bhn->bh", cr, xr) - torch.einsum("hn,bhn->bh", ci, xi) + D * u_t
    return y, xr, xi                                                          # (B H), ...


def test_state_cost_counts_the_real_multiplications_of_one_step():
    """``state_cost`` (the energy table's S4D term) against a count: the real multiplications
    that the real-arithmetic step above dispatches (``DispatchLog.multiplies``), per sequence,
    the discretisation (computed once) left out. The oracle is first checked to compute what
    ``S4D.step`` computes. ``S4D.step`` itself dispatches more than ``state_cost``: its complex
    readout also forms Im(2C x), which it discards."""
    m, B = _model(), 3
    u = _u(B, 5)
    coefficients, D = _real_coefficients(m)
    xr = xi = torch.zeros(B, H, N // 2, dtype=torch.float64)
    state = None
    with torch.no_grad():
        for t in range(u.shape[1]):
            y, state = m.step(u[:, t], state)
            y_real, xr, xi = _real_step(coefficients, D, u[:, t], xr, xi)
            # float64 on both sides: observed 1e-17 relative and exact states; bound 1e-14
            torch.testing.assert_close(y_real, y, rtol=0, atol=1e-14 * y.abs().max().item())
            torch.testing.assert_close(torch.complex(xr, xi), state["x"], rtol=0, atol=1e-14)
        with DispatchLog() as real:
            _real_step(coefficients, D, u[:, 0], xr, xi)
        with DispatchLog() as library:
            m.step(u[:, 0], state)                           # discretisation cached: no_grad
    assert real.multiplies() == B * m.state_cost()
    assert library.multiplies() > B * m.state_cost()


def test_step_state():
    m = _model()
    u_t = torch.randn(2, H, dtype=torch.float64)
    y0, x0 = m.step(u_t)
    y1, x1 = m.step(u_t, {"x": torch.zeros(2, H, N // 2, dtype=torch.complex128)})
    assert torch.equal(y0, y1) and torch.equal(x0["x"], x1["x"])
    init = m.initial_state(2, dtype=torch.float64)["x"]
    assert init.dtype == torch.complex128 and init.shape == (2, H, N // 2) and not init.any()


def test_validation():
    for bad in (3, 0, 1, -2, 2.0):
        with pytest.raises(ValueError, match="d_state"):
            S4D(H, d_state=bad)
    with pytest.raises(ValueError, match="dt_min"):
        S4D(H, dt_min=0.2, dt_max=0.1)
    for kw in ({"dt_min": True}, {"lr": True}):                  # a bool is not a number
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}:"):
            S4D(H, **kw)
    m = _model()
    for shape, what in (((0, 10, H), "at least one sequence"), ((2, 0, H), "at least one time")):
        for f, name in ((m.forward, "u"), (m.forward_serial, "x")):   # once an MKL FFT error
            with pytest.raises(ValueError, match=f"^{name}: expected {what}"):
                f(torch.zeros(shape))
    m = _model()
    u = _u(2, 10)
    for bad, match in ((u[0], "shape"), (u[..., :3], "channels"), (u.long(), "floating")):
        for f in (m.forward, m.forward_serial):
            with pytest.raises(ValueError, match=match):
                f(bad)
    with pytest.raises(ValueError, match="channels"):
        m.step(u[:, 0, :3])
    nan = u.clone()
    nan[1, 3, 2] = float("nan")
    for f in (m.forward, m.forward_serial):
        with pytest.raises(ValueError, match="NaN"):
            f(nan)
    with finite_checks(False):                      # training checks its data once instead
        assert torch.isnan(m(nan)).any()


def test_step_caches_the_discretisation_only_while_parameters_are_unchanged():
    torch.manual_seed(0)
    layer = S4D(4, 6).double()
    u = torch.randn(2, 5, 4, dtype=torch.float64)
    with torch.no_grad(), mock.patch.object(layer.kernel, "discrete",
                                            wraps=layer.kernel.discrete) as spy:
        state, ys = None, []
        for t in range(5):
            y, state = layer.step(u[:, t], state)
            ys.append(y)
        assert spy.call_count == 1                         # computed once for 5 steps
        assert torch.allclose(torch.stack(ys, 1), layer(u), rtol=0, atol=1e-12)
        layer.kernel.log_dt.add_(0.3)                      # an optimiser step, in place
        layer.step(u[:, 0])
        assert spy.call_count == 2                         # the change was seen
        y_new = layer.forward_serial(u)
    fresh = S4D(4, 6).double()
    fresh.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert torch.allclose(y_new, fresh(u), rtol=0, atol=1e-12)
    y, _ = layer.step(u[:, 0])                             # autograd on: no cache, a graph
    y.sum().backward()
    grad = layer.kernel.log_dt.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
