"""CPU best-alignment DP + backtrace in numba, parallel over (layer x example) pairs.

Same recurrences, tie-breaking and outputs as ``best_alignment_reference``. Each pair
keeps two DP rows (previous / current) and an (n, m) uint8 pointer table, and visits
only the band of cells that can still reach (n-1, m-1) (as monotonic_align does); the
frames_to_tokens and tokens_to_frames row updates read only the previous row, so the
loop over tokens has no loop-carried dependency and LLVM vectorises it. The threads
used are min(numba.get_num_threads(), torch.get_num_threads(), one per 2^20 DP cells).
"""
from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange

INF = np.float32(np.inf)


# Row updates over slices indexed from 0: no loop-carried dependency and indices LLVM
# can prove non-negative, so the loops vectorise (vcmpleps + vblendvps on AVX2).
# Non-finite costs: the pointer takes the diagonal (f2t) / the take (t2f) unless the other
# step is strictly smaller, so a NaN never turns the path off the band (an unreachable
# neighbour is +inf or NaN, never smaller): the backtrace is always a valid alignment.
# The value is a NaN-propagating min, so a NaN anywhere in the band reaches the optimum.
@njit(cache=True, nogil=True, inline="always")
def _diag_or_stay(diag, stay, c, out, ptr):
    for k in range(len(out)):
        d = diag[k]
        s = stay[k]
        out[k] = c[k] + (s if (s < d or s != s) else d)
        ptr[k] = not (s < d)


@njit(cache=True, nogil=True, inline="always")
def _take_or_skip(diag, skip, c, out, ptr):
    for k in range(len(out)):
        take = diag[k] + c[k]
        s = skip[k]
        out[k] = s if (s < take or s != s) else take
        ptr[k] = not (s < take)


@njit(cache=True, nogil=True)
def _frames_to_tokens_one(c, n, m, frames, tokens):
    ptr = np.empty((n, m), np.uint8)  # 1 = came diagonally (token advanced)
    prev = np.full(m, INF, np.float32)
    cur = np.full(m, INF, np.float32)
    prev[0] = c[0, 0]
    for i in range(1, n):
        ci = c[i]
        pi = ptr[i]
        # only the band lo..hi can still reach (n-1, m-1); it reads prev[lo-1..hi]
        lo, hi = max(0, i - (n - m)), min(i, m - 1)
        if lo == 0:
            cur[0] = ci[0] + prev[0]
            pi[0] = 0
        a = max(lo, 1)
        _diag_or_stay(prev[a - 1:hi], prev[a:hi + 1], ci[a:hi + 1], cur[a:hi + 1], pi[a:hi + 1])
        if hi + 1 < m:
            cur[hi + 1] = INF  # the next row reads one cell past this band
        prev, cur = cur, prev
    j = m - 1
    for i in range(n - 1, -1, -1):
        frames[i] = i
        tokens[i] = j
        if i > 0:
            j -= ptr[i, j]
    return prev[m - 1]


@njit(cache=True, nogil=True)
def _tokens_to_frames_one(c, n, m, frames, tokens):
    ptr = np.empty((n, m), np.uint8)  # 1 = token j takes frame i
    prev = np.full(m, INF, np.float32)  # E(-1, .)
    cur = np.full(m, INF, np.float32)
    for i in range(n):
        ci = c[i]
        pi = ptr[i]
        lo, hi = max(0, i - (n - m)), min(i, m - 1)  # the band that can still reach (n-1, m-1)
        if lo == 0:
            take = np.float32(0.0) + ci[0]
            s = prev[0]
            cur[0] = s if (s < take or s != s) else take
            pi[0] = not (s < take)
        a = max(lo, 1)
        _take_or_skip(prev[a - 1:hi], prev[a:hi + 1], ci[a:hi + 1], cur[a:hi + 1], pi[a:hi + 1])
        if hi + 1 < m:
            cur[hi + 1] = INF
        prev, cur = cur, prev
    j = m - 1
    for i in range(n - 1, -1, -1):
        if j < 0:
            break
        if ptr[i, j]:
            frames[j] = i
            tokens[j] = j
            j -= 1
    return prev[m - 1]


@njit(cache=True, nogil=True)
def _dtw_one(c, n, m, frames, tokens):
    ptr = np.empty((n, m), np.uint8)  # 0 diagonal, 1 vertical, 2 horizontal
    prev = np.empty(m, np.float32)
    cur = np.empty(m, np.float32)
    prev[0] = c[0, 0]
    for j in range(1, m):
        prev[j] = prev[j - 1] + c[0, j]
        ptr[0, j] = 2
    for i in range(1, n):
        ci = c[i]
        cur[0] = ci[0] + prev[0]
        ptr[i, 0] = 1
        for j in range(1, m):  # the horizontal step makes this a sequential scan
            d = prev[j - 1]
            s = prev[j]
            best = d
            step = 0
            if s < d:
                best = s
                step = 1
            left = cur[j - 1]
            if left < best:
                best = left
                step = 2
            if s != s or left != left:  # a NaN reaches the optimum (any step is a valid path here)
                best = np.float32(np.nan)
            cur[j] = ci[j] + best
            ptr[i, j] = step
        prev, cur = cur, prev
    i, j, k = n - 1, m - 1, 0
    while True:  # backtrace into the tail, then shift to the front
        frames[k] = i
        tokens[k] = j
        k += 1
        if i == 0 and j == 0:
            break
        s = ptr[i, j]
        if s == 0:
            i -= 1
            j -= 1
        elif s == 1:
            i -= 1
        else:
            j -= 1
    frames[:k] = frames[:k][::-1].copy()
    tokens[:k] = tokens[:k][::-1].copy()
    return prev[m - 1], k


