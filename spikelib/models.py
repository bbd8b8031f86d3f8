"""The backbone and its six spiking choices (reconstruction.md §6; ours unless cited).

Pre-norm residual network of the S4 example (``state-spaces/s4`` ``example.py``) with the
activation replaced by a spiking module::

    x = Linear(d_input → H)(u)                                   # (B, L, H)
    repeat n_layers:  z = LayerNorm(x);  y = S4D(z);  s = Spike(y)
                      x = x + Dropout(GLU(Linear(H → 2H)(s)))    # the Linear sees spikes only
    logits = Linear(H → n_classes)(readout(LayerNorm(x)))        # readout: mean over t, or last

=========  ===========================================================================
``s4d``    GELU(y) — the non-spiking baseline
``frssm``  spikingFRssm: Refractory_R(Θ(y − θ)), θ learnable per channel; no reset anywhere;
           the refractory mask carries no gradient (Zhang 2025; equations ours)
``pssm``   SpikingPssm: Θ(h − θ), h = sliding PSN of y (Fang et al. 2023), one kernel per
           channel; ``psn_kind='masked'`` swaps in the masked PSN (parallel form only)
``lif``    LIF with hard reset on y, serial BPTT (the classic SNN baseline)
``ddsn``   dynamic-decay neuron on y (Huang et al. 2026, second-hand; see ddsn.md)
``sif``    soft-reset IF computed exactly in parallel (Proposition A, ours), integer spikes
=========  ===========================================================================

``forward`` trains in parallel over time (``lif``: its serial loop); ``forward_serial`` runs
step by step with O(1) state per layer — S4D state, spiking state, and a running sum for the
mean readout — and gives the same logits.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikelib import surrogate as sg
from spikelib._checks import check_tensor
from spikelib.ddsn import DynamicDecayNeuron
from spikelib.memory import S4D
from spikelib.neurons import LIFNeuron, PositiveTheta, SoftResetIF, ThresholdSpike
from spikelib.psn import PSN, MaskedPSN, SlidingPSN, masked_lambda
from spikelib.refractory import Refractory
from spikelib.surrogate import straight_through

MODELS = ("s4d", "frssm", "pssm", "lif", "ddsn", "sif")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`SequenceClassifier` (defaults: reconstruction.md §6)."""
    name: str = "frssm"
    d_input: int = 1
    n_classes: int = 10          # 1: a regression output
    d_model: int = 128           # H
    n_layers: int = 4
    d_state: int = 64            # N (even: N/2 conjugate pairs)
    dropout: float = 0.1
    readout: str = "mean"        # 'mean' | 'last'
    surrogate: str = "atan"      # 'atan' | 'sigmoid' | 'rect'
    surrogate_alpha: float = 2.0
    theta_init: float = 1.0
    theta_init_mode: str = "value"   # 'value': θ = theta_init; 'rms': θ = theta_init × RMS of the
                                     # threshold input per channel on the first batch (frssm, pssm)
    theta_lr: float | None = None    # own learning rate of θ (None: the run's lr)
    polarity: str = "on"         # 'on': Θ(v − θ); 'on_off': Θ(v − θ) − Θ(−v − θ) (frssm, pssm; ours)
    refractory: int = 2          # R of frssm
    refractory_grad: str = "mask"    # 'mask': no gradient where the refractory period removed a
                                     # crossing; 'straight_through': the crossing's gradient (ours)
    psn_order: int = 32          # P of the sliding PSN (k of the masked PSN)
    psn_kind: str = "sliding"    # 'sliding' | 'masked'
    seq_len: int = 0             # T of the masked PSN (its weights are T×T); unused otherwise
    gate_kernel: int = 4         # k of the dynamic-decay gate
    gate_tau: float = 0.25       # τ of the dynamic-decay gate
    ddsn_spike: str = "binary"   # 'binary' | 'integer'
    spike_levels: int = 4        # N: clip of integer spikes (sif, ddsn integer)
    lif_tau: float = 2.0
    ssm_lr: float = 1e-3
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)

    def validate(self) -> ModelConfig:
        if self.name not in MODELS:
            raise ValueError(f"name: expected one of {', '.join(MODELS)}, got {self.name!r}")
        for k in ("d_input", "n_classes", "d_model", "n_layers", "d_state", "psn_order",
                  "gate_kernel", "spike_levels"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k}: expected a positive integer, got {v!r}")
        if self.d_state % 2:
            raise ValueError(f"d_state: expected an even number (conjugate pairs), "
                             f"got {self.d_state}")
        if isinstance(self.refractory, bool) or not isinstance(self.refractory, int) \
                or self.refractory < 0:
            raise ValueError(f"refractory: expected an integer >= 0, got {self.refractory!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")
        for k, options in (("readout", ("mean", "last")), ("psn_kind", ("sliding", "masked")),
                           ("ddsn_spike", ("binary", "integer")),
                           ("surrogate", ("atan", "sigmoid", "rect")),
                           ("theta_init_mode", ("value", "rms")), ("polarity", ("on", "on_off")),
                           ("refractory_grad", ("mask", "straight_through"))):
            if getattr(self, k) not in options:
                raise ValueError(f"{k}: expected one of {options}, got {getattr(self, k)!r}")
        for k in ("surrogate_alpha", "gate_tau", "lif_tau", "dt_min", "dt_max", "theta_init"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{k}: expected a positive number, got {v!r}")
        if self.theta_lr is not None and not (isinstance(self.theta_lr, (int, float))
                                              and 0 <= self.theta_lr < math.inf):
            raise ValueError(f"theta_lr: expected None or a number >= 0, got {self.theta_lr!r}")
        if self.name == "pssm" and self.psn_kind == "masked" and self.seq_len < 1:
            raise ValueError("seq_len: the masked PSN needs the sequence length (seq_len >= 1)")
        if self.polarity == "on_off" and (self.name not in ("frssm", "pssm")
                                          or self.psn_kind == "masked"):
            raise ValueError("polarity: 'on_off' exists for frssm and the sliding-PSN pssm only")
        return self


# ---------------------------------------------------------------------------------------------
# spiking modules with one interface: forward (B,L,H) -> (B,L,H); step(y_t, state) -> (s_t, state);
# compare(y) -> (v, θ), what the threshold sees (None where no single threshold decides);
# distance(y) = |v − θ| (how close each decision was; for the serial-parallel test)

class _Spike(nn.Module):
    on_off = False

    def compare(self, y):
        return None

    def distance(self, y):
        view = self.compare(y)
        if view is None:
            return torch.full_like(y, math.inf)
        v, theta = view
        d = (v - theta).abs()
        return torch.minimum(d, (v + theta).abs()) if self.on_off else d


def _fire(v, theta, surrogate, on_off: bool):
    """Θ(v − θ), or the ON/OFF pair Θ(v − θ) − Θ(−v − θ) ∈ {−1, 0, 1} (ours)."""
    s = surrogate(v - theta)
    return s - surrogate(-v - theta) if on_off else s


class GELUAct(_Spike):
    """The non-spiking baseline: s = GELU(y)."""
    def forward(self, y):
        return F.gelu(y)

    def step(self, y_t, state=None):
        return F.gelu(y_t), None


class FixedRefractorySpike(_Spike):
    """spikingFRssm's spike: c = Θ(y − θ) (per-channel θ, surrogate gradient), then the fixed
    refractory period s_t = c_t ∏_{k=1..R} (1 − s_{t−k}) (ours).

    ``polarity='on_off'``: also c⁻ = Θ(−y − θ) with its own countdown, s = s⁺ − s⁻ ∈ {−1, 0, 1}.
    ``refractory_grad='mask'``: a crossing removed by the refractory period passes no gradient;
    ``'straight_through'``: the value of the thinned train with the gradient of c (ours).
    """
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.threshold = ThresholdSpike(cfg.d_model, theta_init=cfg.theta_init,
                                        surrogate=surrogate)
        self.refractory = Refractory(cfg.refractory)
        self.on_off = cfg.polarity == "on_off"
        self.straight_through = cfg.refractory_grad == "straight_through"

    def _thin(self, c):
        s = self.refractory(c)
        return straight_through(s, c) if self.straight_through else s

    def _thin_step(self, c_t, r):
        s_t, r = self.refractory.step(c_t, r)
        return (straight_through(s_t, c_t) if self.straight_through else s_t), r

    def forward(self, y):                                      # (B, L, H)
        s = self._thin(self.threshold(y))
        return s - self._thin(self.threshold(-y)) if self.on_off else s

    def step(self, y_t, state=None):                           # (B, H)
        r_on, r_off = (None, None) if state is None else state
        s, r_on = self._thin_step(self.threshold.step(y_t)[0], r_on)
        if self.on_off:
            s_off, r_off = self._thin_step(self.threshold.step(-y_t)[0], r_off)
            s = s - s_off
        return s, (r_on, r_off)

    def compare(self, y):
        return y, self.threshold.theta


class PSNSpike(_Spike):
    """SpikingPssm's spike: S = Θ(h − θ), h_t = Σ_{i<P} w_i y_{t−P+1+i} (sliding PSN), or the
    masked PSN (Fang et al. 2023) when ``psn_kind='masked'`` (parallel form only).
    ``polarity='on_off'``: S = Θ(h − θ) − Θ(−h − θ) (ours)."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.masked = cfg.psn_kind == "masked"
        self.on_off = cfg.polarity == "on_off"
        if self.masked:
            self.psn = MaskedPSN(cfg.psn_order, cfg.seq_len, surrogate=surrogate)
        else:
            self.psn = SlidingPSN(cfg.psn_order, channels=cfg.d_model,
                                  theta_init=cfg.theta_init, surrogate=surrogate)

    def forward(self, y):
        if self.masked:
            return self.psn(y)
        return _fire(self.psn.membrane(y), self.psn.theta, self.psn.surrogate, self.on_off)

    def step(self, y_t, state=None):
        if self.masked:
            raise NotImplementedError("the masked PSN has a parallel form only (weights tied "
                                      "to the position t); use psn_kind='sliding' to stream")
        h_t, state = self.psn.membrane_step(y_t, state)
        return _fire(h_t, self.psn.theta, self.psn.surrogate, self.on_off), state

    def compare(self, y):
        return None if self.masked else (self.psn.membrane(y), self.psn.theta)


class LIFSpike(_Spike):
    """LIF with hard reset on y (SpikingJelly decay_input form); serial BPTT only."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.lif = LIFNeuron(tau=cfg.lif_tau, theta=cfg.theta_init, reset="hard",
                             surrogate=surrogate)

    def forward(self, y):
        return self.lif(y)

    def step(self, y_t, state=None):
        return self.lif.step(y_t, state)


