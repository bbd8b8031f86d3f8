"""The fixed refractory period as one fused Triton kernel (CUDA; ours).

Imported only by ``spikelib.refractory`` when a CUDA tensor needs it (importing spikelib never
imports triton). With ``TRITON_INTERPRET=1`` set before this module is imported, the kernel runs
on CPU tensors in Triton's interpreter, which is how the tests check it without a GPU.

One program owns BLOCK rows (a batch index and BLOCK consecutive channels) and keeps their
countdowns r in registers while it walks through time: per step one load of c_t, one store of
s_t = c_t if (c_t ≠ 0 and r = 0) else 0, and r ← R if fired else max(r − 1, 0). The input is read once,
the output written once; no table, no mask, no second pass.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _countdown_kernel(c_ptr, s_ptr, L, C, R,
                      c_stride_b, c_stride_t, c_stride_c,
                      s_stride_b, s_stride_t, s_stride_c,
                      BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    ch = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)                 # (BLOCK) channels
    keep = ch < C
    ch = ch.to(tl.int64)
    c_at = c_ptr + b * c_stride_b + ch * c_stride_c                    # pointers at t = 0
    s_at = s_ptr + b * s_stride_b + ch * s_stride_c
    r = tl.zeros([BLOCK], dtype=tl.int32)                              # countdown, r_0 = 0
    for _ in range(L):
        x = tl.load(c_at, mask=keep, other=0)
        fire = (x != 0) & (r == 0)
        tl.store(s_at, tl.where(fire, x, 0), mask=keep)
        r = tl.where(fire, R, tl.maximum(r - 1, 0))
        c_at += c_stride_t
        s_at += s_stride_t


def countdown(c: torch.Tensor, R: int) -> torch.Tensor:
    """s = c · mask for a (B, L, C) view ``c`` (any strides; bool viewed as uint8), 1 ≤ R < 2³¹.
    No autograd here: the caller wraps it."""
    B, L, C = c.shape
    src = c.view(torch.uint8) if c.dtype == torch.bool else c
    s = torch.empty_like(src)                                          # (B L C), c's strides
    if s.numel():
        block = max(1, min(128, triton.next_power_of_2(C)))
        grid = (B, triton.cdiv(C, block))
        _countdown_kernel[grid](src, s, L, C, R, *src.stride(), *s.stride(), BLOCK=block,
                                num_warps=max(1, block // 32))
    return s.view(torch.bool) if c.dtype == torch.bool else s
