"""Looking inside a model: where its spiking decisions sit, and whether its two forms agree.

``probe`` is the per-epoch diagnostic that training records; ``distances`` and
``serial_agreement`` are the checks behind "parallel ≡ serial" (tests, benchmarks, the book).
All run in eval mode and draw no random numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spikelib.ddsn import DynamicDecayNeuron
from spikelib.neurons import SoftResetIF
from spikelib.psn import PSN

__all__ = ["threshold_view", "decision_distance", "distances", "serial_agreement",
           "gradient_agreement", "probe"]


def threshold_view(spike, y: torch.Tensor):
    """(v, θ): what a single threshold θ compares in a spike module fed y (B, L, H) — v = y for
    frssm, the PSN membrane for pssm, h for the binary dynamic-decay neuron — or None where no
    single threshold decides (LIF with reset, soft-reset IF, integer spikes, GELU), or where
    θ is one per time step, not per channel (full and masked PSN)."""
    if not hasattr(spike, "membrane") or isinstance(spike, (SoftResetIF, PSN)):
        return None
    if isinstance(spike, DynamicDecayNeuron) and spike.spike == "integer":
        return None
    theta = getattr(spike, "theta", None)
    if theta is None:
        return None
    return spike.membrane(y), torch.as_tensor(theta, dtype=y.dtype, device=y.device)


def decision_distance(spike, y: torch.Tensor) -> torch.Tensor:
    """How close each spiking decision on y (B, L, H) was to flipping: |v − θ| (and |v + θ| for
    ON/OFF spikes); the soft-reset IF's distance of the running sum to the lattice θZ; the
    integer dynamic-decay neuron's distance of h to a rounding boundary; +inf where there is
    no decision (GELU, LIF, masked PSN)."""
    if isinstance(spike, SoftResetIF):
        theta = spike.theta
        m = torch.cumsum(y, dim=1) / theta                     # decisions where S_t meets θZ
        return (m - torch.round(m)).abs() * theta
    if isinstance(spike, DynamicDecayNeuron) and spike.spike == "integer":
        h = spike.membrane(y)
        return ((h - 0.5) - torch.round(h - 0.5)).abs()
    view = threshold_view(spike, y)
    if view is None:
        return torch.full_like(y, math.inf)
    v, theta = view
    d = (v - theta).abs()
    on_off = getattr(spike, "on_off", False) or getattr(spike, "polarity", "on") == "on_off"
    return torch.minimum(d, (v + theta).abs()) if on_off else d


@torch.no_grad()
def distances(model, x: torch.Tensor) -> list[torch.Tensor]:
    """:func:`decision_distance` (B, L, H) per layer in the parallel pass: where it exceeds the
    round-off of the two forms, serial and parallel spikes must agree."""
    h, out = model.embed(x), []
    for layer in model.layers:
        out.append(decision_distance(layer.spike, layer.ssm(layer.norm(h))))
        h, _ = layer(h)
    return out


@torch.no_grad()
def serial_agreement(model, x: torch.Tensor) -> dict:
    """Compare ``forward`` and ``forward_serial`` on x (eval mode): the largest logit difference
    and, per layer, the fraction of spikes that differ (for float32 reports; none for s4d)."""
    was = model.training
    model.eval()
    a, sa = model(x, return_spikes=True)
    b, sb = model.forward_serial(x, return_spikes=True)
    model.train(was)
    return {"max_logit_diff": (a - b).abs().max().item(),
            "flip_fraction": [(p != q).float().mean().item() for p, q in zip(sa, sb)]}


def gradient_agreement(model, x: torch.Tensor, weights: torch.Tensor) -> dict:
    """Parameter gradients of Σ weights ⊙ logits through ``forward`` (what trains) and through
    ``forward_serial`` (the definition), in eval mode: ``max_rel_diff`` (largest entry of the
    difference over the largest entry), ``frac_differ`` (entries differing by more than 1e-10
    of it), ``rel_l2``, ``cosine``, and ``same_unused`` (the same parameters get no gradient)."""
    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.autograd.grad((fn(x) * weights).sum(), params, allow_unused=True)
             for fn in (model.forward, model.forward_serial)]
    model.train(was)
    same_unused = all((a is None) == (b is None) for a, b in zip(*grads))
    a, b = (torch.cat([g.flatten() for g in gs if g is not None]) for gs in grads)
    diff, scale = (a - b).abs(), a.abs().max()
    return {"max_rel_diff": (diff.max() / scale).item(),
            "frac_differ": (diff > 1e-10 * scale).double().mean().item(),
            "rel_l2": ((a - b).norm() / a.norm()).item(),
            "cosine": (torch.dot(a, b) / (a.norm() * b.norm())).item(),
            "same_unused": same_unused}


def probe(model, x: torch.Tensor, target: torch.Tensor,
          task: str = "classification") -> list[dict]:
    """Per-layer diagnostics on one batch x (B, L, d_input), target (B,) (ours): the memory
    output y (std; RMS of the loss gradient ∂L/∂y that reaches it), the firing rate (mean |s|),
    and where a single threshold decides (:func:`threshold_view`): θ (mean, min, max), the
    fractions of steps with v > θ and v < −θ, and the share of E[v²] on the steps with v > θ —
    all a positive-only threshold can pass — and with |v| > θ."""
    was = model.training
    model.eval()
    with torch.enable_grad():
        h, ys, rows = model.embed(x), [], []
        for layer in model.layers:
            y = layer.ssm(layer.norm(h))                                   # (B, L, H)
            ys.append(y)
            s = layer.spike(y)
            row = {"y_std": y.detach().std().item(),
                   "firing_rate": s.detach().abs().mean().item() if model.spiking else None}
            view = threshold_view(layer.spike, y) if model.spiking else None
            if view is not None:
                v = view[0].detach().float()                               # (B, L, H)
                theta = view[1].detach().float().expand(v.shape[-1:])     # (H)
                e = v.square()
                row.update(theta_mean=theta.mean().item(), theta_min=theta.min().item(),
                           theta_max=theta.max().item(),
                           frac_above=(v > theta).float().mean().item(),
                           frac_below=(v < -theta).float().mean().item(),
                           energy_above=((e * (v > theta)).sum() / e.sum()).item(),
                           energy_outside=((e * (v.abs() > theta)).sum() / e.sum()).item())
            rows.append(row)
            h = layer.residual(h, s)
        out = model.head(model.norm(h))
        loss = (F.cross_entropy(out.float(), target) if task == "classification"
                else F.mse_loss(out.float().squeeze(-1), target.float()))
        grads = torch.autograd.grad(loss, ys)
    for row, g in zip(rows, grads):
        row["grad_rms"] = g.float().square().mean().sqrt().item()
    model.train(was)
    return rows
