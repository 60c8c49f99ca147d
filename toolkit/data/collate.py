"""Pad dataset items into the model's batch dicts (see the model API in docs).

Paired: ``feats (B, T, D) float32``, ``feat_lens (B,)``, ``phones (B, M)``, ``phone_lens``,
``tokens (B, U)``, ``token_lens`` (and ``durations (B, M)`` when the items carry an
aligner's durations); text: the phone and token entries only. Integer
sequences pad with 0 (``<pad>`` / ``<blank>``). Metadata the model does not read
(utterance ids, seconds of audio) goes in a separate dict.
"""
from __future__ import annotations

import numpy as np
import torch

FRAME_SHIFT_S = 0.01  # 10 ms Kaldi fbank shift (docs/formats.md)


def pad_int(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (B, L) int64 padded with 0, (B,) int64 lengths."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    out = torch.zeros(len(seqs), int(lens.max()) if len(seqs) else 0, dtype=torch.int64)
    for b, s in enumerate(seqs):
        out[b, :len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
    return out, lens


def pad_feats(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (B, T, D) float32 padded with 0, (B,) int64 lengths."""
    lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
    out = torch.zeros(len(feats), int(lens.max()), feats[0].shape[1], dtype=torch.float32)
    for b, f in enumerate(feats):
        out[b, :f.shape[0]] = torch.as_tensor(f, dtype=torch.float32)  # copies (kaldiio arrays may be read-only)
    return out, lens


def collate_text(items: list[dict]) -> tuple[dict, dict]:
    phones, phone_lens = pad_int([it["phones"] for it in items])
    tokens, token_lens = pad_int([it["tokens"] for it in items])
    batch = {"kind": "text", "phones": phones, "phone_lens": phone_lens,
             "tokens": tokens, "token_lens": token_lens}
    return batch, {"uttids": [it["uttid"] for it in items], "audio_seconds": 0.0}


def collate_paired(items: list[dict]) -> tuple[dict, dict]:
    feats, feat_lens = pad_feats([it["feats"] for it in items])
    batch, meta = collate_text(items)
    batch.update(kind="paired", feats=feats, feat_lens=feat_lens)
    if "durations" in items[0]:  # an aligner's frames per phone, padded like the phones
        batch["durations"] = pad_int([it["durations"] for it in items])[0]
    meta["audio_seconds"] = float(feat_lens.sum()) * FRAME_SHIFT_S
    return batch, meta
