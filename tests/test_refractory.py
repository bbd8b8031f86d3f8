"""spikelib.refractory: the exact chunked scan and the fused kernel equal the loop (exhaustively
for short trains, at every chunk edge), the sampling properties of the refractory proposition,
the approximations, logarithmic depth, the memory bound, and the module protocol."""
import itertools
import math
import os
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import DispatchLog
from spikelib._checks import check_int
from spikelib.refractory import (
    Refractory,
    default_chunk,
    refractory_loop,
    refractory_onset,
    refractory_scan,
    refractory_strided,
)
from spikelib.temporal import Temporal, finite_checks

CHUNKS = (1, 2, 3, 5, 8, None)          # Q = 1, L % Q ≠ 0, Q ≥ L (8 and the default for L ≤ 8)


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
    """All 2^L binary trains, every L ≤ 12, R ≤ 8 and chunk length Q in CHUNKS (Q = 1, Q not
    dividing L, Q ≥ L): scan ≡ loop bit for bit."""
    for L in range(1, 13):
        c = _all_trains(L)                                                         # (2^L, L)
        for R in range(9):
            loop = refractory_loop(c, R)
            _assert_sampling(loop, c, R)
            assert int(loop[-1].sum()) == math.ceil(L / (R + 1))                   # c = 1 attains it
            for Q in CHUNKS:
                assert torch.equal(refractory_scan(c, R, chunk=Q), loop), (L, R, Q)


@pytest.mark.parametrize("L", [1, 100, 5000])
def test_scan_equals_loop_on_random_trains(L):
    """Batch 3, 4 channels with crossing rates 0.05, 0.3, 0.6, 0.95 (one per channel)."""
    gen = torch.Generator().manual_seed(L)
    p = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    for R in (1, 3, 8, 31):
        c = torch.bernoulli(p.expand(3, L, 4), generator=gen)                     # (B L C)
        loop = refractory_loop(c, R)
        _assert_sampling(loop.transpose(1, 2).reshape(-1, L), c.transpose(1, 2).reshape(-1, L), R)
        for Q in (None, 1, 7, 100):
            assert torch.equal(refractory_scan(c, R, chunk=Q), loop), (L, R, Q)


@pytest.mark.parametrize("R, Q", [(8, 246), (8, 247), (255, 40), (256, 40), (300, 1000),
                                  (999, 3), (2000, 17)])
def test_scan_at_the_integer_width_edges(R, Q):
    """The scan keeps countdowns in uint8 while Q + R + 1 ≤ 255 and R ≤ 255, wider beyond:
    both sides of each edge, R ≥ L − 1 (one spike per row), and chunks shorter than R."""
    gen = torch.Generator().manual_seed(R + Q)
    c = torch.bernoulli(torch.full((2, 1000, 3), 0.3), generator=gen)
    assert torch.equal(refractory_scan(c, R, chunk=Q), refractory_loop(c, R))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.int64,
                                   torch.float16, torch.float32, torch.float64])
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
        strided = c.transpose(0, 2).contiguous().transpose(0, 2)                   # same values
        assert torch.equal(f(strided, R), s), f.__name__                          # other strides
    assert torch.equal(refractory_scan(c, R), refractory_loop(c, R))
    nonbinary = c.to(torch.float64) * torch.linspace(-3, 3, 50)[:, None]         # any c ≠ 0 crosses
    assert torch.equal(refractory_scan(nonbinary, R), refractory_loop(nonbinary, R))


def test_empty_trains():
    """The functions return empty trains; the module, like every temporal module, names the
    empty axis (a batch of 0 or no time step is an error there)."""
    for shape in ((0, 5, 3), (2, 0, 3), (2, 5, 0), (0,)):
        c = torch.zeros(shape)
        assert refractory_scan(c, 3).shape == c.shape == refractory_loop(c, 3).shape
    m = Refractory(3)
    for shape, match in (((0, 5, 3), "at least one sequence"), ((2, 0, 3), "at least one time")):
        for f in (m, m.forward_serial):
            with pytest.raises(ValueError, match=f"c: expected {match}"):
                f(torch.zeros(shape))
    with pytest.raises(ValueError, match="c_t: expected at least one sequence"):
        m.step(torch.zeros(0, 3))


def _free_brute(s: torch.Tensor, R: int) -> torch.Tensor:
    """[no spike at t−R … t−1] for spikes s (B, L, C), by a loop over time and lags."""
    free = torch.ones_like(s, dtype=torch.bool)
    for t in range(s.shape[1]):
        for k in range(1, R + 1):
            if t - k >= 0:
                free[:, t] &= s[:, t - k] == 0
    return free


