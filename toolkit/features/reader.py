"""Reading dumped features back: the one reader of a dump dir's ``feats.scp``.

Training (:class:`toolkit.train.dataset.PairedDataset`), full-context decoding and the
consistency analysis all read features through :class:`FeatureReader`, so a missing or
damaged ark gives the same message (utterance and file) everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.utils.fileio import InputError
from toolkit.utils.kaldi_map import read_kaldi_map


class FeatureReader:
    """``reader[uttid] -> (T, F) float32`` from ``feats.scp``, with the global CMVN applied if given.

    ``uttids`` are in feats.scp order. A missing file, an unknown utterance or an
    unreadable matrix raises InputError naming the utterance and feats.scp.
    """

    def __init__(self, feats_scp: str | os.PathLike, cmvn=None):
        self.path = Path(feats_scp)
        if not self.path.exists():
            raise InputError(self.path, "missing (run the feature stage first)")
        self.rxfiles = read_kaldi_map(self.path)  # uttid -> "feats.<j>.ark:<offset>"
        self.uttids = list(self.rxfiles)
        self.cmvn = cmvn

    def __contains__(self, uttid: str) -> bool:
        return uttid in self.rxfiles

    def __len__(self) -> int:
        return len(self.rxfiles)

    def __getitem__(self, uttid: str) -> np.ndarray:
        import kaldiio
        if uttid not in self.rxfiles:
            raise InputError(self.path, f"utterance '{uttid}' has no features")
        try:
            feats = np.asarray(kaldiio.load_mat(self.rxfiles[uttid]), dtype=np.float32)  # (T, F)
        except Exception as e:  # kaldiio raises many types for a damaged ark
            raise InputError(self.path, f"utterance '{uttid}': cannot read features: {e}") from None
        if self.cmvn is not None:
            feats = np.asarray(self.cmvn(feats), dtype=np.float32)
        return feats
