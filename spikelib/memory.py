"""S4D: diagonal state-space memory (Gu et al. 2022; the minimal ``state-spaces/s4`` ``s4d.py``).

Per channel h (``d_model`` = H channels) a complex diagonal system with N/2 modes n; the other
N/2 modes are the complex conjugates, folded into a factor 2 and a real part, and B is folded
into C:

    x'(t) = A x(t) + u(t),   y(t) = 2 Re(C x(t)) + D u(t),   A_n = −exp(log_A_real_n) + i A_imag_n

S4D-Lin init: Re A_n = −1/2, Im A_n = π n; Δ = exp(log_dt), log_dt ~ U[log dt_min, log dt_max];
C ~ CN(0, 1) (stored as a real view (H, N/2, 2)); D ~ N(0, 1). Zero-order hold:

    dA_n = exp(Δ A_n),   dB_n = (exp(Δ A_n) − 1) / A_n
    x_t = dA x_{t−1} + dB u_t,   y_t = 2 Re Σ_n C_n x_{t,n} + D u_t            (serial, ``step``)
    K_ℓ = 2 Re Σ_n C_n dB_n dA_n^ℓ,   y = K ∗ u + D u                            (parallel, ``forward``)

The causal convolution is an FFT of length 2L (no wrap-around). Precision (ours):
the kernel, the FFT and the recurrence run in float32 — float64/complex128 when the input or the
parameters are float64 — with autocast switched off locally (``torch.fft`` rejects bf16 and
complex phases ΔA_n ℓ lose accuracy in half precision). Outputs are cast back to the input dtype.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from spikelib._checks import check_int, check_positive, check_tensor
from spikelib.temporal import Temporal

__all__ = ["S4D", "S4DKernel", "causal_conv", "register"]


def register(module: nn.Module, name: str, tensor: torch.Tensor, lr: float | None = None):
    """Register ``tensor`` on ``module`` as a buffer when ``lr == 0`` (frozen), else as a Parameter
    tagged ``p._optim = {"lr": lr, "weight_decay": 0.0}`` for the optimiser setup (s4d.py).
    With ``lr=None`` the tag is ``{"weight_decay": 0.0}`` only (the optimiser's lr applies)."""
    if lr is not None and lr == 0:
        module.register_buffer(name, tensor)
        return
    module.register_parameter(name, nn.Parameter(tensor))
    optim = {"weight_decay": 0.0}
    if lr is not None:
        optim["lr"] = float(lr)
    getattr(module, name)._optim = optim


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any of ``dtypes`` is float64, else float32 (never half precision)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class S4DKernel(nn.Module):
    """Diagonal SSM parameters and the convolution kernel K (H, L) they generate.

    Parameters (learned where they live, turned into Δ, A, C at the top of ``discrete``):
    ``log_dt`` (H,), ``C`` (H, N/2, 2) real view of complex, ``log_A_real`` (H, N/2),
    ``A_imag`` (H, N/2). ``log_dt``, ``log_A_real``, ``A_imag`` and ``C`` are registered with
    ``register(..., lr)`` (weight decay 0; buffers when ``lr == 0``, except ``C``, which always
    learns: with ``lr == 0`` it is tagged without an own lr).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 lr: float | None = 1e-3):
        super().__init__()
        H = check_int(d_model, "d_model", 1)
        N = check_int(d_state, "d_state", 2)
        if N % 2:
            raise ValueError(f"d_state: expected an even number (N/2 conjugate pairs), got {N}")
        dt_min, dt_max = check_positive(dt_min, "dt_min"), check_positive(dt_max, "dt_max")
        if dt_min > dt_max:
            raise ValueError(f"dt_min: expected dt_min <= dt_max, got {dt_min} > {dt_max}")
        if lr is not None and (isinstance(lr, bool) or not (isinstance(lr, (int, float))
                                                            and 0 <= lr < math.inf)):
            raise ValueError(f"lr: expected None or a number >= 0, got {lr!r}")
        self.d_model, self.d_state = H, N
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H)
        C = torch.randn(H, N // 2, 2) * math.sqrt(0.5)  # (H N/2 2): real view of CN(0, 1)
        log_A_real = torch.full((H, N // 2), math.log(0.5))                  # Re A = −1/2
        A_imag = math.pi * torch.arange(N // 2).to(log_dt.dtype).repeat(H, 1)  # Im A = π n
        register(self, "log_dt", log_dt, lr)
        register(self, "C", C.contiguous(), lr if lr else None)
        register(self, "log_A_real", log_A_real, lr)
        register(self, "A_imag", A_imag, lr)

    def _modes(self, real: torch.dtype):
        """(ΔA (H, N/2), A (H, N/2), C (H, N/2)) complex, from the stored parameters."""
        dt = torch.exp(self.log_dt.to(real))                                      # (H)
        A = torch.complex(-torch.exp(self.log_A_real.to(real)), self.A_imag.to(real))  # (H N)
        C = torch.view_as_complex(self.C.to(real))                                # (H N)
        return A * dt.unsqueeze(-1), A, C                                         # (H N)

    def discrete(self, dtype: torch.dtype | None = None):
        """ZOH discretisation -> (dA, dB, C), each (H, N/2) complex (complex128 when ``dtype`` or
        the parameters are float64, else complex64). dB = expm1(ΔA)/A, accurate for small |ΔA|."""
        real = _compute_dtype(self.log_dt.dtype, dtype or torch.float32)
        with _no_autocast(self.log_dt.device):
            dtA, A, C = self._modes(real)                                         # (H N)
            return torch.exp(dtA), torch.expm1(dtA) / A, C                        # (H N)

    def forward(self, L: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """K (H, L), K_ℓ = 2 Re Σ_n C_n dB_n exp(ΔA_n ℓ) (Vandermonde: each power is one exp, so
        no error accumulates over ℓ). float32 unless ``dtype`` or the parameters are float64."""
        L = check_int(L, "L", 0)
        real = _compute_dtype(self.log_dt.dtype, dtype or torch.float32)
        with _no_autocast(self.log_dt.device):
            dtA, A, C = self._modes(real)                                         # (H N)
            ell = torch.arange(L, device=dtA.device, dtype=real)                  # (L)
            V = torch.exp(dtA.unsqueeze(-1) * ell)                                # (H N L)
            CB = C * torch.expm1(dtA) / A                                         # (H N)
            return 2 * torch.einsum("hn,hnl->hl", CB, V).real                     # (H L)


def causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{j≤t} k_j u_{t−j}: u (B, L, C), k (C, L) one kernel per channel or (L,) shared ->
    (B, L, C). FFT of length 2L, so nothing wraps around; O(L log L) (s4d.py's three lines)."""
    L = u.shape[1]                                  # transforms along the last, contiguous axis
    k_f = torch.fft.rfft(k, n=2 * L)                                              # (C L+1)
    u_f = torch.fft.rfft(u.transpose(1, 2), n=2 * L)                              # (B C L+1)
    return torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L].transpose(1, 2)           # (B L C)


