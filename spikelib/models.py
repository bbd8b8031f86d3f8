"""The backbone and its six spiking choices (ours unless cited).

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
``ddsn``   dynamic-decay neuron on y (Huang et al. 2026; its equations known second-hand)
``sif``    soft-reset IF computed exactly in parallel (Proposition A, ours), integer spikes
=========  ===========================================================================

``forward`` trains in parallel over time (``lif``: its serial loop); ``step`` and
``forward_serial`` run step by step with O(1) state per layer — S4D state, spiking state, and a
running sum for the mean readout — and give the same logits. The residual stream x stays in the
parameters' dtype (fp32) under autocast, as nanoGPT's does: every term added to it is cast.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikelib import surrogate as sg
from spikelib._checks import check_int, check_positive, check_tensor
from spikelib.ddsn import DynamicDecayNeuron
from spikelib.memory import S4D
from spikelib.neurons import LIFNeuron, SoftResetIF
from spikelib.psn import PSN, MaskedPSN, SlidingPSN, masked_lambda
from spikelib.refractory import Refractory
from spikelib.temporal import PositiveTheta, Temporal

__all__ = ["MODELS", "ModelConfig", "SequenceClassifier", "Block", "GELUAct",
           "FixedRefractorySpike", "build"]

MODELS = ("s4d", "frssm", "pssm", "lif", "ddsn", "sif")
_CHOICES = {"readout": ("mean", "last"), "surrogate": ("atan", "sigmoid", "rect"),
            "theta_init_mode": ("value", "rms"), "polarity": ("on", "on_off"),
            "refractory_grad": ("mask", "fired", "straight_through"), "psn_kind": ("sliding", "masked"),
            "ddsn_spike": ("binary", "integer")}


ALL, SPIKING = MODELS, MODELS[1:]
_THRESHOLD = ("frssm", "pssm")                 # a learnable per-channel θ compared with y


def _f(default, help: str, models: tuple[str, ...] = ALL):
    """A ModelConfig field: its default, what it means and the models that read it (the one
    declaration read by ``--help``, ``--set``'s check, the book's table of models and the API page)."""
    return dataclasses.field(default=default, metadata={"help": help, "models": models})


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`SequenceClassifier` (our defaults; the S4 example's shape).
    Each field's metadata holds its meaning (``help``) and the models that read it
    (``models``; :meth:`reads`)."""
    name: str = _f("frssm", "the model: " + ", ".join(MODELS))
    d_input: int = _f(1, "input channels per step (set by the dataset)")
    n_classes: int = _f(10, "outputs: classes, or 1 for a regression (set by the dataset)")
    d_model: int = _f(128, "H, channels of the residual stream")
    n_layers: int = _f(4, "number of blocks")
    d_state: int = _f(64, "N, S4D state size (even: N/2 conjugate pairs)")
    dropout: float = _f(0.1, "dropout after each block's GLU, in [0, 1)")
    readout: str = _f("mean", "'mean' over time or the 'last' step")
    surrogate: str = _f("atan", "surrogate gradient: 'atan' | 'sigmoid' | 'rect'",
                        ("frssm", "pssm", "lif", "ddsn"))
    surrogate_alpha: float = _f(2.0, "sharpness α of the surrogate gradient",
                                ("frssm", "pssm", "lif", "ddsn"))
    theta_init: float = _f(1.0, "initial threshold θ (sliding PSN for pssm)", SPIKING)
    theta_init_mode: str = _f("value", "'value': θ = theta_init; 'rms': θ = theta_init × RMS "
                                       "of the threshold input per channel on the first batch",
                              _THRESHOLD)
    theta_lr: float | None = _f(None, "own learning rate of a learnable θ (None: the run's lr)",
                                ("frssm", "pssm", "sif"))
    polarity: str = _f("on", "'on': Θ(v − θ); 'on_off': also −Θ(−v − θ) (sliding PSN for pssm)",
                       _THRESHOLD)
    refractory: int = _f(2, "R, the fixed refractory period in steps", ("frssm",))
    refractory_grad: str = _f("mask", "'mask': the crossing's gradient where the neuron is free "
                                      "to fire, none while refractory; 'fired': only where it "
                                      "fired; 'straight_through': everywhere", ("frssm",))
    rate_penalty: float = _f(0.0, "λ: training adds λ × mean over layers of mean |s| to the "
                                  "loss", SPIKING)
    psn_order: int = _f(32, "P of the sliding PSN (k of the masked PSN)", ("pssm",))
    psn_kind: str = _f("sliding", "'sliding' | 'masked' PSN", ("pssm",))
    seq_len: int = _f(0, "T of the masked PSN (weights T×T; set from the dataset)", ("pssm",))
    gate_kernel: int = _f(4, "k, kernel of the dynamic-decay gate", ("ddsn",))
    gate_tau: float = _f(0.25, "τ of the dynamic-decay gate", ("ddsn",))
    ddsn_spike: str = _f("binary", "'binary' | 'integer' spikes of ddsn", ("ddsn",))
    spike_levels: int = _f(4, "N, the clip of integer spikes", ("ddsn", "sif"))
    lif_tau: float = _f(2.0, "τ ≥ 1 of the LIF membrane", ("lif",))
    ssm_lr: float = _f(1e-3, "learning rate of the S4D parameters")
    dt_min: float = _f(1e-3, "smallest initial S4D step Δ")
    dt_max: float = _f(1e-1, "largest initial S4D step Δ")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def reads(cls, model: str) -> list[str]:
        """The fields ``model`` reads (from each field's ``models`` metadata)."""
        return [f.name for f in dataclasses.fields(cls) if model in f.metadata["models"]]

    def validate(self) -> ModelConfig:
        """Every field checked; a ValueError names the field and what it expects."""
        if self.name not in MODELS:
            raise ValueError(f"name: expected one of {', '.join(MODELS)}, got {self.name!r}")
        for k in ("d_input", "n_classes", "d_model", "n_layers", "d_state", "psn_order",
                  "gate_kernel", "spike_levels"):
            check_int(getattr(self, k), k, 1)
        check_int(self.refractory, "refractory", 0)
        check_int(self.seq_len, "seq_len", 0)
        for k in ("surrogate_alpha", "gate_tau", "lif_tau", "dt_min", "dt_max", "theta_init"):
            if isinstance(getattr(self, k), bool):
                raise ValueError(f"{k}: expected a positive number, got {getattr(self, k)!r}")
            check_positive(getattr(self, k), k)
        if self.lif_tau < 1:
            raise ValueError(f"lif_tau: expected lif_tau >= 1 (β = 1 − 1/τ in [0, 1)), "
                             f"got {self.lif_tau!r}")
        for k, options in _CHOICES.items():
            if getattr(self, k) not in options:
                raise ValueError(f"{k}: expected one of {options}, got {getattr(self, k)!r}")
        if self.d_state % 2:
            raise ValueError(f"d_state: expected an even number (conjugate pairs), "
                             f"got {self.d_state}")
        for k in ("rate_penalty", "dropout", "theta_lr"):
            v = getattr(self, k)
            if not (v is None and k == "theta_lr") and (
                    isinstance(v, bool) or not isinstance(v, (int, float))
                    or not 0 <= v < (1.0 if k == "dropout" else math.inf)):
                raise ValueError(f"{k}: expected {'None or ' if k == 'theta_lr' else ''}a number "
                                 f"{'in [0, 1)' if k == 'dropout' else '>= 0'}, got {v!r}")
        if self.name == "pssm" and self.psn_kind == "masked" and self.seq_len < 1:
            raise ValueError("seq_len: the masked PSN needs the sequence length (seq_len >= 1)")
        if self.polarity == "on_off" and (self.name not in ("frssm", "pssm")
                                          or self.psn_kind == "masked"):
            raise ValueError("polarity: 'on_off' exists for frssm and the sliding-PSN pssm only")
        return self


