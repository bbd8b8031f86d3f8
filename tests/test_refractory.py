"""spikelib.refractory: the exact scan equals the loop (exhaustively for short trains), the
sampling properties of reconstruction.md §4, the approximations, and logarithmic depth."""
import itertools
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from spikelib.refractory import (
    Refractory,
    refractory_loop,
    refractory_onset,
    refractory_scan,
    refractory_strided,
)


def _all_trains(L):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=L)))            # (2^L, L)


def _assert_sampling(s, c, R):
    """s ≤ c; at most one spike in any R + 1 consecutive steps (gaps ≥ R + 1); count bound.
    Rows are along axis 0, time along axis 1."""
    L = c.shape[1]
    assert bool((s <= c).all())
    cs = torch.cat([torch.zeros_like(s[:, :1]), s.cumsum(1)], dim=1)              # (M L+1)
    w = min(R + 1, L)
    assert int((cs[:, w:] - cs[:, :-w]).max()) <= 1                                # gaps ≥ R + 1
    assert int(s.sum(1).max()) <= math.ceil(L / (R + 1))


def test_scan_equals_loop_on_every_train_up_to_length_12():
    """All 2^L binary trains, every L ≤ 12 and R ≤ 8: scan ≡ loop bit for bit."""
    for L in range(1, 13):
        c = _all_trains(L)                                                         # (2^L, L)
        for R in range(9):
            s = refractory_scan(c, R)
            assert torch.equal(s, refractory_loop(c, R)), (L, R)
            _assert_sampling(s, c, R)
            assert int(s[-1].sum()) == math.ceil(L / (R + 1))                      # c = 1 attains it


@pytest.mark.parametrize("L", [1, 100, 5000])
def test_scan_equals_loop_on_random_trains(L):
    """Batch 3, 4 channels with crossing rates 0.05, 0.3, 0.6, 0.95 (one per channel)."""
    gen = torch.Generator().manual_seed(L)
    p = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    for R in (1, 3, 8, 31):
        c = torch.bernoulli(p.expand(3, L, 4), generator=gen)                     # (B L C)
        s = refractory_scan(c, R)
        assert torch.equal(s, refractory_loop(c, R)), (L, R)
        _assert_sampling(s.transpose(1, 2).reshape(-1, L), c.transpose(1, 2).reshape(-1, L), R)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.int64,
                                   torch.float32, torch.float64])
def test_dtypes_and_shapes(dtype):
    gen = torch.Generator().manual_seed(0)
    c = torch.bernoulli(torch.full((2, 50, 3), 0.6), generator=gen).to(dtype)     # (B L C)
    R = 2
    for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
        s = f(c, R)
        assert s.dtype == dtype and s.shape == c.shape
        rows = c.transpose(1, 2).reshape(-1, 50)                                   # (B·C L)
        by_rows = f(rows, R).reshape(2, 3, 50).transpose(1, 2)                      # time axis −2
        assert torch.equal(s, by_rows), f.__name__
        assert torch.equal(f(rows[4], R), by_rows[1, :, 1])                        # 1-d (L,)
    assert torch.equal(refractory_scan(c, R), refractory_loop(c, R))


def test_gradient_flows_through_c_times_mask():
    gen = torch.Generator().manual_seed(1)
    c = torch.bernoulli(torch.full((2, 40, 3), 0.7, dtype=torch.float64), generator=gen)
    c.requires_grad_(True)
    weights = torch.randn(2, 40, 3, dtype=torch.float64, generator=gen)
    s = refractory_scan(c, 3)
    (s * weights).sum().backward()
    mask = refractory_loop(c.detach(), 3)                                          # spikes = mask on c = 1
    assert torch.equal(c.grad, weights * mask)
    c.grad = None
    Refractory(3).forward_serial(c).mul(weights).sum().backward()
    assert torch.equal(c.grad, weights * mask)


