"""One interface for every temporal module (spikelib.temporal): forward ≡ forward_serial ≡ a loop
over step from initial_state, state always a dict and carried across calls; the modules without
a serial form say so; and every public entry point rejects bad input — empty batches and
sequences, states of another batch or missing a key included — with a ValueError naming the
argument."""
import inspect

import pytest
import torch

from spikelib import ddsn, memory, models, neurons, psn, refractory, temporal
from spikelib.ddsn import DynamicDecayNeuron
from spikelib.memory import S4D
from spikelib.psn import PSN, MaskedPSN, SlidingPSN
from spikelib.refractory import Refractory
from spikelib.surrogate import ATan
from spikelib.temporal import Temporal, finite_checks, set_finite_checks

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
    "refractory": lambda: Refractory(2),
    "block": lambda: models.Block(models.ModelConfig(name="frssm", d_model=C, d_state=4,
                                                     theta_init=0.3, dropout=0.0)),
}
STATEFUL = [n for n in MODULES if n not in ("threshold", "gelu")]
# not in MODULES: the abstract bases, the two PSNs without a serial form (their own test
# below) and the whole model, whose step returns the logits of the prefix (test_models.py)
NOT_STEPPED = {"PositiveTheta", "_ResetNeuron", "PSN", "MaskedPSN", "SequenceClassifier"}


def _input(name, x):
    """The refractory period thins crossings: a train with zeros, not Gaussian values."""
    return (x > 0.5).to(x.dtype) if name == "refractory" else x


def _leaves(state) -> list:
    """The values of a (nested) state dict, in order."""
    if not isinstance(state, dict):
        return [state]
    return [leaf for value in state.values() for leaf in _leaves(value)]


def _parts(out):
    """A module's outputs as a tuple (a block returns (x_out, spikes))."""
    return out if isinstance(out, tuple) else (out,)


def test_every_temporal_module_is_covered():
    """Every Temporal subclass in spikelib is in MODULES (or named in NOT_STEPPED, with its
    reason above), so a new module cannot skip the protocol tests."""
    found = {name for mod in (temporal, neurons, memory, refractory, psn, ddsn, models)
             for name, cls in inspect.getmembers(mod, inspect.isclass)
             if issubclass(cls, Temporal) and cls is not Temporal}
    covered = {type(MODULES[n]()).__name__ for n in MODULES}
    assert found - NOT_STEPPED == covered, (found - NOT_STEPPED) ^ covered


@pytest.mark.parametrize("name", MODULES)
def test_forward_equals_serial_equals_steps_from_initial_state(name):
    torch.manual_seed(1)
    m, x = MODULES[name]().to(F64), _input(name, _x())
    par, ser = m(x), m.forward_serial(x)
    state = m.initial_state(B, C, dtype=F64)
    assert isinstance(state, dict)
    outs = []
    for t in range(L):
        out, state = m.step(x[:, t], state)
        assert isinstance(state, dict) and all(o.shape == (B, C) for o in _parts(out))
        outs.append(_parts(out))
    stepped = tuple(torch.stack(o, dim=1) for o in zip(*outs))
    torch.testing.assert_close(_parts(ser), _parts(par), rtol=0, atol=1e-10)
    torch.testing.assert_close(stepped, _parts(ser), rtol=0, atol=0)
    first, _ = m.step(x[:, 0], None)                     # None means initial_state
    torch.testing.assert_close(_parts(first), outs[0], rtol=0, atol=0)
    if name not in ("s4d", "gelu"):
        assert _parts(par)[-1].abs().sum() > 0           # the check saw spikes


@pytest.mark.parametrize("name", MODULES)
def test_a_state_carried_across_two_calls_equals_one_call(name):
    """forward_serial(x, state=None, *, return_state=False) everywhere: the second half of a
    sequence continued from the first half's state gives what one call gives, and the same
    final state."""
    torch.manual_seed(1)
    m, x = MODULES[name]().to(F64), _input(name, _x())
    whole, end = m.forward_serial(x, return_state=True)
    first, mid = m.forward_serial(x[:, :7], return_state=True)
    second, end2 = m.forward_serial(x[:, 7:], mid, return_state=True)
    for w, a, b in zip(_parts(whole), _parts(first), _parts(second)):
        assert torch.equal(torch.cat([a, b], dim=1), w)
    assert torch.equal(_parts(m.forward_serial(x))[0], _parts(whole)[0])
    leaves, leaves2 = _leaves(end), _leaves(end2)
    assert len(leaves) == len(leaves2) and all(
        torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
        for a, b in zip(leaves, leaves2))