def _fields_doc() -> str:
    """The fields' table for ``help(ModelConfig)`` and the API page, from their metadata."""
    rows = [f"    - ``{f.name}`` = ``{f.default!r}``: {f.metadata['help']} (read by "
            f"{'every model' if f.metadata['models'] == ALL else ', '.join(f.metadata['models'])})"
            for f in dataclasses.fields(ModelConfig)]
    return "\n\n    Fields:\n\n" + "\n".join(rows) + "\n"


ModelConfig.__doc__ += _fields_doc()


# ---------------------------------------------------------------------------------------------
# the spiking module of each model: a Temporal module (y (B, L, H) -> s (B, L, H))

class GELUAct(Temporal):
    """The non-spiking baseline: GELU(y), (B, L, H) -> (B, L, H); step (B, H). Not spikes:
    the model returns no spikes for it (``return_spikes=True`` gives an empty list)."""
    def forward(self, y):
        check_tensor(y, "y", 3, floating=True, nonempty=True)
        return F.gelu(y)

    def step(self, y_t, state=None):
        check_tensor(y_t, "y_t", 2, floating=True, nonempty=True)
        return F.gelu(y_t), {}


class FixedRefractorySpike(PositiveTheta):
    """spikingFRssm's spike (equations ours): the crossing c = Θ(y − θ) (per-channel θ > 0,
    surrogate gradient), thinned by the fixed refractory period s_t = c_t ∏_{k=1..R} (1 − s_{t−k}).

    ``polarity='on_off'``: also c⁻ = Θ(−y − θ) with its own countdown, s = s⁺ − s⁻ ∈ {−1, 0, 1}.
    ``refractory_grad='mask'``: c's gradient where the neuron is free to fire ([r_{t−1} = 0],
    the derivative with the countdown held fixed), none while it is refractory; ``'fired'``:
    only where it fired; ``'straight_through'``: the thinned train's value, c's gradient.
    State: {"on": countdown, "off": countdown or None} (:class:`~spikelib.refractory.Refractory`).
    """
    state_keys = ("on", "off")

    def __init__(self, channels: int, theta_init: float = 1.0, refractory: int = 2,
                 polarity: str = "on", refractory_grad: str = "mask", surrogate=None):
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self._init_theta((channels,), theta_init, True)
        self.surrogate = sg.or_default(surrogate)
        self.refractory = Refractory(refractory)
        self.on_off = polarity == "on_off"
        self.grad = refractory_grad

    def membrane(self, y):
        """What the threshold sees: y itself."""
        return y

    def _crossings(self, y):                                   # (..., H) -> (c⁺, c⁻ or None)
        theta = self.theta.to(y.dtype)
        return self.surrogate(y - theta), (self.surrogate(-y - theta) if self.on_off else None)

    def _thinned(self, s, c):
        if self.grad == "straight_through":
            return sg.straight_through(s, c)
        return s * (s.detach() != 0) if self.grad == "fired" else s   # 'fired': [s ≠ 0] · ∂c

    def forward(self, y):                                      # (B, L, H)
        check_tensor(y, "y", 3, channels=self.channels, floating=True, nonempty=True)
        c_on, c_off = self._crossings(y)
        s = self._thinned(self.refractory(c_on), c_on)
        return s - self._thinned(self.refractory(c_off), c_off) if self.on_off else s

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"on": the ON countdown, "off": the OFF one, or None without OFF spikes}."""
        r = self.refractory.initial_state(batch, self.channels, device=device)
        return {"on": r, "off": {"r": r["r"].clone()} if self.on_off else None}

    def step(self, y_t, state=None):                           # (B, H)
        check_tensor(y_t, "y_t", 2, channels=self.channels, floating=True, nonempty=True)
        state = self.start(y_t, state)
        c_on, c_off = self._crossings(y_t)
        s_on, r_on = self.refractory.step(c_on, state["on"])
        s, r_off = self._thinned(s_on, c_on), None
        if self.on_off:
            s_off, r_off = self.refractory.step(c_off, state["off"])
            s = s - self._thinned(s_off, c_off)
        return s, {"on": r_on, "off": r_off}


def _spike(cfg: ModelConfig) -> nn.Module:
    """The spiking module named by ``cfg.name``, built from the config."""
    surrogate = sg.get(cfg.surrogate, cfg.surrogate_alpha)
    H = cfg.d_model
    if cfg.name == "s4d":
        return GELUAct()
    if cfg.name == "frssm":
        return FixedRefractorySpike(H, cfg.theta_init, cfg.refractory, cfg.polarity,
                                    cfg.refractory_grad, surrogate)
    if cfg.name == "pssm" and cfg.psn_kind == "masked":
        return MaskedPSN(cfg.psn_order, cfg.seq_len, surrogate=surrogate)
    if cfg.name == "pssm":
        return SlidingPSN(cfg.psn_order, channels=H, theta_init=cfg.theta_init,
                          surrogate=surrogate, polarity=cfg.polarity)
    if cfg.name == "lif":
        return LIFNeuron(tau=cfg.lif_tau, theta=cfg.theta_init, reset="hard", surrogate=surrogate)
    if cfg.name == "ddsn":
        return DynamicDecayNeuron(H, gate_kernel=cfg.gate_kernel, gate_tau=cfg.gate_tau,
                                  spike=cfg.ddsn_spike, spike_levels=cfg.spike_levels,
                                  theta=cfg.theta_init, surrogate=surrogate)
    return SoftResetIF(channels=H, theta_init=cfg.theta_init, spike_levels=cfg.spike_levels)


class Block(Temporal):
    """z = LayerNorm(x); y = S4D(z); s = Spike(y); x + Dropout(GLU(Linear(H → 2H)(s))).

    ``forward(x)`` and ``step(x_t, state)`` return (x_out, spikes); state {"ssm", "spike"}.
    The added term is cast to x's dtype, so the residual stream keeps it under autocast."""
    state_keys = ("ssm", "spike")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        H = cfg.d_model
        self.norm = nn.LayerNorm(H)
        self.ssm = S4D(H, d_state=cfg.d_state, dt_min=cfg.dt_min, dt_max=cfg.dt_max,
                       lr=cfg.ssm_lr)
        self.spike = _spike(cfg)
        self.mix = nn.Linear(H, 2 * H)
        self.drop = nn.Dropout(cfg.dropout)

    def residual(self, x, s):                                  # x (..., H), spikes s (..., H)
        return x + self.drop(F.glu(self.mix(s.to(x.dtype)), dim=-1)).to(x.dtype)

    def forward(self, x):                                      # (B, L, H)
        check_tensor(x, "x", 3, channels=self.norm.normalized_shape[0], floating=True,
                     nonempty=True)
        y = self.ssm(self.norm(x))                             # (B, L, H)
        s = self.spike(y)                                      # (B, L, H) spikes
        return self.residual(x, s), s

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """{"ssm": None, "spike": None}: each part starts from its own initial state."""
        return {"ssm": None, "spike": None}

    def step(self, x_t, state=None):                           # (B, H)
        check_tensor(x_t, "x_t", 2, channels=self.norm.normalized_shape[0], floating=True,
                     nonempty=True)
        state = self.start(x_t, state)
        y_t, ssm_state = self.ssm.step(self.norm(x_t), state["ssm"])
        s_t, spike_state = self.spike.step(y_t, state["spike"])
        return (self.residual(x_t, s_t), s_t), {"ssm": ssm_state, "spike": spike_state}


