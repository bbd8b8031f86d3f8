"""spikelib.metrics: accuracy, firing rates, SOPs (integer spikes by value), energy."""
import pytest
import torch

from spikelib import metrics


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75


def test_firing_rate_and_sops_by_hand():
    s = torch.zeros(2, 5, 4)                         # (B, L, H)
    s[0, 0, 0] = 1
    s[1, 3, 2] = 1
    s[1, 4, 1] = 3                                   # an integer spike counts three times
    assert metrics.firing_rates([s]) == [5 / 40]
    assert metrics.sops([s], fan_out=8) == [5 * 8 / 2]   # per sequence
    rate = 5 / 40
    dense_macs_per_seq = 5 * 4 * 8                   # L · fan_in · fan_out
    assert metrics.sops([s], 8)[0] == pytest.approx(rate * dense_macs_per_seq)


def test_counter_equals_whole_set():
    g = torch.Generator().manual_seed(0)
    spikes = [(torch.rand(7, 11, 3, generator=g) < 0.2).float() for _ in range(2)]
    spikes[1][0, 0, 0] = 2.0
    c = metrics.SpikeCounter()
    for lo, hi in ((0, 3), (3, 7)):
        c.add([s[lo:hi] for s in spikes])
    assert c.rates() == pytest.approx(metrics.firing_rates(spikes))
    assert c.sops(6) == pytest.approx(metrics.sops(spikes, 6))
    assert c.integer() == [False, True]
    summary = c.summary(6)
    assert summary["sequences"] == 7 and summary["length"] == 11


def _ops(spiking):
    return {"spiking": spiking, "length": 10, "mix_fan_out": 8, "encoder_macs": 40,
            "mix_macs": [320, 320], "glu_macs": [40, 40], "readout_macs": 20,
            "readout_adds": 40, "state_macs": [100, 100], "neuron_macs": [0, 5]}


def test_energy_spiking_uses_sops_and_keeps_state_apart():
    e = metrics.energy(_ops(True), [16.0, 8.0])
    assert e["mix_pJ"] == pytest.approx([0.9 * 16, 0.9 * 8])
    want = 4.6 * 40 + 0.9 * 24 + 4.6 * 80 + 4.6 * 20 + 0.9 * 40
    assert e["total_pJ"] == pytest.approx(want)
    assert e["state_update_pJ"] == pytest.approx(4.6 * 200)
    assert e["neuron_pJ"] == pytest.approx(4.6 * 5)
    assert e["total_with_state_pJ"] == pytest.approx(want + 4.6 * 205)
    with pytest.raises(ValueError, match="layer_sops"):
        metrics.energy(_ops(True), None)


def test_energy_dense_baseline_charges_macs():
    e = metrics.energy(_ops(False), None)
    assert e["mix_pJ"] == pytest.approx([4.6 * 320] * 2)
    assert e["sops"] is None


def test_counter_keeps_its_sums_on_the_device(host_reads):
    """Adding a batch reads nothing back (on a GPU: no wait); the summary reads once."""
    spikes = [torch.ones(2, 3, 4), torch.zeros(2, 3, 4)]
    c = metrics.SpikeCounter()
    with host_reads() as reads:
        for _ in range(3):
            c.add(spikes)
    assert reads == []
    assert c.summary(5)["firing_rate"] == [1.0, 0.0] and c.sequences == 6
