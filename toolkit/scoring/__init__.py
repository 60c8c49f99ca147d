"""sclite-compatible scoring: .trn files, word/character alignment, .sys/.pra/.dtl reports.

Pure Python with no heavy dependencies (the trainer imports it for validation WER)::

    from toolkit.scoring import score
    result = score({"spk-1": "a b c"}, {"spk-1": "a x c"})
    result.wer  # 33.33...
"""
from toolkit.scoring.align import AlignedPair, align
from toolkit.scoring.wer import Counts, ScoreResult, UttScore, score, speaker_of
from toolkit.scoring.trn import read_trn, write_trn

__all__ = ["AlignedPair", "Counts", "ScoreResult", "UttScore", "align", "read_trn", "score",
           "speaker_of", "write_trn"]
