"""Spike functions with surrogate gradients, and straight-through estimators.

A spiking neuron fires with the Heaviside step Θ(x) = 1 if x ≥ 0 else 0 (SpikingJelly's
convention, Θ(0) = 1). Θ has zero derivative almost everywhere, so training replaces its
backward pass by the derivative σ'(x) of a smooth *primitive* σ ≈ Θ (a surrogate gradient):

    forward:  s = Θ(x)            backward:  ∂L/∂x = σ'(x) · ∂L/∂s

A surrogate is a small callable object (not an ``nn.Module``: it has no parameters or state, so
it can sit on a module as a plain attribute). As in SpikingJelly's ``activation_based.surrogate``
it has a sharpness parameter and a ``spiking`` switch: ``spiking=True`` gives the step with the
surrogate backward, ``spiking=False`` gives the smooth primitive σ itself, differentiable by
autograd (useful for gradient checks and for annealing).

    ATan(α)         σ(x) = arctan(π α x / 2) / π + 1/2      σ'(x) = (α/2) / (1 + (π α x / 2)²)
    Sigmoid(α)      σ(x) = 1 / (1 + e^{−α x})               σ'(x) = α σ(x) (1 − σ(x))
    Rectangular(w)  σ(x) = clip(x / w + 1/2, 0, 1)          σ'(x) = 1/w on |x| < w/2, else 0

ATan is the default everywhere (``surrogate=None`` means ``ATan(2.0)``); its primitive and
derivative follow SpikingJelly (Fang et al.), which the tests use as an oracle.

Straight-through estimators (Bengio et al. 2013) for integer-valued outputs: ``straight_through``
returns the value of a hard tensor with the gradient of a soft one; ``round_ste`` and
``floor_ste`` round with an identity gradient.
"""
from __future__ import annotations

import math

import torch

from spikelib._checks import check_positive

__all__ = ["Surrogate", "ATan", "Sigmoid", "Rectangular", "heaviside", "get", "or_default",
           "straight_through", "round_ste", "floor_ste"]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Θ(x) = 1 if x ≥ 0 else 0, in the dtype of ``x``; carries no gradient. A NaN stays NaN:
    a corrupt membrane never turns into a clean 0/1 spike (and checking for it would cost a
    device sync at every step)."""
    return torch.where(torch.isnan(x), x.detach(), (x >= 0).to(x.dtype))


class _SpikeFn(torch.autograd.Function):
    """Θ(x) forward, ``surrogate.derivative(x) · grad`` backward."""

    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return ctx.surrogate.derivative(x) * grad_output, None


class Surrogate:
    """Base class: a spike function Θ with the surrogate gradient σ'.

    Subclasses define ``primitive(x)`` (the smooth σ, built from differentiable torch ops) and
    ``derivative(x)`` (σ', used as the backward of Θ). ``sg(x)`` returns Θ(x) with backward
    σ'(x) when ``sg.spiking`` is True, else σ(x). Any shape; the dtype follows ``x``.
    """

    spiking: bool = True

    def __init__(self, spiking: bool = True):
        if not isinstance(spiking, bool):
            raise ValueError(f"spiking: expected a bool, got {spiking!r}")
        self.spiking = spiking

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return _SpikeFn.apply(x, self)
        return self.primitive(x)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        params = {**self._params(), "spiking": self.spiking}
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return (type(self) is type(other) and self._params() == other._params()
                and self.spiking == other.spiking)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._params().items()), self.spiking))


class ATan(Surrogate):
    """Arctangent surrogate (SpikingJelly ``surrogate.ATan``; Fang et al. 2021).

    σ(x) = arctan(π α x / 2) / π + 1/2 ;  σ'(x) = (α/2) / (1 + (π α x / 2)²), peak α/2 at x = 0.
    """

    def __init__(self, alpha: float = 2.0, spiking: bool = True):
        super().__init__(spiking)
        self.alpha = check_positive(alpha, "alpha")

    def _params(self) -> dict:
        return {"alpha": self.alpha}

    def primitive(self, x):
        return torch.atan(math.pi * (self.alpha / 2) * x) / math.pi + 0.5

    def derivative(self, x):
        a = self.alpha / 2
        ax = math.pi * a * x                                # same operation order as SpikingJelly
        return a / (1 + ax * ax)


class Sigmoid(Surrogate):
    """Logistic surrogate (SpikingJelly ``surrogate.Sigmoid``).

    σ(x) = 1 / (1 + e^{−α x}) ;  σ'(x) = α σ(x)(1 − σ(x)), peak α/4 at x = 0.
    """

    def __init__(self, alpha: float = 4.0, spiking: bool = True):
        super().__init__(spiking)
        self.alpha = check_positive(alpha, "alpha")

    def _params(self) -> dict:
        return {"alpha": self.alpha}

    def primitive(self, x):
        return torch.sigmoid(self.alpha * x)

    def derivative(self, x):
        sx = torch.sigmoid(self.alpha * x)
        return self.alpha * sx * (1 - sx)


class Rectangular(Surrogate):
    """Rectangular (boxcar) surrogate: the straight-through window of width ``width``.

    σ(x) = clip(x / w + 1/2, 0, 1) ;  σ'(x) = 1/w for |x| < w/2, 0 otherwise (0 at the kinks).
    """

    def __init__(self, width: float = 1.0, spiking: bool = True):
        super().__init__(spiking)
        self.width = check_positive(width, "width")

    def _params(self) -> dict:
        return {"width": self.width}

    def primitive(self, x):
        return torch.clamp(x / self.width + 0.5, 0.0, 1.0)

    def derivative(self, x):
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


def get(name: str, alpha: float = 2.0) -> Surrogate:
    """Surrogate by name: 'atan' → ATan(α), 'sigmoid' → Sigmoid(α), 'rect' → Rectangular(2/α).

    α is a sharpness for all three (larger α, narrower gradient). For 'rect' the width 2/α gives
    the same peak gradient α/2 as ATan(α), so ``get('rect', 2.0)`` is ``Rectangular(1.0)``.
    """
    alpha = check_positive(alpha, "alpha")
    if name == "atan":
        return ATan(alpha)
    if name == "sigmoid":
        return Sigmoid(alpha)
    if name == "rect":
        return Rectangular(2.0 / alpha)
    raise ValueError(f"name: expected 'atan', 'sigmoid' or 'rect', got {name!r}")


def or_default(surrogate: Surrogate | None) -> Surrogate:
    """``surrogate``, or the library's default ``ATan(2.0)`` when it is None."""
    return ATan(2.0) if surrogate is None else surrogate


def straight_through(y_hard: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
    """Value of ``y_hard`` (exactly), gradient of ``y_soft``: y_hard + (y_soft − sg[y_soft]).

    ``y_soft − y_soft.detach()`` is exactly 0 for finite values, so integer-valued ``y_hard``
    stays integer-valued (``y_soft + sg[y_hard − y_soft]`` would not guarantee that).
    """
    return y_hard.detach() + (y_soft - y_soft.detach())


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) (half to even) with the identity gradient."""
    return straight_through(torch.round(x.detach()), x)


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """⌊x⌋ with the identity gradient."""
    return straight_through(torch.floor(x.detach()), x)
