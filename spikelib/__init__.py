"""spikelib: spiking neural networks as binary-activated RNNs.

One idea per module (imports point downwards; importing has no side effects):

=============  ===========================================================================
temporal       the one interface of every temporal module; the table of names
surrogate      Heaviside spike functions with surrogate gradients (ATan, sigmoid, rectangle)
neurons        IF/LIF with hard, soft or no reset; threshold spikes; exact parallel soft-reset IF
memory         S4D diagonal state-space memory: FFT convolution and recurrence
refractory     fixed refractory period: exact parallel scan, loop, approximations
psn            parallel spiking neurons: full, masked and sliding PSN
ddsn           dynamic-decay spiking neuron and the stable linear-recurrence scan
models         the backbone and the six spiking choices (s4d, frssm, pssm, lif, ddsn, sif)
data           sequential CIFAR-10 and Fashion-MNIST with seeded splits, checked once on load
diagnostics    where spiking decisions sit (probe, distances), serial ≡ parallel agreement
metrics        accuracy, firing rates, synaptic operations, operation counts, energy
device         which device a run uses (``pick_device``) and its name
distributed    data-parallel training under torchrun: process group, sharding of each batch
config         RunConfig, profiles, and the command line derived from the dataclass
checkpoint     checkpoints: atomic save, load with an identity check, every RNG state
results        provenance, source hashes, results/*.json, the summary table
               (``python -m spikelib.results``)
train          the training loop (``python -m spikelib.train``, also under ``torchrun``)
=============  ===========================================================================

Every temporal module works on (batch, time, channels) tensors and offers ``forward`` (parallel
over time), ``forward_serial`` (a loop over ``step``), ``step(x_t, state) -> (y_t, state)`` and
``initial_state(batch, ...)``; state is a dict of tensors (``spikelib.temporal``).
"""
__version__ = "0.1.0"
