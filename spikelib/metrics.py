"""Accuracy, firing rates, synaptic operations and an energy estimate (conventions: ours).

Firing rate of a layer = mean of |s| over (batch, time, channels): an OFF spike (−1) is an event
like an ON spike (+1), so signed spikes never cancel. Integer spikes (soft-reset IF, integer
dynamic-decay neurons) are counted by value — a 3 counts as three spikes — and flagged.
Synaptic operations of a spike-fed Linear with ``fan_out`` outputs, per sequence::

    SOPs = Σ_t Σ_in |s_{t,in}| · fan_out   (= rate · L · dense MACs per step)

Energy (Horowitz, ISSCC 2014, 45 nm; the convention of the SNN literature):
E_AC = 0.9 pJ per synaptic operation of a spike-fed layer, E_MAC = 4.6 pJ per multiply-accumulate
of a layer fed real values (encoder, GLU product, readout, the SSM's serial state update).
Like the papers we leave out norms, non-linearities and memory traffic. Unlike most of them we
report the costs spiking does not remove — the S4D state update and the neurons' own arithmetic
(PSN window, decay gate) — as separate entries, not hidden in or dropped from the total.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
CONVENTION = ("Horowitz ISSCC 2014 (45 nm): E_AC 0.9 pJ per synaptic op, E_MAC 4.6 pJ per MAC; "
              "per sequence; integer spikes counted by value; norms, non-linearities and memory "
              "traffic ignored; S4D state update and neuron-internal arithmetic reported "
              "separately and not in total_pJ")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label: logits (B, K), y (B,)."""
    return (logits.argmax(-1) == y).float().mean().item()


def firing_rates(spikes: Sequence[torch.Tensor]) -> list[float]:
    """Mean of |s| over (batch, time, channels) for each layer's spikes (B, L, H)."""
    return [s.detach().double().abs().mean().item() for s in spikes]


def sops(spikes: Sequence[torch.Tensor], fan_out: int) -> list[float]:
    """Synaptic operations per sequence of the Linear each layer's spikes feed:
    Σ_t Σ_in |s| · fan_out, averaged over the batch."""
    return [s.detach().double().abs().sum().item() * fan_out / s.shape[0] for s in spikes]


class SpikeCounter:
    """Accumulates spike statistics over batches (e.g. a whole test set).

    ``add(spikes)`` with one tensor (B, L, H) per layer; then :meth:`summary`. The sums stay
    on the spikes' device (float64) and are read once, in :meth:`summary` (and the methods it
    calls): adding a batch never waits for the GPU.
    """

    def __init__(self):
        self.total: list[torch.Tensor] = []   # Σ |s| per layer, float64 on the device
        self.elements: list[int] = []         # B·L·H per layer
        self.peak: list[torch.Tensor] = []    # max |s| per layer, float64 on the device
        self.sequences = 0
        self.length = 0

    def add(self, spikes: Sequence[torch.Tensor]) -> None:
        if not self.total:
            zero = torch.zeros((), dtype=torch.float64, device=spikes[0].device)
            n = len(spikes)
            self.total, self.elements, self.peak = [zero] * n, [0] * n, [zero] * n
        for i, s in enumerate(spikes):
            s = s.detach().abs()
            self.total[i] = self.total[i] + s.double().sum()
            self.elements[i] += s.numel()
            self.peak[i] = torch.maximum(self.peak[i], s.max().double())
        if spikes:
            self.sequences += spikes[0].shape[0]
            self.length = spikes[0].shape[1]

    def _totals(self) -> list[float]:
        return [t.item() for t in self.total]

    def rates(self) -> list[float]:
        return [t / max(e, 1) for t, e in zip(self._totals(), self.elements)]

    def sops(self, fan_out: int) -> list[float]:
        """SOPs per sequence of each layer's spike-fed Linear."""
        return [t * fan_out / max(self.sequences, 1) for t in self._totals()]

    def integer(self) -> list[bool]:
        """True for a layer that emitted a value above 1 (counted by value)."""
        return [p.item() > 1.0 for p in self.peak]

    def summary(self, fan_out: int) -> dict:
        return {"firing_rate": self.rates(), "sops": self.sops(fan_out),
                "integer_spikes": self.integer(), "max_spike": [p.item() for p in self.peak],
                "sequences": self.sequences, "length": self.length}


