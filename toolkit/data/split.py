"""Split utterance lists and data dirs into contiguous, balanced parts (Kaldi split_scp / split_data)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Sequence

from toolkit.data.datadir import DataDir, replace_dir


def split_contiguous(n_items: int, n_parts: int) -> list[range]:
    """Kaldi's split: contiguous ranges, the first ``n_items % n_parts`` one item longer."""
    if n_parts < 1 or n_items < n_parts:
        raise ValueError(f"cannot split {n_items} item(s) into {n_parts} non-empty part(s)")
    size, extra = divmod(n_items, n_parts)
    bounds = [0]
    for k in range(n_parts):
        bounds.append(bounds[-1] + size + (k < extra))
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class NotContiguousError(ValueError):
    """A group's items are not one run; ``index`` is the 0-based item where it reappears."""

    def __init__(self, index: int, group):
        super().__init__(f"item {index + 1}: group '{group}' appears again after other groups (not contiguous)")
        self.index, self.group = index, group

    def __reduce__(self):
        return type(self), (self.index, self.group)


def split_keep_groups(groups: Sequence[Hashable], n_parts: int) -> list[range]:
    """Contiguous ranges over items labelled ``groups[i]`` that never cut a group, balanced by size.

    A group must be one contiguous run (a speaker's utterances together); a group seen
    again after another one raises NotContiguousError.
    """
    runs: list[int] = []  # start index of each run
    seen: set = set()
    for i, g in enumerate(groups):
        if i == 0 or g != groups[i - 1]:
            if g in seen:
                raise NotContiguousError(i, g)
            seen.add(g)
            runs.append(i)
    if n_parts < 1 or len(runs) < n_parts:
        raise ValueError(f"cannot split {len(runs)} group(s) into {n_parts} non-empty part(s)")
    starts = runs + [len(groups)]  # cumulative size before run r is starts[r]
    cut = [0]  # cut[k] = index of the first run of part k
    for k in range(1, n_parts):
        target = k * len(groups) / n_parts
        lo, hi = cut[-1] + 1, len(runs) - (n_parts - k)  # leave every part at least one run
        cut.append(min(range(lo, hi + 1), key=lambda r: (abs(starts[r] - target), r)))
    cut.append(len(runs))
    return [range(starts[a], starts[b]) for a, b in zip(cut[:-1], cut[1:])]


def split_data_dir(src: str | os.PathLike, n: int, by_speaker: bool = True) -> list[Path]:
    """Write ``src/split<n>/1..n`` (``split<n>utt`` when not by speaker); returns the part dirs.

    By speaker, no speaker is cut across parts (ValueError when fewer speakers than n).
    The whole split dir is built aside and swapped in, so a rerun never mixes old parts.
    """
    d = DataDir.load(src)
    if by_speaker:
        utts = [u for utts in d.spk2utt.values() for u in utts]
        parts = split_keep_groups([d.utt2spk[u] for u in utts], n)
    else:
        utts = d.utt_ids
        parts = split_contiguous(len(utts), n)
    out = Path(src) / f"split{n}{'' if by_speaker else 'utt'}"

    def build(tmp: Path) -> None:
        for k, part in enumerate(parts, 1):
            d.subset(utts[i] for i in part).write_files(tmp / str(k))

    replace_dir(out, build, may_hold=str.isdigit)
    return [out / str(k) for k in range(1, n + 1)]