class DDSNSpike(_Spike):
    """Dynamic-decay neuron on y: h_t = α_t h_{t−1} + (1 − α_t) y_t, s = Θ(h − θ) or the
    integer spike clip(round(h), 0, N)."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.neuron = DynamicDecayNeuron(cfg.d_model, gate_kernel=cfg.gate_kernel,
                                         gate_tau=cfg.gate_tau, spike=cfg.ddsn_spike,
                                         spike_levels=cfg.spike_levels, theta=cfg.theta_init,
                                         surrogate=surrogate)
        self.integer = cfg.ddsn_spike == "integer"

    def forward(self, y):
        return self.neuron(y)

    def step(self, y_t, state=None):
        return self.neuron.step(y_t, state)

    def compare(self, y):
        return None if self.integer else (self.neuron.membrane(y), self.neuron.theta)

    def distance(self, y):
        if self.integer:                                   # round(h): distance to a half-integer
            h = self.neuron.membrane(y)
            return ((h - 0.5) - torch.round(h - 0.5)).abs()
        return super().distance(y)


class SoftIFSpike(_Spike):
    """Soft-reset IF, exact in parallel (Proposition A, ours):
    n_t = ⌊max(0, cummax_t S)/θ⌋, s = diff(n), integer spikes clipped to ``spike_levels``."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.neuron = SoftResetIF(channels=cfg.d_model, theta_init=cfg.theta_init,
                                  spike_levels=cfg.spike_levels)

    def forward(self, y):
        return self.neuron(y)

    def step(self, y_t, state=None):
        return self.neuron.step(y_t, state)

    def distance(self, y):
        theta = self.neuron.theta
        m = torch.cumsum(y, dim=1) / theta                 # decisions happen where S_t meets θZ
        return (m - torch.round(m)).abs() * theta           # distance of S_t to the lattice θZ


