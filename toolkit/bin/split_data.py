"""Split a Kaldi data dir into N parts under data/x/split<N>/<n>/ (speakers kept whole).

Usage:
    python -m toolkit.bin.split_data data/train 4
    python -m toolkit.bin.split_data --per-utt data/train 4    # -> data/train/split4utt/<n>
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.split import split_data_dir
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="split_data", description=__doc__.split("\n")[0])
    p.add_argument("--per-utt", action="store_true", help="split by utterance, not by speaker")
    p.add_argument("data_dir")
    p.add_argument("num_parts", type=int)
    args = p.parse_args(argv)
    parts = split_data_dir(args.data_dir, args.num_parts, by_speaker=not args.per_utt)
    print(f"split_data: wrote {len(parts)} parts under {parts[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
