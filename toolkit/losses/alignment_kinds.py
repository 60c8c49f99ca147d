"""Alignments the consistency loss can pull along, besides the best one (DESIGN.md s.4b).

Usage::

    from toolkit.losses.alignment_kinds import uniform_path, ctc_forced_path, path_loss, soft_alignment_loss
    path = uniform_path(speech_lens, text_lens, n_max)            # frame i -> floor(i m / n)
    path, fallbacks = ctc_forced_path(log_probs, speech_lens, phones, phone_lens)   # an aligner's Viterbi
    path = durations_path(durations, speech_lens, n_max)          # frame t -> the phone its duration covers
    loss = path_loss(speech, speech_lens, text, text_lens, path)  # (B,), pass-through like the best path
    loss = soft_alignment_loss(speech, speech_lens, text, text_lens, gamma=1.0)   # soft-DTW style, gamma per dim

Every path here is a ``frames_to_tokens`` :class:`AlignmentPath`: one text position per
speech frame, non-decreasing, every position used (n >= m), so the loss along it is
directly comparable to the best path's. ``uniform`` is the upsampling heuristic;
``forced`` follows an explicit aligner's durations (:func:`durations_path`), which come
from the Viterbi path of a phoneme CTC model (:func:`ctc_forced_path`: blank frames go to
the phone emitted last, leading blanks to the first); ``soft`` replaces the DP's min by a
smoothed min, ``-g log sum exp(-x / g)`` with ``g = gamma * d`` (gamma is per dimension:
costs are sums over d dimensions), so the loss is the soft minimum over *all* monotonic
alignments and its gradient is their expected occupation (no pass-through).
"""
from __future__ import annotations

import torch

from toolkit.losses.best_alignment import AlignmentPath, normalize_cost, path_cost

_UNREACHABLE = 1.0e30


def _frames_to_tokens_path(tokens: torch.Tensor, speech_lens: torch.Tensor) -> AlignmentPath:
    """tokens (B, n_max) position per frame -> AlignmentPath padded with -1 past n_b."""
    B, n_max = tokens.shape
    frames = torch.arange(n_max, device=tokens.device).expand(B, n_max)
    valid = frames < speech_lens.to(tokens.device)[:, None]
    frames = torch.where(valid, frames, -1)
    tokens = torch.where(valid, tokens, -1)
    return AlignmentPath(frames, tokens, speech_lens.to(torch.int64).cpu(), torch.zeros(B))


def uniform_path(speech_lens: torch.Tensor, text_lens: torch.Tensor, n_max: int) -> AlignmentPath:
    """Frame i of n_b -> position floor(i m_b / n_b): each position repeated about n_b/m_b
    times (the upsampling heuristic). With n_b < m_b positions are skipped (no error)."""
    n = speech_lens.to(torch.int64).cpu()[:, None]
    m = text_lens.to(torch.int64).cpu()[:, None]
    i = torch.arange(n_max)[None, :]
    return _frames_to_tokens_path(torch.div(i * m, n.clamp(min=1), rounding_mode="floor"), speech_lens)


