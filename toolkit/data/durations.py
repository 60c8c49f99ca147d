"""Per-phone durations of paired utterances: the explicit alignment model's output.

Format (``durations_<set>.txt``, written by ``toolkit.bin.train_aligner``): a Kaldi map,
one utterance a line, ``uttid d_1 ... d_m``: the number of subsampled encoder frames
(4x, 40 ms) the aligner gives each of the utterance's m phones, in order; the durations
of a line sum to the utterance's subsampled frame count. This module is the one reader.

Usage::

    from toolkit.data.durations import read_durations, write_durations, durations_file
    write_durations(durations_file("exp/aligner", "dump/train"), {"utt1": [3, 1, 4]})
    d = read_durations("exp/aligner/durations_train.txt")   # {"utt1": array([3, 1, 4])}
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from toolkit.utils.fileio import InputError
from toolkit.utils.kaldi_map import iter_kaldi_map, write_kaldi_map


def durations_file(durations_dir: str | os.PathLike, data_dir: str | os.PathLike) -> Path:
    """Where the durations of the dump dir ``data_dir`` live: ``<dir>/durations_<name>.txt``."""
    return Path(durations_dir) / f"durations_{Path(data_dir).resolve().name}.txt"


def write_durations(path: str | os.PathLike, durations: Mapping[str, Sequence[int]]) -> None:
    """Atomically, C-sorted by utterance id; every duration a non-negative integer."""
    for utt, d in durations.items():
        if len(d) == 0 or any(int(x) < 0 for x in d):
            raise ValueError(f"{path}: utterance {utt}: durations must be non-empty and >= 0, got {list(d)}")
    write_kaldi_map(path, {utt: " ".join(str(int(x)) for x in d) for utt, d in durations.items()})


def read_durations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """-> {uttid: (m,) int64}; a malformed line raises InputError naming file, line, utterance."""
    if not Path(path).is_file():
        raise InputError(path, "missing (run the aligner step: python -m toolkit.bin.train_aligner)")
    out = {}
    for lineno, utt, value in iter_kaldi_map(path):
        try:
            d = np.asarray([int(x) for x in value.split()], dtype=np.int64)
        except ValueError:
            raise InputError(path, f"utterance {utt}: durations must be integers", lineno) from None
        if (d < 0).any():
            raise InputError(path, f"utterance {utt}: negative duration", lineno)
        if utt in out:
            raise InputError(path, f"duplicate utterance '{utt}'", lineno)
        out[utt] = d
    return out
