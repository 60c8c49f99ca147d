"""Pure-PyTorch best-alignment DP: a loop over frames, vectorised over tokens and examples.

The slow, obviously correct reference for the numba/CUDA kernels and the benchmark
baseline. Works on any device. Every function takes a float32 cost tensor
``cost (P, N, M)`` (P = layers x examples, padded) and lengths ``n_lens, m_lens (P,)``
and returns ``(frames, tokens, lengths, dp_cost)``: the path as (frame, token) index
pairs ``(P, K)`` padded with -1, the pair counts ``(P,)`` and the DP's optimum ``(P,)``.

Tie-breaking (identical in every backend): prefer the diagonal step, then the vertical
one (next frame, same token), then the horizontal one (dtw only); in
``tokens_to_frames`` a token prefers the latest frame that attains the optimum.

Non-finite costs (identical in every backend): the min is NaN-propagating, so a NaN in a
cell that any alignment can use makes the optimum NaN, and the steps are chosen so that
the backtrace stays a valid alignment whatever the values (``best_path`` then reports
every non-finite optimum as NaN).
"""
from __future__ import annotations

import torch

INF = float("inf")


def _take_final(final, row, n_lens, m_lens, i):
    """Keep ``row[m_b - 1]`` for the examples whose last frame is ``i``."""
    here = row.gather(1, (m_lens - 1).clamp(min=0)[:, None])[:, 0]  # (P,)
    return torch.where(n_lens - 1 == i, here, final)


def frames_to_tokens(cost, n_lens, m_lens):
    """D(i,j) = c(i,j) + min(D(i-1,j), D(i-1,j-1)); each frame gets one token, K = N."""
    P, N, M = cost.shape
    dev = cost.device
    ptr = torch.zeros(P, N, M, dtype=torch.bool, device=dev)  # True = came diagonally
    inf_col = torch.full((P, 1), INF, device=dev)
    row = torch.cat([cost[:, 0, :1], inf_col.expand(P, M - 1)], 1)  # (P, M)
    final = _take_final(torch.full((P,), INF, device=dev), row, n_lens, m_lens, 0)
    for i in range(1, N):
        diag = torch.cat([inf_col, row[:, :-1]], 1)
        take_diag = ~(row < diag)  # the diagonal unless staying is strictly better (NaN: diagonal)
        take_diag[:, 0] = False  # token 0 can only stay
        best = torch.where(take_diag, diag, row)
        row = cost[:, i] + torch.where(row.isnan(), row, best)
        ptr[:, i] = take_diag
        final = _take_final(final, row, n_lens, m_lens, i)
    ar = torch.arange(P, device=dev)
    tokens = torch.full((P, N), -1, dtype=torch.long, device=dev)
    j = m_lens - 1
    for i in range(N - 1, -1, -1):
        active = i < n_lens
        tokens[active, i] = j[active]
        if i > 0:
            j = j - (ptr[ar, i, j.clamp(min=0)] & active).long()
    frames = torch.arange(N, device=dev).expand(P, N)
    frames = torch.where(tokens >= 0, frames, torch.full_like(frames, -1))
    return frames, tokens, n_lens.clone(), final


def tokens_to_frames(cost, n_lens, m_lens):
    """E(i,j) = min(E(i-1,j), E(i-1,j-1) + c(i,j)): token j picks frame i, strictly increasing; K = M."""
    P, N, M = cost.shape
    dev = cost.device
    ptr = torch.zeros(P, N, M, dtype=torch.bool, device=dev)  # True = token j takes frame i
    row = torch.full((P, M), INF, device=dev)  # E(-1, .): no frame used yet
    zero_col = torch.zeros(P, 1, device=dev)  # E(., -1) = 0: no token placed yet
    final = torch.full((P,), INF, device=dev)
    for i in range(N):
        take = torch.cat([zero_col, row[:, :-1]], 1) + cost[:, i]
        took = ~(row < take)  # take unless skipping is strictly better (NaN: take)
        row = torch.where(took & ~row.isnan(), take, row)
        ptr[:, i] = took
        final = _take_final(final, row, n_lens, m_lens, i)
    ar = torch.arange(P, device=dev)
    frames = torch.full((P, M), -1, dtype=torch.long, device=dev)
    j = m_lens - 1
    for i in range(N - 1, -1, -1):
        took = ptr[ar, i, j.clamp(min=0)] & (i < n_lens) & (j >= 0)
        frames[ar[took], j[took]] = i
        j = j - took.long()
    tokens = torch.arange(M, device=dev).expand(P, M)
    tokens = torch.where(frames >= 0, tokens, torch.full_like(tokens, -1))
    return frames, tokens, m_lens.clone(), final


