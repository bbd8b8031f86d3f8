"""Input validation shared by the public entry points.

Every public module and function checks what it is handed — rank, channel count, a floating
dtype, at least one sequence and one time step, no NaN or Inf — and a failure is one
``ValueError`` that names the argument and says what to do. All but the NaN/Inf scan read only
metadata and cost nothing; the scan reads every value back (on a GPU the CPU waits for the
device, and ``torch.compile`` breaks the graph there), so training — whose data ``spikelib.data``
checks once, on load — switches it off with :func:`finite_checks` ``(False)``. Both switches are
public in :mod:`spikelib.temporal`.
"""
from __future__ import annotations

import operator
from contextlib import contextmanager

import torch

_FINITE = [True]      # whether check_tensor(finite=True) scans values (see finite_checks)


def _as_switch(enabled) -> bool:
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: expected True or False, got {enabled!r}")
    return enabled


@contextmanager
def finite_checks(enabled: bool):
    """Within the block, the value scans (NaN/Inf in ``check_tensor(..., finite=True)`` and the
    range checks that read values, such as ``linear_scan``'s log a ≤ 0) run only if ``enabled``;
    the metadata checks (rank, channels, dtype, empty axes) always run. The previous setting is
    restored on exit."""
    enabled = _as_switch(enabled)
    before = _FINITE[0]
    _FINITE[0] = enabled
    try:
        yield
    finally:
        _FINITE[0] = before


def set_finite_checks(enabled: bool) -> bool:
    """Switch the value scans on or off for the rest of the process (as :func:`finite_checks`
    does for a block, e.g. before ``torch.compile``); returns the previous setting."""
    before = _FINITE[0]
    _FINITE[0] = _as_switch(enabled)
    return before


def finite_checks_enabled() -> bool:
    """Whether the value scans run (see :func:`finite_checks`)."""
    return _FINITE[0]


def check_tensor(x, name: str, ndim: int | tuple[int, ...] | None = None, *,
                 channels: int | None = None, floating: bool = False, finite: bool = True,
                 nonempty: bool = False) -> torch.Tensor:
    """Check that ``x`` is a real tensor of the right rank and channel count.

    ``ndim`` may be a tuple of allowed ranks. ``channels`` is checked against the last axis.
    ``floating``: integer and bool tensors are rejected (with the fix). ``nonempty``: a
    (batch, [time,] channels) tensor needs at least one sequence, time step and channel (the
    one rule of every model and temporal module: an empty batch or sequence is an error, not
    an empty result). ``finite``: NaN and Inf are rejected, unless switched off by
    :func:`finite_checks` (training does, see there). Returns ``x`` unchanged, for inline use.
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
    if nonempty and 0 in x.shape:
        axes = _AXES.get(x.dim(), ())
        axis = x.shape.index(0)
        what = _EMPTY.get(axes[axis] if axis < len(axes) else "", f"a nonzero axis {axis}")
        raise ValueError(f"{name}: expected {what}, got shape {tuple(x.shape)}")
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
    """Check that ``value`` is a finite real number > 0 (a bool is not a number here)."""
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (v > 0 and v < float("inf")):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return v


_INT_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
_SHAPE_NAMES = {1: "(time,)", 2: "(batch, channels)", 3: "(batch, time, channels)"}
_AXES = {2: ("batch", "channels"), 3: ("batch", "time", "channels")}
_EMPTY = {"batch": "at least one sequence (batch >= 1)", "time": "at least one time step",
          "channels": "at least one channel"}
