"""Surrogate spike functions: Θ forward, sympy-derived backward, SpikingJelly agreement, STE."""
import copy
import pickle

import numpy as np
import pytest
import sympy
import torch

from spikelib import surrogate as sg

X = sympy.Symbol("x", real=True)


def sympy_primitive(s):
    """The primitive σ of each surrogate, written from its docstring (independent of the code)."""
    if isinstance(s, sg.ATan):
        a = sympy.Float(s.alpha)
        return sympy.atan(sympy.pi * a * X / 2) / sympy.pi + sympy.Rational(1, 2)
    if isinstance(s, sg.Sigmoid):
        return 1 / (1 + sympy.exp(-sympy.Float(s.alpha) * X))
    if isinstance(s, sg.Rectangular):
        w = sympy.Float(s.width)
        return sympy.Piecewise((0, X <= -w / 2), (X / w + sympy.Rational(1, 2), X < w / 2),
                               (1, True))
    raise TypeError(s)


SURROGATES = [sg.ATan(0.5), sg.ATan(2.0), sg.ATan(5.0), sg.Sigmoid(1.0), sg.Sigmoid(4.0),
              sg.Rectangular(1.0), sg.Rectangular(0.3)]


def grid(s):
    x = np.linspace(-3.0, 3.0, 1201)
    if isinstance(s, sg.Rectangular):           # the derivative is undefined at the two kinks
        x = x[np.abs(np.abs(x) - s.width / 2) > 1e-6]
    return x


