"""Spiking neurons as binary-activated RNNs: threshold spike, IF/LIF with reset, parallel soft IF.

Conventions (ours, following SpikingJelly): tensors are (B, L, C); Θ(x) = 1 if x ≥ 0 else 0;
V_0 = V_reset = 0. A neuron is charge, fire, reset (the SpikingJelly decomposition):

    charge  IF:  H_t = V_{t−1} + X_t
            LIF: H_t = β V_{t−1} + (1 − β) X_t = V_{t−1} + (X_t − V_{t−1}) / τ,   β = 1 − 1/τ
    fire    S_t = Θ(H_t − θ)                     (surrogate gradient in the backward pass)
    reset   hard V_t = H_t (1 − S_t) ; soft V_t = H_t − θ S_t ; none V_t = H_t

With a reset, S_t feeds back into V_t: only the serial loop computes it (training is BPTT).
Without a reset the LIF membrane is the causal convolution h = k ∗ x, k_j = (1 − β) β^j
(``leaky_integrate``), computed in parallel. The one exact parallel form *with* a reset is
``SoftResetIF`` (Proposition A, ours; derivation in the book, on the reset as a discretisation).

Every neuron is a :class:`~spikelib.temporal.Temporal` module; ``forward`` and
``forward_serial`` also return the membrane with ``return_v=True``. A NaN input gives NaN
spikes, never clean 0/1 ones (``spikelib.surrogate.heaviside``).
"""
from __future__ import annotations

import torch
from torch import nn

from spikelib._checks import check_int, check_positive, check_tensor
from spikelib.memory import causal_conv
from spikelib.refractory import refractory_scan
from spikelib.surrogate import floor_ste, or_default
from spikelib.temporal import PositiveTheta, Temporal, serial

__all__ = ["ThresholdSpike", "IFNeuron", "LIFNeuron", "lif_kernel", "leaky_integrate",
           "SoftResetIF", "RESETS"]

RESETS = ("hard", "soft", "none")


def _check_tau(tau) -> float:
    tau = check_positive(tau, "tau")
    if tau < 1:
        raise ValueError(f"tau: expected tau >= 1 (so that beta = 1 - 1/tau lies in [0, 1)), "
                         f"got {tau!r}")
    return tau


def _serial_v(neuron, x: torch.Tensor, state, return_state: bool, return_v: bool):
    """The serial form of a neuron with membrane state ``v``: spikes [, V after every step]
    [, the final state]."""
    check_tensor(x, "x", 3, channels=getattr(neuron, "channels", None), floating=True,
                 nonempty=True, finite=False)                     # step scans each x_t
    s, state, v = serial(neuron, x, state, keep=(lambda st: st["v"]) if return_v else None)
    out = (s, v) if return_v else (s,)
    out += (state,) if return_state else ()
    return out if len(out) > 1 else s


class ThresholdSpike(PositiveTheta):
    """Memoryless spike: s = Θ(y − θ) with a per-channel threshold θ > 0 (learnable by default,
    stored as log θ, see :class:`PositiveTheta`).

    forward(y): (B, L, C) -> (B, L, C); step(y_t, state): (B, C) -> (s_t, {}). Gradient: the
    surrogate's, w.r.t. y and θ.
    """

    def __init__(self, channels: int, theta_init: float = 1.0, learn_theta: bool = True,
                 surrogate=None):
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self._init_theta((channels,), theta_init, learn_theta)
        self.surrogate = or_default(surrogate)

    def membrane(self, y: torch.Tensor) -> torch.Tensor:
        """What the threshold sees: y itself."""
        return y

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        check_tensor(y, "y", 3, channels=self.channels, floating=True, nonempty=True)
        return self.surrogate(y - self.theta.to(y.dtype))     # (B, L, C)

    def step(self, y_t: torch.Tensor, state=None):
        check_tensor(y_t, "y_t", 2, channels=self.channels, floating=True, nonempty=True)
        return self.surrogate(y_t - self.theta.to(y_t.dtype)), {}   # (B, C)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, surrogate={self.surrogate!r}"


