"""How faithfully a layer's spikes carry its memory output y (ours).

Two measures, both per layer of a trained model and both comparable across sparsifiers at a
matched firing rate:

- :func:`hold_error`: the sample-and-hold reading — the value of y at the last spike held until
  the next one — and its relative RMS error against y (0 = perfect, 1 = no better than 0);
- :func:`readout_r2`: a causal linear read-out of y from the spikes of all H channels over the
  last K steps, fitted by ridge least squares on one set of sequences and scored (R², pooled
  over channels) on another: what any linear layer after the spikes could recover.

:func:`layer_signals` runs a model layer by layer and keeps y, the spikes s and, where a single
threshold decides, the dense threshold crossings c before any refractory thinning, so that the
two measures can be taken on s and on c and the crossings' runs counted (:func:`runs`).
"""
from __future__ import annotations

import torch

from spikelib._checks import check_int, check_tensor
from spikelib.diagnostics import threshold_view

__all__ = ["layer_signals", "held", "hold_error", "lagged", "readout_r2", "runs"]


@torch.no_grad()
def layer_signals(model, x: torch.Tensor) -> list[dict]:
    """Per layer of ``model`` (eval mode) on x (B, L, d_input): {"y": memory output, "s":
    spikes, "c": crossings v > θ (and −1 where v < −θ for ON/OFF spikes) or None where no
    single threshold decides, "theta": (H,) or None}; every tensor (B, L, H) float."""
    was = model.training
    model.eval()
    h, out = model.embed(x), []
    for layer in model.layers:
        y = layer.ssm(layer.norm(h))
        h, s = layer(h)
        row = {"y": y.float(), "s": s.float(), "c": None, "theta": None}
        view = threshold_view(layer.spike, y) if model.spiking else None
        if view is not None:
            v, theta = view[0].float(), view[1].float().expand(y.shape[-1:])
            c = (v > theta).float()
            if getattr(layer.spike, "on_off", False):
                c = c - (v < -theta).float()
            row.update(c=c, theta=theta.clone())
        out.append(row)
    model.train(was)
    return out


def held(s: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sample-and-hold: at each step, ``values`` at the last step ≤ t where s ≠ 0, and 0 before
    the first spike. s, values (B, L, H) -> (B, L, H)."""
    check_tensor(s, "s", 3, finite=False)
    check_tensor(values, "values", 3, floating=True, finite=False)
    if s.shape != values.shape:
        raise ValueError(f"s, values: expected the same shape, got {tuple(s.shape)} and "
                         f"{tuple(values.shape)}")
    t = torch.arange(s.shape[1], device=s.device).view(1, -1, 1)
    last = torch.where(s != 0, t, torch.full_like(t, -1)).cummax(dim=1).values   # (B, L, H)
    got = values.gather(1, last.clamp(min=0))
    return torch.where(last >= 0, got, torch.zeros_like(got))


def hold_error(s: torch.Tensor, y: torch.Tensor) -> float:
    """Relative RMS error of the sample-and-hold of y at the spikes s: ‖y − held(s, y)‖ / ‖y‖."""
    y = y.double()
    return float((y - held(s, y)).norm() / y.norm().clamp_min(1e-300))


def lagged(s: torch.Tensor, K: int) -> torch.Tensor:
    """Causal lag features: (B, L, H) -> (B, L, H·K), entry [.., t, h·K + k] = s[.., t − k, h]
    (0 before the start)."""
    K = check_int(K, "K", 1)
    check_tensor(s, "s", 3, finite=False)
    padded = torch.nn.functional.pad(s, (0, 0, K - 1, 0))              # (B, L + K − 1, H)
    win = padded.unfold(1, K, 1)                                       # (B, L, H, K): oldest first
    return win.flip(-1).reshape(*s.shape[:2], -1)


def readout_r2(s_fit: torch.Tensor, y_fit: torch.Tensor, s_test: torch.Tensor,
               y_test: torch.Tensor, K: int = 16, ridge: float = 1e-3,
               chunk: int = 8) -> float:
    """Fit y_t ≈ W · [s_t, s_{t−1}, …, s_{t−K+1}] + b on (s_fit, y_fit) by ridge least squares
    (``ridge`` × the mean diagonal of XᵀX), score on (s_test, y_test): R² = 1 − SSE / SST pooled
    over all channels, SST about the test mean of each channel. Accumulated
    ``chunk`` sequences at a time in float64 (no (B·L, H·K) matrix held).
    Spikes (B, L, H), targets (B, L, D); usually D = H, the layer's own y."""
    for name, t in (("s_fit", s_fit), ("y_fit", y_fit), ("s_test", s_test), ("y_test", y_test)):
        check_tensor(t, name, 3)
    if (s_fit.shape[:2] != y_fit.shape[:2] or s_test.shape[:2] != y_test.shape[:2]
            or s_fit.shape[2] != s_test.shape[2] or y_fit.shape[2] != y_test.shape[2]):
        raise ValueError("s_fit, y_fit, s_test, y_test: expected (B, L, H) spikes and (B, L, D) "
                         "targets with matching B and L, and the same H and D in both sets")
    d = s_fit.shape[-1] * check_int(K, "K", 1) + 1
    xtx = torch.zeros(d, d, dtype=torch.float64)
    xty = torch.zeros(d, y_fit.shape[-1], dtype=torch.float64)
    for i in range(0, s_fit.shape[0], chunk):
        X = _design(s_fit[i:i + chunk], K)
        xtx += X.T @ X
        xty += X.T @ y_fit[i:i + chunk].reshape(-1, y_fit.shape[-1]).double().cpu()
    reg = ridge * xtx.diagonal().mean().clamp_min(1e-12) * torch.eye(d, dtype=torch.float64)
    reg[-1, -1] = 0                                                    # no penalty on the bias
    W = torch.linalg.solve(xtx + reg, xty)
    mean = y_test.double().mean(dim=(0, 1)).cpu()
    sse = sst = 0.0
    for i in range(0, s_test.shape[0], chunk):
        y = y_test[i:i + chunk].reshape(-1, y_test.shape[-1]).double().cpu()
        sse += float((y - _design(s_test[i:i + chunk], K) @ W).square().sum())
        sst += float((y - mean).square().sum())
    return 1.0 - sse / max(sst, 1e-300)


def _design(s: torch.Tensor, K: int) -> torch.Tensor:
    X = lagged(s.double().cpu(), K).reshape(-1, s.shape[-1] * K)
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)


def runs(c: torch.Tensor) -> dict:
    """How threshold crossings c (B, L, H; nonzero = a crossing) come: ``mean_run`` (mean length
    of the runs of consecutive crossings in one channel) and ``crossings`` (their fraction of
    steps)."""
    check_tensor(c, "c", 3, finite=False)
    on = c != 0
    starts = on & ~torch.nn.functional.pad(on, (0, 0, 1, 0))[:, :-1]   # a crossing after none
    n_on, n_runs = int(on.sum()), int(starts.sum())
    return {"mean_run": n_on / n_runs if n_runs else 0.0, "crossings": n_on / max(on.numel(), 1)}