_SPIKES = {"s4d": lambda cfg, s: GELUAct(), "frssm": FixedRefractorySpike, "pssm": PSNSpike,
           "lif": LIFSpike, "ddsn": DDSNSpike, "sif": SoftIFSpike}
# neuron-internal arithmetic per channel and step (MACs, for the energy report; ours)
_NEURON_MACS = {"s4d": lambda c: 0, "frssm": lambda c: 0, "pssm": lambda c: c.psn_order,
                "lif": lambda c: 2, "ddsn": lambda c: c.gate_kernel + 2, "sif": lambda c: 1}


class Block(nn.Module):
    """z = LayerNorm(x); y = S4D(z); s = Spike(y); x + Dropout(GLU(Linear(H → 2H)(s)))."""
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        H = cfg.d_model
        surrogate = sg.get(cfg.surrogate, cfg.surrogate_alpha)
        self.norm = nn.LayerNorm(H)
        self.ssm = S4D(H, d_state=cfg.d_state, dt_min=cfg.dt_min, dt_max=cfg.dt_max,
                       lr=cfg.ssm_lr)
        self.spike = _SPIKES[cfg.name](cfg, surrogate)
        self.mix = nn.Linear(H, 2 * H)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.theta_lr is not None:                           # θ's own lr (no weight decay)
            for m in self.spike.modules():
                if isinstance(m, PositiveTheta) and isinstance(m.log_theta, nn.Parameter):
                    m.log_theta._optim = {"lr": float(cfg.theta_lr), "weight_decay": 0.0}

    def residual(self, x, s):                                  # x (..., H), spikes s (..., H)
        return x + self.drop(F.glu(self.mix(s.to(x.dtype)), dim=-1))

    def forward(self, x):                                      # (B, L, H)
        y = self.ssm(self.norm(x))                             # (B, L, H)
        s = self.spike(y)                                      # (B, L, H) spikes
        return self.residual(x, s), s

    def step(self, x_t, state=None):                           # (B, H)
        ssm_state, spike_state = (None, None) if state is None else state
        y_t, ssm_state = self.ssm.step(self.norm(x_t), ssm_state)
        s_t, spike_state = self.spike.step(y_t, spike_state)
        return self.residual(x_t, s_t), s_t, (ssm_state, spike_state)


