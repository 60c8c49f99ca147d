"""Select part of a data dir, or merge several (Kaldi subset_data_dir.sh / combine_data.sh)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from toolkit.data.datadir import DataDir, utt2spk_to_spk2utt

log = logging.getLogger(__name__)


def subset_data_dir(src: str | os.PathLike, dst: str | os.PathLike, *, utt_list: Iterable[str] | None = None,
                    first: int | None = None, speakers: Iterable[str] | None = None) -> DataDir:
    """Write to ``dst`` the utterances of ``src`` picked by exactly one selector.

    ``utt_list``: these ids; ``first``: the first N in C order; ``speakers``: all
    utterances of these speakers. An unknown id or speaker, or N beyond the size,
    raises ValueError naming it. Returns the written DataDir.
    """
    if sum(x is not None for x in (utt_list, first, speakers)) != 1:
        raise ValueError("give exactly one of utt_list, first, speakers")
    d = DataDir.load(src)
    if first is not None:
        if not 0 < first <= len(d):
            raise ValueError(f"{src}: asked for the first {first} utterances of {len(d)}")
        utts = d.utt_ids[:first]
    elif speakers is not None:
        speakers = list(speakers)
        unknown = [s for s in speakers if s not in d.spk2utt]
        if unknown:
            raise ValueError(f"{src}: {len(unknown)} speaker(s) not in spk2utt: {' '.join(unknown[:5])}")
        utts = [u for s in speakers for u in d.spk2utt[s]]
    else:
        utts = list(utt_list)
    sub = d.subset(utts)
    sub.save(dst)
    return DataDir.load(dst)


def combine_data_dirs(dst: str | os.PathLike, srcs: Sequence[str | os.PathLike]) -> DataDir:
    """Write the union of ``srcs`` to ``dst``.

    An utterance id in two sources, or a recording id with two different wav.scp
    entries, raises ValueError naming both sources. Segments and utt2lang must be in all
    sources or none; other per-utterance files are kept only when every source has them.
    """
    if not srcs:
        raise ValueError("combine_data_dirs needs at least one source")
    dirs = [DataDir.load(s) for s in srcs]
    for attr, name in (("segments", "segments"), ("utt2lang", "utt2lang")):
        have = [str(d.path) for d in dirs if getattr(d, attr) is not None]
        if have and len(have) != len(dirs):
            lacking = [str(d.path) for d in dirs if getattr(d, attr) is None]
            raise ValueError(f"{name} is in {', '.join(have)} but not in {', '.join(lacking)}; "
                             f"combine dirs of one kind")
    utt_src: dict[str, Path] = {}
    rec_src: dict[str, Path] = {}
    wav, text, utt2spk = {}, {}, {}
    for d in dirs:
        for utt in d.utt2spk:
            if utt in utt_src:
                raise ValueError(f"utterance '{utt}' is in both {utt_src[utt]} and {d.path}")
            utt_src[utt] = d.path
        for rec, value in d.wav_scp.items():
            if rec in wav and wav[rec] != value:
                raise ValueError(f"recording '{rec}' has different wav.scp entries in {rec_src[rec]} and {d.path}")
            rec_src[rec] = d.path
            wav[rec] = value
        text.update(d.text)
        utt2spk.update(d.utt2spk)
    common = set.intersection(*(set(d.extra) for d in dirs))
    dropped = set().union(*(set(d.extra) for d in dirs)) - common
    if dropped:
        log.warning("combine_data_dirs: not every source has %s; leaving it out of %s", sorted(dropped), dst)

    def merged(attr):
        if getattr(dirs[0], attr) is None:
            return None
        out = {}
        for d in dirs:
            out.update(getattr(d, attr))
        return out

    combined = DataDir(path=Path(dst), wav_scp=wav, text=text, utt2spk=utt2spk,
                       spk2utt=utt2spk_to_spk2utt(utt2spk), segments=merged("segments"),
                       utt2lang=merged("utt2lang"),
                       extra={name: {k: v for d in dirs for k, v in d.extra[name].items()} for name in common})
    combined.save(dst)
    return DataDir.load(dst)
