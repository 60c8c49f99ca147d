"""Common Voice layout -> Kaldi data dir (with utt2lang); or a sentence list -> text_only.

Usage:
    python -m toolkit.bin.prepare_commonvoice --corpus corpus/cv-corpus/fr --split train --out data/train_fr
    python -m toolkit.bin.prepare_commonvoice --text-only corpus/cv-corpus/fr/text_only.txt.gz \
        --out data/text_only_fr [--max-lines N] [--prefix lm-fr]

Reads ``<split>.tsv`` (client_id, path, sentence, ..., locale) and ``clips/``. Speaker =
a 12-hex-digit hash of client_id; ids ``<spk>-<clip name>``; text lower-cased with
punctuation removed (apostrophes inside words kept), the same normalisation for --text-only.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.corpora import normalize_sentence, read_commonvoice, save_data_dir, write_text_only
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolkit.bin.prepare_commonvoice", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="a Common Voice language dir (holding clips/ and <split>.tsv)")
    src.add_argument("--text-only", help="one sentence a line, plain or .gz (normalised like transcripts)")
    p.add_argument("--split", help="with --corpus: train, dev, test, validated, ...")
    p.add_argument("--lang", default=None, help="language code for utt2lang (default: the locale column)")
    p.add_argument("--out", required=True, help="data dir to write (replaced as a whole)")
    p.add_argument("--max-lines", type=int, default=None, help="with --text-only: keep the first N sentences")
    p.add_argument("--prefix", default="lm", help="with --text-only: id prefix (ids <prefix>-<n:09d>)")
    args = p.parse_args(argv)
    if args.corpus and not args.split:
        p.error("--corpus needs --split")
    if args.corpus:
        d = save_data_dir(read_commonvoice(args.corpus, args.split, args.lang), args.out)
        print(f"prepare_commonvoice: {len(d)} utterances, {len(d.spk2utt)} speakers -> {args.out}")
    else:
        n = write_text_only(args.text_only, args.out, max_lines=args.max_lines, normalize=normalize_sentence,
                            prefix=args.prefix)
        print(f"prepare_commonvoice: {n} text-only sentences -> {args.out}/text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
