"""spikelib.metrics: firing rates, SOPs (integer spikes by value), the whole energy bill."""
import pytest
import torch

from spikelib import metrics


def test_firing_rate_and_sops_by_hand():
    s = torch.zeros(2, 5, 4)                         # (B, L, H)
    s[0, 0, 0] = 1
    s[1, 3, 2] = 1
    s[1, 4, 1] = 3                                   # an integer spike counts three times
    c = metrics.SpikeCounter.of([s])
    assert c.rates() == [5 / 40]
    assert c.sops(fan_out=8) == [5 * 8 / 2]          # per sequence
    rate = 5 / 40
    dense_macs_per_seq = 5 * 4 * 8                   # L · fan_in · fan_out
    assert c.sops(8)[0] == pytest.approx(rate * dense_macs_per_seq)
    for gone in ("accuracy", "firing_rates", "sops"):   # one way to count: SpikeCounter
        assert not hasattr(metrics, gone)


def test_counter_equals_whole_set():
    g = torch.Generator().manual_seed(0)
    spikes = [(torch.rand(7, 11, 3, generator=g) < 0.2).float() for _ in range(2)]
    spikes[1][0, 0, 0] = 2.0
    c = metrics.SpikeCounter()
    for lo, hi in ((0, 3), (3, 7)):
        c.add([s[lo:hi] for s in spikes])
    whole = metrics.SpikeCounter.of(spikes)
    assert c.rates() == pytest.approx(whole.rates())
    assert c.sops(6) == pytest.approx(whole.sops(6))
    assert c.integer() == [False, True]
    summary = c.summary(6)
    assert summary["sequences"] == 7 and summary["length"] == 11


def _ops(spiking):
    return {"spiking": spiking, "length": 10, "mix_fan_out": 8, "encoder_macs": 40,
            "mix_macs": [320, 320], "glu_macs": [40, 40], "readout_macs": 20,
            "readout_adds": 40, "state_macs": [100, 100], "neuron_macs": [0, 5]}


def test_energy_headline_is_the_whole_bill():
    """whole_pJ includes the S4D state update and the neurons' arithmetic; the split beside it
    adds up to it."""
    e = metrics.energy(_ops(True), [16.0, 8.0])
    assert e["mix_pJ"] == pytest.approx([0.9 * 16, 0.9 * 8])
    weights = 4.6 * 40 + 0.9 * 24 + 4.6 * 80 + 4.6 * 20 + 0.9 * 40
    assert e["state_update_pJ"] == pytest.approx(4.6 * 200)
    assert e["neuron_pJ"] == pytest.approx(4.6 * 5)
    assert e["whole_pJ"] == pytest.approx(weights + 4.6 * 205)
    assert sum(sum(e[k]) if isinstance(e[k], list) else e[k] for k in metrics.SPLIT) == \
        pytest.approx(e["whole_pJ"])
    assert "total_pJ" not in e                       # no partial total under a headline name
    result = {"ops": _ops(True), "sops": [16.0, 8.0], "energy": {"total_pJ": 1.0}}
    assert metrics.energy_of(result)["whole_pJ"] == pytest.approx(e["whole_pJ"])
    assert metrics.energy_of({"ops": None}) is None
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


def test_counter_of_a_model_without_spikes_is_empty():
    c = metrics.SpikeCounter()
    c.add([])                                        # s4d's return_spikes gives no layers
    assert c.rates() == [] and c.summary(4)["firing_rate"] == [] and c.sequences == 0
