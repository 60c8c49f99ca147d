"""GPU transducer forward-backward in numba.cuda: one thread block per example, float32.

alpha and beta are swept along anti-diagonals t + u = d: every cell of a diagonal reads only
the previous one, so the block's threads split the symbol positions u of a diagonal and
meet at a barrier between diagonals (T + U steps per sweep, no host round trip). All
arithmetic is float32 in log space (logaddexp as max + log1p(exp(-|a - b|))); the arc
gradients -exp(alpha + arc + beta_next - loglik) are written by the same block. Recurrences
and outputs are those of the CPU kernel in ``toolkit.losses.transducer``. The kernel is
compiled on first use, so this module imports on machines without CUDA.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

try:  # the kernel looks `cuda` up as a module global (the CUDA simulator swaps it there)
    from numba import cuda, float32
except Exception:  # numba built without CUDA support
    cuda = None

from toolkit.losses.best_alignment_cuda import available  # noqa: F401  (one test of the driver)


@functools.lru_cache(maxsize=None)
def _kernel():
    ninf = float32(-math.inf)

    @cuda.jit
    def forward_backward(blank_lp, label_lp, t_lens, u_lens, alpha, beta, costs, grad_blank, grad_label):
        b, tid, bs = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        T, U = t_lens[b], u_lens[b]
        for d in range(T + U):  # alpha, diagonal by diagonal
            for u in range(tid, U + 1, bs):
                t = d - u
                if 0 <= t < T:
                    a = float32(0.0) if d == 0 else ninf
                    if t > 0:
                        a = alpha[b, t - 1, u] + blank_lp[b, t - 1, u]
                    if u > 0:  # logaddexp inline (a device function, even max(), needs a driver to compile PTX)
                        x = alpha[b, t, u - 1] + label_lp[b, t, u - 1]
                        if a == ninf:
                            a = x
                        elif x != ninf:
                            a = (a if a > x else x) + math.log1p(math.exp(-abs(a - x)))
                    alpha[b, t, u] = a
            cuda.syncthreads()
        for d in range(T + U - 1, -1, -1):  # beta, from the last diagonal back
            for u in range(tid, U + 1, bs):
                t = d - u
                if 0 <= t < T:
                    if t == T - 1:
                        bb = blank_lp[b, t, u] if u == U else ninf  # the final blank ends the path
                    else:
                        bb = beta[b, t + 1, u] + blank_lp[b, t, u]
                    if u < U:
                        x = beta[b, t, u + 1] + label_lp[b, t, u]
                        if bb == ninf:
                            bb = x
                        elif x != ninf:
                            bb = (bb if bb > x else x) + math.log1p(math.exp(-abs(bb - x)))
                    beta[b, t, u] = bb
            cuda.syncthreads()
        loglik = beta[b, 0, 0]
        if tid == 0:
            costs[b] = -loglik
        for k in range(tid, T * (U + 1), bs):
            t, u = k // (U + 1), k % (U + 1)
            if t == T - 1:
                nxt = float32(0.0) if u == U else ninf
            else:
                nxt = beta[b, t + 1, u]
            grad_blank[b, t, u] = -math.exp(alpha[b, t, u] + blank_lp[b, t, u] + nxt - loglik)
            if u < U:
                grad_label[b, t, u] = -math.exp(alpha[b, t, u] + label_lp[b, t, u] + beta[b, t, u + 1] - loglik)

    return forward_backward


def _launch(B, U_max, arrays, stream=0):
    if B == 0:  # CUDA refuses an empty grid
        return
    threads = min(256, max(32, 1 << int(U_max).bit_length()))  # >= U_max + 1 up to 256
    _kernel()[B, threads, stream](*arrays)


def forward_backward_cuda(blank_lp: torch.Tensor, label_lp: torch.Tensor, t_lens: torch.Tensor,
                          u_lens: torch.Tensor):
    """blank_lp (B, T, U+1), label_lp (B, T, U) on CUDA; lengths (B,). -> costs (B,), the NLL's
    gradients with respect to blank_lp and label_lp; float32, on the inputs' device."""
    B, T, U1 = blank_lp.shape
    dev = blank_lp.device
    bl = blank_lp.detach().float().contiguous()
    ll = label_lp.detach().float().contiguous()
    tl = t_lens.to(dev, torch.int64).contiguous()
    ul = u_lens.to(dev, torch.int64).contiguous()
    alpha, beta = torch.empty_like(bl), torch.empty_like(bl)  # scratch: cells past the lengths stay unread
    costs = torch.zeros(B, dtype=torch.float32, device=dev)
    gb, gl = torch.zeros_like(bl), torch.zeros_like(ll)  # padding cells keep a zero gradient
    stream = cuda.external_stream(torch.cuda.current_stream(dev).cuda_stream)
    arrays = [cuda.as_cuda_array(x) for x in (bl, ll, tl, ul, alpha, beta, costs, gb, gl)]
    _launch(B, U1 - 1, arrays, stream)
    return costs, gb, gl


def forward_backward_host(blank_lp: np.ndarray, label_lp: np.ndarray, t_lens, u_lens):
    """The same kernel on host arrays (copied to the device); runs under NUMBA_ENABLE_CUDASIM=1."""
    bl = np.ascontiguousarray(blank_lp, np.float32)
    ll = np.ascontiguousarray(label_lp, np.float32)
    B = bl.shape[0]
    host = [bl, ll, np.array(t_lens, np.int64), np.array(u_lens, np.int64), np.empty_like(bl),
            np.empty_like(bl), np.zeros(B, np.float32), np.zeros_like(bl), np.zeros_like(ll)]
    dev = [cuda.to_device(x) for x in host]
    _launch(B, bl.shape[2] - 1, dev)
    return tuple(dev[i].copy_to_host() for i in (6, 7, 8))