@njit(cache=True, nogil=True)
def _solve(cost, n_lens, m_lens, kind, frames, tokens, lengths, dp, a, t, p):
    if a.shape[0]:  # cost holds a.t: make this example's squared distances while it is in cache
        _squared_distances_one(cost, a, t, p)
    n, m = n_lens[p], m_lens[p]
    if kind == 0:
        dp[p] = _frames_to_tokens_one(cost[p], n, m, frames[p], tokens[p])
        lengths[p] = n
    elif kind == 1:
        dp[p] = _tokens_to_frames_one(cost[p], n, m, frames[p], tokens[p])
        lengths[p] = m
    else:
        dp[p], lengths[p] = _dtw_one(cost[p], n, m, frames[p], tokens[p])


# Two functions, not one compiled twice: numba's on-disk cache is keyed by the function's
# name and source line, not by its flags, so njit(parallel=True) and njit() of the same
# function shared one cache entry and the "parallel" build could be the serial one.
@njit(parallel=True, cache=True)
def _batch_parallel(cost, n_lens, m_lens, kind, frames, tokens, lengths, dp, a, t):
    for p in prange(cost.shape[0]):
        _solve(cost, n_lens, m_lens, kind, frames, tokens, lengths, dp, a, t, p)


# A one-thread call runs the serial build: a parallel region would wake numba's thread pool
# for nothing (under the omp layer, which a user may still choose, that pool's idle threads
# spun beside torch's; two training processes on two cores fell from 1.5 to 0.1 steps/s).
@njit(cache=True)
def _batch_serial(cost, n_lens, m_lens, kind, frames, tokens, lengths, dp, a, t):
    for p in range(cost.shape[0]):
        _solve(cost, n_lens, m_lens, kind, frames, tokens, lengths, dp, a, t, p)


MIN_CELLS_PER_THREAD = 1 << 20
KINDS = {"frames_to_tokens": 0, "tokens_to_frames": 1, "dtw": 2}


