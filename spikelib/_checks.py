"""Input validation shared by the public entry points.

Shape, rank and dtype checks read only metadata and cost nothing on a GPU. The finite check
(``isfinite().all()``) reads a value back, which makes the CPU wait for the GPU, so it runs where
data enter spikelib once — ``spikelib.data`` checks every split on load — or behind a
``validate=`` flag, never in a training step: a forward pass calls ``check_tensor(...,
finite=False)``. Every failure is one ``ValueError`` that names the argument and says what was
expected.
"""
from __future__ import annotations

import torch


def check_tensor(x, name: str, ndim: int | tuple[int, ...] | None = None, *,
                 channels: int | None = None, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a real floating/bool/int tensor of the right rank and channel count.

    ``ndim`` may be a tuple of allowed ranks. ``channels`` is checked against the last axis.
    Returns ``x`` unchanged so it can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise ValueError(f"{name}: expected a real numeric tensor, got dtype {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            shapes = " or ".join(_SHAPE_NAMES.get(d, f"{d}-d") for d in allowed)
            raise ValueError(f"{name}: expected shape {shapes}, got {tuple(x.shape)}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{name}: expected {channels} channels on the last axis, "
                         f"got shape {tuple(x.shape)}")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or Inf; clean the input "
                         f"(e.g. torch.nan_to_num) before passing it")
    return x


def check_int(value, name: str, minimum: int = 0) -> int:
    """Check that ``value`` is an integer ≥ ``minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_positive(value, name: str) -> float:
    """Check that ``value`` is a finite real number > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (v > 0 and v < float("inf")):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return v


_INT_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
_SHAPE_NAMES = {1: "(time,)", 2: "(batch, channels)", 3: "(batch, time, channels)"}