@pytest.mark.parametrize("R", [0, 1, 3])
def test_gradient_is_c_times_free(R):
    """∂s_t/∂c_t = [r_{t−1} = 0] (the countdown held fixed): the gradient passes wherever the
    neuron is free, a crossing or not, and never while it is refractory — in every form."""
    gen = torch.Generator().manual_seed(1)
    c = torch.bernoulli(torch.full((2, 40, 3), 0.5, dtype=torch.float64), generator=gen)
    c.requires_grad_(True)
    weights = torch.randn(2, 40, 3, dtype=torch.float64, generator=gen)
    s = refractory_loop(c.detach(), R)
    free = _free_brute(s, R)
    assert bool((free & (c.detach() == 0)).any()) and (R == 0 or not free.all())
    for forward in (lambda x: refractory_loop(x, R), lambda x: refractory_scan(x, R),
                    lambda x: refractory_scan(x, R, chunk=7), Refractory(R),
                    Refractory(R).forward_serial):
        c.grad = None
        forward(c).mul(weights).sum().backward()
        assert torch.equal(c.grad, weights * free)


def test_R_zero_is_identity_and_bad_R_raises():
    c = torch.bernoulli(torch.full((2, 30, 2), 0.5))
    for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
        assert torch.equal(f(c, 0), c)
        for bad in (-1, 1.5, True, "2", np.bool_(True), torch.tensor(True), torch.tensor([2]),
                    torch.tensor(2.0)):
            with pytest.raises(ValueError, match="R"):
                f(c, bad)
    with pytest.raises(ValueError, match="R"):
        Refractory(-2)
    with pytest.raises(ValueError, match="chunk"):
        refractory_scan(c, 2, chunk=0)


@pytest.mark.parametrize("R", [np.int64(2), np.int32(2), np.uint8(2), torch.tensor(2)])
def test_any_integral_R(R):
    """NumPy integers and 0-d integer tensors are integers (spikelib._checks.check_int)."""
    c = torch.bernoulli(torch.full((2, 30, 2), 0.5), generator=torch.Generator().manual_seed(9))
    m = Refractory(R)
    assert type(m.R) is int and m.R == 2 and repr(m) == "Refractory(R=2)"
    assert torch.equal(m(c), refractory_loop(c, 2)) and torch.equal(refractory_scan(c, R), m(c))
    assert check_int(R, "R", 0) == 2 and type(check_int(R, "R", 0)) is int


