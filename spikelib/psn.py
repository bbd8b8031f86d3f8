"""Parallel spiking neurons: full, masked and sliding PSN (Fang et al., NeurIPS 2023).

A parallel spiking neuron drops the reset, so its membrane is a *linear* function of the input
sequence and all time steps are computed at once; only the threshold is nonlinear:

    PSN(T)            H = W X,                     W ∈ R^{T×T}                (non-causal)
    MaskedPSN(k, T)   H = (W ⊙ M_k(λ)) X,          M_k(λ) = λ M_k + (1 − λ) 𝟙  (causal at λ = 1)
    SlidingPSN(P)     H_t = Σ_{i<P} w_i x_{t−P+1+i}                         (causal, any length)
    S = Θ(H − θ)      θ > 0 learnable, stored as log θ (:class:`~spikelib.temporal.PositiveTheta`)

M_k is the causal band of width k: M_k[t, j] = 1 for j ≤ t ≤ j + k − 1. W is shared by the
neurons of a layer: one T×T matrix mixes time, the same for every channel. The weight layout
(sliding ``weight[P − 1]`` weights the newest input; exponential init (…, 1/4, 1/2, 1);
Kaiming-uniform init, i.e. uniform ±1/√fan_in) follows SpikingJelly's
``activation_based.neuron.psn`` (tests use it as the oracle).

Differences from SpikingJelly (ours): (B, T, C) layout; every threshold is θ = exp(log θ) > 0
where SpikingJelly learns a bias b = −θ of any sign (the full and masked PSN: one θ per time
step, (T, 1), initial 1 as SpikingJelly's b = −1); the sliding PSN may have one kernel and
threshold per channel (``channels=C``); its parallel form is a depthwise ``conv1d`` with P − 1
zeros of left padding, O(T·P) work instead of a T×T matrix; its serial state is an explicit
buffer of the last P − 1 inputs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikelib._checks import check_int, check_tensor
from spikelib.surrogate import or_default
from spikelib.temporal import PositiveTheta

__all__ = ["PSN", "MaskedPSN", "SlidingPSN", "masked_lambda"]


def _check_length(x: torch.Tensor, T: int) -> None:
    check_tensor(x, "x", 3, floating=True, nonempty=True)
    if x.shape[1] != T:
        raise ValueError(f"x: this neuron is tied to T = {T} time steps, got shape "
                         f"{tuple(x.shape)} (time is axis 1)")


class PSN(PositiveTheta):
    """Full parallel spiking neuron: H = W X, S = Θ(H − θ). One form only (parallel, non-causal:
    ``step`` and ``forward_serial`` raise ``NotImplementedError``, as for the masked PSN).

    W (T, T) is shared by all channels and initialised uniform ±1/√T (Kaiming uniform, a = √5);
    θ (T, 1) > 0, one learnable threshold per time step, initialised to ``theta_init`` (1, as
    SpikingJelly's bias −1; Fang et al. 2023). Input and output (B, T, C) with exactly T time
    steps: every output step sees every input step, including future ones. O(T²) weights and
    O(B·T²·C) work.
    """

    def __init__(self, T: int, surrogate=None, theta_init: float = 1.0):
        super().__init__()
        self.T = check_int(T, "T", 1)
        self.surrogate = or_default(surrogate)
        self.weight = nn.Parameter(torch.empty(T, T))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))     # uniform ±1/√T
        self._init_theta((T, 1), theta_init, True)

    def effective_weight(self) -> torch.Tensor:
        return self.weight                                         # (T, T)

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        """H = W X, (B, T, C) -> (B, T, C)."""
        _check_length(x, self.T)
        return torch.matmul(self.effective_weight(), x)              # (T,T)@(B,T,C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """S = Θ(W X − θ): (B, T, C) -> (B, T, C) spikes (surrogate gradient)."""
        h = self.membrane(x)
        return self.surrogate(h - self.theta.to(h.dtype))            # θ (T, 1)

    def step(self, x_t, state=None):
        raise NotImplementedError(f"{type(self).__name__} has a parallel form only: its weights "
                                  f"are indexed by the absolute position t in a fixed length "
                                  f"T = {self.T}; use SlidingPSN to stream")

    def extra_repr(self) -> str:
        return f"T={self.T}"


class MaskedPSN(PSN):
    """Masked PSN: H = (W ⊙ M_k(λ)) X + b, S = Θ(H), M_k(λ) = λ M_k + (1 − λ) 𝟙.

    M_k[t, j] = 1 for j ≤ t ≤ j + k − 1: output step t sees the inputs t−k+1 … t. With λ < 1
    the matrix is dense (non-causal); λ is annealed to 1 during training (``set_lambda`` once per
    epoch with :func:`masked_lambda`), after which the neuron is causal with a window of k steps.
    Still tied to T (the weights are indexed by absolute position), so it has one form only:
    ``forward`` (parallel). Fang et al. 2023; SpikingJelly ``MaskedPSN`` (its ``lambda_``).
    """

    def __init__(self, k: int, T: int, lambda_init: float = 0.0, surrogate=None,
                 theta_init: float = 1.0):
        super().__init__(T, surrogate, theta_init)
        self.k = check_int(k, "k", 1)
        if k > T:
            raise ValueError(f"k: expected 1 <= k <= T = {T}, got {k}")
        t = torch.arange(T)
        band = (t[None, :] <= t[:, None]) & (t[:, None] <= t[None, :] + k - 1)   # (T, T)
        self.register_buffer("mask", band.to(torch.get_default_dtype()))
        self.register_buffer("lambda_", torch.tensor(0.0))
        self.set_lambda(lambda_init)

    def set_lambda(self, lam: float) -> None:
        """Set λ ∈ [0, 1] (stored as a buffer, so checkpoints keep it)."""
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda: expected a number in [0, 1], got {lam!r}")
        self.lambda_.fill_(lam)

    def effective_weight(self) -> torch.Tensor:
        """W ⊙ (λ M_k + (1 − λ) 𝟙), (T, T); exactly W ⊙ M_k at λ = 1."""
        lam = self.lambda_                       # at λ = 1 the factor is exactly M_k (no branch,
        return (lam * self.mask + (1.0 - lam)) * self.weight      # no host sync)

    def extra_repr(self) -> str:
        return f"k={self.k}, T={self.T}, lambda_={float(self.lambda_):g}"


def masked_lambda(epoch: int, epochs: int) -> float:
    """The masked PSN's annealing schedule: λ = min(1, 8·epoch/(epochs − 1)) (Fang et al. 2023).

    ``epoch`` counts from 0. λ reaches 1 after the first eighth of training and stays there, so
    the trained neuron is causal. With a single epoch the schedule is undefined; we return 1
    (ours: the last epoch always trains the causal form).
    """
    check_int(epochs, "epochs", 1)
    check_int(epoch, "epoch", 0)
    if epoch >= epochs:
        raise ValueError(f"epoch: expected 0 <= epoch < epochs = {epochs}, got {epoch}")
    if epochs == 1:
        return 1.0
    return min(1.0, 8.0 * epoch / (epochs - 1))


class SlidingPSN(PositiveTheta):
    """Sliding PSN: H_t = Σ_{i<P} w_i x_{t−P+1+i} (x_t = 0 for t < 0), S = Θ(H − θ); with
    ``polarity='on_off'`` S = Θ(H − θ) − Θ(−H − θ) ∈ {−1, 0, 1} (ON/OFF events; ours).

    A causal FIR filter of order P: ``weight[P − 1]`` weights the newest input; θ > 0 is stored
    as log θ (:class:`~spikelib.neurons.PositiveTheta`). ``channels=None``
    shares one kernel (P,) and one scalar θ across channels, as in SpikingJelly's ``SlidingPSN``;
    ``channels=C`` gives each channel its own kernel (C, P) and θ (C,) (ours). ``exp_init``: the
    kernel starts at (…, 1/4, 1/2, 1); otherwise uniform ±1/√P (Kaiming uniform, a = √5).
    No input-dependent forgetting: the same window of P steps at every time.

    forward(x)          (B, T, C) -> (B, T, C) spikes, parallel: depthwise conv1d, O(T·P) work
    forward_serial(x)   the same, a loop over ``step``
    step(x_t, state)    (B, C) -> (s_t, state); state {"buf": the last P − 1 inputs
                        (B, C, P − 1), oldest first}; None means zeros (``forward``'s padding)
    membrane(x)         H (before the threshold), (B, T, C)
    """

    state_keys = ("buf",)

    def __init__(self, order: int, channels: int | None = None, exp_init: bool = True,
                 theta_init: float = 1.0, learn_theta: bool = True, surrogate=None,
                 polarity: str = "on"):
        super().__init__()
        self.order = check_int(order, "order", 1)
        if channels is not None:
            check_int(channels, "channels", 1)
        if polarity not in ("on", "on_off"):
            raise ValueError(f"polarity: expected 'on' or 'on_off', got {polarity!r}")
        self.channels, self.polarity = channels, polarity
        self.surrogate = or_default(surrogate)
        shape = (order,) if channels is None else (channels, order)
        if exp_init:                            # w_{P−1} = 1, w_i = w_{i+1} / 2
            weight = 0.5 ** torch.arange(order - 1, -1, -1, dtype=torch.float64)
            weight = weight.to(torch.get_default_dtype()).expand(shape).clone()
        else:
            weight = torch.empty(shape)
            bound = 1.0 / math.sqrt(order)      # Kaiming uniform (a = √5) with fan_in = P
            nn.init.uniform_(weight, -bound, bound)
        self.weight = nn.Parameter(weight)
        self._init_theta(() if channels is None else (channels,), theta_init, learn_theta)

    def _kernel(self, C: int) -> torch.Tensor:
        """Depthwise conv1d weight (C, 1, P)."""
        if self.channels is not None and C != self.channels:
            raise ValueError(f"x: expected {self.channels} channels on the last axis, got {C}")
        return self.weight.expand(C, self.order).unsqueeze(1)            # (C, 1, P)

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        """H_t = Σ_{i<P} w_i x_{t−P+1+i}: (B, T, C) -> (B, T, C)."""
        B, T, C = check_tensor(x, "x", 3, floating=True, nonempty=True).shape
        u = F.pad(x.transpose(1, 2), (self.order - 1, 0))                # (B, C, T+P−1)
        h = F.conv1d(u, self._kernel(C).to(x.dtype), groups=C)          # (B, C, T)
        return h.transpose(1, 2)                                         # (B, T, C)

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Θ(h − θ), or Θ(h − θ) − Θ(−h − θ) for ``polarity='on_off'``."""
        theta = self.theta.to(h.dtype)
        s = self.surrogate(h - theta)
        return s - self.surrogate(-h - theta) if self.polarity == "on_off" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes from H, parallel over time: (B, T, C) -> (B, T, C)."""
        return self.fire(self.membrane(x))

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"buf": zeros (B, C, P − 1)}, the left padding of ``forward``."""
        channels = self.state_channels(channels)
        return {"buf": torch.zeros(batch, channels, self.order - 1, device=device, dtype=dtype)}

    def membrane_step(self, x_t: torch.Tensor, state: dict | None = None):
        """H_t of one step: x_t (B, C), state {"buf"} -> (h_t (B, C), new state)."""
        B, C = check_tensor(x_t, "x_t", 2, floating=True, nonempty=True).shape
        state = self.start(x_t, state)
        window = torch.cat([state["buf"], x_t.unsqueeze(-1)], dim=-1)    # (B, C, P)
        w = self._kernel(C).squeeze(1).to(x_t.dtype)                     # (C, P)
        return (window * w).sum(-1), {"buf": window[..., 1:]}            # (B, C)

    def step(self, x_t: torch.Tensor, state: dict | None = None):
        """One step: x_t (B, C), state {"buf": (B, C, P − 1)} -> (s_t (B, C), new state)."""
        h_t, state = self.membrane_step(x_t, state)
        return self.fire(h_t), state

    def extra_repr(self) -> str:
        return f"order={self.order}, channels={self.channels}, polarity={self.polarity!r}"