class _ResetNeuron(Temporal):
    """Charge–fire–reset neuron with an optional fixed refractory period; see IFNeuron/LIFNeuron.

    Refractory period R (ours): a crossing c_t = Θ(H_t − θ) fires only when the countdown r is 0
    and a spike sets r = R, so no two spikes are closer than R + 1 steps (the mask carries no
    gradient). The membrane keeps integrating while refractory; the reset uses the emitted
    spike. detach_reset (SpikingJelly semantics): the spike in the reset term is detached.
    """

    state_keys = ("v", "r")

    def __init__(self, theta, reset, refractory, surrogate, detach_reset):
        super().__init__()
        self.theta = check_positive(theta, "theta")
        if reset not in RESETS:
            raise ValueError(f"reset: expected one of {RESETS}, got {reset!r}")
        self.reset = reset
        self.refractory = check_int(refractory, "refractory", 0)
        if not isinstance(detach_reset, bool):
            raise ValueError(f"detach_reset: expected a bool, got {detach_reset!r}")
        self.detach_reset = detach_reset
        self.surrogate = or_default(surrogate)

    def charge(self, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"v": membrane V_0 = 0 (B, C), "r": refractory countdown 0 (B, C) int64}."""
        channels = self.state_channels(channels)
        return {"v": torch.zeros(batch, channels, device=device, dtype=dtype),
                "r": torch.zeros(batch, channels, device=device, dtype=torch.long)}

    def step(self, x_t: torch.Tensor, state=None):
        """One step: x_t (B, C), state dict(v=(B, C) membrane, r=(B, C) long countdown) or None
        (V = 0, r = 0) -> (s_t (B, C), new state)."""
        check_tensor(x_t, "x_t", 2, floating=True, nonempty=True)
        state = self.start(x_t, state)
        v, r = state["v"], state["r"]
        h = self.charge(x_t, v)                                  # H_t (B, C)
        s = self.surrogate(h - self.theta)                       # c_t = Θ(H_t − θ)
        if self.refractory > 0:
            s = s * (r == 0).to(s.dtype)                         # mask without gradient
            r = torch.where(s.detach() > 0, self.refractory, (r - 1).clamp_min(0))
        sr = s.detach() if self.detach_reset else s
        if self.reset == "hard":
            v = h * (1.0 - sr)
        elif self.reset == "soft":
            v = h - self.theta * sr
        else:
            v = h
        return s, {"v": v, "r": r}

    def forward_serial(self, x: torch.Tensor, state: dict | None = None, *,
                       return_state: bool = False, return_v: bool = False):
        """Loop over ``step``: x (B, L, C) -> spikes (B, L, C) [, V after reset (B, L, C)]
        [, final state], continuing from ``state`` (None: V = 0, r = 0)."""
        return _serial_v(self, x, state, return_state, return_v)

    def membrane_noreset(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, return_v: bool = False):
        """x (B, L, C) -> spikes (B, L, C) [, V (B, L, C)]. With reset='none' the membrane does
        not depend on the spikes: a convolution, then Θ, then the refractory period as an exact
        parallel scan (a gradient-free mask) — parallel throughout. With a reset, the serial
        loop (its only form)."""
        if self.reset != "none":
            return self.forward_serial(x, return_v=return_v)
        check_tensor(x, "x", 3, floating=True, nonempty=True)
        h = self.membrane_noreset(x)                             # (B, L, C)
        s = self.surrogate(h - self.theta)                       # (B, L, C) crossings
        if self.refractory > 0:
            s = refractory_scan(s, self.refractory)              # (B, L, C)
        return (s, h) if return_v else s

    def extra_repr(self) -> str:
        return (f"theta={self.theta}, reset={self.reset!r}, refractory={self.refractory}, "
                f"detach_reset={self.detach_reset}, surrogate={self.surrogate!r}")


class IFNeuron(_ResetNeuron):
    """Integrate-and-fire: H_t = V_{t−1} + X_t, S_t = Θ(H_t − θ), reset 'hard' | 'soft' | 'none'.

    Matches SpikingJelly ``IFNode(v_reset=0.0 | None, detach_reset=True)`` (binary spikes).
    x (B, L, C) -> spikes (B, L, C); step: (B, C). reset='none': V = cumsum(x), parallel.
    For the soft reset with integer spikes, computed exactly in parallel, see ``SoftResetIF``
    (equal to this neuron with reset='soft' whenever every x_t ≤ θ). ``refractory`` R ≥ 0 and
    ``detach_reset``: see ``_ResetNeuron`` (no two spikes closer than R + 1 steps).
    """

    def __init__(self, theta: float = 1.0, reset: str = "hard", refractory: int = 0,
                 surrogate=None, detach_reset: bool = True):
        super().__init__(theta, reset, refractory, surrogate, detach_reset)

    def charge(self, x_t, v):
        return v + x_t

    def membrane_noreset(self, x):
        return torch.cumsum(x, dim=1)                            # (B, L, C)


class LIFNeuron(_ResetNeuron):
    """Leaky integrate-and-fire (SpikingJelly ``LIFNode``, decay_input=True, decay towards 0):

        H_t = β V_{t−1} + (1 − β) X_t = V_{t−1} + (X_t − V_{t−1}) / τ,   β = 1 − 1/τ,
        S_t = Θ(H_t − θ), reset 'hard' (V_t = H_t (1 − S_t)) | 'soft' (H_t − θ S_t) | 'none'.

    τ ≥ 1 so that β ∈ [0, 1) (τ = 1 is memoryless; SpikingJelly requires τ > 1).
    x (B, L, C) -> spikes (B, L, C); step: (B, C). With reset='none' (and no refractory period)
    ``forward`` computes the membrane in parallel with ``leaky_integrate``. ``refractory`` R ≥ 0
    and ``detach_reset``: see ``_ResetNeuron`` (no two spikes closer than R + 1 steps).
    """

    def __init__(self, tau: float = 2.0, theta: float = 1.0, reset: str = "hard",
                 refractory: int = 0, surrogate=None, detach_reset: bool = True):
        super().__init__(theta, reset, refractory, surrogate, detach_reset)
        self.tau = _check_tau(tau)

    @property
    def beta(self) -> float:
        return 1.0 - 1.0 / self.tau

    def charge(self, x_t, v):
        return v + (x_t - v) / self.tau                          # = β v + (1 − β) x_t

    def membrane_noreset(self, x):
        return leaky_integrate(x, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


def lif_kernel(tau: float, length: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """LIF impulse response k_j = (1 − β) β^j, j = 0..length−1, β = 1 − 1/τ. Shape (length,).

    Computed in float64 and cast, so float32 kernels are correctly rounded.
    """
    tau = _check_tau(tau)
    check_int(length, "length", 1)
    beta = 1.0 - 1.0 / tau
    j = torch.arange(length, dtype=torch.float64, device=device)
    return ((1.0 - beta) * torch.pow(torch.tensor(beta, dtype=torch.float64, device=device), j)
            ).to(dtype)


def leaky_integrate(x: torch.Tensor, tau: float) -> torch.Tensor:
    """No-reset LIF membrane as a causal convolution: h_t = Σ_{i≤t} (1 − β) β^{t−i} x_i = (k ∗ x)_t.

    Equals the recurrence h_t = β h_{t−1} + (1 − β) x_t, h_0 = 0 (up to rounding: the FFT
    convolution of :func:`spikelib.memory.causal_conv`, O(L log L)). x (B, L, C) -> h (B, L, C)
    in the dtype of x (half/bfloat16 inputs are computed in float32; ``torch.fft`` rejects bf16).
    """
    check_tensor(x, "x", 3, floating=True, nonempty=True)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    k = lif_kernel(tau, x.shape[1], work.dtype, x.device)       # (L,)
    return causal_conv(work, k).to(x.dtype)                      # (B, L, C)


class SoftResetIF(PositiveTheta):
    """Soft-reset IF with integer spikes, computed exactly in parallel (Proposition A, ours;
    derivation, precision and gradients in the book, on the reset as a discretisation).

    Serial form (the definition): H_t = V_{t−1} + X_t ; s_t = max(0, ⌊H_t / θ⌋) ;
    V_t = H_t − θ s_t ; V_0 = 0. Parallel form, for every input: S_t = Σ_{τ≤t} X_τ,
    n_t = ⌊max(0, max_{τ≤t} S_τ) / θ⌋, s_t = n_t − n_{t−1}, V_t = S_t − θ n_t (cumsum → cummax
    → floor). s_t ∈ {0, 1} whenever X_t ≤ θ (then it equals IFNeuron(reset='soft')). The two
    forms agree unless a partial sum lies within rounding of a lattice point θZ.

    spike_levels N (optional): the emitted spike is min(s_t, N); the reset still subtracts the
    unclipped count (so both forms stay equal). θ: per-channel (C,) if ``channels`` is given
    (learnable unless learn_theta=False), else a scalar (fixed unless learn_theta=True);
    ``theta=`` is an alias for a fixed scalar θ; θ = exp(log θ) > 0 (:class:`PositiveTheta`).
    Gradient: straight-through on the floor; the serial form's ∂/∂θ and its gradient for signed
    inputs may differ from the parallel one's, so train with ``forward``.
    x (B, L, C) -> s (B, L, C), integer-valued, in the dtype of x; step: (B, C), state dict(v).
    """

    state_keys = ("v",)

    def __init__(self, channels: int | None = None, theta_init: float = 1.0,
                 learn_theta: bool | None = None, spike_levels: int | None = None, *,
                 theta: float | None = None):
        super().__init__()
        if theta is not None:
            if channels is not None or learn_theta:
                raise ValueError("theta: a fixed scalar threshold; use channels/theta_init/"
                                 "learn_theta for a per-channel or learnable one")
            theta_init, learn_theta = theta, False
        name = "theta" if theta is not None else "theta_init"
        if channels is not None:
            check_int(channels, "channels", 1)
        self.channels = channels
        learn = (channels is not None) if learn_theta is None else bool(learn_theta)
        self._init_theta((channels,) if channels is not None else (), theta_init, learn, name)
        self.spike_levels = None if spike_levels is None else check_int(spike_levels,
                                                                         "spike_levels", 1)

    def _clip(self, s):
        # min(s, N) with the gradient kept at s = N (torch.clamp zeroes it at the bound, which
        # for integer spikes is the common case: every spike when N = 1)
        if self.spike_levels is None:
            return s
        return torch.where(s > self.spike_levels, torch.full_like(s, self.spike_levels), s)

    def forward(self, x: torch.Tensor, *, return_v: bool = False):
        """Parallel (Proposition A): x (B, L, C) -> s (B, L, C) [, V_t = S_t − θ n_t (B, L, C)]."""
        check_tensor(x, "x", 3, channels=self.channels, floating=True, nonempty=True)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()  # bf16: S in fp32
        theta = self.theta.to(work.dtype)                         # (C,) or ()
        S = torch.cumsum(work, dim=1)                             # (B, L, C)
        M = torch.relu(torch.cummax(S, dim=1).values)             # (B, L, C) running max, ≥ 0
        n = floor_ste(M / theta)                                  # (B, L, C) spike count n_t
        s = torch.diff(n, dim=1, prepend=torch.zeros_like(n[:, :1]))   # (B, L, C) n_t − n_{t−1}
        s = self._clip(s).to(x.dtype)                             # integers: exact in bf16 ≤ 256
        return (s, (S - theta * n).to(x.dtype)) if return_v else s

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"v": V_0 = 0 (B, C)}."""
        channels = self.state_channels(channels)
        return {"v": torch.zeros(batch, channels, device=device, dtype=dtype)}

    def step(self, x_t: torch.Tensor, state=None):
        """x_t (B, C), state dict(v=(B, C)) or None (V = 0) -> (s_t (B, C), dict(v))."""
        check_tensor(x_t, "x_t", 2, channels=self.channels, floating=True, nonempty=True)
        v = self.start(x_t, state)["v"]
        theta = self.theta.to(x_t.dtype)
        h = v + x_t                                               # H_t (B, C)
        n = floor_ste(torch.relu(h) / theta)                      # max(0, ⌊H_t/θ⌋)
        return self._clip(n), {"v": h - theta * n}                # reset by the unclipped count

    def forward_serial(self, x: torch.Tensor, state: dict | None = None, *,
                       return_state: bool = False, return_v: bool = False):
        """Loop over ``step``: x (B, L, C) -> s (B, L, C) [, V (B, L, C)] [, final state],
        continuing from ``state`` (None: V = 0)."""
        return _serial_v(self, x, state, return_state, return_v)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, learn_theta={isinstance(self.log_theta, nn.Parameter)}, "
                f"spike_levels={self.spike_levels}")
