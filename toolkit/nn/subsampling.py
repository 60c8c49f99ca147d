"""Conv2d subsampling x4 without time padding, so it can run on a stream.

Output frame t depends on input frames 4t .. 4t+6 only: the full-sequence result and the
result of feeding the frames in pieces (:meth:`Conv2dSubsampling.forward_stream`) agree,
and the front end adds 3 frames (30 ms) of lookahead beyond each 4-frame step.
"""
from __future__ import annotations

import torch
from torch import nn


def subsampled_lengths(lens: torch.Tensor) -> torch.Tensor:
    """Output lengths for input lengths: two k=3, s=2 valid convolutions."""
    return ((((lens - 1) // 2) - 1) // 2).clamp(min=0)


class Conv2dSubsampling(nn.Module):
    receptive_field = 7  # input frames behind one output frame
    stride = 4

    def __init__(self, input_dim: int, d_model: int, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 2), nn.ReLU())
        freq = ((input_dim - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lens: torch.Tensor):
        """x (B, T, F), lens (B,) -> (B, T', D), lens' (B,); T' = ((T-1)//2-1)//2."""
        if x.shape[1] < self.receptive_field:
            return x.new_zeros(x.shape[0], 0, self.proj.out_features), subsampled_lengths(lens)
        y = self.conv(x[:, None])  # (B, C, T', F')
        B, C, T, Fr = y.shape
        return self.proj(y.permute(0, 2, 1, 3).reshape(B, T, C * Fr)), subsampled_lengths(lens)

    def forward_stream(self, x: torch.Tensor, buffer: torch.Tensor | None):
        """Feed more input frames x (B, t, F); returns (new output frames, leftover buffer)."""
        buf = x if buffer is None else torch.cat([buffer, x], dim=1)
        n_out = int(subsampled_lengths(torch.tensor(buf.shape[1])))
        if n_out == 0:
            return buf.new_zeros(buf.shape[0], 0, self.proj.out_features), buf
        y, _ = self.forward(buf, torch.full((buf.shape[0],), buf.shape[1]))
        return y[:, :n_out], buf[:, self.stride * n_out:]
