"""Training datasets: paired speech+text (features + SeqStore) and text-only (SeqStore).

Items are plain numpy arrays; batching and padding live in :mod:`toolkit.data.collate`,
the order in :mod:`toolkit.data.sampler`. Utterances present on one side only (features
without sequences or the reverse) are dropped *and reported with counts*; empty phone
or token sequences are dropped and reported the same way.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.utils.kaldi_map import read_kaldi_map
from toolkit.features.reader import FeatureReader
from toolkit.text.seqstore import SeqStore
from toolkit.utils.fileio import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchReport:
    """How the feature side and the sequence side of a paired set matched."""
    matched: int
    feats_without_seq: int
    seq_without_feats: int
    empty_seq: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        return (f"{self.matched} utterances paired; {self.feats_without_seq} with features but no "
                f"sequence, {self.seq_without_feats} with a sequence but no features, "
                f"{self.empty_seq} with empty phones/tokens (dropped)"
                + (f"; e.g. {', '.join(self.examples)}" if self.examples else ""))


class PairedDataset:
    """``ds[i] -> dict(uttid, feats (T, D) float32 CMVN-applied, phones, tokens)``, in feats.scp order.

    ``data_dir`` is a dump dir: ``feats.scp``, ``utt2num_frames`` and ``seq/`` (or
    ``seq_dir``); ``cmvn`` a :class:`toolkit.features.cmvn.GlobalCMVN` or None. ``num_frames``
    (N,) gives lengths for bucketing without touching the features. Training and the
    consistency analysis both read a dump dir through this class.
    """

    def __init__(self, data_dir: str | os.PathLike, cmvn=None, seq_dir: str | os.PathLike | None = None,
                 durations: str | os.PathLike | None = None):
        d = Path(data_dir)
        self.data_dir = d
        self.feats = FeatureReader(d / "feats.scp", cmvn)
        if not (d / "utt2num_frames").exists():
            raise InputError(d / "utt2num_frames", "missing (run the feature stage first)")
        frames = read_kaldi_map(d / "utt2num_frames")
        store = SeqStore(seq_dir if seq_dir is not None else d / "seq")
        uttids, seq_index, num_frames = [], [], []
        no_seq, empty, examples = 0, 0, []
        for lineno, utt in enumerate(self.feats.uttids, 1):
            if utt not in frames:
                raise InputError(d / "utt2num_frames", f"no entry for utterance '{utt}' (feats.scp line {lineno})")
            try:
                j = store.index_of(utt)
            except KeyError:
                j = None
            if j is None:
                no_seq += 1
                if len(examples) < 3:
                    examples.append(f"{utt} (no seq)")
                continue
            if int(store.phone_lens[j]) == 0 or int(store.token_lens[j]) == 0:
                empty += 1
                if len(examples) < 3:
                    examples.append(f"{utt} (empty seq)")
                continue
            try:
                n = int(frames[utt])
            except ValueError:
                raise InputError(d / "utt2num_frames", f"utterance '{utt}': not an integer: {frames[utt]!r}") from None
            uttids.append(utt)
            seq_index.append(int(j))
            num_frames.append(n)
        self.report = MatchReport(len(uttids), no_seq, len(store) - len(uttids) - empty, empty, tuple(examples))
        if not uttids:
            raise InputError(d, f"no usable paired utterances: {self.report}")
        if no_seq or empty or self.report.seq_without_feats:
            log.warning("%s: %s", d, self.report)
        else:
            log.info("%s: %s", d, self.report)
        self.uttids = uttids
        self.seq_index = np.asarray(seq_index, dtype=np.int64)
        self.num_frames = np.asarray(num_frames, dtype=np.int64)  # (N,)
        self.store = store
        self.durations = self._check_durations(durations) if durations is not None else None
        self.infeasible = self._infeasible()
        if self.infeasible:
            log.warning("%s: %d utterance(s) have fewer encoder frames (4x subsampled) than phones and are left "
                        "out of the CTC and consistency terms (no monotonic alignment gives every phone a "
                        "frame), e.g. %s", d, len(self.infeasible), ", ".join(self.infeasible[:3]))

    def encoder_frames(self) -> np.ndarray:
        """(N,) frames after the 4x conv subsampling (toolkit.nn.subsampling)."""
        return np.clip(((self.num_frames - 1) // 2 - 1) // 2, 0, None)

    def _infeasible(self) -> list[str]:
        phone_lens = np.asarray(self.store.phone_lens, dtype=np.int64)[self.seq_index]
        return [u for u, n, m in zip(self.uttids, self.encoder_frames(), phone_lens) if n < m]

    def _check_durations(self, path) -> dict[str, np.ndarray]:
        """The aligner's durations of every utterance: one per phone, summing to its encoder frames."""
        from toolkit.data.durations import read_durations
        durations = read_durations(path)
        for utt, j, n in zip(self.uttids, self.seq_index, self.encoder_frames()):
            if utt not in durations:
                raise InputError(path, f"no durations for utterance '{utt}' (align this set again)")
            d = durations[utt]
            if len(d) != int(self.store.phone_lens[j]) or int(d.sum()) != int(n):
                raise InputError(path, f"utterance '{utt}': {len(d)} durations summing to {int(d.sum())}, but it "
                                       f"has {int(self.store.phone_lens[j])} phones and {int(n)} encoder frames "
                                       "(features or lexicon changed since the aligner ran: run it again)")
        return durations

    def __len__(self) -> int:
        return len(self.uttids)

    def __getitem__(self, i: int) -> dict:
        utt = self.uttids[i]
        feats = self.feats[utt]  # (T, D), CMVN applied
        if feats.ndim != 2 or feats.shape[0] != self.num_frames[i]:
            raise InputError(self.data_dir / "utt2num_frames",
                             f"utterance '{utt}': features have shape {feats.shape}, "
                             f"utt2num_frames says {self.num_frames[i]} frames")
        _, phones, tokens = self.store[int(self.seq_index[i])]
        item = {"uttid": utt, "feats": feats, "phones": phones, "tokens": tokens}
        if self.durations is not None:
            item["durations"] = self.durations[utt]
        return item


