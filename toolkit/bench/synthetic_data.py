"""Synthetic training inputs (random features and sequences) in the real on-disk formats.

The trainer's, dataset's and DDP tests train on them, and so does concord-gpu-check's
torchrun step: no corpus needed, yet every byte goes through the same readers as real data (kaldiio feats.scp, utt2num_frames, SeqStore,
Kaldi CMVN stats, tokens.txt / phones.txt).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.text.seqstore import SeqStoreWriter
from toolkit.utils.fileio import atomic_write
from toolkit.utils.kaldi_map import write_kaldi_map

from toolkit.bin.bench_train import NUM_SPECIAL_PHONES, random_sequences  # the benchmark's batches


def write_seqstore(out_dir: Path, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    with SeqStoreWriter(out_dir) as w:
        for utt, ph, tk in items:
            w.add(utt, ph, tk)


def write_paired_set(out_dir: str | os.PathLike, num_utts: int, *, min_frames: int = 50, max_frames: int = 200,
                     vocab_size: int = 32, num_phones: int = 24, feat_dim: int = 80, seed: int = 0,
                     prefix: str = "spk") -> list[str]:
    """dump/<set>-like dir: feats.scp + feats.1.ark, utt2num_frames, seq/, cmvn.ark. -> uttids"""
    import kaldiio
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uttids = [f"{prefix}{i % 3}-{1000 + i}-{i:04d}" for i in range(num_utts)]
    uttids.sort(key=lambda u: u.encode())
    frames, items = {}, []
    sums = np.zeros((2, feat_dim + 1), dtype=np.float64)
    with kaldiio.WriteHelper(f"ark,scp:{out / 'feats.1.ark'},{out / 'feats.scp'}") as writer:
        for utt in uttids:
            n = int(rng.integers(min_frames, max_frames + 1))
            feats = (rng.standard_normal((n, feat_dim)) * 2.0 + 5.0).astype(np.float32)  # (T, D)
            writer(utt, feats)
            sums[0, :-1] += feats.sum(0)
            sums[1, :-1] += (feats.astype(np.float64) ** 2).sum(0)
            sums[0, -1] += n
            frames[utt] = str(n)
            items.append((utt, *random_sequences(rng, n, vocab_size, num_phones)))
    write_kaldi_map(out / "utt2num_frames", frames)
    kaldiio.save_mat(str(out / "cmvn.ark"), sums)
    write_seqstore(out / "seq", items)
    return uttids


def write_text_set(out_dir: str | os.PathLike, num_seqs: int, *, vocab_size: int = 32, num_phones: int = 24,
                   seed: int = 1) -> None:
    """dump/text_only-like dir: seq/ only."""
    rng = np.random.default_rng(seed)
    items = [(f"text-{i:06d}", *random_sequences(rng, int(rng.integers(40, 240)), vocab_size, num_phones))
             for i in range(num_seqs)]
    write_seqstore(Path(out_dir) / "seq", items)


def write_lang_dir(out_dir: str | os.PathLike, vocab_size: int = 32, num_phones: int = 24) -> None:
    """tokens.txt / phones.txt with the documented special symbols (no wordpiece model)."""
    out = Path(out_dir)
    tokens = {"<blank>": "0", "<unk>": "1", **{f"t{i}": str(i) for i in range(2, vocab_size)}}
    specials = ["<pad>", "<unk>", "<mask>", "<wb>"]
    phones = {**{s: str(i) for i, s in enumerate(specials)},
              **{f"p{i}": str(i) for i in range(NUM_SPECIAL_PHONES, num_phones)}}
    for name, table in (("tokens.txt", tokens), ("phones.txt", phones)):
        with atomic_write(out / name) as f:
            f.writelines(f"{s} {i}\n" for s, i in table.items())
