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
data           sequential CIFAR-10 and Fashion-MNIST with seeded splits
diagnostics    where spiking decisions sit (probe, distances), serial ≡ parallel agreement
metrics        accuracy, firing rates, synaptic operations, operation counts, energy
results        provenance and the results/*.json files
train          training loop, checkpoints, resume, CLI (``python -m spikelib.train``)
=============  ===========================================================================

Every temporal module works on (batch, time, channels) tensors and offers ``forward`` (parallel
over time), ``forward_serial`` (a loop over ``step``), ``step(x_t, state) -> (y_t, state)`` and
``initial_state(batch, ...)``; state is a dict of tensors (``spikelib.temporal``).
"""
__version__ = "0.1.0"