def best_path_numba(cost: torch.Tensor, n_lens: torch.Tensor, m_lens: torch.Tensor, pattern: str,
                    operands: tuple[torch.Tensor, torch.Tensor] | None = None):
    """cost (P, N, M) float32 CPU (read zero-copy); lengths (P,). Outputs as the reference.

    operands (a (P, N, d), t (P, M, d)) float32: ``cost`` holds the dot products a.t^T and
    each example's block becomes ||a_i - t_j||^2 in place (as squared_distances_from_dots)
    just before its DP, while it is still in the core's cache: one trip through memory
    for the cost matrix instead of three (write distances, read them back for the DP).
    """
    P, N, M = cost.shape
    if operands is not None and not (cost.dtype == torch.float32 and cost.is_contiguous()):
        raise ValueError("best_path_numba: with operands, cost must be the contiguous float32 dot products")
    c = cost.detach().float().contiguous().numpy()
    if operands is None:
        a = t = np.empty((0, 0, 0), np.float32)
    else:
        a, t = (x.detach().float().contiguous().numpy() for x in operands)
        if a.shape[:2] != (P, N) or t.shape[:2] != (P, M):
            raise ValueError(f"best_path_numba: operands {a.shape}, {t.shape} do not match cost {tuple(cost.shape)}")
    nl = n_lens.long().contiguous().numpy()
    ml = m_lens.long().contiguous().numpy()
    K = {"frames_to_tokens": N, "tokens_to_frames": M, "dtw": N + M - 1}[pattern]
    frames = np.full((P, K), -1, np.int64)
    tokens = np.full((P, K), -1, np.int64)
    lengths = np.zeros(P, np.int64)
    dp = np.zeros(P, np.float32)
    # small problems stay on one thread: waking a pool costs more than it saves on a busy machine
    _run(_batch_serial, _batch_parallel, (c, nl, ml, KINDS[pattern], frames, tokens, lengths, dp, a, t),
         int(nl @ ml) // MIN_CELLS_PER_THREAD)
    return (torch.from_numpy(frames), torch.from_numpy(tokens),
            torch.from_numpy(lengths), torch.from_numpy(dp))



# --- the cost matrix's norms -------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=True)
def _sum_of_squares(x):
    """sum x_k^2 in float32; fastmath lets LLVM reorder the sum into vector lanes."""
    acc = np.float32(0.0)
    for k in range(x.shape[0]):
        acc += x[k] * x[k]
    return acc


@njit(cache=True, nogil=True)
def _squared_distances_one(dots, a, t, p):
    """dots[p] (n, m) = a[p] . t[p]^T -> max(|t_j|^2 - 2 a_i.t_j + |a_i|^2, 0) in place."""
    m = t.shape[1]
    t2 = np.empty(m, np.float32)
    for j in range(m):
        t2[j] = _sum_of_squares(t[p, j])
    for i in range(a.shape[1]):
        ai = _sum_of_squares(a[p, i])
        row = dots[p, i]
        for j in range(m):  # baddbmm(|t|^2, a, t^T, alpha=-2) + |a|^2 in its order; NaN stays NaN
            c = (t2[j] - np.float32(2.0) * row[j]) + ai
            row[j] = np.float32(0.0) if c < 0 else c


@njit(parallel=True, cache=True)
def _squared_distances_parallel(dots, a, t):
    for p in prange(dots.shape[0]):
        _squared_distances_one(dots, a, t, p)


@njit(cache=True)
def _squared_distances_serial(dots, a, t):
    for p in range(dots.shape[0]):
        _squared_distances_one(dots, a, t, p)


def squared_distances_from_dots(dots: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> None:
    """In place on CPU float32 tensors: dots (P, n, m) = a.t -> ||a_i - t_j||^2 (clamped at 0)
    with a (P, n, d), t (P, m, d): the norms and the sum in one pass over each, on
    min(numba, torch) threads, instead of a broadcast copy, a GEMM with beta = 1 and passes
    of elementwise ops (they doubled a plain GEMM's time)."""
    args = (dots.numpy(), a.contiguous().numpy(), t.contiguous().numpy())
    _run(_squared_distances_serial, _squared_distances_parallel, args, dots.shape[0])


def _run(serial, parallel, args, wanted: int) -> None:
    """The serial build on one thread, else the parallel one on min(numba's, torch's,
    ``wanted``) threads, numba's own setting restored after."""
    threads = min(numba.get_num_threads(), torch.get_num_threads(), max(1, wanted))
    if threads <= 1:
        serial(*args)
        return
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        parallel(*args)
    finally:
        numba.set_num_threads(before)


# --- the loss's backward on the path pairs -----------------------------------------------------
@njit(cache=True, nogil=True, fastmath=False)
def _pair_grads_one(a, t, f, g, weight, scale, n, m, K, grad_a, grad_t, p):
    """Rows of pair p: zero them, then for each path pair q = p K + k with weight 1,
    grad_a[f_q] += scale_p (a_f - t_g), grad_t[g_q] -= the same. A path only uses its own
    example's rows, so pairs of different p never write the same row."""
    grad_a[p * n:(p + 1) * n] = 0.0
    grad_t[p * m:(p + 1) * m] = 0.0
    s = scale[p]
    if s == 0.0:  # no gradient asked for: nothing passes, not even a NaN row's
        return
    d = a.shape[1]
    for k in range(K):
        q = p * K + k
        if weight[q] == 0.0:
            continue
        i = p * n + k if f.shape[0] == 0 else f[q]
        j = g[q]
        ai, tj, gai, gtj = a[i], t[j], grad_a[i], grad_t[j]
        for e in range(d):
            v = s * (ai[e] - tj[e])
            gai[e] += v
            gtj[e] -= v


@njit(parallel=True, cache=True)
def _pair_grads_parallel(a, t, f, g, weight, scale, n, m, K, grad_a, grad_t):
    for p in prange(scale.shape[0]):
        _pair_grads_one(a, t, f, g, weight, scale, n, m, K, grad_a, grad_t, p)


@njit(cache=True)
def _pair_grads_serial(a, t, f, g, weight, scale, n, m, K, grad_a, grad_t):
    for p in range(scale.shape[0]):
        _pair_grads_one(a, t, f, g, weight, scale, n, m, K, grad_a, grad_t, p)


def path_pair_grads(a: torch.Tensor, t: torch.Tensor, f: torch.Tensor | None, g: torch.Tensor,
                    weight: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of sum_p scale_p / 2 sum_{q in p's path} ||a_{f_q} - t_{g_q}||^2, on the CPU.

    a (P n, d), t (P m, d) float32 rows of P examples; f (P K,) rows of a or None (the
    frames 0..K-1 of each example, K == n), g (P K,) rows of t, weight (P K,) 1 on the
    path, 0 on padding; scale (P,) = 2 x the loss's upstream gradient. One pass over the
    path's rows, in place of a gather, a subtraction, two elementwise passes and two
    scatters over a (P K, d) temporary (each a trip through memory).
    """
    P = scale.shape[0]
    n, m, K = a.shape[0] // P, t.shape[0] // P, g.shape[0] // P
    grad_a, grad_t = torch.empty_like(a), torch.empty_like(t)
    args = (a.contiguous().numpy(), t.contiguous().numpy(),
            np.empty(0, np.int64) if f is None else f.contiguous().numpy(), g.contiguous().numpy(),
            weight.float().contiguous().numpy(), scale.float().contiguous().numpy(), n, m, K,
            grad_a.numpy(), grad_t.numpy())
    _run(_pair_grads_serial, _pair_grads_parallel, args, min(P, a.numel() // MIN_CELLS_PER_THREAD))
    return grad_a, grad_t
