"""Fixed refractory period: exact parallel scan, serial loop, two approximations (ours).

A dense train of threshold crossings c ∈ {0,1}^L is thinned greedily with period R ≥ 0
(reconstruction.md §2, §4):

    s_t = c_t ∏_{k=1..R} (1 − s_{t−k})

kept as a countdown r ∈ {0..R} (r_0 = 0): s_t = c_t [r_{t−1} = 0];  r_t = R if s_t else max(r_{t−1} − 1, 0).
Each step is a map g_t on countdown states, g_t(r) = r − 1 for r > 0 and g_t(0) = R c_t; maps
compose associatively, so r_t = (g_t ∘ … ∘ g_1)(0) is a prefix scan (``refractory_scan``):
⌈log₂ L⌉ levels of two gathers each, identical to the loop (Proposition "refractory thinning is
sparse sampling", ours; the paper's Theorem 4.2 is unknown).

Inputs: c of shape (L,), (B, L) or (B, L, C) — time is axis 0, 1 and 1 (axis −2 for 3-d, the
library's (batch, time, channels)); bool, integer or floating values in {0, 1} (any nonzero value
counts as a crossing). Outputs have the input's shape and dtype. Gradient: s = c · mask, the mask
computed without gradient from c, so the gradient reaches c where the mask lets a spike through.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from spikelib._checks import check_int


def _check(c, R):
    R = check_int(R, "R", 0)
    if not isinstance(c, torch.Tensor) or c.dim() not in (1, 2, 3) or c.is_complex():
        shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ValueError(f"c: expected a real tensor (time,), (batch, time) or "
                         f"(batch, time, channels), got {shape}")
    return R


def _to_rows(c: torch.Tensor) -> torch.Tensor:
    """c (L,) | (B, L) | (B, L, C) -> crossings as bool rows (M, L), one row per (batch, channel)."""
    if c.dim() == 3:
        c = c.transpose(1, 2).reshape(-1, c.shape[1])                              # (B·C L)
    return (c.detach() != 0).reshape(-1, c.shape[-1])                              # (M L)


def _from_rows(mask: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mask rows (M, L) back to c's shape, then s = c · mask (gradient through c only)."""
    if c.dim() == 3:
        B, L, C = c.shape
        mask = mask.reshape(B, C, L).transpose(1, 2)                               # (B L C)
    mask = mask.reshape(c.shape).to(c.dtype)
    return c * mask


def refractory_loop(c: torch.Tensor, R: int) -> torch.Tensor:
    """Reference: the countdown recurrence as a Python loop over time (O(L) serial steps)."""
    R = _check(c, R)
    rows = _to_rows(c)                                                             # (M L)
    r = torch.zeros(rows.shape[0], dtype=torch.long, device=c.device)              # (M)
    mask = torch.zeros_like(rows)                                                  # (M L)
    for t in range(rows.shape[1]):
        fire = rows[:, t] & (r == 0)                                               # (M)
        mask[:, t] = fire
        r = torch.where(fire, R, (r - 1).clamp_min(0))                             # (M)
    return _from_rows(mask, c)


def _prefix_states(G: torch.Tensor) -> torch.Tensor:
    """G (M, n, K): maps on {0..K−1} as tables; returns r (M, n) with r_t = (G_t ∘ … ∘ G_0)(0).

    Odd–even (work-efficient) scan: compose neighbours P_i = G_{2i+1} ∘ G_{2i}, recurse on the
    n/2 pairs to get the states after every odd step, then fill in each even step from the state
    before it, r_{2i} = G_{2i}(r_{2i−1}). Two gathers per level, ⌈log₂ n⌉ levels."""
    M, n, K = G.shape
    if n == 1:
        return G[:, :, 0]
    if n % 2:                                                    # pad with the identity map
        G = torch.cat([G, torch.arange(K, device=G.device).expand(M, 1, K)], dim=1)
    even, odd = G[:, 0::2], G[:, 1::2]                                             # (M n/2 K)
    after_odd = _prefix_states(torch.gather(odd, 2, even))                         # (M n/2)
    r = torch.empty(M, G.shape[1], dtype=G.dtype, device=G.device)                # (M n)
    r[:, 1::2] = after_odd
    r[:, 0] = even[:, 0, 0]                                                        # G_0(r_{−1} = 0)
    r[:, 2::2] = torch.gather(even[:, 1:], 2, after_odd[:, :-1, None]).squeeze(2)
    return r[:, :n]