def ctc_forced_path(log_probs: torch.Tensor, speech_lens: torch.Tensor, labels: torch.Tensor,
                    label_lens: torch.Tensor, blank: int = 0) -> tuple[AlignmentPath, list[int]]:
    """Viterbi forced alignment of ``labels`` under CTC ``log_probs`` -> (path, fallbacks).

    log_probs (B, T, V) log-softmax outputs (no gradient is taken); labels (B, U).
    Frame t goes to the label position of the CTC state it occupies; a blank frame to the
    label emitted before it (to position 0 before the first). An example CTC cannot align
    (T_b shorter than its labels plus repeats) gets the uniform path; ``fallbacks`` lists them.
    """
    lp = log_probs.detach().float().cpu()
    B, T, _ = lp.shape
    labels = labels.cpu().to(torch.int64)
    U = labels.shape[1]
    S = 2 * U + 1
    ext = torch.full((B, S), blank, dtype=torch.int64)
    ext[:, 1::2] = labels
    s_idx = torch.arange(S)
    n_states = 2 * label_lens.cpu().to(torch.int64) + 1  # (B,)
    state_ok = s_idx[None, :] < n_states[:, None]
    # the skip transition s-2 -> s: into a label that differs from the label two states back
    skip_ok = torch.zeros(B, S, dtype=torch.bool)
    skip_ok[:, 3::2] = labels[:, 1:] != labels[:, :-1]
    neg = torch.tensor(float("-inf"))
    emit = lp.gather(2, ext[:, None, :].expand(B, T, S))  # (B, T, S)
    score = torch.where(s_idx[None, :] < 2, emit[:, 0], neg)
    score = torch.where(state_ok, score, neg)
    back = torch.zeros(B, T, S, dtype=torch.int64)
    for t in range(1, T):
        stay = score
        step = torch.cat([torch.full((B, 1), neg), score[:, :-1]], 1)
        skip = torch.where(skip_ok, torch.cat([torch.full((B, 2), neg), score[:, :-2]], 1), neg)
        cand = torch.stack([stay, step, skip], -1)  # (B, S, 3)
        best, arg = cand.max(-1)
        new = torch.where(state_ok, best + emit[:, t], neg)
        active = (t < speech_lens.cpu())[:, None]
        score = torch.where(active, new, score)
        back[:, t] = torch.where(active, arg, 0)
    tokens = torch.zeros(B, T, dtype=torch.int64)
    fallbacks = []
    for b in range(B):
        n, last = int(speech_lens[b]), int(n_states[b]) - 1
        ends = [s for s in (last, last - 1) if s >= 0]
        s = max(ends, key=lambda x: float(score[b, x]))
        if not torch.isfinite(score[b, s]) or int(label_lens[b]) == 0:
            fallbacks.append(b)
            continue
        for t in range(n - 1, -1, -1):
            tokens[b, t] = max(0, (s - 1) // 2)  # label state 2k+1 -> k; blank 2k -> k-1 (0 before any)
            s -= int(back[b, t, s])
    if fallbacks:
        uni = uniform_path(speech_lens, label_lens, T).tokens.clamp(min=0)
        tokens[fallbacks] = uni[fallbacks]
    return _frames_to_tokens_path(tokens, speech_lens), fallbacks


def durations_path(durations: torch.Tensor, speech_lens: torch.Tensor, n_max: int) -> AlignmentPath:
    """durations (B, M) frames per position -> frame t -> the position whose span holds t
    (frames past the durations' sum, if any, go to the last position)."""
    d = durations.to(torch.int64).cpu().clamp(min=0)
    cum = d.cumsum(1)  # (B, M)
    t = torch.arange(n_max)[None, :].expand(d.shape[0], n_max).contiguous()
    tokens = torch.searchsorted(cum, t, right=True)
    last = ((d > 0) * torch.arange(d.shape[1])[None, :]).amax(1, keepdim=True)  # last position with frames
    return _frames_to_tokens_path(torch.minimum(tokens, last), speech_lens)


def durations_from_path(path: AlignmentPath, num_positions: torch.Tensor) -> list[list[int]]:
    """Frames per position of each example's frames_to_tokens path (they sum to its frames)."""
    out = []
    for b in range(path.tokens.shape[0]):
        n = int(path.lengths[b])
        counts = torch.bincount(path.tokens[b, :n].clamp(min=0), minlength=int(num_positions[b]))
        out.append(counts[: int(num_positions[b])].tolist())
    return out


def path_loss(speech: torch.Tensor, speech_lens: torch.Tensor, text: torch.Tensor, text_lens: torch.Tensor,
              path: AlignmentPath, normalize: str = "frames") -> torch.Tensor:
    """Sum of squared distances along a fixed frames_to_tokens path, normalised: (B,), float32."""
    total = path_cost(speech, text, path, identity_frames=True)
    return normalize_cost(total, speech_lens, text_lens, speech.shape[-1], normalize)


def soft_alignment_loss(speech: torch.Tensor, speech_lens: torch.Tensor, text: torch.Tensor,
                        text_lens: torch.Tensor, gamma: float = 1.0, normalize: str = "frames") -> torch.Tensor:
    """Smoothed-min DP over frames_to_tokens alignments, with autograd through every cell: (B,).

    R(i, j) = c(i, j) + softmin_g(R(i-1, j), R(i-1, j-1)); loss = R(n_b, m_b), normalised, with
    the temperature g = gamma * d: ``gamma`` is in cost per dimension, so gamma 1 smooths
    as much at d = 144 as at d = 4 (a fixed g of 1 against costs of ~100 per cell at d = 144
    would be the hard minimum). As gamma -> 0 it tends to the best alignment's cost. Costs are float32 and differentiable
    (O(n m d) backward: this is the expensive kind). Examples with n_b < m_b have no such
    alignment and give a loss of about 1e30, which the non-finite-step guard does not catch
    (does not happen for speech at 4x subsampling against phonemes in practice).
    """
    if gamma <= 0:
        raise ValueError(f"soft alignment needs gamma > 0, got {gamma}")
    with torch.autocast(speech.device.type, enabled=False):
        a, t = speech.float(), text.float()
        cost = (a.pow(2).sum(-1)[:, :, None] + t.pow(2).sum(-1)[:, None, :]
                - 2 * torch.bmm(a, t.transpose(1, 2))).clamp(min=0)  # (B, n, m)
        B, n, m = cost.shape
        gamma = gamma * a.shape[-1]
        # unreachable cells hold a huge finite value, not inf: a softmin over two infs has a
        # NaN gradient that would reach the costs through 0 * NaN
        inf = torch.full((B, 1), _UNREACHABLE, device=cost.device)
        prev = torch.cat([cost[:, 0, :1], inf.expand(B, m - 1)], 1)  # R(1, j): only j = 1 reachable
        n_lens = speech_lens.to(cost.device)
        out = torch.where(n_lens == 1, prev.gather(1, (text_lens.to(cost.device) - 1)[:, None])[:, 0], 0.0)
        for i in range(1, n):
            shifted = torch.cat([inf, prev[:, :-1]], 1)
            both = torch.stack([prev, shifted], -1)
            prev = cost[:, i] - gamma * torch.logsumexp(-both / gamma, -1)
            end = prev.gather(1, (text_lens.to(cost.device) - 1)[:, None])[:, 0]
            out = torch.where(n_lens == i + 1, end, out)
    return normalize_cost(out, speech_lens, text_lens, speech.shape[-1], normalize)
