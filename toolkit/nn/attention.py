"""Multi-head self-attention with rotary positions, and chunked attention masks.

Rotary positions make the score depend only on the distance between query and key, so a
streaming encoder can cache already-rotated keys of past chunks and keep counting
positions from where the previous chunk stopped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def chunk_attention_mask(lens: torch.Tensor, T: int, chunk_size: int, left_chunks: int) -> torch.Tensor:
    """Boolean mask, True where query i may attend key j: (B, T, T), or (B, 1, T) (the same
    for every query) for full context.

    ``chunk_size <= 0``: full context, only padded keys hidden. Otherwise a query in chunk c
    sees the valid keys of chunks c-left_chunks .. c (``left_chunks < 0``: every past chunk),
    a band built from (T, 1) and (1, T) chunk indices straight into bool (no (T, T) integer
    matrix); each position may always see itself so fully padded rows do not become NaN.
    """
    idx = torch.arange(T, device=lens.device)
    key_valid = (idx[None, :] < lens[:, None].clamp(min=1))[:, None, :]  # (B, 1, T); a row never sees nothing
    if chunk_size <= 0:
        return key_valid
    q_chunk, k_chunk = (idx // chunk_size)[:, None], (idx // chunk_size)[None, :]  # (T, 1), (1, T)
    band = k_chunk <= q_chunk  # (T, T) bool
    if left_chunks >= 0:
        band = band & (k_chunk >= q_chunk - left_chunks)
    # the diagonal (no bool EyeLike in ONNX runtimes)
    return (key_valid & band[None]) | (idx[:, None] == idx[None, :])[None]


def rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (B, H, T, dh) at integer positions pos (T,)."""
    dh = x.shape[-1]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh))
    angle = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, dh/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RotarySelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model {d_model} must split into {n_heads} heads of even size")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, pos, mask=None, cache=None):
        """x (B, T, D) at positions pos (T,); mask (B, T or 1, Tk) bool or None (all allowed).

        cache: (k, v) each (B, H, Tc, dh) of earlier frames (keys already rotated), prepended
        to this call's keys. Returns (y (B, T, D), (k, v) including this call's frames).
        """
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, pos), rotate(k, pos)  # (B, H, T, dh)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else mask[:, None],
            dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), (k, v)
