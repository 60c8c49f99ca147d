"""Copy part of a Kaldi data dir: listed utterances, the first N, or listed speakers.

Usage:
    python -m toolkit.bin.subset_data_dir --first 100 data/train data/train_100
    python -m toolkit.bin.subset_data_dir --utt-list dev.list data/train data/train_dev
    python -m toolkit.bin.subset_data_dir --spk-list spk.list data/train data/train_spk
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.subset import subset_data_dir
from toolkit.utils.fileio import read_lines
from toolkit.utils.cli import cli


def _read_ids(path: str) -> list[str]:
    """First field of every non-blank line (an utt2spk or text file works as a list too)."""
    return [line.split()[0] for _, line in read_lines(path) if line.strip()]


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="subset_data_dir", description=__doc__.split("\n")[0])
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--utt-list", help="file whose first field is the utterance id")
    how.add_argument("--first", type=int, help="the first N utterances (C order)")
    how.add_argument("--spk-list", help="file whose first field is the speaker id")
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args(argv)
    sub = subset_data_dir(args.src, args.dst, first=args.first,
                          utt_list=_read_ids(args.utt_list) if args.utt_list else None,
                          speakers=_read_ids(args.spk_list) if args.spk_list else None)
    print(f"subset_data_dir: wrote {len(sub)} utterances, {len(sub.spk2utt)} speakers to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
