"""The dynamic-decay spiking neuron and the stable parallel scan of h_t = a_t h_{t−1} + b_t.

Huang et al. 2026 (arXiv 2602.01133): a neuron with input-dependent decay that trains in
parallel and infers serially. Its equations are known second-hand (a third-party summary):
h_t = α_t h_{t−1} + (1 − α_t) x_t with no reset, α_t = sigmoid(CausalConv1D(x))^{1/τ},
s_t = clip(round(h_t), 0, N). Ours: the log-space gate, the binary spike option, the
initialisation, and the chunked scan with its reverse-scan backward (:func:`linear_scan`).
Sources, the scan's derivation and its measurements: the book, Part II (the dynamic-decay neuron).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikelib._checks import check_int, check_positive, check_tensor, finite_checks_enabled
from spikelib.surrogate import or_default, straight_through
from spikelib.temporal import Temporal, check_state

__all__ = ["linear_scan", "linear_scan_loop", "DynamicDecayNeuron"]

LOG_ALPHA_MIN = -20.0          # the neuron's clamp on log α (α ≥ 2e-9)


def _acc_dtype(*tensors) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, Q: int) -> torch.Tensor:
    """h_t = exp(log_a_t) h_{t−1} + b_t without autograd. (B, L, C) -> (B, L, C)."""
    B, L, C = b.shape
    if Q == 1 or L <= Q:                                  # a single chunk: the plain loop
        return _loop(log_a, b, h0)
    n = -(-L // Q)                                        # chunks
    pad = n * Q - L                                       # padded steps: a = 1, b = 0
    la = F.pad(log_a, (0, 0, 0, pad)).reshape(B, n, Q, C).transpose(0, 2)      # (Q, n, B, C)
    bb = F.pad(b, (0, 0, 0, pad)).reshape(B, n, Q, C).transpose(0, 2)          # (Q, n, B, C)
    a = la.exp()
    local = bb.new_empty(bb.shape)          # h with h_in = 0, every chunk at once; contiguous,
                                            # so each local[q] is a valid out= (and compiles)
    local[0] = bb[0]
    for q in range(1, Q):
        torch.addcmul(bb[q], a[q], local[q - 1], out=local[q])                  # (n, B, C)
    ell = la.cumsum(0)                                    # (Q, n, B, C) ℓ_t from chunk start
    # the state after each chunk: the same recurrence over chunks (next level)
    ends = _scan(ell[-1].transpose(0, 1), local[-1].transpose(0, 1), h0, Q)     # (B, n, C)
    first = ends.new_zeros(B, 1, C) if h0 is None else h0.unsqueeze(1)
    h_in = torch.cat([first, ends[:, :-1]], dim=1).transpose(0, 1)              # (n, B, C)
    h = torch.addcmul(local, ell.exp(), h_in)                                   # (Q, n, B, C)
    return h.transpose(0, 2).reshape(B, n * Q, C)[:, :L]                        # (B, L, C)


def _loop(log_a, b, h0):
    a = log_a.exp()
    h = b.new_zeros(b.shape[0], b.shape[2]) if h0 is None else h0
    out = torch.empty_like(b)
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


class _LinearScan(torch.autograd.Function):
    """Autograd for the chunked scan: saves (log a, h, h0), O(B·L·C); backward = reverse scan."""

    @staticmethod
    def forward(ctx, log_a, b, h0, Q):
        with torch.no_grad():
            h = _scan(log_a, b, h0, Q)
        ctx.Q = Q
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(log_a, h, h0 if h0 is not None else h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        log_a, h, h0 = ctx.saved_tensors
        h0 = h0 if ctx.has_h0 else None
        with torch.autocast(grad_h.device.type, enabled=False), torch.no_grad():
            grad_h = grad_h.to(h.dtype)
            # δ_t = e_t + a_{t+1} δ_{t+1}: the forward scan on the time-reversed sequence
            la_next = F.pad(log_a[:, 1:], (0, 0, 0, 1))                        # (B, L, C)
            delta = _scan(la_next.flip(1), grad_h.flip(1), None, ctx.Q).flip(1)
            h_prev = F.pad(h[:, :-1], (0, 0, 1, 0))                            # h_{t−1}
            if h0 is not None:
                h_prev[:, 0] = h0
            grad_log_a = delta * log_a.exp() * h_prev
            grad_h0 = log_a[:, 0].exp() * delta[:, 0] if h0 is not None else None
        return grad_log_a, delta, grad_h0, None


def _check_scan_args(log_a, b, h0):
    check_tensor(log_a, "log_a", 3, floating=True, finite=False)     # −inf: a reset (a = 0)
    check_tensor(b, "b", 3, floating=True, nonempty=True)
    if log_a.shape != b.shape:
        raise ValueError(f"log_a, b: expected equal shapes (B, L, C), got {tuple(log_a.shape)} "
                         f"and {tuple(b.shape)}")
    if finite_checks_enabled() and not bool((log_a <= 0).all()):     # NaN fails too
        raise ValueError("log_a: expected log_a <= 0 (0 <= a <= 1, where the scan is stable), "
                         "got a positive or NaN value; clamp it, e.g. log_a.clamp(max=0)")
    if h0 is not None:
        check_tensor(h0, "h0", 2, floating=True)
        if h0.shape != (b.shape[0], b.shape[2]):
            raise ValueError(f"h0: expected shape (B, C) = {(b.shape[0], b.shape[2])}, "
                             f"got {tuple(h0.shape)}")


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                chunk: int = 8) -> torch.Tensor:
    """h_t = a_t h_{t−1} + b_t for t = 1 … L with a = exp(log_a), h_0 = ``h0`` (zeros if None).

    log_a, b: (B, L, C) with L ≥ 1; h0: (B, C). Returns h (B, L, C). The chunked form (ours;
    the book, Part II): inside chunks of ``chunk`` = Q ≥ 1 steps the recurrence from a zero
    state, then the entering states by the same scan over chunks; it never divides by a
    running product, so it is stable for log_a ≤ 0 (0 ≤ a ≤ 1, −inf included: a reset), and a
    positive or NaN log_a is a ValueError (a value check: off under ``finite_checks(False)``).
    Accumulates in fp32 (fp64 if an input is fp64), also under autocast; the result is cast back
    to the inputs' dtype. First-order gradients for log_a, b and h0 (a reverse scan).
    """
    _check_scan_args(log_a, b, h0)
    check_int(chunk, "chunk", 1)
    out_dtype = torch.promote_types(log_a.dtype, b.dtype)
    acc = _acc_dtype(log_a, b) if h0 is None else _acc_dtype(log_a, b, h0)
    with torch.autocast(b.device.type, enabled=False):
        h0 = None if h0 is None else h0.to(acc)
        h = _LinearScan.apply(log_a.to(acc), b.to(acc), h0, chunk)
    return h.to(out_dtype)


def linear_scan_loop(log_a: torch.Tensor, b: torch.Tensor,
                     h0: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: the same recurrence, one time step at a time (autograd through the loop)."""
    _check_scan_args(log_a, b, h0)
    a = log_a.exp()
    h = b.new_zeros(b.shape[0], b.shape[2]) if h0 is None else h0
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]                                         # (B, C)
        out.append(h)
    return torch.stack(out, dim=1)                                         # (B, L, C)