def dtw(cost, n_lens, m_lens):
    """Symmetric DTW: D(i,j) = c(i,j) + min(D(i-1,j-1), D(i-1,j), D(i,j-1)); K <= N + M - 1."""
    P, N, M = cost.shape
    dev = cost.device
    ptr = torch.zeros(P, N, M, dtype=torch.uint8, device=dev)  # 0 diag, 1 vertical, 2 horizontal
    inf_col = torch.full((P, 1), INF, device=dev)
    row = cost[:, 0].clone()
    for j in range(1, M):  # sequential, as the kernels add, so ties break identically
        row[:, j] = row[:, j - 1] + cost[:, 0, j]
    ptr[:, 0, 1:] = 2
    final = _take_final(torch.full((P,), INF, device=dev), row, n_lens, m_lens, 0)
    for i in range(1, N):
        diag = torch.cat([inf_col, row[:, :-1]], 1)
        take_diag = diag <= row
        take_diag[:, 0] = False  # column 0 has only the vertical step, even when both are inf
        best = torch.where(take_diag | diag.isnan(), diag, row)
        step = torch.where(take_diag, 0, 1).to(torch.uint8)
        new = torch.empty_like(row)
        left = inf_col[:, 0]
        for j in range(M):  # the horizontal step makes the row a sequential scan
            horiz = left < best[:, j]
            step[:, j] = torch.where(horiz, 2, step[:, j]).to(torch.uint8)
            new[:, j] = cost[:, i, j] + torch.where(horiz | left.isnan(), left, best[:, j])
            left = new[:, j]
        row = new
        ptr[:, i] = step
        final = _take_final(final, row, n_lens, m_lens, i)
    return _backtrace_dtw(ptr.cpu(), n_lens.cpu(), m_lens.cpu(), final, dev)


def _backtrace_dtw(ptr, n_lens, m_lens, final, dev):
    P, N, M = ptr.shape
    frames = torch.full((P, N + M - 1), -1, dtype=torch.long)
    tokens = torch.full((P, N + M - 1), -1, dtype=torch.long)
    lengths = torch.zeros(P, dtype=torch.long)
    for p in range(P):
        i, j = int(n_lens[p]) - 1, int(m_lens[p]) - 1
        pairs = [(i, j)]
        while i > 0 or j > 0:
            s = int(ptr[p, i, j])
            i, j = (i - 1, j - 1) if s == 0 else (i - 1, j) if s == 1 else (i, j - 1)
            pairs.append((i, j))
        pairs.reverse()
        lengths[p] = len(pairs)
        frames[p, : len(pairs)] = torch.tensor([a for a, _ in pairs])
        tokens[p, : len(pairs)] = torch.tensor([b for _, b in pairs])
    return frames.to(dev), tokens.to(dev), lengths.to(dev), final


PATTERNS = {"frames_to_tokens": frames_to_tokens, "tokens_to_frames": tokens_to_frames, "dtw": dtw}


def best_path_reference(cost, n_lens, m_lens, pattern):
    """Dispatch to the pattern's reference DP; see the module docstring for the outputs."""
    return PATTERNS[pattern](cost, n_lens, m_lens)
