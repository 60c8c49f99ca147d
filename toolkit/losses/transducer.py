"""Transducer (RNN-T) loss on already-normalised log-probabilities (e.g. HAT outputs).

The forward-backward only reads two slices of the lattice: the blank log-prob at every
(t, u) and the log-prob of the next target label. They are gathered with torch (any
device) and the DP runs where the tensors are: a numba.cuda kernel in float32 for CUDA
tensors (``toolkit.losses.transducer_cuda``, no host round trip), a numba kernel in
float64 on the CPU otherwise. The gradient flows back into the full lattice through the
gather. Because the input is taken as log-probabilities (no log_softmax inside), the
gradient is exact only when each lattice row is normalised, which HAT outputs are.

:func:`hat_transducer_loss` is the form training uses: it takes the joint network's raw
logits, applies the HAT output itself and returns the gradient with respect to the logits
in one fused step (softmax recomputed from the saved log-normaliser), so no normalised
(B, T, U+1, V) log-prob lattice, and none of the zero-filled gradient lattices that
slicing and gathering it create, is ever built. :func:`lattice_nll` runs the DP on given
(B, T, U+1) blank and (B, T, U) label log-prob grids (the pruned loss builds those).

Memory: the caller's lattice is B x T x (U+1) x V floats (e.g. 32 x 250 x 80 x 256 x 4 B
= 655 MB, x ~3 with the joint hidden layer and gradients); this module adds only
O(B T U). Keep the lattice bounded by computing it per sub-batch
(:meth:`toolkit.models.hat.HatDecoder.loss` does, with recomputation in backward), or
prune it (``toolkit.losses.pruned_transducer``).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

log = logging.getLogger(__name__)


@njit(cache=True)
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + np.log1p(np.exp(-abs(a - b)))


@njit(cache=True, nogil=True)
def _forward_backward_one(blank_lp, label_lp, t_lens, u_lens, costs, grad_blank, grad_label, b):
    """Example b: blank_lp (B, T, U+1), label_lp (B, T, U) -> costs[b], grads of its NLL.

    Works in the inputs' float dtype: float64 in training on the CPU, float32 to check
    the CUDA kernel's precision (same recurrence, same order of operations per cell)."""
    T, U = t_lens[b], u_lens[b]
    ninf = np.full(1, -np.inf, blank_lp.dtype)[0]  # typed constants keep float32 in float32
    zero = np.zeros(1, blank_lp.dtype)[0]
    alpha = np.full((T, U + 1), ninf, blank_lp.dtype)
    beta = np.full((T, U + 1), ninf, blank_lp.dtype)
    alpha[0, 0] = zero
    for t in range(T):
        for u in range(U + 1):
            if t == 0 and u == 0:
                continue
            a = ninf
            if t > 0:
                a = alpha[t - 1, u] + blank_lp[b, t - 1, u]
            if u > 0:
                a = _logaddexp(a, alpha[t, u - 1] + label_lp[b, t, u - 1])
            alpha[t, u] = a
    for t in range(T - 1, -1, -1):
        for u in range(U, -1, -1):
            if t == T - 1:
                bb = blank_lp[b, t, u] if u == U else ninf  # the final blank ends the path
            else:
                bb = beta[t + 1, u] + blank_lp[b, t, u]
            if u < U:
                bb = _logaddexp(bb, beta[t, u + 1] + label_lp[b, t, u])
            beta[t, u] = bb
    loglik = beta[0, 0]
    costs[b] = -loglik
    for t in range(T):
        for u in range(U + 1):
            nxt = zero if (t == T - 1 and u == U) else (beta[t + 1, u] if t < T - 1 else ninf)
            grad_blank[b, t, u] = -np.exp(alpha[t, u] + blank_lp[b, t, u] + nxt - loglik)
            if u < U:
                grad_label[b, t, u] = -np.exp(alpha[t, u] + label_lp[b, t, u] + beta[t, u + 1] - loglik)


# Threads only pay off on big lattices; on small ones the parallel version's thread start-up
# and spinning cost more than the DP itself (and steal cores on a shared machine).
# Two functions, not one function jitted twice: numba's disk cache is keyed by name and
# source line, not by flags, so the two builds would share (and swap) one cache entry.
@njit(parallel=True, cache=True)
def _forward_backward_parallel(blank_lp, label_lp, t_lens, u_lens, costs, grad_blank, grad_label):
    """blank_lp (B, T, U+1), label_lp (B, T, U) -> costs (B,), grads of the NLL (same shapes)."""
    for b in prange(blank_lp.shape[0]):
        _forward_backward_one(blank_lp, label_lp, t_lens, u_lens, costs, grad_blank, grad_label, b)


@njit(cache=True)
def _forward_backward_serial(blank_lp, label_lp, t_lens, u_lens, costs, grad_blank, grad_label):
    for b in range(blank_lp.shape[0]):
        _forward_backward_one(blank_lp, label_lp, t_lens, u_lens, costs, grad_blank, grad_label, b)
PARALLEL_MIN_CELLS = 200_000


