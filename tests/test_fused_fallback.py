"""The fused Triton kernel's fallback: when triton cannot compile or launch the kernel,
``Refractory.forward`` uses the exact ``refractory_scan`` instead, warns once and keeps the
reason for a run's provenance (``spikelib.refractory.fused_fallback``).

No GPU is needed: the failure is forced on CPU, by a kernel that raises, or by claiming a CUDA
tensor (``_use_fused``) and making the kernel module impossible to import.
"""
import sys
import warnings

import pytest
import torch

from spikelib import refractory
from spikelib.models import build
from spikelib.refractory import Refractory, fused_fallback, refractory_loop


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Every test starts in a process where the kernel has not failed (and is restored)."""
    monkeypatch.setattr(refractory, "_fallback", None)


def _train(seed=0, shape=(3, 40, 5)):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


class Boom:
    """A kernel that cannot compile: raises a (multi-line) error and counts its calls."""

    def __init__(self, error=None):
        self.calls, self.error = 0, error or RuntimeError("triton: cannot compile\n  details")

    def __call__(self, c, R, validate=True):
        self.calls += 1
        raise self.error


def test_no_fallback_where_the_kernel_is_not_used():
    assert not refractory._use_fused(_train())                  # a CPU tensor: the scan
    assert not refractory._use_fused([1.0, 0.0])
    c = _train()
    assert torch.equal(Refractory(2)(c), refractory_loop(c, 2))
    assert fused_fallback() is None


def test_a_failing_kernel_falls_back_to_the_exact_scan_with_one_warning():
    kernel = Boom()
    c = _train().requires_grad_()
    with pytest.warns(RuntimeWarning, match="fused Triton kernel failed"):
        s = refractory._fused_or_scan(c, 3, kernel)
    assert fused_fallback() == "RuntimeError: triton: cannot compile"   # first line only
    assert torch.equal(s, refractory_loop(c.detach(), 3))
    g = torch.randn(c.shape, generator=torch.Generator().manual_seed(1))
    s.backward(g)
    c2 = c.detach().clone().requires_grad_()
    refractory_loop(c2, 3).backward(g)                          # the same gradient, g · free
    assert torch.equal(c.grad, c2.grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # a second warning would raise
        s2 = refractory._fused_or_scan(_train(2), 1, kernel)
    assert kernel.calls == 1                                    # not tried again
    assert torch.equal(s2, refractory_loop(_train(2), 1))


def test_model_forward_falls_back_when_the_kernel_module_cannot_load(monkeypatch):
    """The model's own path: its tensors claimed to be CUDA ones, triton there, the kernel
    module not importable (as when triton cannot build it). The logits are those of the scan,
    and the reason is recorded."""
    torch.manual_seed(0)
    model = build("frssm", d_input=2, n_classes=3, d_model=8, n_layers=2, d_state=4,
                  refractory=2).eval()
    x = torch.randn(2, 30, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x)
    monkeypatch.setattr(refractory, "_use_fused", lambda c: True)
    monkeypatch.setattr(refractory, "_triton_available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")          # refractory_fused accepts CPU tensors
    monkeypatch.setitem(sys.modules, "spikelib._refractory_triton", None)   # import fails
    with pytest.warns(RuntimeWarning, match="ModuleNotFoundError"), torch.no_grad():
        got = model(x)
    assert torch.equal(got, want)
    assert fused_fallback().startswith("ModuleNotFoundError: import of spikelib._refractory")


def test_out_of_memory_and_bad_input_are_raised_not_hidden():
    with pytest.raises(torch.OutOfMemoryError):
        refractory._fused_or_scan(_train(), 2, Boom(torch.OutOfMemoryError("CUDA out of memory")))
    kernel = Boom()
    with pytest.raises(ValueError, match="^c:"):
        refractory._fused_or_scan(torch.ones(2, 3, 4, 5), 2, kernel)    # rank 4
    with pytest.raises(ValueError, match="R"):
        refractory._fused_or_scan(_train(), -1, kernel)
    assert kernel.calls == 0 and fused_fallback() is None