class TextDataset:
    """``ds[i] -> dict(uttid, phones, tokens)`` over a (memory-mapped) SeqStore.

    Nothing is loaded whole: lengths are views of the store's index. Empty items are
    skipped by the sampler (``lengths`` reports them as 0) rather than listed here.
    """

    def __init__(self, seq_dir: str | os.PathLike):
        self.store = SeqStore(seq_dir)
        if len(self.store) == 0:
            raise InputError(seq_dir, "text SeqStore is empty")
        self.uttids = self.store.uttids
        self.phone_lens = self.store.phone_lens
        self.token_lens = self.store.token_lens

    def lengths(self) -> np.ndarray:
        """Phone counts, 0 where either side is empty (the sampler drops those). (N,) int64"""
        pl = np.asarray(self.phone_lens, dtype=np.int64)
        return np.where(np.asarray(self.token_lens) > 0, pl, 0)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict:
        uttid, phones, tokens = self.store[int(i)]
        return {"uttid": uttid, "phones": phones, "tokens": tokens}


def read_utt2lang(path: str | os.PathLike, uttids: list[str]) -> list[str]:
    """Languages of ``uttids`` from a Kaldi ``utt2lang``; a missing utterance is an error."""
    m = read_kaldi_map(path)
    missing = [u for u in uttids if u not in m]
    if missing:
        raise InputError(path, f"{len(missing)} of {len(uttids)} utterances have no language, e.g. '{missing[0]}'")
    return [m[u] for u in uttids]


@dataclass(frozen=True)
class Languages:
    """Each training item's language, per stream (None: that stream is not balanced)."""
    paired: list[str] | None
    text: list[str] | None
