"""Sentencepiece wordpieces whose ids are the model's token ids.

``<blank>`` is sentencepiece's pad piece (id 0, never produced by encoding), ``<unk>`` is
id 1, no bos/eos: so ``sp.encode(text)`` gives token ids directly.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterable, Iterator

import sentencepiece as spm

from toolkit.utils.kaldi_map import iter_kaldi_map
from toolkit.utils.fileio import atomic_write

BLANK, UNK = "<blank>", "<unk>"


def iter_transcripts(text_paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Transcripts (without utterance ids) of Kaldi text files, streamed."""
    for path in text_paths:
        for _, _, value in iter_kaldi_map(path):
            yield value


def reservoir(lines: Iterable[str], k: int, seed: int = 0) -> list[str]:
    """Uniform sample of at most ``k`` lines in one pass (memory O(k), not O(corpus))."""
    rng = random.Random(seed)
    sample: list[str] = []
    for i, line in enumerate(lines):
        if i < k:
            sample.append(line)
        else:
            j = rng.randint(0, i)
            if j < k:
                sample[j] = line
    return sample


def train_wordpiece(text_paths: Iterable[str | os.PathLike], vocab_size: int, out_dir: str | os.PathLike,
                    model_type: str = "unigram", max_sentences: int = 2_000_000,
                    character_coverage: float = 1.0) -> Path:
    """Train ``out_dir/wp<vocab_size>.model`` and write ``tokens.txt``; returns the model path.

    The vocabulary may come out smaller than ``vocab_size`` on a tiny corpus
    (``hard_vocab_limit=False``); tokens.txt lists what the model really has.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = reservoir(iter_transcripts(text_paths), max_sentences)
    if not sentences:
        raise ValueError(f"no transcripts in {list(text_paths)}")
    prefix = out_dir / f".wp{vocab_size}.tmp"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage, hard_vocab_limit=False,
        pad_id=0, pad_piece=BLANK, unk_id=1, unk_piece=UNK, bos_id=-1, eos_id=-1,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        num_threads=1, minloglevel=2)
    model = out_dir / f"wp{vocab_size}.model"
    os.replace(f"{prefix}.model", model)  # same dir: atomic
    os.unlink(f"{prefix}.vocab")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    with atomic_write(out_dir / "tokens.txt") as f:
        for i in range(sp.get_piece_size()):
            f.write(f"{sp.id_to_piece(i)} {i}\n")
    return model


def load_wordpiece(model: str | os.PathLike | bytes, name: str | None = None) -> spm.SentencePieceProcessor:
    """Load a model (a path, or its bytes as a packed model holds them) and check the id
    convention (``<blank>`` 0, ``<unk>`` 1). ``name`` names the bytes in errors."""
    name = name or str(model)
    if isinstance(model, bytes):
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(model)
        except Exception as e:  # sentencepiece raises RuntimeError / OSError
            raise ValueError(f"{name} is not a sentencepiece model: {e}") from None
    else:
        sp = spm.SentencePieceProcessor(model_file=str(model))
    if sp.pad_id() != 0 or sp.id_to_piece(0) != BLANK or sp.unk_id() != 1:
        raise ValueError(f"{name}: expected <blank> id 0 and <unk> id 1 (made by train_wordpiece)")
    return sp
