"""Progress bars for long loops: tqdm on stderr, only where a person watches.

A bar is drawn when ``enabled`` (the CLIs' ``--no-progress`` turns it off) and stderr is
a terminal; in a log file (run.pl, slurm) or a pipe it stays silent, so logs hold only
the messages that matter.
"""
from __future__ import annotations

import sys
from typing import Iterable


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "utt", enabled: bool = True):
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5,
                disable=not (enabled and sys.stderr.isatty()))