@pytest.mark.parametrize("s", SURROGATES, ids=repr)
def test_backward_is_sympy_derivative_of_primitive(s):
    x = grid(s)
    expr = sympy_primitive(s)
    prim = sympy.lambdify(X, expr, "numpy")
    deriv = sympy.lambdify(X, sympy.diff(expr, X), "numpy")
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    s(xt).backward(torch.ones_like(xt))                                  # spiking: Θ forward
    ref = np.broadcast_to(np.asarray(deriv(x), dtype=np.float64), x.shape)
    np.testing.assert_allclose(xt.grad.numpy(), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s.derivative(xt.detach()).numpy(), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s.primitive(xt.detach()).numpy(),
                               np.broadcast_to(np.asarray(prim(x), dtype=np.float64), x.shape),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("s", SURROGATES, ids=repr)
def test_smooth_primitive_gradcheck(s):
    smooth = copy.copy(s)
    smooth.spiking = False
    x = torch.tensor(grid(s)[::40], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(smooth, (x,))
    y = smooth(x)
    prim = sympy.lambdify(X, sympy_primitive(s), "numpy")          # the independent oracle
    want = np.broadcast_to(np.asarray(prim(x.detach().numpy()), dtype=np.float64), x.shape)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-14)
    assert not torch.equal(y, s(x))                                 # not the hard step
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, s.derivative(x.detach()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("s", SURROGATES[:1] + SURROGATES[3:4] + SURROGATES[5:6], ids=repr)
def test_forward_is_exact_heaviside(s, dtype):
    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([0.0, -0.0, tiny, -tiny, 1e-3, -1e-3, 1.0, -1.0, 1e4, -1e4,
                      float("inf"), float("-inf")], dtype=dtype)
    x = torch.cat([x, torch.randn(1000).to(dtype)])
    y = s(x)
    assert y.dtype == dtype
    assert torch.equal(y, (x >= 0).to(dtype))
    assert y[0] == 1 and y[1] == 1                       # Θ(0) = Θ(−0) = 1
    assert torch.equal(sg.heaviside(x), y)
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_heaviside_has_no_gradient():
    x = torch.randn(5, requires_grad=True)
    assert not sg.heaviside(x).requires_grad


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_atan_and_sigmoid_match_spikingjelly(alpha):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import surrogate as sj
    torch.manual_seed(0)
    x0 = torch.randn(4, 257, dtype=torch.float64) * 2
    x0[0, :3] = torch.tensor([0.0, -0.0, 1e-300], dtype=torch.float64)
    w = torch.randn_like(x0)
    for ours, theirs in [(sg.ATan(alpha), sj.ATan(alpha=alpha)),
                         (sg.Sigmoid(alpha), sj.Sigmoid(alpha=alpha))]:
        xa, xb = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        ya, yb = ours(xa), theirs(xb)
        assert torch.equal(ya, yb)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-14, atol=1e-15)
        ours_s = type(ours)(alpha, spiking=False)
        theirs_s = type(theirs)(alpha=alpha, spiking=False)
        torch.testing.assert_close(ours_s(x0), theirs_s(x0), rtol=1e-14, atol=1e-15)


def test_get_and_repr():
    assert sg.get("atan", 3.0) == sg.ATan(3.0)
    assert sg.get("sigmoid", 4.0) == sg.Sigmoid(4.0)
    assert sg.get("rect", 2.0) == sg.Rectangular(1.0)
    # the rect width is chosen so its peak gradient α/2 equals ATan's
    for a in (1.0, 2.0, 8.0):
        z = torch.zeros(1, dtype=torch.float64)
        peak = sg.ATan(a).derivative(z).item()
        assert sg.get("rect", a).derivative(z).item() == pytest.approx(peak)
    assert repr(sg.ATan(2.0)) == "ATan(alpha=2.0, spiking=True)"
    assert repr(sg.Rectangular(0.5, spiking=False)) == "Rectangular(width=0.5, spiking=False)"
    assert sg.ATan(2.0) != sg.ATan(2.0, spiking=False)


def test_surrogate_as_module_attribute():
    m = torch.nn.Module()
    m.sg = sg.ATan(3.0)
    assert list(m.state_dict()) == [] and list(m.parameters()) == []
    m2 = pickle.loads(pickle.dumps(m))
    m3 = copy.deepcopy(m)
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    for mm in (m2, m3):
        assert mm.sg == m.sg
        (g,) = torch.autograd.grad(mm.sg(x).sum(), x)
        torch.testing.assert_close(g, m.sg.derivative(x.detach()))


@pytest.mark.parametrize("call, arg", [(lambda: sg.ATan(0.0), "alpha"),
                                       (lambda: sg.Sigmoid(-1.0), "alpha"),
                                       (lambda: sg.ATan(float("inf")), "alpha"),
                                       (lambda: sg.Rectangular(0.0), "width"),
                                       (lambda: sg.ATan(2.0, spiking=1), "spiking"),
                                       (lambda: sg.get("relu", 2.0), "name"),
                                       (lambda: sg.get("atan", 0.0), "alpha"),
                                       (lambda: sg.ATan(True), "alpha"),       # not 1.0
                                       (lambda: sg.get("sigmoid", True), "alpha")])
def test_bad_arguments_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}:"):
        call()


def test_straight_through_value_and_gradient():
    torch.manual_seed(0)
    x = (torch.randn(1000, dtype=torch.float64) * 5).requires_grad_()
    w = torch.randn_like(x)
    soft = torch.sin(x) * 3
    hard = torch.floor(soft.detach()) + 0.5
    y = sg.straight_through(hard, soft)
    assert torch.equal(y, hard)                                   # exact value
    (g,) = torch.autograd.grad((y * w).sum(), x)
    torch.testing.assert_close(g, w * 3 * torch.cos(x.detach()))  # gradient of the soft one


@pytest.mark.parametrize("fn, ref", [(sg.round_ste, torch.round), (sg.floor_ste, torch.floor)])
def test_round_floor_ste(fn, ref):
    torch.manual_seed(1)
    x = (torch.randn(2000, dtype=torch.float64) * 1e3).requires_grad_()
    x.data[:4] = torch.tensor([0.5, 1.5, -0.5, -2.0], dtype=torch.float64)
    y = fn(x)
    assert torch.equal(y, ref(x.detach()))
    assert torch.equal(y, y.round())                              # integer-valued
    w = torch.randn_like(x)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    assert torch.equal(g, w)                                      # identity gradient
