"""How long the text is when it enters the shared encoder (DESIGN.md s.4b).

``model_conf.text_upsampling``:

- ``none``: phoneme length (the paper: no upsampling heuristic, no alignment model);
- ``repeat``: each text-encoder output repeated ``r`` times (JOIST's heuristic);
  ``text_upsampling_conf.repeat`` is r, 0 meaning "the paired training data's mean encoder
  frames per phoneme, rounded", resolved once at training start and saved in config.yaml;
- ``durations``: each position repeated by its duration (Maestro): paired utterances use
  the durations of an explicit, frozen alignment model (``toolkit.aligner``), text-only
  batches those of a :class:`DurationPredictor` on the text encoder, trained on the paired
  utterances' aligner durations.

Usage::

    from toolkit.models.upsampling import upsample, DurationPredictor
    y, y_lens = upsample(x, x_lens, durations)   # x (B, m, D), durations (B, m) >= 0 -> (B, sum d, D)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.utils.config import ConfigError

TEXT_UPSAMPLING = ("none", "repeat", "durations")
UPSAMPLING_DEFAULTS = {
    "repeat": 0,                 # r for 'repeat'; 0: the training data's mean encoder frames per phoneme
    "predictor_channels": 144,   # 'durations': the duration predictor's conv width
    "predictor_kernel": 3,
}


def check_upsampling(kind: str, conf: dict) -> dict:
    """Validated copy of ``text_upsampling_conf`` with defaults filled."""
    if kind not in TEXT_UPSAMPLING:
        raise ConfigError(f"model_conf.text_upsampling: choose {', '.join(TEXT_UPSAMPLING)}, got {kind!r}")
    unknown = sorted(set(conf or {}) - set(UPSAMPLING_DEFAULTS))
    if unknown:
        raise ConfigError(f"model_conf.text_upsampling_conf: unknown key(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(UPSAMPLING_DEFAULTS)}")
    out = {**UPSAMPLING_DEFAULTS, **(conf or {})}
    if int(out["repeat"]) < 0 or int(out["predictor_kernel"]) < 1 or int(out["predictor_channels"]) < 1:
        raise ConfigError(f"model_conf.text_upsampling_conf: repeat >= 0, predictor sizes >= 1, got {out}")
    return out


def upsample(x: torch.Tensor, lens: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat position j of example b ``durations[b, j]`` times.

    x (B, m, D), lens (B,), durations (B, m) int >= 0 (read only below ``lens``) ->
    (B, n_max, D) zero-padded, new lengths (B,) = per-example sums of the valid durations.
    """
    B, m, D = x.shape
    valid = torch.arange(m, device=x.device)[None, :] < lens.to(x.device)[:, None]
    d = torch.where(valid, durations.to(x.device).long().clamp(min=0), 0)  # (B, m)
    new_lens = d.sum(1)
    n_max = int(new_lens.max()) if B else 0
    # the source position of output frame k of example b: the j with cum[j-1] <= k < cum[j]
    cum = d.cumsum(1)  # (B, m)
    k = torch.arange(n_max, device=x.device)[None, :].expand(B, n_max)
    src = torch.searchsorted(cum, k.contiguous(), right=True).clamp(max=max(m - 1, 0))  # (B, n_max)
    out = x.gather(1, src[:, :, None].expand(B, n_max, D))
    out = out * (k < new_lens[:, None]).to(out.dtype)[:, :, None]
    return out, new_lens


def repeat_durations(lens: torch.Tensor, m: int, r: int) -> torch.Tensor:
    """(B, m) durations that repeat every valid position r times."""
    return torch.full((lens.shape[0], m), int(r), dtype=torch.int64, device=lens.device)


class DurationPredictor(nn.Module):
    """Text-encoder output (B, m, D) -> log(1 + frames) per position (B, m), as FastSpeech:
    two conv + ReLU + LayerNorm blocks and a projection. Trained with :meth:`loss` on the
    aligner's durations; :meth:`durations` rounds its prediction to whole frames (>= 1)."""

    def __init__(self, d_model: int, channels: int = 144, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(d_model, channels, kernel, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad)
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lens.to(x.device)[:, None])  # (B, m)
        h = x * mask[:, :, None]
        h = self.norm1(F.relu(self.conv1(h.transpose(1, 2))).transpose(1, 2)) * mask[:, :, None]
        h = self.norm2(F.relu(self.conv2(h.transpose(1, 2))).transpose(1, 2)) * mask[:, :, None]
        return self.proj(h)[:, :, 0]  # (B, m) log(1 + frames)

    def loss(self, x: torch.Tensor, lens: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
        """Mean squared error in log(1 + frames) over the valid positions (a scalar)."""
        pred = self(x, lens)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lens.to(x.device)[:, None]
        target = torch.log1p(durations.to(pred.dtype).clamp(min=0))
        return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def durations(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """(B, m) int64 predicted frames per position, at least 1."""
        return torch.expm1(self(x, lens).float()).round().clamp(min=1).long()