class SequenceClassifier(nn.Module):
    """Encoder, ``n_layers`` blocks, final norm, readout, decoder. Input (B, L, d_input)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        H = cfg.d_model
        self.encoder = nn.Linear(cfg.d_input, H)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(H)
        self.decoder = nn.Linear(H, cfg.n_classes)

    @property
    def spiking(self) -> bool:
        return self.cfg.name != "s4d"

    def _check(self, x):
        check_tensor(x, "x", 3, channels=self.cfg.d_input)
        if not x.is_floating_point() or x.shape[1] < 1:
            raise ValueError(f"x: expected a floating tensor (batch, time>=1, channels), "
                             f"got {x.dtype} {tuple(x.shape)}")

    def forward(self, x, return_spikes: bool = False):
        """x (B, L, d_input) -> logits (B, n_classes) [, spikes: one (B, L, H) per layer]."""
        self._check(x)
        h = self.encoder(x)                                    # (B, L, H)
        spikes = []
        for layer in self.layers:
            h, s = layer(h)                                    # (B, L, H), (B, L, H)
            spikes.append(s)
        logits = self.head(h)                                  # (B, K)
        return (logits, spikes) if return_spikes else logits

    def head(self, h):
        """Final norm, readout (mean over time or last step), decoder: (B, L, H) -> (B, K)."""
        h = self.norm(h)                                       # (B, L, H)
        h = h.mean(dim=1) if self.cfg.readout == "mean" else h[:, -1]   # (B, H)
        return self.decoder(h)                                 # (B, K)

    def step(self, u_t, state=None):
        """One time step: u_t (B, d_input) -> (features (B, H) after the final norm, spikes per
        layer (B, H), new state). State: one (S4D, spike) state per layer."""
        states = state if state is not None else [None] * len(self.layers)
        h = self.encoder(u_t)                                  # (B, H)
        spikes, new = [], []
        for layer, st in zip(self.layers, states):
            h, s, st = layer.step(h, st)
            spikes.append(s)
            new.append(st)
        return self.norm(h), spikes, new

    def forward_serial(self, x, return_spikes: bool = False):
        """Same as :meth:`forward`, one step at a time: O(1) state per layer (the mean readout
        is a running sum). Returned spikes are stacked only when asked for."""
        self._check(x)
        B, L, _ = x.shape
        state, total, z, trace = None, 0.0, None, []
        for t in range(L):
            z, s, state = self.step(x[:, t], state)            # (B, H)
            total = total + z
            if return_spikes:
                trace.append(s)
        h = total / L if self.cfg.readout == "mean" else z
        logits = self.decoder(h)
        if not return_spikes:
            return logits
        return logits, [torch.stack([s[i] for s in trace], dim=1) for i in range(len(self.layers))]

    @torch.no_grad()
    def distances(self, x) -> list[torch.Tensor]:
        """|membrane − threshold| (B, L, H) per layer in the parallel pass: where it exceeds the
        round-off of the two forms, serial and parallel spikes must agree."""
        h, out = self.encoder(x), []
        for layer in self.layers:
            y = layer.ssm(layer.norm(h))
            out.append(layer.spike.distance(y))
            h, _ = layer(h)
        return out

    def _thresholds(self, layer):
        """The learnable-threshold module of ``layer``'s spike and what it thresholds, or None."""
        owner = {"frssm": lambda sp: sp.threshold, "pssm": lambda sp: sp.psn}.get(self.cfg.name)
        if owner is None or not isinstance(owner(layer.spike), PositiveTheta):
            return None
        return owner(layer.spike)

    @torch.no_grad()
    def calibrate(self, x) -> None:
        """Data-dependent start (``theta_init_mode='rms'``, frssm and pssm): layer by layer, in
        eval mode, θ_c = theta_init × RMS over (batch, time) of channel c's threshold input v on
        the batch x (B, L, d_input) — so θ starts on the scale of the signal it thresholds
        (ours). A no-op for ``theta_init_mode='value'``. Uses no random numbers."""
        if self.cfg.theta_init_mode != "rms":
            return
        was = self.training
        self.eval()
        h = self.encoder(x)
        for layer in self.layers:
            y = layer.ssm(layer.norm(h))                       # (B, L, H)
            owner, view = self._thresholds(layer), layer.spike.compare(y)
            if owner is not None and view is not None:
                rms = view[0].float().square().mean(dim=(0, 1)).sqrt()          # (H)
                owner.set_theta((self.cfg.theta_init * rms).clamp_min(1e-3))
            h = layer.residual(h, layer.spike(y))
        self.train(was)

    def probe(self, x, target, task: str = "classification") -> list[dict]:
        """Per-layer diagnostics on one batch, in eval mode, using no random numbers (ours):
        the memory output y (std; RMS of the loss gradient ∂L/∂y that reaches it), the
        threshold input v against θ (fractions above θ and below −θ; the share of E[v²] held by
        the steps with v > θ — all a positive-only threshold can pass — and with |v| > θ), θ
        (mean, min, max) and the firing rate (mean |s|). x (B, L, d_input), target (B,)."""
        was = self.training
        self.eval()
        with torch.enable_grad():
            h, ys, rows = self.encoder(x), [], []
            for layer in self.layers:
                y = layer.ssm(layer.norm(h))
                ys.append(y)
                s = layer.spike(y)
                row = {"y_std": y.detach().std().item(),
                       "firing_rate": s.detach().abs().mean().item() if self.spiking else None}
                view = layer.spike.compare(y) if self.spiking else None
                if view is not None:
                    v = view[0].detach().float()                           # (B, L, H)
                    th = torch.as_tensor(view[1], dtype=v.dtype, device=v.device).detach()
                    theta, e = th.expand(v.shape[-1:]), v.square()         # (H), (B, L, H)
                    row.update(theta_mean=theta.mean().item(), theta_min=theta.min().item(),
                               theta_max=theta.max().item(),
                               frac_above=(v > theta).float().mean().item(),
                               frac_below=(v < -theta).float().mean().item(),
                               energy_above=(e * (v > theta)).sum().item() / e.sum().item(),
                               energy_outside=(e * (v.abs() > theta)).sum().item()
                               / e.sum().item())
                rows.append(row)
                h = layer.residual(h, s)
            out = self.head(h)
            loss = (F.cross_entropy(out.float(), target) if task == "classification"
                    else F.mse_loss(out.float().squeeze(-1), target.float()))
            grads = torch.autograd.grad(loss, ys)
        for row, g in zip(rows, grads):
            row["grad_rms"] = g.float().square().mean().sqrt().item()
        self.train(was)
        return rows

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedule: the masked PSN's λ = min(1, 8·epoch/(epochs − 1))
        (Fang et al. 2023; ``spikelib.psn.masked_lambda``)."""
        for layer in self.layers:
            if isinstance(layer.spike, PSNSpike) and layer.spike.masked:
                layer.spike.psn.set_lambda(masked_lambda(epoch, epochs))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on weight matrices only — none on θ, norms, biases, SSM
        parameters or PSN kernels; parameters tagged ``_optim`` (S4D) keep their own lr."""
        decay, plain, tagged = [], [], {}
        for mod in self.modules():
            for pname, p in mod.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                tag = getattr(p, "_optim", None)
                if tag:
                    tagged.setdefault(tuple(sorted(tag.items())), []).append(p)
                elif (isinstance(mod, (nn.LayerNorm, S4D, SlidingPSN, PSN)) or p.dim() < 2
                      or pname in ("log_theta", "bias")):
                    plain.append(p)
                else:
                    decay.append(p)
        groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
                  {"params": plain, "lr": lr, "weight_decay": 0.0, "name": "no_decay"}]
        for i, (tag, ps) in enumerate(tagged.items()):
            groups.append({"params": ps, "lr": lr, "weight_decay": 0.0, **dict(tag),
                           "name": f"tagged{i}"})
        return [g for g in groups if g["params"]]

    def op_counts(self, length: int) -> dict:
        """Operation counts per sequence of length L (for :func:`spikelib.metrics.energy`)."""
        c, L, H = self.cfg, length, self.cfg.d_model
        ssm = self.layers[0].ssm
        per_step = ssm.state_cost() if hasattr(ssm, "state_cost") else H * (4 * c.d_state + 1)
        return {
            "spiking": self.spiking, "length": L, "mix_fan_out": 2 * H,
            "encoder_macs": L * c.d_input * H,
            "mix_macs": [L * H * 2 * H] * c.n_layers,
            "glu_macs": [L * H] * c.n_layers,
            "readout_macs": H * c.n_classes,
            "readout_adds": L * H if c.readout == "mean" else 0,
            "state_macs": [L * int(per_step)] * c.n_layers,
            "neuron_macs": [L * H * _NEURON_MACS[c.name](c)] * c.n_layers,
        }


def build(name: str | None = None, **config) -> SequenceClassifier:
    """``build('frssm', d_input=3, n_classes=10, d_model=64)``: a :class:`SequenceClassifier`
    from a model name and :class:`ModelConfig` fields (unknown fields are a ValueError)."""
    if name is not None:
        config["name"] = name
    return SequenceClassifier(ModelConfig.from_dict(config))


@torch.no_grad()
def serial_agreement(model: SequenceClassifier, x: torch.Tensor) -> dict:
    """Compare ``forward`` and ``forward_serial`` on x (eval mode): the largest logit difference
    and, per layer, the fraction of spikes that differ (for float32 reports)."""
    was = model.training
    model.eval()
    a, sa = model(x, return_spikes=True)
    b, sb = model.forward_serial(x, return_spikes=True)
    model.train(was)
    return {"max_logit_diff": (a - b).abs().max().item(),
            "flip_fraction": [(p != q).float().mean().item() for p, q in zip(sa, sb)]}
