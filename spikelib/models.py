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
from spikelib.neurons import LIFNeuron, SoftResetIF, ThresholdSpike
from spikelib.psn import PSN, MaskedPSN, SlidingPSN, masked_lambda
from spikelib.refractory import Refractory

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
    refractory: int = 2          # R of frssm
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
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)

    def validate(self) -> "ModelConfig":
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
                           ("surrogate", ("atan", "sigmoid", "rect"))):
            if getattr(self, k) not in options:
                raise ValueError(f"{k}: expected one of {options}, got {getattr(self, k)!r}")
        for k in ("surrogate_alpha", "gate_tau", "lif_tau", "dt_min", "dt_max", "theta_init"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{k}: expected a positive number, got {v!r}")
        if self.name == "pssm" and self.psn_kind == "masked" and self.seq_len < 1:
            raise ValueError("seq_len: the masked PSN needs the sequence length (seq_len >= 1)")
        return self


# ---------------------------------------------------------------------------------------------
# spiking modules with one interface: forward (B,L,H) -> (B,L,H); step(y_t, state) -> (s_t, state);
# distance(y) = |membrane − threshold| (how close each decision was; for the serial-parallel test)

class GELUAct(nn.Module):
    """The non-spiking baseline: s = GELU(y)."""
    def forward(self, y):
        return F.gelu(y)

    def step(self, y_t, state=None):
        return F.gelu(y_t), None

    def distance(self, y):
        return torch.full_like(y, math.inf)


class FixedRefractorySpike(nn.Module):
    """spikingFRssm's spike: c = Θ(y − θ) (per-channel θ, surrogate gradient), then the fixed
    refractory period s_t = c_t ∏_{k=1..R} (1 − s_{t−k}) with a gradient-free mask (ours)."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.threshold = ThresholdSpike(cfg.d_model, theta_init=cfg.theta_init,
                                        surrogate=surrogate)
        self.refractory = Refractory(cfg.refractory)

    def forward(self, y):                                      # (B, L, H)
        return self.refractory(self.threshold(y))

    def step(self, y_t, state=None):                           # (B, H)
        c_t, _ = self.threshold.step(y_t, None)
        return self.refractory.step(c_t, state)

    def distance(self, y):
        return (y - self.threshold.theta).abs()


class PSNSpike(nn.Module):
    """SpikingPssm's spike: S = Θ(h − θ), h_t = Σ_{i<P} w_i y_{t−P+1+i} (sliding PSN), or the
    masked PSN (Fang et al. 2023) when ``psn_kind='masked'`` (parallel form only)."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.masked = cfg.psn_kind == "masked"
        if self.masked:
            self.psn = MaskedPSN(cfg.psn_order, cfg.seq_len, surrogate=surrogate)
        else:
            self.psn = SlidingPSN(cfg.psn_order, channels=cfg.d_model,
                                  theta_init=cfg.theta_init, surrogate=surrogate)

    def forward(self, y):
        return self.psn(y)

    def step(self, y_t, state=None):
        if self.masked:
            raise NotImplementedError("the masked PSN has a parallel form only (weights tied "
                                      "to the position t); use psn_kind='sliding' to stream")
        return self.psn.step(y_t, state)

    def distance(self, y):
        if self.masked:
            return torch.full_like(y, math.inf)
        return (self.psn.membrane(y) - self.psn.theta).abs()


class LIFSpike(nn.Module):
    """LIF with hard reset on y (SpikingJelly decay_input form); serial BPTT only."""
    def __init__(self, cfg: ModelConfig, surrogate):
        super().__init__()
        self.lif = LIFNeuron(tau=cfg.lif_tau, theta=cfg.theta_init, reset="hard",
                             surrogate=surrogate)

    def forward(self, y):
        return self.lif(y)

    def step(self, y_t, state=None):
        return self.lif.step(y_t, state)

    def distance(self, y):
        return torch.full_like(y, math.inf)


class DDSNSpike(nn.Module):
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

    def distance(self, y):
        h = self.neuron.membrane(y)
        if self.integer:                                   # round(h): distance to a half-integer
            return ((h - 0.5) - torch.round(h - 0.5)).abs()
        return (h - self.neuron.theta).abs()


class SoftIFSpike(nn.Module):
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

    def forward(self, x):                                      # (B, L, H)
        y = self.ssm(self.norm(x))                             # (B, L, H)
        s = self.spike(y)                                      # (B, L, H) spikes
        return x + self.drop(F.glu(self.mix(s.to(x.dtype)), dim=-1)), s

    def step(self, x_t, state=None):                           # (B, H)
        ssm_state, spike_state = (None, None) if state is None else state
        y_t, ssm_state = self.ssm.step(self.norm(x_t), ssm_state)
        s_t, spike_state = self.spike.step(y_t, spike_state)
        out = x_t + self.drop(F.glu(self.mix(s_t.to(x_t.dtype)), dim=-1))
        return out, s_t, (ssm_state, spike_state)


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
        h = self.norm(h)                                       # (B, L, H)
        h = h.mean(dim=1) if self.cfg.readout == "mean" else h[:, -1]   # (B, H)
        logits = self.decoder(h)                               # (B, K)
        return (logits, spikes) if return_spikes else logits

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
                      or pname in ("theta", "bias")):
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
