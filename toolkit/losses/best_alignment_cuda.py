"""GPU best-alignment DP + backtrace in numba.cuda: one thread block per (layer, example).

The block scans frames; its threads split the tokens of a row, the previous and the
current DP row live in shared memory and the uint8 back-pointers in global memory;
thread 0 backtracks, so only the path (and the optimum) is written out. Recurrences,
tie-breaking and outputs are those of ``best_alignment_reference``. The kernels are
compiled on first use, so this module imports on machines without CUDA.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

try:  # the kernels look `cuda` up as a module global (the CUDA simulator swaps it there)
    from numba import cuda, float32
except Exception:  # numba built without CUDA support
    cuda = None


def available() -> bool:
    """True when numba can drive a CUDA device here."""
    try:
        return cuda is not None and bool(cuda.is_available())
    except Exception:  # no driver
        return False


@functools.lru_cache(maxsize=None)
def _kernels():
    inf = np.float32(math.inf)

    @cuda.jit
    def frames_to_tokens(cost, n_lens, m_lens, ptr, frames, tokens, dp):
        p, tid, bs = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        n, m, M = n_lens[p], m_lens[p], cost.shape[2]
        buf = cuda.shared.array(0, float32)  # rows [0, M) and [M, 2M)
        prev, cur = 0, M
        for j in range(tid, m, bs):
            buf[j] = cost[p, 0, 0] if j == 0 else inf
        cuda.syncthreads()
        for i in range(1, n):
            for j in range(tid, m, bs):  # NaN-safe as the numba kernel: see there
                s = buf[prev + j]
                d = buf[prev + j - 1] if j > 0 else inf
                buf[cur + j] = cost[p, i, j] + (s if (s < d or s != s) else d)
                ptr[p, i, j] = 1 if (j > 0 and not (s < d)) else 0
            cuda.syncthreads()
            prev, cur = cur, prev
        if tid == 0:
            dp[p] = buf[prev + m - 1]
            j = m - 1
            for i in range(n - 1, -1, -1):
                frames[p, i] = i
                tokens[p, i] = j
                if i > 0:
                    j -= ptr[p, i, j]

    @cuda.jit
    def tokens_to_frames(cost, n_lens, m_lens, ptr, frames, tokens, dp):
        p, tid, bs = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        n, m, M = n_lens[p], m_lens[p], cost.shape[2]
        buf = cuda.shared.array(0, float32)
        prev, cur = 0, M
        for j in range(tid, m, bs):
            buf[j] = inf  # E(-1, .)
        cuda.syncthreads()
        for i in range(n):
            for j in range(tid, m, bs):
                take = (buf[prev + j - 1] if j > 0 else float32(0.0)) + cost[p, i, j]
                s = buf[prev + j]
                buf[cur + j] = s if (s < take or s != s) else take
                ptr[p, i, j] = 0 if s < take else 1
            cuda.syncthreads()
            prev, cur = cur, prev
        if tid == 0:
            dp[p] = buf[prev + m - 1]
            j = m - 1
            for i in range(n - 1, -1, -1):
                if j >= 0 and ptr[p, i, j] == 1:
                    frames[p, j] = i
                    tokens[p, j] = j
                    j -= 1

    @cuda.jit
    def dtw(cost, n_lens, m_lens, ptr, frames, tokens, dp):
        p, tid, bs = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
        n, m, M = n_lens[p], m_lens[p], cost.shape[2]
        buf = cuda.shared.array(0, float32)
        prev, cur = 0, M
        if tid == 0:
            buf[0] = cost[p, 0, 0]
            for j in range(1, m):
                buf[j] = buf[j - 1] + cost[p, 0, j]
                ptr[p, 0, j] = 2
        cuda.syncthreads()
        for i in range(1, n):
            for j in range(tid, m, bs):  # diagonal vs vertical, in parallel
                s = buf[prev + j]
                d = buf[prev + j - 1] if j > 0 else inf
                diag = j > 0 and d <= s  # column 0 has only the vertical step, even if s is inf
                buf[cur + j] = d if (diag or d != d) else s  # NaN-propagating min
                ptr[p, i, j] = 0 if diag else 1
            cuda.syncthreads()
            if tid == 0:  # the horizontal step is a sequential scan
                left = inf
                for j in range(m):
                    best = buf[cur + j]
                    if left < best:
                        best = left
                        ptr[p, i, j] = 2
                    if left != left:  # a NaN reaches the optimum
                        best = left
                    buf[cur + j] = cost[p, i, j] + best
                    left = buf[cur + j]
            cuda.syncthreads()
            prev, cur = cur, prev
        if tid == 0:
            dp[p] = buf[prev + m - 1]
            i, j, k = n - 1, m - 1, 0
            while True:
                frames[p, k] = i
                tokens[p, k] = j
                k += 1
                if i == 0 and j == 0:
                    break
                s = ptr[p, i, j]
                if s == 0:
                    i -= 1
                    j -= 1
                elif s == 1:
                    i -= 1
                else:
                    j -= 1
            for a in range(k // 2):  # the backtrace ran end to start
                b = k - 1 - a
                f, g = frames[p, a], tokens[p, a]
                frames[p, a] = frames[p, b]
                tokens[p, a] = tokens[p, b]
                frames[p, b] = f
                tokens[p, b] = g
            n_lens[p] = k  # n_lens is a scratch copy: it returns the pair count

    return {"frames_to_tokens": frames_to_tokens, "tokens_to_frames": tokens_to_frames, "dtw": dtw}


def _launch(pattern, P, M, arrays, stream=0):
    if P == 0:  # CUDA refuses an empty grid
        return
    threads = min(256, max(32, 1 << (M - 1).bit_length()))
    _kernels()[pattern][P, threads, stream, 2 * M * 4](*arrays)


def _width(pattern, N, M):
    return {"frames_to_tokens": N, "tokens_to_frames": M, "dtw": N + M - 1}[pattern]


def best_path_cuda(cost: torch.Tensor, n_lens: torch.Tensor, m_lens: torch.Tensor, pattern: str):
    """cost (P, N, M) float32 on CUDA; lengths (P,). Outputs as the reference, on the GPU."""
    P, N, M = cost.shape
    dev = cost.device
    cost = cost.detach().float().contiguous()
    nl = n_lens.to(dev, torch.int64).contiguous().clone()  # the dtw kernel writes pair counts here
    ml = m_lens.to(dev, torch.int64).contiguous()
    K = _width(pattern, N, M)
    ptr = torch.zeros(P, N, M, dtype=torch.uint8, device=dev)
    frames = torch.full((P, K), -1, dtype=torch.int64, device=dev)
    tokens = torch.full((P, K), -1, dtype=torch.int64, device=dev)
    dp = torch.zeros(P, dtype=torch.float32, device=dev)
    stream = cuda.external_stream(torch.cuda.current_stream(dev).cuda_stream)
    _launch(pattern, P, M, [cuda.as_cuda_array(x) for x in (cost, nl, ml, ptr, frames, tokens, dp)], stream)
    lengths = {"frames_to_tokens": n_lens.to(dev), "tokens_to_frames": m_lens.to(dev), "dtw": nl}[pattern]
    return frames, tokens, lengths.long(), dp


def best_path_host(cost: np.ndarray, n_lens: np.ndarray, m_lens: np.ndarray, pattern: str):
    """The same kernels on host numpy arrays (copied to the device); runs under NUMBA_ENABLE_CUDASIM=1."""
    P, N, M = cost.shape
    K = _width(pattern, N, M)
    host = [np.ascontiguousarray(cost, np.float32), np.array(n_lens, np.int64), np.array(m_lens, np.int64),
            np.zeros((P, N, M), np.uint8), np.full((P, K), -1, np.int64), np.full((P, K), -1, np.int64),
            np.zeros(P, np.float32)]
    dev = [cuda.to_device(x) for x in host]
    _launch(pattern, P, M, dev)
    nl, frames, tokens, dp = (dev[i].copy_to_host() for i in (1, 4, 5, 6))
    lengths = {"frames_to_tokens": np.array(n_lens, np.int64), "tokens_to_frames": np.array(m_lens, np.int64),
               "dtw": nl}[pattern]
    return frames, tokens, lengths, dp
