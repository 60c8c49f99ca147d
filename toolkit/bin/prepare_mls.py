"""Multilingual LibriSpeech layout -> Kaldi data dir (with utt2lang); or its LM text -> text_only.

Usage:
    python -m toolkit.bin.prepare_mls --corpus corpus/mls_german --split train --out data/train_de [--lang de]
    python -m toolkit.bin.prepare_mls --lm-text corpus/mls_german/lm_text.txt.gz --out data/text_only_de \
        [--max-lines 1000000] [--prefix lm-de]

Reads ``<split>/transcripts.txt`` and ``<split>/audio/<spk>/<book>/*.flac`` (or .opus);
ids become ``<spk>-<book>-<utt>``, speaker = ``<spk>``. The language defaults to the one
in the directory name (mls_german -> de).
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.corpora import read_mls, save_data_dir, write_text_only
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolkit.bin.prepare_mls", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="an MLS language root, e.g. mls_german")
    src.add_argument("--lm-text", help="one sentence a line, plain or .gz")
    p.add_argument("--split", choices=["train", "dev", "test"], help="with --corpus")
    p.add_argument("--lang", default=None, help="language code for utt2lang (default: from the dir name)")
    p.add_argument("--out", required=True, help="data dir to write (replaced as a whole)")
    p.add_argument("--max-lines", type=int, default=None, help="with --lm-text: keep the first N sentences")
    p.add_argument("--prefix", default="lm", help="with --lm-text: id prefix (ids <prefix>-<n:09d>)")
    args = p.parse_args(argv)
    if args.corpus and not args.split:
        p.error("--corpus needs --split")
    if args.corpus:
        utts = read_mls(args.corpus, args.split, args.lang)
        if utts and utts[0].lang is None:
            p.error(f"cannot tell the language of {args.corpus}: pass --lang")
        d = save_data_dir(utts, args.out)
        print(f"prepare_mls: {len(d)} utterances, {len(d.spk2utt)} speakers -> {args.out}")
    else:
        n = write_text_only(args.lm_text, args.out, max_lines=args.max_lines, prefix=args.prefix)
        print(f"prepare_mls: {n} text-only sentences -> {args.out}/text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
