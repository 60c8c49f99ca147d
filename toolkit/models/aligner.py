"""The explicit alignment model of the Maestro baseline: a small phoneme CTC network.

fbank (B, T, 80) -> the joint model's conv subsampling x4 (so its frames are the audio
encoder's) -> a full-context conformer -> phone log-posteriors (B, T', num_phones), blank
= phone id 0 (``<pad>``). Trained on the paired data alone, frozen, then used only to
Viterbi-align paired utterances (``toolkit.train.aligner``); it never shares weights or
gradients with the model being trained.
"""
from __future__ import annotations

import torch
from torch import nn

from toolkit.nn.conformer import ConformerStack
from toolkit.nn.subsampling import Conv2dSubsampling

ALIGNER_DEFAULTS = {"feat_dim": 80, "d_model": 144, "n_layers": 3, "n_heads": 4, "ff_mult": 4, "conv_kernel": 15,
                    "dropout": 0.0, "subsampling_channels": 32}  # dropout 0: its masks are slow on CPU (model_tiny.yaml)


class CtcAligner(nn.Module):
    def __init__(self, num_phones: int, feat_dim: int = 80, d_model: int = 144, n_layers: int = 3,
                 n_heads: int = 4, ff_mult: int = 4, conv_kernel: int = 15, dropout: float = 0.0,
                 subsampling_channels: int = 32):
        super().__init__()
        self.subsampling = Conv2dSubsampling(feat_dim, d_model, subsampling_channels)
        self.conformer = ConformerStack(d_model, d_model, n_layers, n_heads, ff_mult, conv_kernel, dropout)
        self.head = nn.Linear(d_model, num_phones)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> log-probabilities (B, T', num_phones) float32, lengths (B,)."""
        x, lens = self.subsampling(feats, feat_lens)
        return self.head(self.conformer(x, lens)).float().log_softmax(-1), lens
