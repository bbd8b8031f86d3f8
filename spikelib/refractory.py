"""Fixed refractory period: exact chunked scan, fused CUDA kernel, serial loop, two approximations
(ours).

A train of threshold crossings c ∈ {0,1}^L is thinned greedily with period R ≥ 0,

    s_t = c_t ∏_{k=1..R} (1 − s_{t−k}),

kept as a countdown r (r_0 = 0): s_t = c_t [r_{t−1} = 0], r_t = R if s_t else max(r_{t−1} − 1, 0).
Each step is a map on countdown states and maps compose associatively, so the countdowns are a
prefix scan: ``refractory_scan`` computes it exactly, chunk by chunk (derivation, depth, work,
memory and timings: the book, on the refractory period). On CUDA with triton installed ``Refractory.forward``
uses ``refractory_fused``, one kernel that walks time with the countdowns in registers.
``refractory_loop`` is the reference for both.

The functions take c of shape (L,), (B, L) or (B, L, C) — time is axis 0, 1 and 1 — with bool,
integer or floating values (any nonzero value is a crossing; with ``validate=True``, the default,
NaN and Inf are rejected unless ``finite_checks(False)``); outputs have the input's shape and
dtype. :class:`Refractory` is the :class:`~spikelib.temporal.Temporal` module on (B, L, C).
Gradient: s = c · free with free_t = [r_{t−1} = 0] computed without gradient, i.e. the derivative
of s_t = c_t [r_{t−1} = 0] with the countdown held fixed: a crossing's gradient passes wherever
the neuron is free to fire (fired or not), and none passes while it is refractory.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import torch

from spikelib._checks import check_int, check_tensor, finite_checks_enabled
from spikelib.temporal import Temporal

__all__ = ["refractory_scan", "refractory_fused", "fused_fallback", "refractory_loop",
           "refractory_onset", "refractory_strided", "default_chunk", "Refractory"]

_SHAPES = "(time,), (batch, time) or (batch, time, channels)"


def _check(c, R, validate: bool = True) -> int:
    """R as an int; c a real tensor of rank 1–3; with ``validate`` (and the value checks on:
    ``finite_checks``) also free of NaN/Inf (a NaN crossing is meaningless). The value check
    reads c once (a sum: any NaN or Inf makes it non-finite; only then the exact element test)
    and syncs a GPU, so hot paths pass validate=False."""
    R = check_int(R, "R", 0)
    if not isinstance(c, torch.Tensor) or c.dim() not in (1, 2, 3) or c.is_complex():
        shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        kind = "complex " if isinstance(c, torch.Tensor) and c.is_complex() else ""
        raise ValueError(f"c: expected a real tensor {_SHAPES}, got {kind}{shape}")
    check_tensor(c, "c", finite=False)                                   # dtype
    if (validate and finite_checks_enabled() and c.is_floating_point()
            and not bool(torch.isfinite(c.detach().sum()))):
        check_tensor(c, "c", finite=True)               # raises, unless the sum merely overflowed
    return R


def _as_blc(c: torch.Tensor) -> torch.Tensor:
    """A (B, L, C) view of c without copying: (L,) -> (1, L, 1); (B, L) -> (1, L, B), so the
    batch becomes the channel axis and vectorises like one."""
    if c.dim() == 1:
        return c[None, :, None]
    if c.dim() == 2:
        return c.t()[None]
    return c


def _from_blc(m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_blc` for a tensor m of shape c's (B, L, C) view."""
    if c.dim() == 1:
        return m[0, :, 0]
    if c.dim() == 2:
        return m[0].t()
    return m


