"""Collect every scored decode of an experiment into exp/<tag>/RESULTS.md (ESPnet style).

Usage:
    python -m toolkit.bin.make_results --exp exp/mini_joint
    python -m toolkit.bin.make_results --exp exp/ml_joint --utt2lang data/test/utt2lang
    python -m toolkit.bin.make_results --exp exp/train --heldout-words data/heldout_words.txt

Scans ``exp/<tag>/decode_<mode>_<set>/score_{wer,cer}/result.txt`` (sclite .sys tables,
from either scorer) and writes one Markdown table per metric and decode mode. When a
decode dir holds ``utt2lang`` (or ``--utt2lang`` is given), a per-language + pooled
table is added, computed from the utterance alignments in ``result.pra``
(toolkit.scoring.results builds the tables). ``--heldout-words`` (a corpus's list of words
spoken in no paired training utterance) adds their recall, false alarms and the WER of the
utterances holding one (toolkit.scoring.heldout).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.scoring.results import make_results
from toolkit.utils.cli import cli
from toolkit.utils.fileio import InputError, atomic_write


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment dir exp/<tag>")
    p.add_argument("--utt2lang", default=None, help="uttid -> language map for every decode set")
    p.add_argument("--heldout-words", default=None, help="word list (one a line): adds held-out word tables")
    p.add_argument("--out", default=None, help="default: <exp>/RESULTS.md")
    args = p.parse_args(argv)
    exp = Path(args.exp)
    if not exp.is_dir():
        raise InputError(exp, "experiment dir does not exist")
    text = make_results(exp, args.utt2lang, args.heldout_words)
    out = Path(args.out) if args.out else exp / "RESULTS.md"
    with atomic_write(out) as f:
        f.write(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