@pytest.mark.parametrize("name", ["if-hard", "if-soft-R2", "lif-none-R3", "soft-if"])
def test_membrane_has_its_own_keyword(name):
    """``return_v=True`` returns the membrane; the second positional argument is the state (it
    once was ``return_v``, so ``IFNeuron().forward_serial(x, state)`` ignored the state)."""
    torch.manual_seed(1)
    m, x = MODULES[name]().to(F64), _x()
    s, v = m.forward_serial(x, return_v=True)
    s2, v2 = m(x, return_v=True)
    assert torch.equal(s, m.forward_serial(x)) and v.shape == s.shape == x.shape
    torch.testing.assert_close((s2, v2), (s, v), rtol=0, atol=1e-10)
    _, mid = m.forward_serial(x[:, :5], return_state=True)
    s3, v3, end = m.forward_serial(x[:, 5:], mid, return_state=True, return_v=True)
    assert torch.equal(s3, s[:, 5:]) and torch.equal(v3, v[:, 5:])
    assert torch.equal(end["v"], v[:, -1])
    primed = {k: t + 1 if k == "v" else t for k, t in mid.items()}     # another state
    assert not torch.equal(m.forward_serial(x[:, 5:], primed), s[:, 5:])


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
    cases = [(_nan(), "NaN"), (_x()[0, 0], "shape")]
    if name != "refractory":                              # crossings may be bool or integer
        cases.append((_x().long(), "floating"))
        with pytest.raises(ValueError, match="floating"):
            m.step(_x()[:, 0].long(), None)
    for x, match in cases:
        with pytest.raises(ValueError, match=match):
            m(x)


@pytest.mark.parametrize("name", MODULES)
def test_empty_batch_or_sequence_is_rejected_by_name(name):
    """One rule everywhere: a batch of 0 or a sequence of 0 steps is a ValueError naming the
    input and the empty axis, in forward, forward_serial and step (not an FFT error deep
    inside, nor an empty result from one form and an error from the other)."""
    m = MODULES[name]().to(F64)
    arg = "c" if name == "refractory" else "u" if name == "s4d" else "y" if name in (
        "threshold", "gelu", "frssm-spike") else "x"
    for shape, what in (((0, L, C), "at least one sequence"), ((B, 0, C), "at least one time")):
        for f, n in ((m, arg), (m.forward_serial, "c" if name == "refractory" else "x")):
            with pytest.raises(ValueError, match=f"^{n}: expected {what}"):
                f(torch.zeros(shape, dtype=F64))
    with pytest.raises(ValueError, match=r"_t: expected at least one sequence \(batch >= 1\)"):
        m.step(torch.zeros(0, C, dtype=F64))


@pytest.mark.parametrize("name", STATEFUL)
def test_a_bad_state_is_named(name):
    """step with a state from another batch size, or a state missing a key, is a ValueError
    naming ``state`` and how to make a good one (not a size mismatch or KeyError inside)."""
    m, x = MODULES[name]().to(F64), _input(name, _x())
    _, state = m.step(x[:, 0], None)
    with pytest.raises(ValueError, match=r"state: .* holds a batch of 2, expected 1"):
        m.forward_serial(x[:1], state)
    with pytest.raises(ValueError, match=r"state: missing key .*initial_state"):
        m.step(x[:, 0], {})
    with pytest.raises(ValueError, match="state: expected a dict"):
        m.step(x[:, 0], [state])


@pytest.mark.parametrize("name", ["threshold", "lif-none-R3", "ddsn", "frssm-spike", "if-hard"])
def test_nan_never_becomes_a_clean_spike(name):
    """With the NaN scan off (as in training) a NaN input gives NaN spikes, not 0/1."""
    torch.manual_seed(1)
    m = MODULES[name]().to(F64)
    with finite_checks(False):
        s = _parts(m(_nan()))[-1]
    assert torch.isnan(s[1, 5, 2])


def test_the_value_checks_have_a_public_switch():
    """``finite_checks`` (a block) and ``set_finite_checks`` (the process; returns the previous
    setting) are public in spikelib.temporal; a non-bool is a ValueError."""
    m = MODULES["threshold"]().to(F64)
    assert set_finite_checks(False) is True
    try:
        assert torch.isnan(m(_nan())).any()                          # no scan: no error
        with finite_checks(True), pytest.raises(ValueError, match="NaN"):
            m(_nan())                                                # the block wins
        assert temporal.finite_checks_enabled() is False
    finally:
        assert set_finite_checks(True) is False
    with pytest.raises(ValueError, match="NaN"):
        m(_nan())
    for bad in (0, "no", None):
        with pytest.raises(ValueError, match="enabled"):
            set_finite_checks(bad)
        with pytest.raises(ValueError, match="enabled"), finite_checks(bad):
            pass
    assert temporal.finite_checks_enabled() is True
    assert {"finite_checks", "set_finite_checks", "PositiveTheta"} <= set(temporal.__all__)


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