def forward_backward_cpu(blank_lp: np.ndarray, label_lp: np.ndarray, t_lens: np.ndarray, u_lens: np.ndarray):
    """The numba DP on host arrays, in their float dtype -> costs (B,), grads (as the inputs)."""
    costs = np.zeros(blank_lp.shape[0], blank_lp.dtype)
    gb, gl = np.zeros_like(blank_lp), np.zeros_like(label_lp)
    kernel = _forward_backward_parallel if blank_lp.size >= PARALLEL_MIN_CELLS else _forward_backward_serial
    kernel(blank_lp, label_lp, np.asarray(t_lens, np.int64), np.asarray(u_lens, np.int64), costs, gb, gl)
    return costs, gb, gl


_CUDA_BROKEN: list[str] = []  # why the numba.cuda kernel failed here once (then the host DP is used)


def _nll_and_grads(blank_lp, label_lp, t_lens, u_lens):
    """The DP where the tensors are -> costs (B,), d cost / d blank_lp, d cost / d label_lp,
    as tensors of the inputs' dtype and device. CUDA: float32 kernel on the device (the
    host DP if numba cannot compile for it); CPU: float64 numba."""
    if blank_lp.is_cuda and not _CUDA_BROKEN:
        from toolkit.losses import transducer_cuda
        if transducer_cuda.available():
            try:
                costs, gb, gl = transducer_cuda.forward_backward_cuda(blank_lp, label_lp, t_lens, u_lens)
                return costs.to(blank_lp.dtype), gb.to(blank_lp.dtype), gl.to(label_lp.dtype)
            except Exception as e:  # a driver without NVVM compiles nothing: keep training on the host DP
                _CUDA_BROKEN.append(f"{type(e).__name__}: {e}")
                log.warning("numba.cuda transducer kernel unusable (%s); using the CPU DP", _CUDA_BROKEN[0])
    bl = blank_lp.detach().to("cpu", torch.float64).numpy()
    ll = label_lp.detach().to("cpu", torch.float64).numpy()
    costs, gb, gl = forward_backward_cpu(bl, ll, t_lens.cpu().numpy(), u_lens.cpu().numpy())
    return (torch.from_numpy(costs).to(blank_lp), torch.from_numpy(gb).to(blank_lp),
            torch.from_numpy(gl).to(label_lp))


class _TransducerNLL(torch.autograd.Function):
    """costs (B,) plus the arc occupancies -d cost / d arc as non-differentiable outputs."""

    @staticmethod
    def forward(ctx, blank_lp, label_lp, t_lens, u_lens):
        costs, gb, gl = _nll_and_grads(blank_lp, label_lp, t_lens, u_lens)
        ctx.save_for_backward(gb, gl)
        occ_blank, occ_label = -gb, -gl
        ctx.mark_non_differentiable(occ_blank, occ_label)
        return costs, occ_blank, occ_label

    @staticmethod
    def backward(ctx, grad_cost, _occ_blank, _occ_label):
        gb, gl = ctx.saved_tensors
        g = grad_cost[:, None, None]
        return gb * g, gl * g, None, None


def lattice_nll(blank_lp: torch.Tensor, label_lp: torch.Tensor, t_lens: torch.Tensor, u_lens: torch.Tensor):
    """Transducer NLL (B,) on arc log-prob grids, with autograd, and the arcs' occupancies.

    blank_lp (B, T, U+1): log-prob of blank at (t, u); label_lp (B, T, U): of the label
    u+1 at (t, u); -inf marks a missing arc. Lengths as :func:`transducer_loss`. Returns
    ``(costs, occ_blank, occ_label)``: the occupancies (posterior probability that a path
    takes the arc, no gradient) are what pruning reads. Cells past the lengths get 0.
    """
    return _TransducerNLL.apply(blank_lp, label_lp, t_lens, u_lens)


def _check_lengths(shape, targets, logit_lens, target_lens):
    B, T, U1, _ = shape
    if targets.shape[0] != B or targets.shape[1] < U1 - 1:
        raise ValueError(f"targets {tuple(targets.shape)} do not fit lattice {tuple(shape)}")
    if (logit_lens < 1).any() or (logit_lens > T).any():
        raise ValueError(f"logit_lens must be in 1..{T}, got {logit_lens.tolist()}")
    if (target_lens < 0).any() or (target_lens > U1 - 1).any():
        raise ValueError(f"target_lens must be in 0..{U1 - 1}, got {target_lens.tolist()}")


