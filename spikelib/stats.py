"""Numbers over seeds: means with t-intervals, differences of means, curves read at a rate.

A compared result is a mean over a few seeds, so every difference comes with a 95 % interval:
Student's t with the seeds' degrees of freedom (n_a + n_b − 2) and the two means' standard
errors combined, sqrt(se_a² + se_b²). A sparsifier (a threshold, a penalty, a refractory period)
traced over its settings is a curve of accuracy against firing rate; :func:`curve_at` reads each
seed's curve at a given rate by linear interpolation between measured rates, never beyond them.
Pure Python (``math`` only): the book and the scripts use it without numpy or scipy.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["t_quantile", "mean_interval", "diff_interval", "interpolate", "curve_at"]


def _t_density(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf(t: float, df: float, steps: int = 4000) -> float:
    """P(T ≤ t) for t ≥ 0 by Simpson's rule on the density over [0, t]."""
    h = t / steps
    total = _t_density(0.0, df) + _t_density(t, df)
    total += sum((4 if k % 2 else 2) * _t_density(k * h, df) for k in range(1, steps))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom (0 < p < 1), to
    about 1e-7; by bisection on the CDF."""
    if not 0 < p < 1:
        raise ValueError(f"p: expected a probability in (0, 1), got {p!r}")
    if isinstance(df, bool) or not df > 0:
        raise ValueError(f"df: expected degrees of freedom > 0, got {df!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, 2 * hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def _values(v: Sequence[float], name: str) -> list[float]:
    out = [float(x) for x in v]
    if not out or not all(math.isfinite(x) for x in out):
        raise ValueError(f"{name}: expected one or more finite numbers, got {list(v)!r}")
    return out


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of ``values`` with its t-interval: {"mean", "n", "sd", "se", "half", "low",
    "high"}; with one value the spread is unknown (sd, se, half, low, high None)."""
    v = _values(values, "values")
    mean, n = statistics.fmean(v), len(v)
    if n < 2:
        return {"mean": mean, "n": n, "sd": None, "se": None, "half": None, "low": None,
                "high": None}
    sd = statistics.stdev(v)
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return {"mean": mean, "n": n, "sd": sd, "se": se, "half": half, "low": mean - half,
            "high": mean + half}


def diff_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """mean(a) − mean(b) with a t-interval: se = sqrt(se_a² + se_b²), df = n_a + n_b − 2.
    Returns {"diff", "se", "df", "half", "low", "high", "n_a", "n_b"}; the interval is None
    unless both have two or more values."""
    a, b = _values(a, "a"), _values(b, "b")
    diff = statistics.fmean(a) - statistics.fmean(b)
    out = {"diff": diff, "n_a": len(a), "n_b": len(b), "se": None, "df": None, "half": None,
           "low": None, "high": None}
    if len(a) < 2 or len(b) < 2:
        return out
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    df = len(a) + len(b) - 2
    half = t_quantile(0.5 + level / 2, df) * se
    return out | {"se": se, "df": df, "half": half, "low": diff - half, "high": diff + half}


def interpolate(xs: Sequence[float], ys: Sequence[float], at: float) -> float | None:
    """y at ``at`` on the piecewise-linear curve through (xs, ys) (any order); None outside
    [min xs, max xs]: no extrapolation. Equal xs are averaged."""
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"xs, ys: expected equal non-zero lengths, got {len(xs)} and {len(ys)}")
    pts: dict[float, list[float]] = {}
    for x, y in zip(_values(xs, "xs"), _values(ys, "ys")):
        pts.setdefault(x, []).append(y)
    xs_ = sorted(pts)
    ys_ = [statistics.fmean(pts[x]) for x in xs_]
    if not xs_[0] <= at <= xs_[-1]:
        return None
    for (x0, y0), (x1, y1) in zip(zip(xs_, ys_), zip(xs_[1:], ys_[1:])):
        if x0 <= at <= x1:
            return y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return ys_[0]                                              # one point, at == its x


def curve_at(points: dict[int, list[tuple[float, float]]], at: float) -> list[float] | None:
    """Read a curve at rate ``at`` seed by seed: ``points`` maps seed -> [(rate, value), ...]
    over the curve's settings; returns one interpolated value per seed (sorted by seed), or
    None if any seed's measured rates do not reach ``at``."""
    out = []
    for seed in sorted(points):
        xs, ys = zip(*points[seed]) if points[seed] else ((), ())
        v = interpolate(list(xs), list(ys), at) if xs else None
        if v is None:
            return None
        out.append(v)
    return out