# neuron-internal arithmetic per channel and step (MACs; ours): the PSN window, the LIF update,
# the decay gate's convolution and update, the soft-reset IF's accumulate
_NEURON_MACS = {"s4d": lambda c: 0, "frssm": lambda c: 0, "pssm": lambda c: c.psn_order,
                "lif": lambda c: 2, "ddsn": lambda c: c.gate_kernel + 2, "sif": lambda c: 1}


def op_counts(model, length: int) -> dict:
    """Operation counts per sequence of length L of a :class:`~spikelib.models.SequenceClassifier`
    (the input of :func:`energy`): dense MACs of the encoder, each layer's mixing Linear
    (``mix_macs``, fan-out 2H), GLU products, readout (and the mean's accumulation), the S4D
    serial state update (``S4D.state_cost`` per step) and the neurons' own arithmetic."""
    c, L, H = model.cfg, length, model.cfg.d_model
    return {
        "spiking": model.spiking, "length": L, "mix_fan_out": 2 * H,
        "encoder_macs": L * c.d_input * H,
        "mix_macs": [L * H * 2 * H] * c.n_layers,
        "glu_macs": [L * H] * c.n_layers,
        "readout_macs": H * c.n_classes,
        "readout_adds": L * H if c.readout == "mean" else 0,
        "state_macs": [L * layer.ssm.state_cost() for layer in model.layers],
        "neuron_macs": [L * H * _NEURON_MACS[c.name](c)] * c.n_layers,
    }


def energy(ops: dict, layer_sops: Sequence[float] | None) -> dict:
    """Energy per sequence in pJ from a model's operation counts and the measured SOPs.

    ``ops`` is :func:`op_counts` (model, L): dense MACs per sequence of the encoder,
    of each layer's mixing Linear (``mix_macs``), GLU products, readout (``readout_macs`` and
    mean accumulation ``readout_adds``), S4D state update (``state_macs``) and neuron arithmetic
    (``neuron_macs``), and ``spiking`` (whether the mixing Linear is fed spikes). For a spiking
    model the mixing Linear costs E_AC × SOPs; for the non-spiking baseline E_MAC × dense MACs.
    ``total_pJ`` = encoder + mixing + GLU + readout; ``state_update_pJ`` and ``neuron_pJ`` are
    the costs spiking does not remove, reported separately (``total_with_state_pJ`` adds them).
    """
    if ops["spiking"]:
        if layer_sops is None:
            raise ValueError("layer_sops: a spiking model needs the measured SOPs per layer")
        mix = [E_AC_PJ * s for s in layer_sops]
    else:
        mix = [E_MAC_PJ * m for m in ops["mix_macs"]]
    parts = {
        "encoder_pJ": E_MAC_PJ * ops["encoder_macs"],
        "mix_pJ": mix,
        "glu_pJ": E_MAC_PJ * sum(ops["glu_macs"]),
        "readout_pJ": E_MAC_PJ * ops["readout_macs"] + E_AC_PJ * ops["readout_adds"],
    }
    total = parts["encoder_pJ"] + sum(mix) + parts["glu_pJ"] + parts["readout_pJ"]
    state = E_MAC_PJ * sum(ops["state_macs"])
    neuron = E_MAC_PJ * sum(ops["neuron_macs"])
    dense_mix = E_MAC_PJ * sum(ops["mix_macs"])
    return {**parts, "total_pJ": total, "state_update_pJ": state, "neuron_pJ": neuron,
            "total_with_state_pJ": total + state + neuron,
            "mix_dense_equivalent_pJ": dense_mix,
            "sops": list(layer_sops) if ops["spiking"] else None,
            "convention": CONVENTION}
