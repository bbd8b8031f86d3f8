"""The one interface of every temporal module, the names used for the same quantities, the
positive threshold they share, and the switch for the per-call value checks.

Every module that acts on a sequence takes (batch, time, channels) tensors and offers

    forward(x)                 (B, L, C) -> (B, L, C), parallel over time (the training form)
    forward_serial(x, state=None, *, return_state=False)
                               the same result by a loop over ``step`` (the definition); it
                               continues from ``state`` and, asked to, returns the final one
    step(x_t, state)           (B, C) -> (out_t, state): one time step, state explicit
    initial_state(batch, ...)  the state before the first step; ``step(x_t, None)`` uses it

State is always a dict of named tensors (empty for a memoryless module); a composite module
keeps its parts' dicts under their names. Nothing is hidden in the module, so nothing needs a
``reset()`` between batches (SpikingJelly's multi-step modules keep hidden state instead).
A state with a missing key or another batch size is a ValueError naming ``state``. Other
outputs have their own keywords (e.g. ``return_v=True``: the membrane potential). An empty
batch or sequence is a ValueError, never an empty result. The full and masked PSN
(``spikelib.psn``) have no serial form: their weights are indexed by absolute position over a
fixed length T, so their ``step`` raises ``NotImplementedError``.

Value checks: every entry point scans its input for NaN/Inf (and a few ranges), which reads the
values back — a device sync on a GPU and a graph break under ``torch.compile``. Switch the scans
off with ``finite_checks(False)`` (a context manager; training does, its data are checked once
on load) or ``set_finite_checks(False)`` (for the process); rank, channels, dtype and empty axes
are always checked.

Names (module argument ↔ ``ModelConfig`` field):

==========================  =========================  ===========================================
symbol                      argument                   meaning
==========================  =========================  ===========================================
θ                           ``theta``, ``theta_init``  firing threshold (learnable ones: θ > 0)
R                           ``R`` ↔ ``refractory``     refractory period in steps
P                           ``order`` ↔ ``psn_order``  sliding-PSN window (k for the masked PSN)
T                           ``T`` ↔ ``seq_len``        fixed length of the full and masked PSN
τ                           ``tau`` ↔ ``lif_tau``,     LIF time constant; decay-gate exponent
                            ``gate_tau``
N                           ``d_state``                S4D state size (N/2 complex modes)
x, u / y / c / s            inputs / S4D output /      layer input (u for S4D) / memory output /
                                                       threshold crossings / spikes
==========================  =========================  ===========================================
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from spikelib._checks import (
    check_positive,
    check_tensor,
    finite_checks,
    finite_checks_enabled,
    set_finite_checks,
)

__all__ = ["Temporal", "PositiveTheta", "serial", "check_state", "finite_checks",
           "set_finite_checks", "finite_checks_enabled", "THETA_MIN"]

THETA_MIN = 1e-6      # floor of a learnable threshold (see PositiveTheta)


def _stack(outs: list):
    """Stack per-step outputs on a new time axis 1; a tuple output stacks element-wise."""
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts, dim=1) for parts in zip(*outs))
    return torch.stack(outs, dim=1)


def serial(module, x: torch.Tensor, state: dict | None = None,
           keep: Callable[[dict], torch.Tensor] | None = None):
    """Run ``module.step`` over time: x (B, L, ...) -> (outputs stacked on axis 1, final state,
    ``keep(state)`` after every step stacked on axis 1, or None). Needs L ≥ 1."""
    outs, kept = [], []
    for t in range(x.shape[1]):
        out, state = module.step(x[:, t], state)
        outs.append(out)
        if keep is not None:
            kept.append(keep(state))
    return _stack(outs), state, _stack(kept) if keep is not None else None


def check_state(state, keys: tuple[str, ...], batch: int, owner: str) -> dict:
    """``state`` as handed to ``owner.step``: a dict holding ``keys``, whose tensors have
    ``batch`` rows. A ValueError names ``state``, the problem and how to make a good one."""
    make = f"pass None or a state from {owner}.initial_state(batch, ...) or {owner}.step"
    if not isinstance(state, dict):
        raise ValueError(f"state: expected a dict, got {type(state).__name__}; {make}")
    for key in keys:
        if key not in state:
            raise ValueError(f"state: missing key {key!r} (expected keys {list(keys)}); {make}")
        value = state[key]
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] != batch:
            raise ValueError(f"state: {key!r} holds a batch of {value.shape[0]}, expected "
                             f"{batch} (the batch of the input); {make}")
    return state


class Temporal(nn.Module):
    """Base class of the temporal modules (the interface above). Subclasses define ``forward``,
    ``step`` and, when they have state, ``initial_state`` and ``state_keys`` (the keys
    ``step`` reads, checked by :meth:`start`); ``forward_serial`` is the loop."""

    state_keys: tuple[str, ...] = ()

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        return {}

    def state_channels(self, channels: int | None) -> int:
        """The channel count of a state: the module's own, else the ``channels`` given."""
        own = getattr(self, "channels", None)
        if own is None and channels is None:
            raise ValueError(f"channels: {type(self).__name__} works on any channel count; pass "
                             f"initial_state(batch, channels)")
        return own or channels

    def start(self, x_t: torch.Tensor, state: dict | None) -> dict:
        """The state a ``step`` on x_t (B, ...) continues from: :meth:`initial_state` for None
        (x_t's batch, channels, device and dtype), else ``state`` checked (:func:`check_state`)."""
        if state is None:
            return self.initial_state(x_t.shape[0], x_t.shape[-1] if x_t.dim() > 1 else None,
                                      device=x_t.device, dtype=x_t.dtype)
        return check_state(state, self.state_keys, x_t.shape[0], type(self).__name__)

    def step(self, x_t: torch.Tensor, state: dict | None = None):
        raise NotImplementedError(f"{type(self).__name__} has no serial form")

    def forward_serial(self, x: torch.Tensor, state: dict | None = None, *,
                       return_state: bool = False):
        """``forward``'s result by a loop over ``step``: x (B, L, C) -> (B, L, C); continues
        from ``state`` (None: :meth:`initial_state`), and with ``return_state=True`` also
        returns the state after the last step, so two calls chained equal one call."""
        check_tensor(x, "x", 3, nonempty=True, finite=False)       # step scans each x_t
        out, state, _ = serial(self, x, state)
        return (out, state) if return_state else out


