"""Pruned HAT transducer loss: the pruned RNN-T of Kuang et al. (2022) for HAT outputs.

Usage::

    from toolkit.losses.pruned_transducer import simple_hat_loss, prune_ranges, pruned_hat_loss
    simple, occupancy = simple_hat_loss(am, lm, targets, t_lens, u_lens)  # am (B, T, V), lm (B, U+1, V)
    starts = prune_ranges(occupancy, t_lens, u_lens, S)                   # (B, T) window starts
    # full joiner on the window u = starts[b, t] + 0..S-1 only: logits (B, T, S, V)
    pruned = pruned_hat_loss(logits, targets, starts, t_lens, u_lens)
    loss = simple_scale * simple + pruned

1. The *simple* joiner adds an encoder projection am (B, T, V) and a predictor projection
   lm (B, U+1, V); with the HAT output (blank logit b = am_0 + lm_0, label logits
   z = am_1: + lm_1:) its label normaliser logsumexp_k(am_tk + lm_uk) is a (T, V) x (V, U+1)
   matmul of exponentials, so no T x U x V tensor is built. Its NLL (optionally smoothed
   with am-only / lm-only HAT outputs) trains the projections and gives, by the DP's
   arc occupancies, where in (t, u) the alignment mass lies.
2. Per frame, a window of S symbol positions is kept: the one holding the most node
   occupancy, then adjusted so that consecutive windows chain into paths from (0, 0) to
   (T_b - 1, U_b) (start 0 at frame 0, nondecreasing, steps below S, window inside 0..U_b).
3. The full joiner runs on (B, T, S) only; its HAT log-probs are scattered into the
   (T, U+1) blank / label grids with -inf elsewhere and the ordinary transducer DP runs
   there. The grids cost O(B T U) floats, the simple loss already needs that DP on the
   whole lattice, and one DP kernel (CPU and CUDA) then serves the full, simple and
   pruned losses, where a DP on the windowed lattice would be a second kernel pair to
   keep exact for a saving the joiner's (B, T, S, V) logits dwarf.
With S >= U + 1 the window is the whole lattice and the pruned loss equals the full one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit.losses.transducer import HatHeadNLL, _nll_and_grads, lattice_nll


def _label_log_normaliser(am, lm):
    """logsumexp_k (am[b, t, k] + lm[b, u, k]) over k >= 1 -> (B, T, U+1), via one bmm."""
    a, l = am[..., 1:], lm[..., 1:]
    a_max = a.max(-1, keepdim=True).values.detach()  # (B, T, 1)
    l_max = l.max(-1, keepdim=True).values.detach()  # (B, U+1, 1)
    prod = torch.bmm((a - a_max).exp(), (l - l_max).exp().transpose(1, 2))  # (B, T, U+1)
    # every term underflowing (logits spread over > ~87 nats in both) would give log 0
    return prod.clamp_min(torch.finfo(prod.dtype).tiny).log() + a_max + l_max.transpose(1, 2)


def simple_hat_log_probs(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor,
                         lm_scale: float = 0.0, am_scale: float = 0.0):
    """Blank (B, T, U+1) and label (B, T, U) log-probs of the simple HAT joiner am + lm.

    am (B, T, V), lm (B, U+1, V) float logits (blank at 0); targets (B, U) in 1..V-1.
    Smoothing (as k2's smoothed loss): the result is (1 - lm_scale - am_scale) x the
    joint's log-probs + lm_scale x those of lm alone + am_scale x those of am alone.
    """
    B, T, V = am.shape
    U = lm.shape[1] - 1
    y = targets[:, :U].clamp(0, V - 1)
    blank = am[..., 0, None] + lm[:, None, :, 0]  # (B, T, U+1)
    label = (am.gather(2, y[:, None, :].expand(B, T, U)) + lm[:, :U].gather(2, y[..., None]).transpose(1, 2)
             - _label_log_normaliser(am, lm)[:, :, :U])  # (B, T, U): z_y - logsumexp(z)
    blank_lp, label_lp = F.logsigmoid(blank), F.logsigmoid(-blank[:, :, :U]) + label
    if not (lm_scale or am_scale):
        return blank_lp, label_lp
    joint = 1.0 - lm_scale - am_scale
    blank_lp, label_lp = joint * blank_lp, joint * label_lp
    for scale, part, broadcast in ((lm_scale, lm, 1), (am_scale, am, 2)):
        if scale:  # HAT output of one projection alone: lm (B, U+1, V) or am (B, T, V)
            part_blank = F.logsigmoid(part[..., 0])  # (B, U+1) / (B, T)
            part_norm = F.logsigmoid(-part[..., 0]) - torch.logsumexp(part[..., 1:], -1)
            if broadcast == 1:  # lm: the label at u is read at row u
                part_label = part_norm[:, :U] + part[:, :U].gather(2, y[..., None])[..., 0]  # (B, U)
                blank_lp = blank_lp + scale * part_blank[:, None, :]
                label_lp = label_lp + scale * part_label[:, None, :]
            else:  # am: every label of the sequence at frame t
                part_label = part_norm[..., None] + part.gather(2, y[:, None, :].expand(B, T, U))  # (B, T, U)
                blank_lp = blank_lp + scale * part_blank[..., None]
                label_lp = label_lp + scale * part_label
    return blank_lp, label_lp


def simple_hat_loss(am, lm, targets, t_lens, u_lens, lm_scale: float = 0.0, am_scale: float = 0.0):
    """NLL (B,) of the simple HAT joiner (autograd to am and lm) and the node occupancy
    (B, T, U+1) (no gradient): the posterior probability that a path leaves node (t, u).

    Computed in float32 whatever the autocast region: the DP needs accurate log-probs.
    """
    if lm_scale < 0 or am_scale < 0 or lm_scale + am_scale >= 1:
        raise ValueError(f"lm_scale {lm_scale} and am_scale {am_scale} must be >= 0 with a sum below 1")
    with torch.autocast(am.device.type, enabled=False):
        blank_lp, label_lp = simple_hat_log_probs(am.float(), lm.float(), targets, lm_scale, am_scale)
        costs, occ_blank, occ_label = lattice_nll(blank_lp, label_lp, t_lens, u_lens)
    return costs, occ_blank + F.pad(occ_label, (0, 1))


def prune_ranges(occupancy: torch.Tensor, t_lens: torch.Tensor, u_lens: torch.Tensor, S: int) -> torch.Tensor:
    """Window starts (B, T) int64: frame t keeps symbol positions starts[b, t] + 0..S-1.

    occupancy (B, T, U+1) node occupancies. Guarantees, per example: starts in
    0..max(0, U_b + 1 - S), 0 at frame 0, max(0, U_b + 1 - S) from frame T_b - 1 on,
    nondecreasing, and steps of at most S - 1 (so consecutive windows share a position and
    the window lattice holds a path). Needs S >= 2 and U_b <= T_b (S - 1) (else no window
    sequence can reach U_b): ValueError otherwise.
    """
    B, T, U1 = occupancy.shape
    dev = occupancy.device
    if S < 2:
        raise ValueError(f"prune range must be >= 2, got {S}")
    if bool((u_lens > t_lens * (S - 1)).any()):
        raise ValueError(f"prune range {S} cannot cover targets longer than {S - 1} per frame: "
                         f"T {t_lens.tolist()}, U {u_lens.tolist()}")
    hi = (u_lens.to(dev) + 1 - S).clamp(min=0)[:, None]  # (B, 1) latest start inside 0..U_b
    n_starts = max(1, U1 - S + 1)
    csum = F.pad(occupancy.cumsum(-1), (1, max(0, S - U1)))  # (B, T, U+2+pad)
    csum[..., U1 + 1:] = csum[..., U1:U1 + 1]
    mass = csum[..., S:S + n_starts] - csum[..., :n_starts]  # (B, T, n_starts): window sums
    cand = torch.arange(n_starts, device=dev)
    mass = mass.masked_fill(cand > hi[..., None], -1.0)
    starts = mass.argmax(-1)  # (B, T)
    t = torch.arange(T, device=dev)
    starts[:, 0] = 0
    slope = t * (S - 1)
    starts = starts.cummax(1).values  # nondecreasing
    # steps <= S - 1 from frame 0 on: s_t <= s_t' + (t - t')(S - 1), a running min
    starts = (starts - slope).cummin(1).values + slope
    starts = torch.where(t >= t_lens.to(dev)[:, None] - 1, hi, starts)  # the last window holds U_b
    # and back from there: s_t >= s_t' - (t' - t)(S - 1), a reverse running max; both keep
    # the starts nondecreasing, and as s_t <= t (S - 1) and U_b <= T_b (S - 1), frame 0 stays at 0
    return (starts - slope).flip(1).cummax(1).values.flip(1) + slope


def _window_dp(pos, U, t_lens, u_lens):
    """The DP for window arcs at symbol positions pos (B, T, S): dp(blank_w, label_w) scatters
    them into the (T, U+1) / (T, U) grids (-inf elsewhere and past U_b), runs the DP there and
    gathers the gradients back to (B, T, S)."""
    def dp(blank_w, label_w):
        B, T, S = pos.shape
        u_b = u_lens.to(pos.device)[:, None, None]
        ninf = float("-inf")
        blank_w = blank_w.masked_fill(pos > u_b, ninf)
        label_w = label_w.masked_fill(pos >= u_b, ninf)
        # positions reach at most max(U, S - 1): a grid U + S wide takes them unclamped
        grid_b = blank_w.new_full((B, T, U + S), ninf).scatter_(2, pos, blank_w)[..., : U + 1]
        grid_l = label_w.new_full((B, T, U + S), ninf).scatter_(2, pos, label_w)[..., :U]
        costs, gb, gl = _nll_and_grads(grid_b, grid_l, t_lens, u_lens)
        return costs, F.pad(gb, (0, S - 1)).gather(2, pos), F.pad(gl, (0, S)).gather(2, pos)
    return dp


def pruned_hat_loss(logits: torch.Tensor, targets: torch.Tensor, starts: torch.Tensor,
                    t_lens: torch.Tensor, u_lens: torch.Tensor) -> torch.Tensor:
    """Transducer NLL (B,) of the full joiner's logits on the pruned window.

    logits (B, T, S, V) raw joint outputs at (t, starts[b, t] + s), blank at 0 (any float
    dtype; arithmetic at least float32); targets (B, U); starts (B, T) from
    :func:`prune_ranges`; lengths as ``hat_transducer_loss``. Window cells past U_b are
    ignored. Gradient to the logits fused as in ``hat_transducer_loss``.
    """
    if logits.shape[:2] != starts.shape or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)}, starts {tuple(starts.shape)} and targets "
                         f"{tuple(targets.shape)} do not fit")
    B, T, S, V = logits.shape
    U = targets.shape[1]
    pos = starts[..., None] + torch.arange(S, device=starts.device)  # (B, T, S) symbol positions
    labels = targets.gather(1, pos.clamp(max=U - 1).reshape(B, -1)).reshape(B, T, S) if U else torch.zeros_like(pos)
    idx = labels.clamp(0, V - 1)[..., None]  # (B, T, S, 1); past U_b masked in the DP
    return HatHeadNLL.apply(logits, idx, _window_dp(pos, U, t_lens, u_lens))


def loss_scales(step: int, simple_scale: float, warmup_steps: int) -> tuple[float, float]:
    """(simple, pruned) loss weights at a training step, as icefall warms them up: the
    simple loss alone leads (1.0 vs 0.1) at step 0 and both move linearly to
    (simple_scale, 1.0) at warmup_steps, where they stay."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return simple_scale, 1.0
    f = step / warmup_steps
    return 1.0 - f * (1.0 - simple_scale), 0.1 + 0.9 * f
