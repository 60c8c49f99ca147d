"""Fix a Kaldi data dir in place: sort, keep ids all files share, rebuild spk2utt.

Usage:
    python -m toolkit.bin.fix_data_dir data/train

Removed lines are kept in data/train/.backup/<file>; a summary goes to stdout.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.fix import fix_data_dir
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fix_data_dir", description=__doc__.split("\n")[0])
    p.add_argument("data_dir")
    args = p.parse_args(argv)
    report = fix_data_dir(args.data_dir)
    print(f"fix_data_dir: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
