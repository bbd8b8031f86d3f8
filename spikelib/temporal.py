"""The one interface of every temporal module, and the names used for the same quantities.

Every module that acts on a sequence takes (batch, time, channels) tensors and offers

    forward(x)                 (B, L, C) -> (B, L, C), parallel over time (the training form)
    forward_serial(x)          the same result by a loop over ``step`` (the definition)
    step(x_t, state)           (B, C) -> (out_t, state): one time step, state explicit
    initial_state(batch, ...)  the state before the first step; ``step(x_t, None)`` uses it

State is always a dict of named tensors (empty for a memoryless module); a composite module
keeps its parts' dicts under their names. Nothing is hidden in the module, so nothing needs a
``reset()`` between batches (SpikingJelly's multi-step modules keep hidden state instead).
The full and masked PSN (``spikelib.psn``) have no serial form: their weights are indexed by
absolute position over a fixed length T, so their ``step`` raises ``NotImplementedError``.

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

from collections.abc import Callable

import torch
from torch import nn

from spikelib._checks import check_tensor


def serial(module, x: torch.Tensor, state: dict | None = None,
           keep: Callable[[dict], torch.Tensor] | None = None):
    """Run ``module.step`` over time: x (B, L, ...) -> (outputs stacked on axis 1, final state,
    ``keep(state)`` after every step stacked on axis 1, or None)."""
    outs, kept = [], []
    for t in range(x.shape[1]):
        out, state = module.step(x[:, t], state)
        outs.append(out)
        if keep is not None:
            kept.append(keep(state))
    return (torch.stack(outs, dim=1), state,
            torch.stack(kept, dim=1) if keep is not None else None)


class Temporal(nn.Module):
    """Base class of the temporal modules (the interface above). Subclasses define ``forward``,
    ``step`` and, when they have state, ``initial_state``; ``forward_serial`` is the loop."""

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

    def step(self, x_t: torch.Tensor, state: dict | None = None):
        raise NotImplementedError(f"{type(self).__name__} has no serial form")

    def forward_serial(self, x: torch.Tensor, state: dict | None = None,
                       return_state: bool = False):
        """``forward``'s result by a loop over ``step``; optionally continue from ``state`` and
        return the state after the last step."""
        check_tensor(x, "x", 3)
        out, state, _ = serial(self, x, state)
        return (out, state) if return_state else out