class DynamicDecayNeuron(Temporal):
    """Dynamic-decay spiking neuron (Huang et al. 2026; equations second-hand: module docstring).

        z_t     = c + Σ_{i<k} w_i x_{t−k+1+i}          depthwise causal conv, zero left padding
                                                       (``gate_weight[:, k−1]`` weights x_t)
        log α_t = max(−(1/τ)·softplus(−z_t), −20)      = log sigmoid(z_t)^{1/τ}   (ours: log space)
        h_t     = α_t h_{t−1} + (1 − α_t) x_t,  1 − α_t = −expm1(log α_t),  h_0 = 0   (no reset)
        s_t     = Θ(h_t − θ) (``spike='binary'``, surrogate gradient; ours)
                  or clip(round(h_t), 0, N) (``'integer'``, straight-through gradient on
                  −0.5 < h < N + 0.5; paper, second-hand; θ unused)

    forward(x)          (B, L, C) -> spikes (B, L, C), parallel: conv + :func:`linear_scan`
    forward_serial(x)   the same with a loop over ``step``
    step(x_t, state)    (B, C) -> (s_t, state), state = {"h": (B, C), "buf": (B, C, k−1) the
                        last k−1 inputs, oldest first}: O(C·k), independent of L
    membrane(x)         h (B, L, C)
    ``forward``, ``forward_serial`` and ``membrane`` take ``state`` (continue a stream) and
    ``forward``/``forward_serial`` take ``return_state=True`` (also return the state after x).

    Init (ours): gate weights uniform ±0.1/√k; gate bias c so that α spreads over [0.5, 0.99]
    across channels (1 − α geometric from 0.5 to 0.01: time constants 2 … 100 steps).
    """

    state_keys = ("h", "buf")

    def __init__(self, channels: int, gate_kernel: int = 4, gate_tau: float = 0.25,
                 spike: str = "binary", spike_levels: int = 4, theta: float = 1.0,
                 surrogate=None, chunk: int = 8):
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self.k = check_int(gate_kernel, "gate_kernel", 1)
        self.tau = check_positive(gate_tau, "gate_tau")
        if spike not in ("binary", "integer"):
            raise ValueError(f"spike: expected 'binary' or 'integer', got {spike!r}")
        self.spike = spike
        self.spike_levels = check_int(spike_levels, "spike_levels", 1)
        self.theta = check_positive(theta, "theta")
        self.surrogate = or_default(surrogate)
        self.chunk = check_int(chunk, "chunk", 1)
        bound = 0.1 / math.sqrt(self.k)
        self.gate_weight = nn.Parameter(torch.empty(channels, self.k).uniform_(-bound, bound))
        one_minus = torch.logspace(math.log10(0.5), math.log10(0.01), channels,
                                   dtype=torch.float64)                    # 1 − α per channel
        sig = (1.0 - one_minus) ** self.tau                               # sigmoid(c) = α^τ
        self.gate_bias = nn.Parameter(torch.log(sig / (1 - sig)).to(torch.get_default_dtype()))

    # -- the gate and the spike -----------------------------------------------------------
    def log_alpha(self, z: torch.Tensor) -> torch.Tensor:
        """log α = max(−(1/τ)·softplus(−z), −20), any shape."""
        return (-F.softplus(-z) / self.tau).clamp(min=LOG_ALPHA_MIN)

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        """Binary Θ(h − θ) (surrogate) or integer clip(round(h), 0, N) (straight-through)."""
        if self.spike == "binary":
            return self.surrogate(h - self.theta)
        N = self.spike_levels
        hard = torch.round(h.detach()).clamp(0, N)
        window = ((h.detach() > -0.5) & (h.detach() < N + 0.5)).to(h.dtype)
        return straight_through(hard, h * window)                          # ∂s/∂h = window

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"h": zeros (B, C), "buf": zeros (B, C, k − 1)}."""
        C = self.channels
        return {"h": torch.zeros(batch, C, device=device, dtype=dtype),
                "buf": torch.zeros(batch, C, self.k - 1, device=device, dtype=dtype)}

    # -- parallel form ----------------------------------------------------------------------
    def _membrane(self, x: torch.Tensor, state: dict | None):
        B, L, C = check_tensor(x, "x", 3, channels=self.channels, floating=True,
                               nonempty=True).shape
        u = x.transpose(1, 2)                                                # (B, C, L)
        if state is not None:
            check_state(state, self.state_keys, B, type(self).__name__)
        if state is None:
            u = F.pad(u, (self.k - 1, 0))                                    # (B, C, L+k−1)
            h0 = None
        else:
            u = torch.cat([state["buf"].to(x.dtype), u], dim=-1)             # (B, C, L+k−1)
            h0 = state["h"]
        z = F.conv1d(u, self.gate_weight.unsqueeze(1).to(x.dtype),
                     self.gate_bias.to(x.dtype), groups=C).transpose(1, 2)   # (B, L, C)
        log_a = self.log_alpha(z)                                            # (B, L, C)
        h = linear_scan(log_a, -torch.expm1(log_a) * x, h0, self.chunk)      # (B, L, C)
        new_state = {"h": h[:, -1], "buf": u[..., u.shape[-1] - (self.k - 1):]}
        return h, new_state

    def membrane(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """h (B, L, C), parallel."""
        return self._membrane(x, state)[0]

    def forward(self, x: torch.Tensor, state: dict | None = None, *,
                return_state: bool = False):
        """Spikes (B, L, C), parallel over time; optionally continue from / return a state."""
        h, new_state = self._membrane(x, state)
        s = self.fire(h)
        return (s, new_state) if return_state else s

    # -- serial form ------------------------------------------------------------------------
    def step(self, x_t: torch.Tensor, state: dict | None = None):
        """One step: x_t (B, C) -> (s_t (B, C), {"h", "buf"})."""
        check_tensor(x_t, "x_t", 2, channels=self.channels, floating=True, nonempty=True)
        state = self.start(x_t, state)
        window = torch.cat([state["buf"], x_t.unsqueeze(-1)], dim=-1)       # (B, C, k)
        z = (window * self.gate_weight).sum(-1) + self.gate_bias             # (B, C)
        log_a = self.log_alpha(z)
        h = log_a.exp() * state["h"] - torch.expm1(log_a) * x_t             # (B, C)
        return self.fire(h), {"h": h, "buf": window[..., 1:]}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, gate_kernel={self.k}, gate_tau={self.tau:g}, "
                f"spike={self.spike!r}, spike_levels={self.spike_levels}, theta={self.theta:g}")