class SequenceClassifier(Temporal):
    """Encoder, ``n_layers`` blocks, final norm, readout, decoder. Input (B, L, d_input).

    ``forward(x)`` -> logits (B, K) [, spikes: one (B, L, H) per layer; none for s4d, which
    does not spike]; ``step(u_t, state)`` -> the logits of the prefix so far (the running mean
    of the normalised features, or the last step's) [, spikes (B, H) per layer];
    ``forward_serial`` = the last ``step``'s output. The residual stream is kept in the
    parameters' dtype (:meth:`embed`, :meth:`Block.residual`), also under autocast."""

    state_keys = ("layers", "sum", "steps")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        H = cfg.d_model
        self.encoder = nn.Linear(cfg.d_input, H)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(H)
        self.decoder = nn.Linear(H, cfg.n_classes)
        self._tag_optimiser_settings()

    @property
    def spiking(self) -> bool:
        """Whether the blocks emit spikes (every model but s4d)."""
        return self.cfg.name != "s4d"

    @property
    def penalises_rate(self) -> bool:
        """Whether training adds :meth:`rate_penalty` to its objective (a spiking model with
        ``cfg.rate_penalty`` > 0); training asks for the spikes only then."""
        return self.spiking and self.cfg.rate_penalty > 0

    def _check(self, x, ndim):
        check_tensor(x, "x" if ndim == 3 else "u_t", ndim, channels=self.cfg.d_input,
                     floating=True, nonempty=True)
        dtype = self.encoder.weight.dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"x: dtype {x.dtype} differs from the model's {dtype}; convert the "
                             f"input (x.to({dtype})) or the model (model.to({x.dtype}))")

    def embed(self, x):
        """The residual stream's start: encoder(x) in the parameters' dtype (fp32 also under
        autocast, where the Linear returns bf16). (..., d_input) -> (..., H)."""
        return self.encoder(x).to(self.encoder.weight.dtype)

    def forward(self, x, *, return_spikes: bool = False):
        """x (B, L, d_input) -> logits (B, n_classes) [, spikes: one (B, L, H) per layer,
        an empty list for s4d]."""
        self._check(x, 3)
        h = self.embed(x)                                      # (B, L, H)
        spikes = []
        for layer in self.layers:
            h, s = layer(h)                                    # (B, L, H), (B, L, H)
            spikes.append(s)
        logits = self.head(self.norm(h))                       # (B, K)
        return (logits, spikes if self.spiking else []) if return_spikes else logits

    def rate_penalty(self, spikes) -> torch.Tensor:
        """λ · (1/n_layers) Σ_layers mean |s|: a firing-rate cost added to the training loss
        (``cfg.rate_penalty`` = λ; ours, the usual L1 activity penalty of SNN training), so
        that the firing rate can be traded against accuracy; 0 unless :attr:`penalises_rate`."""
        if not self.penalises_rate or not spikes:
            return torch.zeros(())
        return self.cfg.rate_penalty * torch.stack([s.abs().float().mean() for s in spikes]).mean()

    def head(self, z):
        """Readout (mean over time or last step) and decoder: normalised (B, L, H) -> (B, K)."""
        return self.decoder(z.mean(dim=1) if self.cfg.readout == "mean" else z[:, -1])

    def initial_state(self, batch: int, channels: int | None = None, *, device=None,
                      dtype=None) -> dict:
        """Each layer's state starts as None (its modules' initial state); the readout's running
        sum of normalised features starts at 0 with no step seen."""
        return {"layers": [None] * len(self.layers), "sum": 0.0, "steps": 0}

    def step(self, u_t, state=None, *, return_spikes: bool = False):
        """One time step: u_t (B, d_input) -> (logits of the prefix (B, K) [, spikes per layer
        (B, H); none for s4d], state). State: {"layers": one Block state each, "sum", "steps"}:
        O(1) in L."""
        self._check(u_t, 2)
        state = self.start(u_t, state)
        if len(state["layers"]) != len(self.layers):
            raise ValueError(f"state: 'layers' holds {len(state['layers'])} layer states, "
                             f"expected {len(self.layers)}; pass None or a state from "
                             f"SequenceClassifier.initial_state(batch) or step")
        h = self.embed(u_t)                                    # (B, H)
        spikes, layer_states = [], []
        for layer, st in zip(self.layers, state["layers"]):
            (h, s), st = layer.step(h, st)
            spikes.append(s)
            layer_states.append(st)
        z = self.norm(h)                                       # (B, H)
        total, steps = state["sum"] + z, state["steps"] + 1
        logits = self.decoder(total / steps if self.cfg.readout == "mean" else z)
        new = {"layers": layer_states, "sum": total, "steps": steps}
        return ((logits, spikes if self.spiking else []) if return_spikes else logits), new

    def forward_serial(self, x, state: dict | None = None, *, return_state: bool = False,
                       return_spikes: bool = False):
        """Same as :meth:`forward`, one :meth:`step` at a time (O(1) state per layer), from
        ``state`` (None: the start): logits [, spikes (B, L, H) per layer, stacked only when
        asked for] [, the state after the last step]."""
        self._check(x, 3)
        trace = []
        for t in range(x.shape[1]):
            out, state = self.step(x[:, t], state, return_spikes=return_spikes)
            if return_spikes:
                trace.append(out[1])
        if return_spikes:
            out = out[0], [torch.stack(layer, dim=1) for layer in zip(*trace)]
        if not return_state:
            return out
        return (*out, state) if return_spikes else (out, state)

    def thresholds(self):
        """(layer, spike module) for every layer whose spike has a learnable θ > 0 that it
        compares with ``membrane(y)`` (frssm, sliding-PSN pssm)."""
        return [(layer, layer.spike) for layer in self.layers
                if isinstance(layer.spike, PositiveTheta) and hasattr(layer.spike, "membrane")
                and isinstance(layer.spike.log_theta, nn.Parameter)
                and not isinstance(layer.spike, PSN)]      # the full/masked PSN: θ per step

    @torch.no_grad()
    def calibrate(self, x) -> None:
        """Data-dependent start (``theta_init_mode='rms'``, frssm and pssm; ours): layer by
        layer, in eval mode, θ_c = theta_init × RMS over (batch, time) of channel c's threshold
        input v on the batch x (B, L, d_input), so θ starts on the scale of the signal it
        thresholds. A no-op for ``theta_init_mode='value'``. Uses no random numbers."""
        if self.cfg.theta_init_mode != "rms":
            return
        was = self.training
        self.eval()
        tuned = dict(self.thresholds())
        h = self.embed(x)
        for layer in self.layers:
            y = layer.ssm(layer.norm(h))                       # (B, L, H)
            if layer in tuned:
                rms = layer.spike.membrane(y).float().square().mean(dim=(0, 1)).sqrt()  # (H)
                layer.spike.set_theta((self.cfg.theta_init * rms).clamp_min(1e-3))
            h = layer.residual(h, layer.spike(y))
        self.train(was)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedule: the masked PSN's λ = min(1, 8·epoch/(epochs − 1))
        (Fang et al. 2023; ``spikelib.psn.masked_lambda``)."""
        for layer in self.layers:
            if isinstance(layer.spike, MaskedPSN):
                layer.spike.set_lambda(masked_lambda(epoch, epochs))

    def _tag_optimiser_settings(self) -> None:
        """Weight decay on the weight matrices of the Linear layers only (encoder, mixing,
        decoder): every other parameter — θ, norms, biases, SSM parameters (which
        :func:`spikelib.memory.register` tagged with their own lr) and the neurons' temporal
        kernels (PSN, dynamic-decay gate) — is tagged ``_optim = {"weight_decay": 0.0, ...}``;
        ``theta_lr`` adds θ's own lr. :meth:`param_groups` then groups by tag."""
        for mod in self.modules():
            for name, p in mod.named_parameters(recurse=False):
                tag = dict(getattr(p, "_optim", {}))
                if name == "log_theta" and self.cfg.theta_lr is not None:
                    tag["lr"] = float(self.cfg.theta_lr)
                if not (isinstance(mod, nn.Linear) and name == "weight"):
                    tag.setdefault("weight_decay", 0.0)
                if tag:
                    p._optim = tag

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: untagged parameters (the Linear weight matrices) get ``weight_decay``;
        each distinct ``_optim`` tag makes a group with its settings."""
        groups: dict[tuple, list] = {}
        for p in self.parameters():
            if p.requires_grad:
                key = tuple(sorted(getattr(p, "_optim", {"weight_decay": weight_decay}).items()))
                groups.setdefault(key, []).append(p)
        return [{"params": ps, "lr": lr, **dict(key), "name": f"group{i}"}
                for i, (key, ps) in enumerate(groups.items())]


def build(name: str | None = None, **config) -> SequenceClassifier:
    """``build('frssm', d_input=3, n_classes=10, d_model=64)``: a :class:`SequenceClassifier`
    from a model name and :class:`ModelConfig` fields (unknown fields are a ValueError)."""
    if name is not None:
        config["name"] = name
    return SequenceClassifier(ModelConfig.from_dict(config))
