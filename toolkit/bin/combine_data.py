"""Merge Kaldi data dirs into one; an id in two sources is an error naming both.

Usage:
    python -m toolkit.bin.combine_data data/train_all data/train_a data/train_b
"""
from __future__ import annotations

import argparse
import logging
import sys

from toolkit.data.subset import combine_data_dirs
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="combine_data", description=__doc__.split("\n")[0])
    p.add_argument("dst")
    p.add_argument("srcs", nargs="+")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = combine_data_dirs(args.dst, args.srcs)
    print(f"combine_data: wrote {len(out)} utterances from {len(args.srcs)} dirs to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