class PositiveTheta(Temporal):
    """Base of every module with a learnable threshold: θ = max(exp(log_theta), 1e-6) stays
    positive whatever the optimiser does to ``log_theta`` (a θ stored as is can reach 0 or
    below, where spikes mean nothing and a soft reset divides by zero; the floor only guards
    against exp underflowing). ``log_theta`` is a Parameter when learnable, else a buffer;
    ``theta`` is the positive value, ``set_theta`` assigns one."""

    def _init_theta(self, shape: tuple, value: float, learn: bool, name: str = "theta_init"):
        log = torch.full(shape, math.log(check_positive(value, name)))
        if learn:
            self.log_theta = nn.Parameter(log)
        else:
            self.register_buffer("log_theta", log)

    @property
    def theta(self) -> torch.Tensor:
        return self.log_theta.exp().clamp_min(THETA_MIN)

    @torch.no_grad()
    def set_theta(self, value) -> None:
        """θ ← ``value`` (a positive number or a tensor broadcastable to θ's shape)."""
        value = torch.as_tensor(value, dtype=self.log_theta.dtype, device=self.log_theta.device)
        if not bool((value > 0).all() & torch.isfinite(value).all()):
            raise ValueError(f"theta: expected positive finite values, got {value}")
        self.log_theta.copy_(value.log().expand_as(self.log_theta))
