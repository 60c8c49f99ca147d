"""Encoders of the joint model: audio (subsampling + causal conformer), text (masked
phonemes + conformer, no upsampling) and the generic conformer used for the shared
streaming encoder (causal/chunked) and the cascaded full-context encoder.

Keys the model fills in itself (input sizes, causality, chunking) are listed in the
``*_INJECTED`` sets and rejected when they appear in a config.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from toolkit.nn.conformer import ConformerStack
from toolkit.nn.subsampling import Conv2dSubsampling
from toolkit.utils.config import Registry

AUDIO_ENCODERS = Registry("audio_encoder")
TEXT_ENCODERS = Registry("text_encoder")
ENCODERS = Registry("encoder")  # shared_encoder and cascaded_encoder

AUDIO_ENCODERS_INJECTED = {"chunk_size", "left_chunks"}
TEXT_ENCODERS_INJECTED = {"num_phones"}
ENCODERS_INJECTED = {"input_dim", "causal", "chunk_size", "left_chunks"}
MASK_ID = 2  # <mask> in data/lang/phones.txt


@AUDIO_ENCODERS.register("conformer")
class AudioEncoder(nn.Module):
    """fbank (B, T, feat_dim) -> conv2d subsampling x4 -> [stack k frames] -> causal chunked
    conformer (B, T/(4k), D). ``stack_frames`` k > 1 concatenates k consecutive subsampled
    frames (dropping an incomplete group at the end) and projects back to d_model."""

    def __init__(self, feat_dim: int = 80, d_model: int = 144, n_layers: int = 2, n_heads: int = 4,
                 ff_mult: int = 4, conv_kernel: int = 15, dropout: float = 0.1,
                 subsampling_channels: int = 64, stack_frames: int = 1, chunk_size: int = 8, left_chunks: int = 4):
        super().__init__()
        if stack_frames < 1:
            raise ValueError(f"stack_frames must be >= 1, got {stack_frames}")
        self.subsampling = Conv2dSubsampling(feat_dim, d_model, subsampling_channels)
        self.stack_frames = stack_frames
        self.stack_proj = nn.Linear(stack_frames * d_model, d_model) if stack_frames > 1 else None
        self.conformer = ConformerStack(d_model, d_model, n_layers, n_heads, ff_mult, conv_kernel, dropout,
                                        causal=True, chunk_size=chunk_size, left_chunks=left_chunks)
        self.output_dim = d_model
        self.frames_per_output = Conv2dSubsampling.stride * stack_frames  # input frames per output frame
        self.min_frames = Conv2dSubsampling.receptive_field + Conv2dSubsampling.stride * (stack_frames - 1)

    def stack(self, x):
        """(B, T', D) subsampled frames -> (B, T' // k, D)."""
        if self.stack_proj is None:
            return x
        B, T, D = x.shape
        T2 = T // self.stack_frames
        return self.stack_proj(x[:, : T2 * self.stack_frames].reshape(B, T2, self.stack_frames * D))

    def front_end(self, feats, feat_lens):
        """Subsampling + stacking -> (B, T', D), lens (B,); raises ValueError on too-short input."""
        if (feat_lens < self.min_frames).any():
            bad = (feat_lens < self.min_frames).nonzero()[:, 0].tolist()
            raise ValueError(f"utterance(s) at batch index {bad} have fewer than {self.min_frames} feature frames")
        x, lens = self.subsampling(feats, feat_lens)
        return self.stack(x), lens // self.stack_frames

    def forward(self, feats, feat_lens):
        """-> (B, T', D), lens (B,)."""
        x, lens = self.front_end(feats, feat_lens)
        return self.conformer(x, lens), lens


@TEXT_ENCODERS.register("conformer")
class TextEncoder(nn.Module):
    """phonemes (B, M) -> [span masking, train only] -> embedding -> conformer (B, M, D).

    Masking: about ``mask_rate`` of the valid positions, in spans of ``mask_span``
    phonemes, are replaced by ``<mask>`` (id 2) when ``mask=True`` and in train mode.
    """

    def __init__(self, num_phones: int, d_model: int = 144, n_layers: int = 1, n_heads: int = 4,
                 ff_mult: int = 4, conv_kernel: int = 15, dropout: float = 0.1,
                 mask_rate: float = 0.2, mask_span: int = 2):
        super().__init__()
        if not 0.0 <= mask_rate < 1.0 or mask_span < 1:
            raise ValueError(f"need 0 <= mask_rate < 1 and mask_span >= 1, got {mask_rate}, {mask_span}")
        self.embed = nn.Embedding(num_phones, d_model, padding_idx=0)
        self.scale = math.sqrt(d_model)
        self.conformer = ConformerStack(d_model, d_model, n_layers, n_heads, ff_mult, conv_kernel, dropout)
        self.mask_rate, self.mask_span = mask_rate, mask_span
        self.output_dim = d_model

    def mask_phones(self, phones, phone_lens):
        """Random span masking of valid positions -> new (B, M) tensor."""
        B, M = phones.shape
        starts = torch.rand(B, M, device=phones.device) < self.mask_rate / self.mask_span
        # position i is masked if a span started at one of i-span+1 .. i
        covered = nn.functional.max_pool1d(
            nn.functional.pad(starts.float()[:, None], (self.mask_span - 1, 0)), self.mask_span, 1)[:, 0] > 0
        valid = torch.arange(M, device=phones.device)[None] < phone_lens[:, None]
        return phones.masked_fill(covered & valid, MASK_ID)

    def forward(self, phones, phone_lens, mask: bool = True, return_layers: bool = False):
        if mask and self.training and self.mask_rate > 0:
            phones = self.mask_phones(phones, phone_lens)
        return self.conformer(self.embed(phones) * self.scale, phone_lens, return_layers=return_layers)


@ENCODERS.register("conformer")
class ConformerEncoder(ConformerStack):
    """Shared streaming (causal, chunked) or cascaded full-context conformer."""
