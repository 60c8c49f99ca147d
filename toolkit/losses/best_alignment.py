"""Best-alignment consistency loss between speech and text representations (DESIGN.md s.4).

Usage (on its own, on two tensors)::

    from toolkit.losses.best_alignment import best_alignment_loss
    loss, path = best_alignment_loss(speech, speech_lens, text, text_lens)
    # speech (B, n, d) or stacked layers (L, B, n, d); text (B, m, d) or (L, B, m, d)
    # loss (B,) or (L, B) float32; path.frames / path.tokens (.., K) index pairs

The squared-distance cost matrix is built under ``no_grad`` in float32 (one plain GEMM
a.t; on the CPU the norms are added example by example inside the DP kernel, while the
example's block is in cache) and only feeds the DP; the best path is treated as a
constant (pass-through gradient). The loss value is the DP's optimum, which already is
the path's summed cost; backward forms the gradient on the path's (frame, token) pairs
alone, so it costs O(K d) per example instead of O(n m d) (on the CPU in one numba pass
over the path's rows), and forward gathers nothing.

Non-finite values (one policy, every backend): a NaN or inf in an example's valid speech
or text rows (or a cost that overflows) gives that example a NaN ``dp_cost`` and a NaN
loss -- never an error, so training's non-finite-step guard handles it -- and its path
is still a valid alignment (which one is unspecified). Padding may hold anything: it
never reaches the loss or a valid row's gradient. Lengths must be integer tensors.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from toolkit.losses import best_alignment_reference as reference

PATTERNS = ("frames_to_tokens", "dtw", "tokens_to_frames")
NORMALIZE = ("frames", "tokens", "dim", "none")
BACKENDS = ("auto", "numba", "cuda", "torch")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignmentPath:
    """A best path as (frame, token) index pairs, in increasing order along the path.

    frames, tokens: (..., K) int64, padded with -1 after ``lengths`` pairs.
    lengths: (...,) int64 pair counts (n_b for frames_to_tokens, m_b for
    tokens_to_frames, between max(n_b, m_b) and n_b + m_b - 1 for dtw).
    dp_cost: (...,) float32, the DP optimum (from the matmul cost; no gradient).
    The leading dims are (B,) or (L, B), as the inputs.
    Ties: prefer the diagonal step, then the vertical (next frame, same token), then
    the horizontal (dtw); in tokens_to_frames a token takes the latest optimal frame.
    """

    frames: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor
    dp_cost: torch.Tensor


def alignment_cost_matrix(speech: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """c(i,j) = ||a_i - t_j||^2 as |a|^2 + |t|^2 - 2 a.t, float32, no gradient, clamped at 0.

    speech (..., n, d), text (..., m, d) -> (..., n, m). Half-precision inputs are cast
    to float32 first so large magnitudes do not overflow; autocast is switched off here.
    """
    return _distances_from_dots(*_dot_products(speech, text)).reshape(*speech.shape[:-1], text.shape[-2])


def _distances_from_dots(dots, a, t):
    """In place: dots (P, n, m) = a.t^T -> max(|t_j|^2 - 2 a_i.t_j + |a_i|^2, 0); returns it."""
    with torch.no_grad():
        if dots.device.type == "cpu":
            from toolkit.losses.best_alignment_numba import squared_distances_from_dots
            squared_distances_from_dots(dots, a, t)
        else:  # |t|^2 - 2 a.t + |a|^2, in baddbmm's order
            a2, t2 = torch.linalg.vecdot(a, a), torch.linalg.vecdot(t, t)  # (P, n), (P, m)
            dots.mul_(-2.0).add_(t2[:, None, :]).add_(a2[:, :, None]).clamp_(min=0.0)
    return dots


def _dot_products(speech, text):
    """(a.t^T (P, n, m), a (P, n, d), t (P, m, d)), float32 without gradient: one plain GEMM.

    The norms are added to it afterwards in one pass (a baddbmm taking the broadcast |t|^2
    as its input ran at half the plain GEMM's speed on the CPU), or by the CPU DP kernel
    example by example while the block is in cache."""
    # autocast would run the matmul in fp16/bf16: the DP needs float32 costs
    with torch.no_grad(), torch.autocast(speech.device.type, enabled=False):
        n, m, d = speech.shape[-2], text.shape[-2], speech.shape[-1]
        a = speech.detach().float().reshape(-1, n, d)  # (P, n, d)
        t = text.detach().float().reshape(-1, m, d)  # (P, m, d)
        return torch.bmm(a, t.transpose(1, 2)), a, t


def _check_lengths(speech, speech_lens, text, text_lens, pattern, fallback, names):
    B, n_max, m_max = speech.shape[-3], speech.shape[-2], text.shape[-2]
    if text.shape[-3] != B or speech_lens.shape != (B,) or text_lens.shape != (B,):
        raise ValueError(f"batch mismatch: speech {tuple(speech.shape)}, text {tuple(text.shape)}, "
                         f"speech_lens {tuple(speech_lens.shape)}, text_lens {tuple(text_lens.shape)}")
    if speech.shape[-1] != text.shape[-1] or speech.shape[:-3] != text.shape[:-3]:
        raise ValueError(f"speech {tuple(speech.shape)} and text {tuple(text.shape)} differ in layers or dim")
    use_dtw = torch.zeros(B, dtype=torch.bool)
    for b, (n, m) in enumerate(zip(speech_lens.tolist(), text_lens.tolist())):
        who = f"example {b}" + (f" ({names[b]})" if names is not None else "")
        if not (1 <= n <= n_max and 1 <= m <= m_max):
            raise ValueError(f"{who}: lengths n={n}, m={m} outside 1..{n_max} / 1..{m_max}")
        if n < m and pattern != "dtw":
            if pattern == "frames_to_tokens" and fallback == "dtw":
                use_dtw[b] = True
                continue
            hint = " (pass fallback='dtw' to align it with symmetric DTW)" if pattern == "frames_to_tokens" else ""
            raise ValueError(f"{who}: {n} speech frames < {m} text positions; pattern "
                             f"'{pattern}' needs n >= m{hint}")
    return use_dtw


def _pad_cat(x, y, value):
    """Concatenate (P1, K1) and (P2, K2) along dim 0, padding the narrower with ``value``."""
    K = max(x.shape[1], y.shape[1])
    x = torch.nn.functional.pad(x, (0, K - x.shape[1]), value=value)
    y = torch.nn.functional.pad(y, (0, K - y.shape[1]), value=value)
    return torch.cat([x, y])


_CUDA_BROKEN: list[str] = []  # why the numba.cuda kernel failed here once (then "auto" avoids it)


def _pick_backend(backend, device):
    if backend != "auto":
        return backend
    if device.type == "cuda":
        from toolkit.losses import best_alignment_cuda
        return "cuda" if best_alignment_cuda.available() and not _CUDA_BROKEN else "torch"
    return "numba"


def best_path(cost, n_lens, m_lens, pattern="frames_to_tokens", backend="auto", operands=None):
    """Run the DP + backtrace on a float32 cost (P, N, M); lengths (P,) int64.

    operands (a (P, N, d), t (P, M, d)): ``cost`` holds the dot products a.t^T (it is
    overwritten with the squared distances); the numba backend forms them per example
    inside its DP, the others first.

    Returns ``(frames, tokens, lengths, dp_cost)`` as in :class:`AlignmentPath`, on
    ``cost.device``. backend: "numba" (CPU), "cuda", "torch" (reference) or "auto".
    A NaN/inf cost inside an example's n x m block gives it a NaN dp_cost and a valid path.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    chosen = _pick_backend(backend, cost.device)
    if operands is not None and chosen != "numba":
        cost = _distances_from_dots(cost, *operands)
        operands = None
    if chosen == "cuda" and backend == "auto":
        try:  # a driver without NVVM/cudart compiles nothing: keep training on the torch DP
            return best_path(cost, n_lens, m_lens, pattern, "cuda")
        except Exception as e:  # numba raises several unrelated types here
            _CUDA_BROKEN.append(f"{type(e).__name__}: {e}")
            log.warning("numba.cuda best-alignment kernel unusable (%s); using the PyTorch DP", _CUDA_BROKEN[0])
            chosen = "torch"
    backend = chosen
    if backend == "numba":
        from toolkit.losses import best_alignment_numba
        out = best_alignment_numba.best_path_numba(cost, n_lens, m_lens, pattern, operands)
    elif backend == "cuda":
        from toolkit.losses import best_alignment_cuda
        out = best_alignment_cuda.best_path_cuda(cost, n_lens, m_lens, pattern)
    elif backend == "torch":
        out = reference.best_path_reference(cost, n_lens, m_lens, pattern)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    frames, tokens, lengths, dp_cost = out
    # every backend's DP propagates NaN to the optimum; +inf (an unavoidable inf cell) is NaN too
    return frames, tokens, lengths, torch.where(torch.isfinite(dp_cost), dp_cost, float("nan"))


def best_alignment(speech, speech_lens, text, text_lens, pattern="frames_to_tokens",
                   fallback=None, backend="auto", names: Sequence[str] | None = None) -> AlignmentPath:
    """The best monotonic alignment (no gradient); shapes as in :func:`best_alignment_loss`."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    if fallback not in (None, "dtw"):
        raise ValueError(f"unknown fallback {fallback!r}; only 'dtw' or None")
    if speech.dim() != text.dim() or speech.dim() not in (3, 4):
        raise ValueError(f"expected speech (B, n, d) / (L, B, n, d) and text alike, got "
                         f"{tuple(speech.shape)} and {tuple(text.shape)}")
    for name, lens in (("speech_lens", speech_lens), ("text_lens", text_lens)):
        if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got {lens.dtype} (a float length is not truncated)")
    speech_lens, text_lens = speech_lens.long().cpu(), text_lens.long().cpu()
    use_dtw = _check_lengths(speech, speech_lens, text, text_lens, pattern, fallback, names)
    lead = speech.shape[:-2]  # (B,) or (L, B)
    # (P, N, M) dot products; every backend's best_path makes them squared distances (the
    # numba one example by example inside its DP, while the example's block is in cache)
    cost, a_rows, t_rows = _dot_products(speech, text)
    L = speech.shape[0] if speech.dim() == 4 else 1
    n_lens = speech_lens.repeat(L).to(cost.device)  # (P,), layer-major like cost
    m_lens = text_lens.repeat(L).to(cost.device)
    sel = use_dtw.repeat(L).to(cost.device)
    if not bool(sel.any()):
        out = best_path(cost, n_lens, m_lens, pattern, backend, (a_rows, t_rows))
    else:  # two DPs on subsets: the distances first, so only cost rows are copied, not the operands
        cost = _distances_from_dots(cost, a_rows, t_rows)
        keep = (~sel).nonzero()[:, 0]
        swap = sel.nonzero()[:, 0]
        a = best_path(cost[keep], n_lens[keep], m_lens[keep], pattern, backend)
        b = best_path(cost[swap], n_lens[swap], m_lens[swap], "dtw", backend)
        order = torch.argsort(torch.cat([keep, swap]))
        out = tuple(_pad_cat(x, y, -1)[order] if x.dim() == 2 else torch.cat([x, y])[order]
                    for x, y in zip(a, b))
    frames, tokens, lengths, dp_cost = out
    K = frames.shape[-1]
    return AlignmentPath(frames.reshape(*lead, K), tokens.reshape(*lead, K),
                         lengths.reshape(lead), dp_cost.reshape(lead))


def _scatter_pair_grads(diff, scale, f, g, a_shape, t_shape):
    """diff (Q, d) = t_g - a_f, scale (Q, 1) -> grads of a (Na, d) and t (Nt, d) by row-wise
    index_add of ``diff * scale`` (d loss / d a_f; minus that for t_g; f None: a's rows in
    order). A pair with scale 0 (masked, padding) passes nothing back, even from a NaN
    padding row: 0 * nan would reach a valid text row through index_add."""
    grad_pairs = diff.mul_(scale).masked_fill_(scale == 0, 0.0)
    grad_t = torch.zeros(t_shape, dtype=grad_pairs.dtype, device=grad_pairs.device).index_add_(
        0, g, grad_pairs, alpha=-1)
    if f is not None:
        grad_pairs = torch.zeros(a_shape, dtype=grad_pairs.dtype, device=grad_pairs.device).index_add_(
            0, f, grad_pairs)
    return grad_pairs, grad_t


class _PairSquaredDistance(torch.autograd.Function):
    """||a[f_k] - t[g_k]||^2 for Q row pairs with one (Q, d) temporary; backward reuses it.

    a (Na, d), t (Nt, d) float32; f (Q,) int64 or None (rows of a taken in order), g (Q,).
    A second backward through the same graph is refused by autograd (the saved
    difference is overwritten by the first).
    """

    @staticmethod
    def forward(ctx, a, t, f, g):
        diff = t.index_select(0, g)  # (Q, d)
        diff.sub_(a if f is None else a.index_select(0, f))  # t_g - a_f
        ctx.save_for_backward(diff, f, g)
        ctx.shapes = (a.shape, t.shape)
        return torch.linalg.vecdot(diff, diff)  # (Q,)

    @staticmethod
    def backward(ctx, grad):
        diff, f, g = ctx.saved_tensors
        grad_a, grad_t = _scatter_pair_grads(diff, grad[:, None] * -2.0, f, g, *ctx.shapes)
        return grad_a, grad_t, None, None


class _DPPathCost(torch.autograd.Function):
    """The DP's optimum as the loss value, the gradient of sum ||a_f - t_g||^2 over the path.

    The DP already summed the path's costs, so forward gathers nothing; backward forms
    the (Q, d) pair differences then: O(K d) per example, as a recomputed loss would.
    a (Na, d), t (Nt, d) float32; f (Q,) or None, g (Q,); weight (Q,) 1 on the path's
    pairs, 0 on padding; dp_cost (P,) with Q = P K.
    """

    @staticmethod
    def forward(ctx, a, t, f, g, weight, dp_cost):
        ctx.save_for_backward(a, t, f, g, weight)
        return dp_cost.clone()

    @staticmethod
    def backward(ctx, grad):
        a, t, f, g, weight = ctx.saved_tensors
        if a.device.type == "cpu":  # one fused pass over the path's rows
            from toolkit.losses.best_alignment_numba import path_pair_grads
            grad_a, grad_t = path_pair_grads(a, t, f, g, weight, grad * 2.0)
            return grad_a, grad_t, None, None, None, None
        diff = t.index_select(0, g)  # (Q, d)
        diff.sub_(a if f is None else a.index_select(0, f))  # t_g - a_f
        per_pair = (grad[:, None] * weight.view(grad.shape[0], -1)).reshape(-1, 1)  # (Q, 1)
        grad_a, grad_t = _scatter_pair_grads(diff, per_pair * -2.0, f, g, a.shape, t.shape)
        return grad_a, grad_t, None, None, None, None


def _pair_rows(speech, text, path: AlignmentPath, identity_frames: bool):
    """Rows of the flattened (P*n, d) / (P*m, d) views on the path: (valid (..., K), f or None, g)."""
    n, m = speech.shape[-2], text.shape[-2]
    dev = speech.device
    valid = (path.frames >= 0).to(dev)  # (..., K)
    P, K = valid.numel() // valid.shape[-1], valid.shape[-1]
    base = torch.arange(P, device=dev)[:, None]  # (P, 1)
    g = (path.tokens.to(dev).reshape(P, K).clamp(min=0) + base * m).reshape(-1)  # (P*K,)
    f = None
    if not (identity_frames and K == n):
        f = (path.frames.to(dev).reshape(P, K).clamp(min=0) + base * n).reshape(-1)
    return valid, f, g


def path_cost(speech, text, path: AlignmentPath, identity_frames: bool = False) -> torch.Tensor:
    """Sum of ||a_f - t_g||^2 over the path's pairs, with autograd, float32: (B,) or (L, B).

    Rows are picked from the flattened (P*n, d) / (P*m, d) views; backward is a row-wise
    index_add: O(K d) per example. identity_frames: the path's frames are 0..K-1
    (frames_to_tokens), so speech rows are used in place. Padded rows may hold anything:
    they are masked out of the sum and pass no gradient back.
    """
    d, dev = speech.shape[-1], speech.device
    valid, f, g = _pair_rows(speech, text, path, identity_frames)
    with torch.autocast(dev.type, enabled=False):  # float32 even inside an AMP region
        sq = _PairSquaredDistance.apply(speech.reshape(-1, d).float(), text.reshape(-1, d).float(), f, g)
        return torch.where(valid, sq.reshape(valid.shape), 0.0).sum(-1)


def best_alignment_loss(speech: torch.Tensor, speech_lens: torch.Tensor, text: torch.Tensor,
                        text_lens: torch.Tensor, pattern: str = "frames_to_tokens",
                        normalize: str = "frames", fallback: str | None = None,
                        backend: str = "auto", names: Sequence[str] | None = None):
    """Consistency loss: cost of the best monotonic speech-text alignment, per example.

    speech (B, n, d) or (L, B, n, d); text (B, m, d) or (L, B, m, d), any float dtype;
    speech_lens, text_lens (B,). pattern: "frames_to_tokens" (default; needs n_b >= m_b,
    else ValueError naming the example, unless fallback="dtw"), "dtw" or
    "tokens_to_frames" (needs n_b >= m_b). normalize: divide by n_b ("frames"), m_b
    ("tokens"), n_b * d ("dim") or nothing ("none"). names: optional utterance ids used
    in error messages. Returns ``(loss, path)``: loss (B,) or (L, B) float32,
    differentiable w.r.t. speech and text through the fixed best path; path an
    :class:`AlignmentPath`. Results do not depend on the padding amount.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"unknown normalize {normalize!r}; choose from {NORMALIZE}")
    path = best_alignment(speech, speech_lens, text, text_lens, pattern, fallback, backend, names)
    loss = path.dp_cost.to(speech.device)
    if speech.requires_grad or text.requires_grad:  # the value is the DP's; autograd for the path pairs
        d = speech.shape[-1]
        valid, f, g = _pair_rows(speech, text, path, identity_frames=pattern == "frames_to_tokens")
        with torch.autocast(speech.device.type, enabled=False):
            loss = _DPPathCost.apply(speech.reshape(-1, d).float(), text.reshape(-1, d).float(), f, g,
                                     valid.reshape(-1).float(), loss.reshape(-1)).reshape(loss.shape)
    return normalize_cost(loss, speech_lens, text_lens, speech.shape[-1], normalize), path


def normalize_cost(total: torch.Tensor, speech_lens: torch.Tensor, text_lens: torch.Tensor,
                   dim: int, normalize: str = "frames") -> torch.Tensor:
    """Divide path costs (..., B) by n_b ("frames"), m_b ("tokens"), n_b * dim ("dim") or 1 ("none")."""
    if normalize not in NORMALIZE:
        raise ValueError(f"unknown normalize {normalize!r}; choose from {NORMALIZE}")
    dev = total.device
    if normalize == "frames":
        return total / speech_lens.to(dev, torch.float32)
    if normalize == "tokens":
        return total / text_lens.to(dev, torch.float32)
    if normalize == "dim":
        return total / (speech_lens.to(dev, torch.float32) * dim)
    return total
