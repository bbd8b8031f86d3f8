"""Input validation shared by the public entry points.

Every public module and function checks what it is handed — rank, channel count, a floating
dtype, no NaN or Inf — and a failure is one ``ValueError`` that names the argument and says
what to do. Rank, channels and dtype read only metadata and cost nothing; the NaN/Inf scan reads
every value back (on a GPU the CPU waits for the device), so training — whose data
``spikelib.data`` checks once, on load — switches that scan off around its steps with
:func:`finite_checks` ``(False)``.
"""
from __future__ import annotations

import operator
from contextlib import contextmanager

import torch

_FINITE = [True]      # whether check_tensor(finite=True) scans values (see finite_checks)


@contextmanager
def finite_checks(enabled: bool):
    """Within the block, ``check_tensor(..., finite=True)`` scans for NaN/Inf only if
    ``enabled`` (rank, channel and dtype checks always run)."""
    before = _FINITE[0]
    _FINITE[0] = bool(enabled)
    try:
        yield
    finally:
        _FINITE[0] = before


def check_tensor(x, name: str, ndim: int | tuple[int, ...] | None = None, *,
                 channels: int | None = None, floating: bool = False,
                 finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a real tensor of the right rank and channel count.

    ``ndim`` may be a tuple of allowed ranks. ``channels`` is checked against the last axis.
    ``floating``: integer and bool tensors are rejected (with the fix). ``finite``: NaN and Inf
    are rejected, unless switched off by :func:`finite_checks` (training does, see there).
    Returns ``x`` unchanged so it can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise ValueError(f"{name}: expected a real numeric tensor, got dtype {x.dtype}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}; "
                         f"convert it first, e.g. {name}.float()")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            shapes = " or ".join(_SHAPE_NAMES.get(d, f"{d}-d") for d in allowed)
            raise ValueError(f"{name}: expected shape {shapes}, got {tuple(x.shape)}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{name}: expected {channels} channels on the last axis, "
                         f"got shape {tuple(x.shape)}")
    if finite and _FINITE[0] and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or Inf; clean the input "
                         f"(e.g. torch.nan_to_num) before passing it")
    return x


def check_int(value, name: str, minimum: int = 0) -> int:
    """Check that ``value`` is an integer ≥ ``minimum``; returns it as a Python int.

    Integers are Python ints, NumPy integer scalars and 0-d integer tensors (anything with
    ``__index__`` except a bool, a bool tensor or a tensor with dimensions)."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor)
                                   and (value.dim() != 0 or value.dtype == torch.bool)):
        v = None
    else:
        try:
            v = operator.index(value)
        except TypeError:
            v = None
    if v is None or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return v


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
