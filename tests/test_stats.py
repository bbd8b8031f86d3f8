"""spikelib.stats: t quantiles against closed forms, intervals, interpolation without
extrapolation."""
import math
import statistics

import pytest

from spikelib import stats


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_closed_forms(p):
    # df = 1 is the Cauchy distribution, df = 2 has a closed form too
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-6)
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)),
                                                   rel=1e-6)
    assert stats.t_quantile(1 - p, 2) == pytest.approx(-stats.t_quantile(p, 2))


def test_t_quantile_tends_to_normal():
    z = statistics.NormalDist().inv_cdf(0.975)
    assert stats.t_quantile(0.975, 4) > stats.t_quantile(0.975, 30) > z
    assert stats.t_quantile(0.975, 2000) == pytest.approx(z, abs=2e-3)


@pytest.mark.parametrize("bad", [dict(p=0), dict(p=1.0), dict(df=0), dict(df=True)])
def test_t_quantile_rejects(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        stats.t_quantile(**{"p": 0.9, "df": 3, **bad})


def test_mean_interval():
    v = [0.80, 0.82, 0.84]
    m = stats.mean_interval(v)
    assert m["mean"] == pytest.approx(0.82) and m["n"] == 3
    assert m["half"] == pytest.approx(stats.t_quantile(0.975, 2) * 0.02 / math.sqrt(3))
    assert m["low"] < m["mean"] < m["high"]
    one = stats.mean_interval([0.5])
    assert one["mean"] == 0.5 and one["half"] is None
    with pytest.raises(ValueError, match="values"):
        stats.mean_interval([0.1, float("nan")])


def test_diff_interval_combines_standard_errors():
    a, b = [0.84, 0.85, 0.83], [0.80, 0.78, 0.79]
    d = stats.diff_interval(a, b)
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 3)
    assert d["diff"] == pytest.approx(0.05) and d["se"] == pytest.approx(se) and d["df"] == 4
    assert d["low"] == pytest.approx(0.05 - stats.t_quantile(0.975, 4) * se)
    assert d["low"] > 0                      # clearly separated
    assert stats.diff_interval([0.8], b)["half"] is None


def test_interpolate_never_extrapolates():
    xs, ys = [0.2, 0.05, 0.1], [0.84, 0.76, 0.80]       # any order
    assert stats.interpolate(xs, ys, 0.075) == pytest.approx(0.78)
    assert stats.interpolate(xs, ys, 0.15) == pytest.approx(0.82)
    assert stats.interpolate(xs, ys, 0.2) == pytest.approx(0.84)
    assert stats.interpolate(xs, ys, 0.25) is None and stats.interpolate(xs, ys, 0.01) is None
    assert stats.interpolate([0.1, 0.1], [0.7, 0.9], 0.1) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="xs, ys"):
        stats.interpolate([0.1], [], 0.1)


def test_curve_at_reads_each_seed():
    pts = {1: [(0.05, 0.70), (0.15, 0.80)], 0: [(0.04, 0.72), (0.20, 0.88)]}
    assert stats.curve_at(pts, 0.10) == pytest.approx([0.78, 0.75])   # sorted by seed
    assert stats.curve_at(pts, 0.18) is None                          # seed 1 stops at 0.15
