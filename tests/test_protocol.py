"""One interface for every temporal module (spikelib.temporal): forward ≡ forward_serial ≡ a loop
over step from initial_state, state always a dict; the modules without a serial form say so; and
every public entry point rejects bad input with a ValueError naming the argument."""
import pytest
import torch

from spikelib import models, neurons
from spikelib._checks import finite_checks
from spikelib.ddsn import DynamicDecayNeuron
from spikelib.memory import S4D
from spikelib.psn import PSN, MaskedPSN, SlidingPSN
from spikelib.surrogate import ATan

B, L, C = 2, 17, 3
F64 = torch.float64


def _x(seed=0, scale=1.5):
    return torch.randn(B, L, C, dtype=F64, generator=torch.Generator().manual_seed(seed)) * scale


MODULES = {
    "s4d": lambda: S4D(C, d_state=4),
    "threshold": lambda: neurons.ThresholdSpike(C, theta_init=0.5),
    "if-hard": lambda: neurons.IFNeuron(theta=1.0, reset="hard"),
    "if-soft-R2": lambda: neurons.IFNeuron(theta=1.0, reset="soft", refractory=2),
    "lif-none-R3": lambda: neurons.LIFNeuron(tau=2.0, theta=0.5, reset="none", refractory=3),
    "soft-if": lambda: neurons.SoftResetIF(C, theta_init=0.75),
    "sliding-psn": lambda: SlidingPSN(4, channels=C, theta_init=0.5),
    "sliding-psn-on-off": lambda: SlidingPSN(4, channels=C, theta_init=0.5, polarity="on_off"),
    "ddsn": lambda: DynamicDecayNeuron(C, theta=0.3),
    "frssm-spike": lambda: models.FixedRefractorySpike(C, 0.5, refractory=2, polarity="on_off"),
    "gelu": lambda: models.GELUAct(),
}


@pytest.mark.parametrize("name", MODULES)
def test_forward_equals_serial_equals_steps_from_initial_state(name):
    torch.manual_seed(1)
    m, x = MODULES[name]().to(F64), _x()
    par, ser = m(x), m.forward_serial(x)
    state = m.initial_state(B, C, dtype=F64)
    assert isinstance(state, dict)
    outs = []
    for t in range(L):
        out, state = m.step(x[:, t], state)
        assert isinstance(state, dict) and out.shape == (B, C)
        outs.append(out)
    stepped = torch.stack(outs, dim=1)
    torch.testing.assert_close(ser, par, rtol=0, atol=1e-10)
    torch.testing.assert_close(stepped, ser, rtol=0, atol=0)
    first, _ = m.step(x[:, 0], None)                     # None means initial_state
    torch.testing.assert_close(first, outs[0], rtol=0, atol=0)
    if name not in ("s4d", "gelu"):
        assert par.abs().sum() > 0                        # the check saw spikes


def test_model_step_returns_what_forward_returns():
    torch.manual_seed(0)
    for readout in ("mean", "last"):
        model = models.build("pssm", d_input=C, n_classes=4, d_model=8, n_layers=2, d_state=4,
                             psn_order=3, readout=readout).to(F64).eval()
        x = _x(seed=3)
        with torch.no_grad():
            logits, spikes = model(x, return_spikes=True)
            state, prefix = None, []
            for t in range(L):
                (out, s_t), state = model.step(x[:, t], state, return_spikes=True)
                prefix.append(out)
            assert out.shape == logits.shape == (B, 4) and len(s_t) == 2
            torch.testing.assert_close(out, logits, rtol=0, atol=1e-10)
            # every intermediate output is the logits of the prefix seen so far
            torch.testing.assert_close(prefix[4], model(x[:, :5]), rtol=0, atol=1e-10)
            assert set(state) == {"layers", "sum", "steps"} and state["steps"] == L


@pytest.mark.parametrize("module", [PSN(L), MaskedPSN(2, L)])
def test_modules_without_a_serial_form_say_so(module):
    x = _x().float()
    assert module(x).shape == x.shape
    for call in (lambda: module.step(x[:, 0]), lambda: module.forward_serial(x)):
        with pytest.raises(NotImplementedError, match="parallel form only"):
            call()


# -- bad input -------------------------------------------------------------------------------

def _nan():
    x = _x()
    x[1, 5, 2] = float("nan")
    return x


@pytest.mark.parametrize("name", MODULES)
def test_every_module_rejects_bad_input_by_name(name):
    torch.manual_seed(1)
    m = MODULES[name]().to(F64)
    if name == "gelu":
        pytest.skip("GELU is a plain function of its input")
    for x, match in ((_x().long(), "floating"), (_nan(), "NaN"), (_x()[0, 0], "shape")):
        with pytest.raises(ValueError, match=match):
            m(x)
    with pytest.raises(ValueError, match="floating"):
        m.step(_x()[:, 0].long(), None)


@pytest.mark.parametrize("name", ["threshold", "lif-none-R3", "ddsn", "frssm-spike", "if-hard"])
def test_nan_never_becomes_a_clean_spike(name):
    """With the NaN scan off (as in training) a NaN input gives NaN spikes, not 0/1."""
    torch.manual_seed(1)
    m = MODULES[name]().to(F64)
    with finite_checks(False):
        s = m(_nan())
    assert torch.isnan(s[1, 5, 2])


def test_model_rejects_a_dtype_other_than_its_parameters():
    model = models.build("frssm", d_input=C, n_classes=4, d_model=8, n_layers=1, d_state=4)
    for dtype in (F64, torch.float16):
        with pytest.raises(ValueError, match=r"x: dtype .* differs"):
            model(_x().to(dtype))
    with pytest.raises(ValueError, match="floating"):
        model(_x().long())
    with pytest.raises(ValueError, match="u_t"):
        model.step(_x()[:, 0, :2].float())


def test_function_entry_points_check_rank():
    with pytest.raises(ValueError, match="shape"):
        neurons.leaky_integrate(torch.randn(5, 3), 2.0)
    with pytest.raises(ValueError, match="shape"):
        neurons.LIFNeuron()(torch.randn(7))
    with pytest.raises(ValueError, match="shape"):
        neurons.LIFNeuron().step(torch.randn(7))


def test_surrogate_default_is_atan_2():
    for m in (neurons.ThresholdSpike(2), neurons.LIFNeuron(), SlidingPSN(3), PSN(4),
              DynamicDecayNeuron(2), models.FixedRefractorySpike(2)):
        assert m.surrogate == ATan(2.0)


def test_no_reset_with_refractory_period_is_parallel(monkeypatch):
    """reset='none' with R > 0: convolution, Θ, refractory scan — no loop over step."""
    m = neurons.LIFNeuron(tau=2.0, theta=0.5, reset="none", refractory=2).to(F64)
    x = _x()
    expected = m.forward_serial(x)

    def no_step(*a, **k):
        raise AssertionError("forward looped over step")
    monkeypatch.setattr(m, "step", no_step)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-12)