def test_R_zero_is_identity_and_bad_R_raises():
    c = torch.bernoulli(torch.full((2, 30, 2), 0.5))
    for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
        assert torch.equal(f(c, 0), c)
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="R"):
                f(c, bad)
    with pytest.raises(ValueError, match="R"):
        Refractory(-2)
    with pytest.raises(ValueError, match="c"):
        refractory_scan(torch.zeros(2, 3, 4, 5), 2)


@pytest.mark.parametrize("R", [0, 1, 4])
def test_module_forward_serial_step_agree(R):
    gen = torch.Generator().manual_seed(R)
    c = torch.bernoulli(torch.full((3, 64, 5), 0.5), generator=gen)
    m = Refractory(R)
    s = m(c)
    assert torch.equal(s, m.forward_serial(c))
    state, steps = None, []
    for t in range(c.shape[1]):
        s_t, state = m.step(c[:, t], state)
        assert state.dtype == torch.long and state.shape == (3, 5)
        assert int(state.min()) >= 0 and int(state.max()) <= R
        steps.append(s_t)
    assert torch.equal(s, torch.stack(steps, dim=1))
    assert torch.equal(s, refractory_loop(c, R))


def test_onset_approximation():
    """onset ≤ exact scan ≤ c; the two agree when crossings are isolated (gaps > R)."""
    gen = torch.Generator().manual_seed(2)
    for R in (1, 3, 8):
        c = torch.bernoulli(torch.full((4, 300, 2), 0.4), generator=gen)
        onset, exact = refractory_onset(c, R), refractory_scan(c, R)
        assert bool((onset <= exact).all()) and bool((exact <= c).all())
        iso = torch.zeros(4, 300, 2)                                               # isolated crossings
        for b in range(4):
            for ch in range(2):
                t = int(torch.randint(0, 5, (1,), generator=gen))
                while t < 300:
                    iso[b, t, ch] = 1.0
                    t += R + 1 + int(torch.randint(0, 6, (1,), generator=gen))
        assert torch.equal(refractory_onset(iso, R), refractory_scan(iso, R))
        assert torch.equal(refractory_onset(iso, R), iso)
    dense = torch.ones(1, 20)
    assert refractory_onset(dense, 3).sum() == 1                                   # blocks on crossings


def test_strided_approximation():
    c = torch.bernoulli(torch.full((3, 101, 2), 0.5), generator=torch.Generator().manual_seed(3))
    for R in (1, 4):
        s = refractory_strided(c, R)
        t = torch.arange(101)
        assert torch.equal(s, c * (t % (R + 1) == 0)[None, :, None])
        _assert_sampling(s.transpose(1, 2).reshape(-1, 101), c.transpose(1, 2).reshape(-1, 101), R)


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _ops(f, c, R):
    with _CountOps() as mode:
        f(c, R)
    return mode.count


def test_scan_depth_grows_like_log_L():
    """Dispatched aten ops of the scan: one fixed set of ops per level, ⌈log₂ L⌉ levels, so each
    doubling of L adds the same small number b of ops: count(L) = a + b log₂ L exactly for
    L = 2^k. A loop over time needs ≥ L ops (checked on the reference loop) and would fail."""
    Ls = [64, 256, 1024, 4096]
    counts = [_ops(refractory_scan, torch.ones(2, L, 3), 3) for L in Ls]
    per_quadrupling = [b - a for a, b in zip(counts, counts[1:])]
    assert len(set(per_quadrupling)) == 1, counts                                   # additive, constant
    b = per_quadrupling[0] / 2                                                     # ops per level
    assert 0 < b <= 20, counts
    a = counts[0] - b * math.log2(Ls[0])
    assert all(n == a + b * math.log2(L) for n, L in zip(counts, Ls)), counts
    assert counts[-1] < 2 * counts[0], counts                                      # 64× longer, < 2× ops
    assert _ops(refractory_loop, torch.ones(2, 64, 3), 3) > 64                      # a loop fails that