def test_bad_c_raises():
    for bad in (torch.zeros(2, 3, 4, 5), torch.zeros(()),                  # 4-d, 0-d
                torch.zeros(2, 3, dtype=torch.complex64), np.zeros((2, 3))):  # complex, numpy
        for f in (refractory_scan, refractory_loop, Refractory(2)):
            with pytest.raises(ValueError, match="c"):
                f(bad) if isinstance(f, Refractory) else f(bad, 2)
    with pytest.raises(ValueError, match="c_t"):
        Refractory(2).step(torch.zeros(2, 3, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_crossings_are_rejected_unless_validate_is_off(bad):
    c = torch.bernoulli(torch.full((2, 30, 3), 0.5), generator=torch.Generator().manual_seed(4))
    c[1, 7, 2] = bad
    for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
        with pytest.raises(ValueError, match="c: contains NaN"):
            f(c, 2)
    with pytest.raises(ValueError, match="c: contains NaN"):
        Refractory(2)(c)                                               # the module checks too
    s = refractory_scan(c, 2, validate=False)                          # no check, no exception:
    assert torch.equal(s.isnan(), refractory_loop(c, 2, validate=False).isnan())   # same mask
    with finite_checks(False):                                         # the switch is obeyed
        for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
            assert f(c, 2).shape == c.shape
        assert torch.equal(Refractory(2)(c).isnan(), s.isnan())


def test_value_check_off_means_no_host_read(host_reads):
    """With the value checks off the functions never read c back (no GPU sync; torch.compile
    traces them without a graph break), even with validate=True."""
    c = torch.bernoulli(torch.full((2, 40, 3), 0.5), generator=torch.Generator().manual_seed(6))
    with finite_checks(False), host_reads() as reads:
        for f in (refractory_scan, refractory_loop, refractory_onset, refractory_strided):
            f(c, 2)
        Refractory(2)(c)
    assert reads == []
    with host_reads() as reads:
        refractory_scan(c, 2)
    assert reads                                                       # on: one read of c


def test_an_overflowing_sum_is_not_mistaken_for_nan():
    """The NaN check sums c first; Σ c = 70000 overflows fp16 to Inf, and the exact element test
    then finds nothing: no error, and the dense train fires every R + 1 steps."""
    big = torch.ones(1, 70000, dtype=torch.float16)
    expected = (torch.arange(70000) % 4 == 0).to(torch.float16)[None]
    assert torch.equal(refractory_scan(big, 3), expected)


@pytest.mark.parametrize("R", [0, 1, 4])
def test_module_forward_serial_step_agree(R):
    gen = torch.Generator().manual_seed(R)
    c = torch.bernoulli(torch.full((3, 64, 5), 0.5), generator=gen)
    m = Refractory(R)
    assert isinstance(m, Temporal)
    s = m(c)
    assert torch.equal(s, m.forward_serial(c))
    state = m.initial_state(3, 5)
    assert set(state) == {"r"} and state["r"].dtype == torch.long
    assert state["r"].shape == (3, 5) and not state["r"].any()
    steps = []
    for t in range(c.shape[1]):
        s_t, state = m.step(c[:, t], state if t else None)                         # None = initial
        assert set(state) == {"r"} and state["r"].dtype == torch.long
        assert state["r"].shape == (3, 5)
        assert int(state["r"].min()) >= 0 and int(state["r"].max()) <= R
        steps.append(s_t)
    assert torch.equal(s, torch.stack(steps, dim=1))
    assert torch.equal(s, refractory_loop(c, R))
    assert m.initial_state(2, 4, dtype=torch.float16)["r"].dtype == torch.long


def test_module_takes_batch_time_channels_in_both_forms():
    """forward and forward_serial accept the same inputs, (B, L, C); a (L,) or (B, L) train
    is a ValueError in both, with the fix (the functions take those)."""
    m = Refractory(2)
    for bad in (torch.ones(10), torch.ones(2, 10)):
        for f in (m, m.forward_serial):
            with pytest.raises(ValueError, match=r"c: expected shape \(batch, time, channels\)"):
                f(bad)
    with pytest.raises(ValueError, match="channels"):
        m.initial_state(3)


def test_module_state_carries_across_calls():
    """forward_serial(x, state, return_state=True) continues a stream: two halves equal one
    call, and the state is the countdown a step-by-step run ends with."""
    c = torch.bernoulli(torch.full((2, 41, 3), 0.6), generator=torch.Generator().manual_seed(8))
    m = Refractory(3)
    whole, end = m.forward_serial(c, return_state=True)
    first, mid = m.forward_serial(c[:, :17], return_state=True)
    second, end2 = m.forward_serial(c[:, 17:], mid, return_state=True)
    assert torch.equal(torch.cat([first, second], 1), whole) and torch.equal(whole, m(c))
    assert torch.equal(end["r"], end2["r"])


def test_step_rejects_a_state_of_the_wrong_shape():
    m = Refractory(2)
    with pytest.raises(ValueError, match="state"):
        m.step(torch.ones(3, 5), m.initial_state(3, 4))
    with pytest.raises(ValueError, match="state"):
        m.step(torch.ones(3, 5), torch.zeros(3, 5, dtype=torch.long))            # not a dict
    with pytest.raises(ValueError, match=r"state: missing key 'r'.*initial_state"):
        m.step(torch.ones(3, 5), {})
    with pytest.raises(ValueError, match="state: 'r' holds a batch of 2, expected 3"):
        m.step(torch.ones(3, 5), m.initial_state(2, 5))


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


def _ops(f, c, R, **kw):
    with DispatchLog() as log:
        f(c, R, **kw)
    return log.count


def test_scan_depth_grows_like_log_L():
    """Dispatched aten ops of the scan at a fixed chunk length Q: a fixed set per step of a
    chunk and per level of the scan over the n − 1 chunk maps, so with n − 1 = 2^k chunk maps
    count = a + b k exactly. Q = 1 is the per-step scan (every doubling of L adds b ops). A loop
    over time needs ≥ L ops (checked on the reference loop) and would fail."""
    for Q in (1, 32):
        Ls = [Q * (2 ** k + 1) for k in (4, 6, 8, 10)]                             # n − 1 = 2^k
        counts = [_ops(refractory_scan, torch.ones(2, L, 3), 3, chunk=Q) for L in Ls]
        steps = [b - a for a, b in zip(counts, counts[1:])]
        assert len(set(steps)) == 1, (Q, counts)                                   # additive, constant
        assert 0 < steps[0] / 2 <= 20, (Q, counts)                                 # ops per level
        assert counts[-1] < 2 * counts[0], (Q, counts)                             # 64× longer, < 2× ops
    assert _ops(refractory_loop, torch.ones(2, 64, 3), 3) > 64                      # a loop fails that


def test_scan_gathers_count_the_levels():
    """2⌊log₂(⌈L/Q⌉ − 1)⌋ gathers: two per level of the odd–even scan over the chunk maps."""
    for L, Q in ((1, 1), (2, 1), (3, 1), (1000, 1), (1000, 32), (1024, 32), (1025, 32), (64, 64)):
        with mock.patch.object(torch, "gather", wraps=torch.gather) as spy:
            refractory_scan(torch.ones(1, L, 2), 3, chunk=Q)
        n = -(-L // Q)
        assert spy.call_count == (2 * int(math.log2(n - 1)) if n > 1 else 0), (L, Q)


def _peak_cpu_bytes(fn):
    """Peak of the bytes allocated (and not yet freed) while fn runs, from the CPU allocator's
    events as torch.profiler records them (profile_memory=True); returns (peak, fn())."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak, out


def test_scan_memory_stays_under_half_a_gib_at_the_target_size():
    """B 64, C 128, L 4096, R 8 from a 32 MiB bool input: the scan allocates at most 0.5 GiB
    besides its output (about 0.15 GiB measured when written). The per-step tables (B·C, L, R+1)
    int64 alone would be 2.25 GiB. The measurement is checked to see such tables at a small size
    (chunk = 1 keeps them)."""
    B, C, L, R = 64, 128, 4096, 8
    c = torch.rand(B, L, C, generator=torch.Generator().manual_seed(0)) < 0.3      # (B L C) bool
    peak, s = _peak_cpu_bytes(lambda: refractory_scan(c, R))
    assert s.shape == c.shape and peak >= s.numel()                               # it saw s
    assert peak - s.numel() * s.element_size() <= 2 ** 29, peak
    small = c[:4, :512, :8]
    peak_tables, _ = _peak_cpu_bytes(lambda: refractory_scan(small, R, chunk=1))
    assert peak_tables >= small.numel() * (R + 1) * 8                             # the tables count


def test_default_chunk():
    assert default_chunk(1) == default_chunk(8) == 32
    assert default_chunk(40) == 82 and default_chunk(np.int64(15)) == 32


# -- the fused kernel (Triton): import hygiene, and the kernel itself in Triton's interpreter --

def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})


def test_importing_spikelib_does_not_import_triton():
    """Not on import, and not when refractory_fused refuses a CPU tensor (no interpreter)."""
    out = _run("""
        import sys
        import torch
        import spikelib, spikelib.refractory, spikelib.models
        assert "triton" not in sys.modules, "triton imported"
        try:
            spikelib.refractory.refractory_fused(torch.ones(2, 5, 3), 2)
        except ValueError as err:
            assert str(err).startswith("c:") and ("CUDA" in str(err) or "triton" in str(err))
            assert "triton" not in sys.modules, "triton imported"
            print("ok")
    """, TRITON_INTERPRET="0")
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr


def test_fused_kernel_equals_loop_in_the_triton_interpreter():
    """TRITON_INTERPRET=1 is set before the kernel module is first imported (a fresh process),
    so the kernel runs on CPU tensors: ragged shapes, every R ≤ 16, strided inputs, bool/int/
    fp16, and the gradient s = c · free."""
    pytest.importorskip("triton")
    out = _run("""
        import torch
        from spikelib.refractory import refractory_fused, refractory_loop
        gen = torch.Generator().manual_seed(0)
        shapes = [(3, 13, 5), (2, 1, 3), (1, 24, 1), (4, 17), (29,)]
        for shape in shapes:
            c = (torch.rand(shape, generator=gen) < 0.5).float()
            for R in range(17):
                assert torch.equal(refractory_fused(c, R), refractory_loop(c, R)), (shape, R)
        base = (torch.rand(3, 5, 11, generator=gen) < 0.5).float()
        for c in (base.transpose(1, 2), base[:, 1:4].transpose(1, 2)[:, ::2]):  # strides
            for R in (1, 5):
                assert torch.equal(refractory_fused(c, R), refractory_loop(c, R))
        for dtype in (torch.bool, torch.int64, torch.float16):
            c = (torch.rand(2, 15, 3, generator=gen) < 0.6).to(dtype)
            for R in (1, 3):
                s = refractory_fused(c, R)
                assert s.dtype == dtype and torch.equal(s, refractory_loop(c, R)), dtype
        c = (torch.rand(2, 20, 3, generator=gen) < 0.6).double().requires_grad_()
        g = torch.randn(2, 20, 3, dtype=torch.float64, generator=gen)
        refractory_fused(c, 3).backward(g)
        c2 = c.detach().clone().requires_grad_()
        refractory_loop(c2, 3).backward(g)              # the loop's gradient is g · free
        assert torch.equal(c.grad, c2.grad) and bool((c.grad[c.detach() == 0] != 0).any())
        print("ok")
    """, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr
