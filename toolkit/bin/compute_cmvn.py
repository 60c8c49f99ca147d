"""Global CMVN stats (Kaldi format) over a feats.scp.

Usage:
    python -m toolkit.bin.compute_cmvn --feats dump/train/feats.scp --out dump/train/cmvn.ark

Apply with toolkit.features.cmvn.GlobalCMVN.load("dump/train/cmvn.ark")(feats).
"""
from __future__ import annotations

import argparse
import logging
import sys

import kaldiio

from toolkit.features.cmvn import accumulate_stats, write_stats
from toolkit.utils.cli import cli

log = logging.getLogger("compute_cmvn")


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feats", required=True, help="feats.scp")
    p.add_argument("--out", required=True, help="cmvn.ark to write")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stats = accumulate_stats(mat for _, mat in kaldiio.load_scp_sequential(args.feats))
    write_stats(args.out, stats)
    log.info("%s: %d frames -> %s", args.feats, int(stats[0, -1]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
