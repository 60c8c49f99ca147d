"""Conformer block and stack, full-context or causal/chunked from one implementation.

Block: x + FF/2 -> x + MHSA (rotary) -> x + Conv -> x + FF/2 -> LayerNorm (macaron).
Causal mode: attention sees the current chunk plus ``left_chunks`` earlier chunks, the
depthwise convolution is padded on the left only, and the conv module normalises with
LayerNorm (not BatchNorm) so nothing mixes frames across time or batch. No future frame
outside the current chunk is ever read. :meth:`ConformerStack.forward_chunk` runs one chunk
with caches (attention K/V of the left context, conv state) and equals the chunked forward
over the whole sequence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.nn.attention import RotarySelfAttention, chunk_attention_mask


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.SiLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, d_model), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    def __init__(self, d_model: int, kernel: int, causal: bool, dropout: float):
        super().__init__()
        if not causal and kernel % 2 == 0:
            raise ValueError(f"full-context conv kernel must be odd, got {kernel}")
        self.kernel, self.causal = kernel, causal
        self.norm_in = nn.LayerNorm(d_model)
        self.pw_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pw_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pad_mask=None, cache=None):
        """x (B, T, D); pad_mask (B, T) True on padding; cache (B, D, kernel-1) past inputs."""
        h = F.glu(self.pw_in(self.norm_in(x)), dim=-1)  # (B, T, D)
        if pad_mask is not None:  # padding must look like the zero padding of a short input
            h = h.masked_fill(pad_mask[..., None], 0.0)
        h = h.transpose(1, 2)  # (B, D, T)
        new_cache = None
        if self.causal:
            left = cache if cache is not None else h.new_zeros(h.shape[0], h.shape[1], self.kernel - 1)
            h = torch.cat([left, h], dim=2)
            new_cache = h[:, :, h.shape[2] - (self.kernel - 1):]
        else:
            h = F.pad(h, ((self.kernel - 1) // 2, (self.kernel - 1) // 2))
        h = self.depthwise(h).transpose(1, 2)  # (B, T, D)
        h = self.pw_out(F.silu(self.norm(h)))
        return self.dropout(h), new_cache


class ConformerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ff_mult: int, conv_kernel: int,
                 dropout: float, causal: bool):
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_mult * d_model, dropout)
        self.norm_att = nn.LayerNorm(d_model)
        self.attn = RotarySelfAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, conv_kernel, causal, dropout)
        self.ff2 = FeedForward(d_model, ff_mult * d_model, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pos, attn_mask=None, pad_mask=None, cache=None):
        """x (B, T, D). cache = (k, v, conv_state) or None. Returns (y, (k, v, conv_state))."""
        x = x + 0.5 * self.ff1(x)
        att, kv = self.attn(self.norm_att(x), pos, attn_mask, None if cache is None else cache[:2])
        x = x + self.dropout(att)
        conv, conv_state = self.conv(x, pad_mask, None if cache is None else cache[2])
        x = x + conv
        x = x + 0.5 * self.ff2(x)
        return self.norm_out(x), (kv[0], kv[1], conv_state)


class ConformerStack(nn.Module):
    """``n_layers`` conformer blocks (+ input projection when input_dim != d_model).

    causal=False: full context. causal=True: chunked attention (chunk_size frames,
    left_chunks earlier chunks; chunk_size=1 is frame-causal) and causal convolution.
    """

    def __init__(self, input_dim: int, d_model: int = 144, n_layers: int = 2, n_heads: int = 4,
                 ff_mult: int = 4, conv_kernel: int = 15, dropout: float = 0.1,
                 causal: bool = False, chunk_size: int = 0, left_chunks: int = -1):
        super().__init__()
        if causal and chunk_size < 1:
            raise ValueError("a causal conformer stack needs chunk_size >= 1")
        self.causal, self.chunk_size, self.left_chunks = causal, chunk_size, left_chunks
        self.output_dim = d_model
        self.input_proj = nn.Linear(input_dim, d_model) if input_dim != d_model else nn.Identity()
        self.layers = nn.ModuleList(
            ConformerBlock(d_model, n_heads, ff_mult, conv_kernel, dropout, causal) for _ in range(n_layers))

    def forward(self, x, lens, return_layers: bool = False):
        """x (B, T, input_dim), lens (B,) -> y (B, T, D) [, list of per-layer (B, T, D)]."""
        T = x.shape[1]
        mask = chunk_attention_mask(lens, T, self.chunk_size if self.causal else 0, self.left_chunks)
        pad_mask = torch.arange(T, device=x.device)[None, :] >= lens[:, None]  # (B, T)
        pos = torch.arange(T, device=x.device)
        x = self.input_proj(x)
        outs = []
        for layer in self.layers:
            x, _ = layer(x, pos, mask, pad_mask)
            outs.append(x)
        return (x, outs) if return_layers else x

    def init_cache(self):
        """Empty streaming cache: frame offset and per-layer (k, v, conv_state)."""
        return {"offset": 0, "layers": [None] * len(self.layers)}

    def forward_chunk(self, x, cache):
        """One chunk x (B, t, input_dim), t <= chunk_size, all frames valid -> (y (B, t, D), cache).

        Call with full chunks of exactly ``chunk_size`` frames; only the last chunk of a
        stream may be shorter. Equals :meth:`forward` on the concatenated chunks.
        """
        if not self.causal:
            raise RuntimeError("forward_chunk needs a causal (chunked) conformer stack")
        t = x.shape[1]
        if t > self.chunk_size:
            raise ValueError(f"chunk of {t} frames > chunk_size {self.chunk_size}")
        pos = torch.arange(cache["offset"], cache["offset"] + t, device=x.device)
        keep = None if self.left_chunks < 0 else self.left_chunks * self.chunk_size
        x = self.input_proj(x)
        new_layers = []
        for layer, c in zip(self.layers, cache["layers"]):
            x, (k, v, conv) = layer(x, pos, None, None, c)
            if keep is not None:  # the next chunk sees only left_chunks chunks back
                k, v = (k[:, :, -keep:], v[:, :, -keep:]) if keep else (k[:, :, :0], v[:, :, :0])
            new_layers.append((k, v, conv))
        return x, {"offset": cache["offset"] + t, "layers": new_layers}
