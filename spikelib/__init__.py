"""spikelib: spiking neural networks as binary-activated RNNs.

One idea per module (imports point downwards; importing has no side effects):

=============  ===========================================================================
temporal       the one interface of every temporal module, the names, PositiveTheta, the
               switch of the value checks (``finite_checks``, ``set_finite_checks``)
surrogate      Heaviside spike functions with surrogate gradients (ATan, sigmoid, rectangle)
neurons        IF/LIF with hard, soft or no reset; threshold spikes; exact parallel soft-reset IF
memory         S4D diagonal state-space memory: FFT convolution and recurrence
refractory     fixed refractory period: exact parallel scan, loop, approximations
psn            parallel spiking neurons: full, masked and sliding PSN
ddsn           dynamic-decay spiking neuron and the stable linear-recurrence scan
models         the backbone and the six spiking choices (s4d, frssm, pssm, lif, ddsn, sif)
data           sequential CIFAR-10 and Fashion-MNIST with seeded splits, checked once on load
diagnostics    where spiking decisions sit (probe, distances), serial ≡ parallel agreement
metrics        firing rates, synaptic operations, operation counts, the whole energy bill
stats          means over seeds with t-intervals, differences of means, curves read at a rate
fidelity       how faithfully spikes carry y: sample-and-hold error, causal linear read-out R²
device         which device a run uses (``pick_device``) and its name
distributed    data-parallel training under torchrun: process group, sharding of each batch
config         RunConfig, profiles, and the command line derived from the dataclass
checkpoint     checkpoints: atomic save, load with an identity check, every RNG state
provenance     where a result came from (commit, device, a hash of the sources); staleness
resultfiles    results/*.json: written atomically with provenance, loaded back
summary        the summary table and every choice made from it, on validation only
results        provenance, resultfiles and summary in one import; the plot and the command
               line (``python -m spikelib.results``)
train          the training loop (``python -m spikelib.train``, also under ``torchrun``)
=============  ===========================================================================

Every temporal module works on (batch, time, channels) tensors and offers ``forward`` (parallel
over time), ``forward_serial(x, state=None, *, return_state=False)`` (a loop over ``step``),
``step(x_t, state) -> (y_t, state)`` and ``initial_state(batch, ...)``; state is a dict of
tensors (``spikelib.temporal``).
"""
__all__ = ["__version__"]
__version__ = "0.1.0"