def refractory_scan(c: torch.Tensor, R: int) -> torch.Tensor:
    """Exact parallel form: a work-efficient prefix scan over the countdown maps g_t.

    Each map is a table G_t (R+1,) with G_t[r] = r − 1 (r > 0), G_t[0] = R c_t; composing two
    maps is one gather. The odd–even scan of :func:`_prefix_states` (Blelloch 1990, "Prefix sums
    and their applications") gives r_t = (g_t ∘ … ∘ g_1)(0) for every t in 2⌈log₂ L⌉ gathers
    (depth O(log L), work O(L·R) — a Hillis–Steele scan would do O(L log L · R)); then
    s_t = c_t [r_{t−1} = 0]. Tables are (M, L, R+1) int64 with M = batch · channels.

    On a CPU the plain loop is as fast or faster (the scan touches R+1 int64 entries per step,
    the loop one bool); the scan is for accelerators, where the L serial steps are the bottleneck.
    """
    R = _check(c, R)
    if R == 0:
        return c.clone()
    rows = _to_rows(c)                                                             # (M L)
    M, L = rows.shape
    with torch.no_grad():
        G = torch.arange(-1, R, device=c.device).expand(M, L, R + 1).clone()       # (M L R+1)
        G[..., 0] = rows.long() * R                                                # G_t[0] = R c_t
        r = _prefix_states(G)                                                      # (M L) r_t
        before = torch.cat([r.new_zeros(M, 1), r[:, :-1]], dim=1)                  # (M L) r_{t−1}
        mask = rows & (before == 0)                                                # (M L)
    return _from_rows(mask, c)


def refractory_onset(c: torch.Tensor, R: int) -> torch.Tensor:
    """Approximation (ours): s_t = c_t Θ(½ − Σ_{k=1..R} c_{t−k}) — fire only if no *crossing*
    (not spike) in the last R steps. The window sum is a difference of cumulative sums (exact
    integers), i.e. a causal box convolution. s ≤ c; equals the exact thinning when crossings are
    isolated (each followed by more than R silent steps)."""
    R = _check(c, R)
    rows = _to_rows(c)                                                             # (M L)
    with torch.no_grad():
        S = torch.cat([rows.new_zeros(rows.shape[0], 1, dtype=torch.long),
                       rows.long().cumsum(dim=1)], dim=1)                          # (M L+1)
        L = rows.shape[1]
        t = torch.arange(L, device=c.device)                                      # (L)
        window = S[:, t] - S[:, (t - R).clamp_min(0)]                              # Σ_{k=1..R} c_{t−k}
        mask = rows & (window == 0)                                                # (M L)
    return _from_rows(mask, c)


def refractory_strided(c: torch.Tensor, R: int) -> torch.Tensor:
    """Approximation (ours): keep c_t only at t ≡ 0 (mod R+1) — a fixed sampling clock."""
    R = _check(c, R)
    rows = _to_rows(c)                                                             # (M L)
    clock = torch.arange(rows.shape[1], device=c.device) % (R + 1) == 0            # (L)
    return _from_rows(rows & clock, c)


class Refractory(nn.Module):
    """Fixed refractory period R on a crossing train c (B, L, C) -> s (B, L, C), same dtype.

    ``forward`` = :func:`refractory_scan` (exact, parallel); ``forward_serial`` = a loop over
    ``step``; ``step(c_t (B, C), state)`` with state the countdown r (B, C) int64 (None: zeros)
    returns (s_t, r_t). The mask carries no gradient (s = c · mask). R = 0 is the identity.
    """

    def __init__(self, R: int):
        super().__init__()
        self.R = check_int(R, "R", 0)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return refractory_scan(c, self.R)

    def step(self, c_t: torch.Tensor, state: torch.Tensor | None = None):
        """s_t = c_t [r_{t−1} = 0];  r_t = R if s_t else max(r_{t−1} − 1, 0)."""
        r = torch.zeros(c_t.shape, dtype=torch.long, device=c_t.device) if state is None \
            else state                                                             # (B C)
        with torch.no_grad():
            fire = (c_t.detach() != 0) & (r == 0)                                  # (B C)
            r = torch.where(fire, self.R, (r - 1).clamp_min(0))                    # (B C)
        return c_t * fire.to(c_t.dtype), r

    def forward_serial(self, c: torch.Tensor) -> torch.Tensor:
        """Same as ``forward``: c (B, L, C) stepped through time with an explicit countdown."""
        state, out = None, []
        for t in range(c.shape[1]):
            s_t, state = self.step(c[:, t], state)                                 # (B C)
            out.append(s_t)
        return torch.stack(out, dim=1) if out else c.clone()                       # (B L C)

    def extra_repr(self) -> str:
        return f"R={self.R}"