def _thin(c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """s = c · mask for a bool mask without gradient (the gradient reaches c where the mask is
    set). A product, not a select: a NaN crossing stays NaN even where the mask removes it."""
    return c * mask


def _free(fired: torch.Tensor, R: int) -> torch.Tensor:
    """free_t = [r_{t−1} = 0] = no spike at t−R … t−1, from the spikes ``fired`` (B, L, C) bool:
    the gradient mask. c · free = c · fired in value (a free step with a crossing fires)."""
    with torch.no_grad():
        S = torch.nn.functional.pad(fired.to(torch.int32).cumsum(dim=1), (0, 0, 1, 0))
        t = torch.arange(fired.shape[1], device=fired.device)                     # (L)
        return (S[:, t] - S[:, (t - R).clamp_min(0)]) == 0                        # (B L C)


def refractory_loop(c: torch.Tensor, R: int, *, validate: bool = True) -> torch.Tensor:
    """Reference: the countdown recurrence as a Python loop over time (O(L) serial steps)."""
    R = _check(c, R, validate)
    x = _as_blc(c.detach()) != 0                                                   # (B L C)
    r = torch.zeros(x.shape[0], x.shape[2], dtype=torch.long, device=c.device)     # (B C)
    free = torch.zeros_like(x)                                                     # (B L C)
    for t in range(x.shape[1]):
        free[:, t] = r == 0                                                        # (B C)
        r = torch.where(x[:, t] & free[:, t], R, (r - 1).clamp_min(0))             # (B C)
    return _thin(c, _from_blc(free, c))


def _prefix_states(G: torch.Tensor) -> torch.Tensor:
    """G (n, …, K): n maps on {0..K−1}, as tables along the last axis; returns r (n, …) with
    r_k = (G_k ∘ … ∘ G_0)(0).

    Odd–even (work-efficient) scan: compose neighbours P_i = G_{2i+1} ∘ G_{2i}, recurse on the
    ⌊n/2⌋ pairs to get the states after every odd map, then fill in each even map from the state
    before it, r_{2i} = G_{2i}(r_{2i−1}). Two gathers per level, ⌊log₂ n⌋ levels."""
    n = G.shape[0]
    if n == 1:
        return G[..., 0]                                                           # G_0(0)
    even, odd = G[0::2], G[1::2]                                  # (⌈n/2⌉ … K), (⌊n/2⌋ … K)
    after_odd = _prefix_states(torch.gather(odd, -1, even[: n // 2]))              # (⌊n/2⌋ …)
    r = G.new_empty(G.shape[:-1])                                                  # (n …)
    r[1::2] = after_odd
    r[0] = even[0, ..., 0]                                                         # G_0(r_{−1} = 0)
    r[2::2] = torch.gather(even[1:], -1, after_odd[: len(even) - 1, ..., None])[..., 0]
    return r                                                                       # G_{2i}(r_{2i−1})


def default_chunk(R: int) -> int:
    """The chunk length Q that ``refractory_scan`` uses by default: 32, and at least 2(R+1).

    The sweeps over a chunk cost a few dispatched ops per step, the scan over maps work ∝
    (R+1)/Q per time step; 32 balances the two (the sweep over Q: ``benchmarks/
    parallel_vs_serial.py``, part 3). Q ≥ 2(R+1) bounds the int64 maps by 4 bytes per time step
    and channel, whatever R."""
    return max(32, 2 * (check_int(R, "R", 0) + 1))


def _int_dtype(top: int) -> torch.dtype:
    """The narrowest integer dtype the chunked scan uses for values in [0, top]."""
    return torch.uint8 if top < 2 ** 8 else torch.int16 if top < 2 ** 15 else torch.int32


def _scan_free(x: torch.Tensor, R: int, Q: int) -> torch.Tensor:
    """Where the neuron is free, [r_{t−1} = 0], for crossings x (B, L, C) (nonzero = crossing),
    1 ≤ R < L, by the chunked scan with chunks of Q steps; it fires where free and crossing.
    Returns a bool (B, L, C) tensor. No autograd.

    Layout: chunk-major, (·, n, B, C) with n = ⌈L/Q⌉ chunks, so step q of every chunk is one
    contiguous block; every step below is two or three vectorised ops on uint8 (int16 or int32
    only when Q + R ≥ 255).
    (1) Exit maps, backwards in time: f_j = the countdown leaving the chunk when the neuron is free
        from step j on; f_{Q+i} = i, and f_j = f_{j+R+1} if c crosses at j (it fires) else
        f_{j+1}. Entering with countdown e leaves with f_e: the chunk's map is f_0..f_R, found
        for all R+1 entries at the cost of one.
    (2) The entering countdown of every chunk: :func:`_prefix_states` over the n − 1 maps.
    (3) Replay, forwards: with a = 1 + the step at which the neuron is free again (entering with
        countdown e: a = e + 1) and W_q = q + 1 at a crossing, else 0, the neuron is free at q
        iff a ≤ q + 1, fires iff a ≤ W_q, and firing sets a = q + R + 2."""
    B, L, C = x.shape
    K, dev = R + 1, x.device
    n, full = -(-L // Q), L // Q                                 # chunks, chunks without padding
    X = torch.empty(Q, n, B, C, dtype=torch.uint8, device=dev)                     # (Q n B C)
    X_blc = X.view(torch.bool).permute(2, 1, 0, 3)                                 # (B n Q C) view
    X_blc[:, :full].copy_(x[:, : full * Q].view(B, full, Q, C))                    # c ≠ 0
    if full < n:                                                         # the padded last chunk
        X_blc[:, full, : L - full * Q].copy_(x[:, full * Q:])
        X[L - full * Q:, full].zero_()
    entry = torch.zeros(n, B, C, dtype=torch.long, device=dev)                     # (n B C)
    if n > 1:                   # (1) exit maps of chunks 0..n−2 (the last one's is never needed)
        f = torch.empty(Q + K, n - 1, B, C, dtype=_int_dtype(R), device=dev)       # (Q+K n−1 B C)
        f[Q:] = torch.arange(K, dtype=f.dtype, device=dev)[:, None, None, None]
        d = torch.empty_like(f[0])                                                 # (n−1 B C)
        for j in range(Q - 1, -1, -1):            # f_j = f_{j+1} + [crossing]·(f_{j+K} − f_{j+1})
            torch.sub(f[j + K], f[j + 1], out=d)                   # wraps in uint8; exact mod 2⁸
            torch.addcmul(f[j + 1], X[j, :-1], d, out=f[j])
        G = torch.empty(n - 1, B, C, K, dtype=torch.long, device=dev)              # (n−1 B C K)
        G.copy_(f[:K].permute(1, 2, 3, 0))
        del f, d
        entry[1:] = _prefix_states(G)                 # (2) entering countdowns, chunks 1..n−1
        del G
    small = _int_dtype(Q + K)                                                      # a ≤ Q + R + 1
    w = torch.arange(1, Q + 1, dtype=small, device=dev)[:, None, None, None]       # (Q 1 1 1)
    W = X.mul_(w) if small == torch.uint8 else X.to(small).mul_(w)                 # (Q n B C)
    del X, X_blc
    a = entry.add_(1).to(small)                                                    # (n B C)
    fired = torch.arange(K + 1, Q + K + 1, dtype=small, device=dev).unbind(0)      # a after a spike
    as_int = (lambda m: m.view(torch.uint8)) if small == torch.uint8 else (lambda m: m)
    free = torch.empty(Q, n, B, C, dtype=torch.bool, device=dev)                   # (Q n B C)
    bump, fire = torch.empty_like(a), torch.empty_like(a, dtype=torch.bool)
    for q, (W_q, f_q) in enumerate(zip(W.unbind(0), free.unbind(0))):   # (3) replay
        torch.le(a, q + 1, out=f_q)
        torch.le(a, W_q, out=fire)
        torch.maximum(a, torch.mul(as_int(fire), fired[q], out=bump), out=a)
    return free.permute(2, 1, 0, 3).reshape(B, n * Q, C)[:, :L]                    # (B L C)


def refractory_scan(c: torch.Tensor, R: int, *, chunk: int | None = None,
                    validate: bool = True) -> torch.Tensor:
    """Exact parallel form: the chunked scan over countdown maps (ours; the book, on the refractory period).

    c (L,) | (B, L) | (B, L, C) -> s, same shape and dtype, identical to :func:`refractory_loop`.
    ``chunk`` Q ≥ 1 (default :func:`default_chunk`): every chunk's exit map from Q backward
    steps, an odd–even scan over the maps (:func:`_prefix_states`; Blelloch 1990), Q replay
    steps. Q = 1 is the per-step scan (maps (L, B, C, R+1) int64, memory-hungry); Q ≥ L is the
    loop. ``validate=False`` skips the NaN/Inf check (no GPU sync).
    """
    R = _check(c, R, validate)
    Q = None if chunk is None else check_int(chunk, "chunk", 1)
    x = _as_blc(c.detach())                                                        # (B L C)
    L = x.shape[1]
    R = min(R, max(L - 1, 0))                  # a countdown ≥ L − 1 blocks the rest of the train
    if R == 0 or x.numel() == 0:
        return c.clone()
    Q = min(default_chunk(R) if Q is None else Q, L)
    with torch.no_grad():
        free = _scan_free(x, R, Q)                                                 # (B L C)
    return _thin(c, _from_blc(free, c))


@functools.cache
def _triton_available() -> bool:
    """Whether triton is installed (looked up once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


class _Fused(torch.autograd.Function):
    """s = kernel(c); ∂s/∂c = free, rebuilt from the spikes (a spike is a nonzero crossing, so
    s ≠ 0 exactly where the neuron fired): no mask is stored, s is saved instead."""

    @staticmethod
    def forward(ctx, c, R):
        from spikelib._refractory_triton import countdown
        s = _from_blc(countdown(_as_blc(c), R), c)
        ctx.save_for_backward(s)
        ctx.R = R
        return s

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        free = _from_blc(_free(_as_blc(s) != 0, ctx.R), s)
        return torch.where(free, grad, grad.new_zeros(())), None


def refractory_fused(c: torch.Tensor, R: int, *, validate: bool = True) -> torch.Tensor:
    """The fused Triton kernel (``spikelib._refractory_triton``): one program per block of rows
    keeps the countdowns in registers and walks through time, reading c once and writing s once.

    Same contract and result as :func:`refractory_scan`. Needs triton and a CUDA tensor (or
    ``TRITON_INTERPRET=1`` in the environment before first use, which runs it on CPU tensors in
    Triton's interpreter — slow, for tests). Gradient: s = c · mask, as everywhere here."""
    R = _check(c, R, validate)
    if not _triton_available():
        raise ValueError("c: refractory_fused needs triton (pip install triton); use "
                         "refractory_scan instead")
    if not c.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"c: refractory_fused needs a CUDA tensor, got device {c.device}; use "
                         "refractory_scan on CPU")
    L = c.shape[-2] if c.dim() == 3 else c.shape[-1]
    R = min(R, max(L - 1, 0))
    if R == 0:
        return c.clone()
    return _Fused.apply(c, R)


_fallback: str | None = None          # why this process gave up the fused kernel; None: it has not


def fused_fallback() -> str | None:
    """Why ``Refractory.forward`` switched from the fused Triton kernel to the exact
    :func:`refractory_scan` in this process (the error the kernel raised), or None if it has
    not: a run's provenance records it."""
    return _fallback


def _use_fused(c) -> bool:
    """``Refractory.forward`` tries the fused kernel on CUDA tensors when triton is installed."""
    return isinstance(c, torch.Tensor) and c.is_cuda and _triton_available()


def _fused_or_scan(c: torch.Tensor, R: int, kernel=None) -> torch.Tensor:
    """``kernel(c, R, validate=False)`` (default :func:`refractory_fused`); if it raises —
    triton cannot compile or launch it — :func:`refractory_scan` instead, now and for the rest
    of the process, with one warning and the reason kept for :func:`fused_fallback`. Bad input
    and out-of-memory errors are raised, never turned into a fallback."""
    global _fallback
    R = _check(c, R, validate=False)
    if _fallback is None:
        try:
            return (kernel or refractory_fused)(c, R, validate=False)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:                       # any compile or launch error of triton
            lines = str(err).strip().splitlines() or [""]
            _fallback = f"{type(err).__name__}: {lines[0][:300]}"
            warnings.warn(f"spikelib.refractory: the fused Triton kernel failed ({_fallback}); "
                          "Refractory uses the exact refractory_scan (slower) from now on",
                          RuntimeWarning, stacklevel=2)
    return refractory_scan(c, R, validate=False)


def refractory_onset(c: torch.Tensor, R: int, *, validate: bool = True) -> torch.Tensor:
    """Approximation (ours): s_t = c_t Θ(½ − Σ_{k=1..R} c_{t−k}) — fire only if no *crossing*
    (not spike) in the last R steps. The window sum is a difference of cumulative sums (exact
    integers), i.e. a causal box convolution. s ≤ c; equals the exact thinning when crossings are
    isolated (each followed by more than R silent steps)."""
    R = _check(c, R, validate)
    x = _as_blc(c.detach()) != 0                                                   # (B L C)
    with torch.no_grad():
        S = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2], dtype=torch.long),
                       x.long().cumsum(dim=1)], dim=1)                             # (B L+1 C)
        t = torch.arange(x.shape[1], device=c.device)                             # (L)
        window = S[:, t] - S[:, (t - R).clamp_min(0)]                              # Σ_{k=1..R} c_{t−k}
        free = window == 0                                      # no crossing in R steps
    return _thin(c, _from_blc(free, c))


def refractory_strided(c: torch.Tensor, R: int, *, validate: bool = True) -> torch.Tensor:
    """Approximation (ours): keep c_t only at t ≡ 0 (mod R+1) — a fixed sampling clock."""
    R = _check(c, R, validate)
    x = _as_blc(c.detach()) != 0                                                   # (B L C)
    clock = torch.arange(x.shape[1], device=c.device) % (R + 1) == 0               # (L)
    return _thin(c, _from_blc(clock[:, None].expand_as(x), c))


class Refractory(Temporal):
    """Fixed refractory period R on a crossing train c (B, L, C) -> s (B, L, C), same dtype.

    ``forward``: :func:`refractory_fused` on CUDA tensors when triton is installed (if the kernel
    fails, a warning and :func:`refractory_scan` from then on: :func:`fused_fallback`), else
    :func:`refractory_scan` (both exact). ``forward_serial``: a loop over ``step``, from a
    ``state``. ``step(c_t (B, C), state)`` with state ``{"r": countdown (B, C) int64}`` (None:
    :meth:`initial_state`) returns (s_t, state). Inputs are checked as every temporal module's
    (rank, not empty, NaN/Inf unless ``finite_checks(False)``); for (L,) or (B, L) trains use
    the functions. s = c · free, the mask [r_{t−1} = 0] without gradient. R = 0 is the identity. R: any
    integer ≥ 0 (int, NumPy integer, 0-d integer tensor).
    """

    state_keys = ("r",)

    def __init__(self, R: int):
        super().__init__()
        self.R = check_int(R, "R", 0)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        check_tensor(c, "c", 3, nonempty=True)
        if _use_fused(c):
            return _fused_or_scan(c, self.R)
        return refractory_scan(c, self.R, validate=False)

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"r": zeros (batch, channels) int64} — every neuron free. ``dtype`` is accepted for
        the common interface and ignored: the countdown is always int64."""
        shape = (check_int(batch, "batch", 0), check_int(self.state_channels(channels),
                                                          "channels", 0))
        return {"r": torch.zeros(shape, dtype=torch.long, device=device)}

    def step(self, c_t: torch.Tensor, state: dict | None = None):
        """s_t = c_t [r_{t−1} = 0];  r_t = R if s_t else max(r_{t−1} − 1, 0).
        c_t (B, C); returns (s_t (B, C), {"r": r_t})."""
        check_tensor(c_t, "c_t", 2, nonempty=True)
        r = self.start(c_t, state)["r"]
        if not isinstance(r, torch.Tensor) or r.shape != c_t.shape:
            got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"state: expected {{'r': countdown of shape {tuple(c_t.shape)}}} "
                             f"(from initial_state or step), got {got}")
        with torch.no_grad():
            free = r == 0                                                          # (B C)
            r = torch.where((c_t.detach() != 0) & free, self.R, (r - 1).clamp_min(0))
        return _thin(c_t, free), {"r": r}

    def forward_serial(self, c: torch.Tensor, state: dict | None = None, *,
                       return_state: bool = False):
        """``forward``'s result by a loop over ``step``: c (B, L, C) -> s (B, L, C) [, final
        state], continuing from ``state`` (None: every neuron free)."""
        check_tensor(c, "c", 3, nonempty=True, finite=False)              # step scans each c_t
        return super().forward_serial(c, state, return_state=return_state)

    def extra_repr(self) -> str:
        return f"R={self.R}"
