"""The exported graphs of a joint model, as ``nn.Module`` wrappers ONNX can trace.

Streaming (the first pass, laid out as sherpa-onnx's online conformer transducer):

    StreamingEncoderChunk  x (N, T, F) raw fbank, cached_attn (L, C, N, Dc), cached_conv (L, K-1, N, Dc),
                           processed_frames (N,) int64 fbank frames consumed before this chunk
                           -> encoder_out (N, t, J), new cached_attn, new cached_conv
    Predictor              y (N, context_size) int64 last labels (blank-padded) -> decoder_out (N, J)
    Joiner                 encoder_out (N, J), decoder_out (N, J) -> logit (N, V) HAT log-probs

Full context (the second pass): FullEncoder x (N, T, F), x_lens (N,) -> encoder_out (N, T', J),
encoder_out_lens (N,), with the full-context decoder's Predictor and Joiner.

Global CMVN is folded into both encoders, so a runtime feeds the Kaldi fbank it computes
itself (``toolkit.features.fbank`` options). Encoder outputs and predictor outputs are
already projected to the joint dimension J (the joiner only adds them), as icefall exports.

The chunk encoder caches, per conformer layer (the audio encoder's, then the shared
encoder's), the attention layer's normalised *input* for the last C = left_chunks x
chunk_size frames, and recomputes the rotary keys and values from it at their absolute
positions; this equals Concord's cache of rotated keys and values. Cache rows of frames
before the start of the stream are masked out (processed_frames says how many exist), so
zero-filled initial caches are correct. Layers narrower than Dc (or with a smaller conv
kernel) use the leading part of their cache rows. T is dynamic: T = 4 x stack x t + 3 for
t encoder frames; a runtime with a fixed window (sherpa-onnx) feeds T = chunk_size x
frames_per_output + 3 and advances by chunk_size x frames_per_output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.models.hat import hat_log_probs


def _rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (N, H, T, dh) at per-utterance positions pos (N, T); as nn.attention.rotate."""
    dh = x.shape[-1]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh))
    angle = pos.to(torch.float32)[..., None] * inv_freq  # (N, T, dh/2)
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # (N, 1, T, dh/2)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _block_chunk(block, x, pos_q, pos_k, key_valid, attn_cache, conv_cache):
    """One ConformerBlock on a chunk x (N, t, D) with cached attention inputs (N, C, D) and conv
    inputs (N, D, K-1) -> (y, new attn cache, new conv cache)."""
    x = x + 0.5 * block.ff1(x)
    h = block.norm_att(x)  # (N, t, D)
    full = torch.cat([attn_cache, h], dim=1)  # (N, C+t, D)
    attn = block.attn
    N, t, D = h.shape
    H = attn.n_heads
    q = attn.qkv(h)[..., :D].view(N, t, H, D // H).transpose(1, 2)  # (N, H, t, dh)
    kv = attn.qkv(full)[..., D:].view(N, full.shape[1], 2, H, D // H).permute(2, 0, 3, 1, 4)
    q, k, v = _rotate(q, pos_q), _rotate(kv[0], pos_k), kv[1]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid[:, None, None, :])  # (N, H, t, dh)
    x = x + attn.out(y.transpose(1, 2).reshape(N, t, D))
    conv, new_conv = block.conv(x, None, conv_cache)
    x = x + conv
    x = x + 0.5 * block.ff2(x)
    return block.norm_out(x), full[:, t:], new_conv


class StreamingEncoderChunk(nn.Module):
    def __init__(self, model, cmvn):
        super().__init__()
        self.audio = model.audio_encoder
        self.shared = model.shared_encoder
        self.enc_proj = model.stream_decoder.joiner.enc_proj
        self.register_buffer("mean", torch.as_tensor(cmvn.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(cmvn.std, dtype=torch.float32))
        self.stacks = [(self.audio.conformer, self.audio.conformer.layers), (self.shared, self.shared.layers)]
        self.dims = [s.output_dim for s, layers in self.stacks for _ in layers]
        self.kernels = [b.conv.kernel for _, layers in self.stacks for b in layers]
        self.cache_frames = model.chunk_size * model.audio_encoder.conformer.left_chunks
        self.frames_per_output = model.audio_encoder.frames_per_output

    def forward(self, x, cached_attn, cached_conv, processed_frames):
        x = (x - self.mean) / self.std  # (N, T, F)
        sub = self.audio.subsampling.proj(self._conv(x))  # (N, t*k, D)
        x = self.audio.stack(sub)  # (N, t, D)
        N, t = x.shape[0], x.shape[1]
        C = self.cache_frames
        offset = processed_frames // self.frames_per_output  # (N,) encoder frames before this chunk
        steps = torch.arange(C + t, device=x.device)
        pos_k = offset[:, None] - C + steps[None]  # (N, C+t)
        pos_q = pos_k[:, C:]
        key_valid = pos_k >= 0
        new_attn, new_conv, i = [], [], 0
        for stack, layers in self.stacks:
            x = stack.input_proj(x)
            for block in layers:
                d, k = self.dims[i], self.kernels[i]
                a_cache = cached_attn[i, :, :, :d].transpose(0, 1)  # (N, C, d)
                c_cache = cached_conv[i, cached_conv.shape[1] - (k - 1):, :, :d].permute(1, 2, 0)  # (N, d, k-1)
                x, a_new, c_new = _block_chunk(block, x, pos_q, pos_k, key_valid, a_cache, c_cache)
                new_attn.append(self._pad(a_new.transpose(0, 1), cached_attn.shape[-1]))
                c_new = c_new.permute(2, 0, 1)  # (k-1, N, d)
                c_full = torch.cat([cached_conv[i, : cached_conv.shape[1] - (k - 1)], self._pad(c_new, cached_conv.shape[-1])])
                new_conv.append(c_full)
                i += 1
        return self.enc_proj(x), torch.stack(new_attn), torch.stack(new_conv)

    def _conv(self, x):
        y = self.audio.subsampling.conv(x[:, None])  # (N, C, t', F')
        return y.permute(0, 2, 1, 3).flatten(2)

    @staticmethod
    def _pad(x, width):
        return F.pad(x, (0, width - x.shape[-1])) if x.shape[-1] < width else x


class FullEncoder(nn.Module):
    """fbank (N, T, F), lengths (N,) -> full-context encoder output projected for its joiner."""

    def __init__(self, model, cmvn):
        super().__init__()
        self.audio, self.shared, self.cascaded = model.audio_encoder, model.shared_encoder, model.cascaded_encoder
        self.enc_proj = model.full_decoder.joiner.enc_proj
        self.register_buffer("mean", torch.as_tensor(cmvn.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(cmvn.std, dtype=torch.float32))

    def forward(self, x, x_lens):
        from toolkit.nn.subsampling import subsampled_lengths
        x = (x - self.mean) / self.std
        sub = self.audio.subsampling.proj(self.audio.subsampling.conv(x[:, None]).permute(0, 2, 1, 3).flatten(2))
        lens = subsampled_lengths(x_lens) // self.audio.stack_frames
        h = self.audio.conformer(self.audio.stack(sub), lens)
        h = self.cascaded(self.shared(h, lens), lens)
        return self.enc_proj(h), lens


class StatelessPredictorStep(nn.Module):
    """y (N, context_size) last labels, oldest first (negative = none: blank) -> (N, J)."""

    def __init__(self, decoder):
        super().__init__()
        self.predictor, self.pred_proj = decoder.predictor, decoder.joiner.pred_proj

    def forward(self, y):
        emb = self.predictor.embed(y.clamp(min=0))[:, None]  # (N, 1, k, E)
        return self.pred_proj(self.predictor._mix(emb)[:, 0])


class LstmPredictorStep(nn.Module):
    """y (N, 1) last label, h / c (layers, N, H) -> (N, J), new h, new c (onnxruntime only)."""

    def __init__(self, decoder):
        super().__init__()
        self.predictor, self.pred_proj = decoder.predictor, decoder.joiner.pred_proj

    def forward(self, y, h, c):
        out, (h, c) = self.predictor.lstm(self.predictor.embed(y.clamp(min=0)), (h, c))
        return self.pred_proj(out[:, -1]), h, c


class Joiner(nn.Module):
    """Projected encoder frame (N, J) + predictor output (N, J) -> HAT log-probs (N, V)."""

    def __init__(self, decoder):
        super().__init__()
        self.joiner = decoder.joiner

    def forward(self, encoder_out, decoder_out):
        return hat_log_probs(self.joiner.logits_projected(encoder_out, decoder_out))