def transducer_loss(log_probs: torch.Tensor, targets: torch.Tensor, logit_lens: torch.Tensor,
                    target_lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Negative log-likelihood per utterance (B,) of targets under a transducer lattice.

    log_probs (B, T, U+1, V) normalised over V; targets (B, U) int64 (padding ignored);
    logit_lens (B,) in 1..T; target_lens (B,) in 0..U. Raises ValueError on bad lengths.
    """
    B, T, U1, V = log_probs.shape
    _check_lengths(log_probs.shape, targets, logit_lens, target_lens)
    targets = targets[:, : U1 - 1]
    blank_lp = log_probs[..., blank]  # (B, T, U+1)
    idx = targets.clamp(0, V - 1)[:, None, :, None].expand(B, T, U1 - 1, 1)
    label_lp = log_probs[:, :, : U1 - 1].gather(3, idx).squeeze(3)  # (B, T, U)
    return lattice_nll(blank_lp, label_lp, logit_lens, target_lens)[0]


def hat_head_log_probs(x: torch.Tensor, idx: torch.Tensor):
    """HAT log-probs of blank and of one label per cell from raw logits, no autograd.

    x (B, T, W, V) logits (blank at 0), idx (B, T, W', 1) the label id read at each of the
    first W' <= W cells. Returns blank_lp (B, T, W), label_lp (B, T, W') and the label
    log-normaliser lse (B, T, W) that :func:`hat_head_grad` needs.
    """
    W2 = idx.shape[2]
    blank_logit = x[..., 0]  # (B, T, W)
    lse = torch.logsumexp(x[..., 1:], dim=-1)  # (B, T, W)
    label_logit = x[:, :, :W2].gather(3, idx)[..., 0]  # (B, T, W')
    blank_lp = F.logsigmoid(blank_logit)
    label_lp = F.logsigmoid(-blank_logit[:, :, :W2]) + label_logit - lse[:, :, :W2]
    return blank_lp, label_lp, lse


def hat_head_grad(logits, lse, gb, gl, idx, work_dtype):
    """Gradient w.r.t. the logits (B, T, W, V) given d/d blank_lp gb (B, T, W) and d/d label_lp
    gl (B, T, W'), as in :func:`hat_head_log_probs`; one logits-sized temporary.

    With b the blank logit and z the label logits: log P(blank) = logsigmoid(b),
    log P(y) = logsigmoid(-b) + z_y - logsumexp(z), so d/db = gb (1 - s) - gl s
    (s = sigmoid(b)) and d/dz_k = gl ([k = y] - softmax(z)_k).
    """
    W2 = gl.shape[2]
    grad = logits.detach().to(work_dtype, copy=True)  # becomes the gradient in place
    s = torch.sigmoid(grad[..., 0])  # (B, T, W)
    grad_blank = gb * (1 - s)
    grad_blank[:, :, :W2] -= gl * s[:, :, :W2]
    gl_full = F.pad(gl, (0, grad.shape[2] - W2))  # (B, T, W): cells past W' read no label
    z = grad[..., 1:]
    z.sub_(lse[..., None]).exp_().mul_(-gl_full[..., None])  # -gl * softmax(z)
    grad[..., 0] = grad_blank
    grad[:, :, :W2].scatter_add_(3, idx, gl[..., None])  # + gl at the target label
    return grad


class HatHeadNLL(torch.autograd.Function):
    """HAT head on raw logits (B, T, W, V) (blank logit in column 0) + a transducer DP on its
    arc log-probs, with the gradient to the logits fused (:func:`hat_head_grad`).

    apply(logits, idx, dp): idx (B, T, W', 1) the label read at each cell (as
    :func:`hat_head_log_probs`); dp(blank_lp, label_lp) -> (costs (B,), d costs / d blank_lp,
    d costs / d label_lp), e.g. ``_nll_and_grads`` with the lengths bound.
    """

    @staticmethod
    def forward(ctx, logits, idx, dp):
        ctx.work_dtype = torch.promote_types(logits.dtype, torch.float32)  # half/bf16 -> float32
        blank_lp, label_lp, lse = hat_head_log_probs(logits.detach().to(ctx.work_dtype), idx)
        costs, gb, gl = dp(blank_lp, label_lp)
        ctx.save_for_backward(logits, lse, gb, gl, idx)
        ctx.in_dtype = logits.dtype
        return costs

    @staticmethod
    def backward(ctx, grad_cost):
        logits, lse, gb, gl, idx = ctx.saved_tensors
        g = grad_cost.to(ctx.work_dtype)[:, None, None]
        grad = hat_head_grad(logits, lse, gb * g, gl * g, idx, ctx.work_dtype)
        return grad.to(ctx.in_dtype), None, None


def hat_transducer_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lens: torch.Tensor,
                        target_lens: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per utterance (B,) under the HAT output of joint logits.

    logits (B, T, U+1, V) raw joint outputs, column 0 the blank logit (any float dtype; the
    arithmetic is at least float32); targets (B, U) int64 label ids in 1..V-1 (padding ignored);
    logit_lens (B,) in 1..T; target_lens (B,) in 0..U. Equals
    ``transducer_loss(hat_log_probs(logits), ...)`` in value and gradient, with one
    lattice-sized temporary in backward instead of several. Raises ValueError on bad lengths.
    """
    _check_lengths(logits.shape, targets, logit_lens, target_lens)
    B, T, U1, V = logits.shape
    idx = targets[:, None, : U1 - 1, None].clamp(0, V - 1).expand(B, T, U1 - 1, 1)
    return HatHeadNLL.apply(logits, idx, lambda blank_lp, label_lp: _nll_and_grads(blank_lp, label_lp, logit_lens,
                                                                                 target_lens))
