"""SpecAugment on CMVN-normalised feature batches: time warp, frequency and time masks.

Randomness comes only from the ``seed`` argument (one per batch, chosen by the sampler),
never from global RNG state, so a resumed run augments every batch exactly as the
uninterrupted run did, whichever worker process loads it. Masked cells are set to 0,
the feature mean after CMVN. Padding frames are left untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SpecAugment:
    num_freq_masks: int = 2
    freq_mask_width: int = 27        # bins, upper bound of each mask's width
    num_time_masks: int = 2
    time_mask_width: int = 40        # frames, upper bound of each mask's width ...
    time_mask_max_ratio: float = 0.2  # ... and at most this fraction of the utterance
    time_warp_window: int = 0        # frames; 0 disables time warping

    def __call__(self, feats: torch.Tensor, feat_lens: torch.Tensor, seed: int) -> torch.Tensor:
        """feats (B, T, D), feat_lens (B,) -> augmented copy (B, T, D)."""
        g = torch.Generator().manual_seed(int(seed))
        out = feats.clone()
        num_bins = feats.shape[2]
        for b in range(feats.shape[0]):
            n = int(feat_lens[b])
            x = out[b, :n]  # (n, D) view
            if self.time_warp_window > 0:
                x.copy_(time_warp(x, self.time_warp_window, g))
            for _ in range(self.num_freq_masks):
                w = _randint(0, min(self.freq_mask_width, num_bins), g)
                f0 = _randint(0, num_bins - w, g)
                x[:, f0:f0 + w] = 0.0
            max_t = min(self.time_mask_width, int(self.time_mask_max_ratio * n))
            for _ in range(self.num_time_masks):
                w = _randint(0, max_t, g)
                t0 = _randint(0, n - w, g)
                x[t0:t0 + w, :] = 0.0
        return out


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=g))


def time_warp(x: torch.Tensor, window: int, g: torch.Generator) -> torch.Tensor:
    """Move a random point c in [W, n-W) to c' in [c-W, c+W] by linear resampling. x (n, D)."""
    n = x.shape[0]
    if n <= 2 * window + 1:
        return x
    c = _randint(window, n - window - 1, g)
    c2 = _randint(c - window, c + window, g)
    c2 = min(max(c2, 1), n - 1)
    xt = x.t().unsqueeze(0)  # (1, D, n)
    left = F.interpolate(xt[:, :, :c], size=c2, mode="linear", align_corners=False)
    right = F.interpolate(xt[:, :, c:], size=n - c2, mode="linear", align_corners=False)
    return torch.cat([left, right], dim=2)[0].t()
