r"""Score hyp.trn against ref.trn the way sclite does; write result.txt/.pra/.dtl.

Usage:
    python -m toolkit.bin.score --ref exp/tag/decode_full_test/ref.trn \
        --hyp exp/tag/decode_full_test/hyp.trn --out exp/tag/decode_full_test/score_wer
    python -m toolkit.bin.score --ref ref.trn --hyp hyp.trn --out score_cer --cer
    python -m toolkit.bin.score --ref ref.trn --hyp hyp.trn --out score_wer --use-sclite

The built-in scorer uses sclite's costs and tie-breaking (``-i rm``, case-insensitive);
``--use-sclite`` runs the real binary instead and keeps its reports; ``--scorer auto``
uses sclite when installed. Every reference needs a hypothesis and vice versa.
"""
from __future__ import annotations

import argparse
import os
import sys

from toolkit.scoring.report import format_dtl, format_pra, format_sys, summary_line
from toolkit.scoring.wer import check_same_ids, score
from toolkit.scoring.sclite import find_sclite, run_sclite
from toolkit.scoring.trn import read_trn
from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference .trn (words (uttid))")
    p.add_argument("--hyp", required=True, help="hypothesis .trn")
    p.add_argument("--out", required=True, help="output dir for result.txt, result.pra, result.dtl")
    p.add_argument("--cer", action="store_true", help="score characters (spaces dropped, sclite -c)")
    p.add_argument("--case-sensitive", action="store_true", help="built-in scorer only (sclite -s)")
    p.add_argument("--scorer", choices=("builtin", "sclite", "auto"), default="builtin",
                   help="auto: the real sclite when installed, else built-in")
    p.add_argument("--use-sclite", action="store_true", help="same as --scorer sclite")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    refs, hyps = read_trn(args.ref), read_trn(args.hyp)
    if not refs:  # sclite would print %WER 0.00 [0 / 0]
        raise InputError(args.ref, "no utterances to score: an empty test set has no error rate")
    try:
        check_same_ids(refs, hyps, args.ref, args.hyp)
    except ValueError as e:
        raise InputError(args.hyp, str(e)) from None
    scorer = "sclite" if args.use_sclite else args.scorer
    if scorer == "auto":
        scorer = "sclite" if find_sclite() and not args.case_sensitive else "builtin"
    title = os.path.basename(args.hyp)
    if scorer == "sclite":
        if args.case_sensitive:
            raise SystemExit("--case-sensitive is only supported by the built-in scorer")
        result = run_sclite(refs, hyps, cer=args.cer, out_dir=args.out, title=title)
    else:
        result = score(refs, hyps, cer=args.cer, case_sensitive=args.case_sensitive, title=title)
        for name, text in (("result.pra", format_pra(result)), ("result.dtl", format_dtl(result)),
                           ("result.txt", format_sys(result))):  # result.txt last: it marks completion
            with atomic_write(os.path.join(args.out, name)) as f:
                f.write(text)
    print(f"{summary_line(result)} ({scorer}) -> {os.path.join(args.out, 'result.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
