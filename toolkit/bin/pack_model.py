r"""Pack a trained experiment into one file (or dir) that transcribes anywhere.

Usage:
    concord-pack-model egs/mini/exp/train mini.concord           # one zip file
    concord-pack-model exp/big exp/big/packed                    # a directory
    concord-pack-model exp/big big.concord --model exp/big/checkpoints/step-40000.pt
    concord-transcribe mini.concord my.flac                      # use it

The package holds the resolved config, the averaged weights, the CMVN stats, the
wordpiece model and tokens.txt, the phoneme table and lexicon (when the experiment's
lang dir has them) and a README.md with the experiment's RESULTS.md and the code version
(toolkit version, git hash), each with its size and sha256 in manifest.json. It is
checked on load: a missing, unlisted, oversized or corrupted part, or parts that disagree
(vocabulary size, feature dimension, weights vs config) are reported before any audio is
decoded. The manifest detects corruption, not tampering: to let others check that a
model is yours, publish the sha256 printed here; ``concord-transcribe --expect-sha256``
refuses any other file.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.decode.package import pack_model
from toolkit.decode.package_archive import package_digest
from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp", help="experiment dir exp/<tag> (config.yaml, model_avg.pt)")
    p.add_argument("out", help="*.concord (one zip file) or a new directory")
    p.add_argument("--model", default=None, help="state dict or checkpoint (default: <exp>/model_avg.pt)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = pack_model(args.exp, args.out, args.model)
    digest = package_digest(out)
    print(f"packed {args.exp} -> {out} (loads back); sha256 {digest} "
          f"(publish it for concord-transcribe --expect-sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
