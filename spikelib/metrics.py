"""Firing rates, synaptic operations and the energy bill of a sequence (conventions: ours).

Firing rate of a layer = mean of |s| over (batch, time, channels): an OFF spike (−1) is an event
like an ON spike (+1), so signed spikes never cancel. Integer spikes (soft-reset IF, integer
dynamic-decay neurons) are counted by value — a 3 counts as three spikes — and flagged.
Synaptic operations of a spike-fed Linear with ``fan_out`` outputs, per sequence::

    SOPs = Σ_t Σ_in |s_{t,in}| · fan_out   (= rate · L · dense MACs per step)

Energy (Horowitz, ISSCC 2014, 45 nm; the convention of the SNN literature):
E_AC = 0.9 pJ per synaptic operation of a spike-fed layer, E_MAC = 4.6 pJ per multiply-accumulate
of a layer fed real values (encoder, GLU product, readout, the SSM's serial state update).
Like the papers we leave out norms, non-linearities and memory traffic. Unlike most of them the
headline, ``whole_pJ``, includes the costs spiking does not remove — the S4D state update and
the neurons' own arithmetic (PSN window, decay gate) — with the split beside it (``SPLIT``).
:func:`energy_of` recomputes the bill of a result file from the counts it holds.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SpikeCounter", "op_counts", "energy", "energy_of", "SPLIT", "E_AC_PJ", "E_MAC_PJ",
           "CONVENTION"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
CONVENTION = ("Horowitz ISSCC 2014 (45 nm): E_AC 0.9 pJ per synaptic op, E_MAC 4.6 pJ per MAC; "
              "per sequence; integer spikes counted by value; norms, non-linearities and memory "
              "traffic ignored; whole_pJ includes the S4D state update and neuron-internal "
              "arithmetic")
# the parts of whole_pJ, in the order the book and the summary show them
SPLIT = ("encoder_pJ", "mix_pJ", "glu_pJ", "readout_pJ", "state_update_pJ", "neuron_pJ")


class SpikeCounter:
    """Firing rates and synaptic operations of spikes, accumulated over batches.

    ``add(spikes)`` with one tensor (B, L, H) per layer (or ``SpikeCounter.of(spikes)`` for
    one batch); then :meth:`rates`, :meth:`sops` or :meth:`summary`. The sums stay on the
    spikes' device (float64) and are read once there: adding a batch never waits for the GPU.
    """

    def __init__(self):
        self.total: list[torch.Tensor] = []   # Σ |s| per layer, float64 on the device
        self.elements: list[int] = []         # B·L·H per layer
        self.peak: list[torch.Tensor] = []    # max |s| per layer, float64 on the device
        self.sequences = 0
        self.length = 0

    @classmethod
    def of(cls, spikes: Sequence[torch.Tensor]) -> SpikeCounter:
        """A counter holding one batch of spikes."""
        counter = cls()
        counter.add(spikes)
        return counter

    def add(self, spikes: Sequence[torch.Tensor]) -> None:
        """Add one batch: one (B, L, H) tensor per layer (none for a model without spikes)."""
        if not spikes:
            return
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
        """Mean of |s| over (batch, time, channels) of each layer."""
        return [t / max(e, 1) for t, e in zip(self._totals(), self.elements)]

    def sops(self, fan_out: int) -> list[float]:
        """SOPs per sequence of each layer's spike-fed Linear: Σ_t Σ_in |s| · fan_out."""
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
    """Energy per sequence in pJ from :func:`op_counts` and the measured SOPs per layer.

    The mixing Linear costs E_AC × SOPs in a spiking model, E_MAC × dense MACs in the baseline;
    every other part E_MAC per MAC (E_AC per addition of the mean readout). ``whole_pJ`` is the
    sum of the parts named in ``SPLIT`` (the state update and neuron arithmetic included)."""
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
    parts["state_update_pJ"] = E_MAC_PJ * sum(ops["state_macs"])
    parts["neuron_pJ"] = E_MAC_PJ * sum(ops["neuron_macs"])
    whole = sum(sum(v) if isinstance(v, list) else v for v in parts.values())
    return {**parts, "whole_pJ": whole,
            "mix_dense_equivalent_pJ": E_MAC_PJ * sum(ops["mix_macs"]),
            "sops": list(layer_sops) if ops["spiking"] else None,
            "convention": CONVENTION}


def energy_of(result: dict) -> dict | None:
    """The bill of a training result recomputed by :func:`energy` from the ``ops`` and
    ``sops`` its file holds (files written before ``whole_pJ`` included); None without ops."""
    ops = result.get("ops")
    if not ops:
        return None
    return energy(ops, result.get("sops") if ops["spiking"] else None)