class S4D(Temporal):
    """S4D layer: u (B, L, H) -> y (B, L, H), y = K ∗ u + D u (the SSM only: no activation,
    dropout or output mixing, which live in the model's block).

    ``forward`` — FFT convolution, parallel over time (float32/float64, autocast off, output in
    the input dtype); ``step(u_t (B, H), state)`` — the recurrence x_t = dA x_{t−1} + dB u_t,
    y_t = 2 Re(C x_t) + D u_t with state {"x": (B, H, N/2) complex}; ``forward_serial`` loops
    over ``step``. Odd ``d_state`` is a ValueError. ``lr`` is the SSM learning rate (see
    :func:`register`).
    """

    state_keys = ("x",)

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 lr: float | None = 1e-3):
        super().__init__()
        self.kernel = S4DKernel(d_model, d_state, dt_min, dt_max, lr)
        self.d_model, self.d_state = d_model, d_state
        self.D = nn.Parameter(torch.randn(d_model))                               # (H)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """y = irfft(rfft(u, 2L) · rfft(K, 2L))[:L] + D u.   u (B, L, H) -> y (B, L, H)."""
        check_tensor(u, "u", 3, channels=self.d_model, floating=True, nonempty=True)
        real = _compute_dtype(u.dtype, self.D.dtype)
        with _no_autocast(u.device):
            v = u.to(real)                                                        # (B L H)
            y = causal_conv(v, self.kernel(u.shape[1], real)) + v * self.D.to(real)
        return y.to(u.dtype)

    def _prepare(self, u):
        """(real dtype, dA, dB, 2C, D) for the recurrence. With autograd off (inference) they
        are cached and recomputed only when a parameter or buffer is replaced or changed in
        place (its storage or version counter moves) or the dtype/device differs, so streaming
        ``step`` does not redo the discretisation at every time step."""
        real = _compute_dtype(u.dtype, self.D.dtype)
        tensors = [*self.parameters(), *self.buffers()]
        key = (real, u.device, tuple((t.data_ptr(), t._version) for t in tensors))
        if not torch.is_grad_enabled() and getattr(self, "_cache", (None,))[0] == key:
            return self._cache[1]
        dA, dB, C = self.kernel.discrete(real)                                    # (H N) each
        out = real, dA, dB, 2 * C, self.D.to(real)
        self._cache = (key, out) if not torch.is_grad_enabled() else (None,)
        return out

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"x": zeros (B, H, N/2)}, complex128 for float64 ``dtype`` or parameters, else
        complex64."""
        real = _compute_dtype(dtype or torch.float32, self.D.dtype)
        cplx = torch.complex128 if real == torch.float64 else torch.complex64
        return {"x": torch.zeros(batch, self.d_model, self.d_state // 2, dtype=cplx,
                                 device=device if device is not None else self.D.device)}

    def step(self, u_t: torch.Tensor, state: dict | None = None):
        """x_t = dA x_{t−1} + dB u_t ; y_t = Re Σ_n (2C)_n x_{t,n} + D u_t.
        u_t (B, H), state {"x": (B, H, N/2)} or None -> (y_t (B, H), state)."""
        check_tensor(u_t, "u_t", 2, channels=self.d_model, floating=True, nonempty=True)
        state = self.start(u_t, state)
        with _no_autocast(u_t.device):
            real, dA, dB, C2, D = self._prepare(u_t)
            v = u_t.to(real)                                                      # (B H)
            x = dA * state["x"].to(dA.dtype) + dB * v.unsqueeze(-1)               # (B H N)
            y = torch.einsum("hn,bhn->bh", C2, x).real + D * v                    # (B H)
        return y.to(u_t.dtype), {"x": x}

    def state_cost(self) -> int:
        """Real multiply-accumulates per time step of the serial update, H (4N + 1):
        per channel and complex mode, dA·x is 4 MACs and + dB·u 2 more (6 for the state update),
        Re(2C·x) = 2 MACs (the factor 2 is folded into C once); N/2 modes give 4N; D·u adds 1."""
        return self.d_model * (4 * self.d_state + 1)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}"
