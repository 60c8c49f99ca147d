"""A corpus in a known layout -> Kaldi data dir; or its unpaired text -> a text-only data dir.

Usage:
    python -m toolkit.bin.prepare_data --layout librispeech --corpus corpus/LibriSpeech --subset train-clean-100 \
        --out data/train
    python -m toolkit.bin.prepare_data --layout librispeech --text-only corpus/librispeech-lm-norm.txt.gz \
        --out data/text_only [--max-lines 1000000]
    python -m toolkit.bin.prepare_data --layout mls --corpus corpus/mls_german --subset train --out data/train_de \
        [--lang de]
    python -m toolkit.bin.prepare_data --layout commonvoice --corpus corpus/cv-corpus/fr --subset train \
        --out data/train_fr
    python -m toolkit.bin.prepare_data --layout commonvoice --text-only corpus/cv-corpus/fr/text_only.txt.gz \
        --out data/text_only_fr --prefix lm-fr

Layouts (toolkit.data.corpora):
  librispeech  <subset>/<spk>/<chapter>/*.trans.txt + .flac; ids <spk>-<chapter>-<utt>, speaker = reader.
  mls          <subset>/transcripts.txt + audio/<spk>/<book>/*.flac|.opus; ids <spk>-<book>-<utt>;
               the language defaults to the one in the directory name (mls_german -> de).
  commonvoice  <subset>.tsv (client_id, path, sentence, ..., locale) + clips/; speaker = a 12-hex-digit
               hash of client_id; text lower-cased, punctuation removed (apostrophes inside words kept),
               the same normalisation for --text-only; language from the locale column.
Unpaired text (one sentence a line, plain or .gz) is streamed to <out>/text with ids
<prefix>-<n:09d>, never loaded whole.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.corpora import LAYOUTS, read_layout, save_data_dir, text_only_normalizer, write_text_only
from toolkit.utils.cli import cli
from toolkit.utils.fileio import InputError


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolkit.bin.prepare_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", required=True, choices=LAYOUTS)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="the corpus root (LibriSpeech/, mls_german/, cv-corpus/fr/)")
    src.add_argument("--text-only", help="one sentence a line, plain or .gz")
    p.add_argument("--subset", help="with --corpus: e.g. train-clean-100 (LibriSpeech), train, dev, test")
    p.add_argument("--lang", default=None, help="language code for utt2lang (mls, commonvoice)")
    p.add_argument("--out", required=True, help="data dir to write (replaced as a whole)")
    p.add_argument("--max-lines", type=int, default=None, help="with --text-only: keep the first N sentences")
    p.add_argument("--prefix", default="lm", help="with --text-only: id prefix (ids <prefix>-<n:09d>)")
    args = p.parse_args(argv)
    if args.corpus and not args.subset:
        p.error("--corpus needs --subset")
    try:
        if args.corpus:
            utts = read_layout(args.layout, args.corpus, args.subset, args.lang)
            if utts and args.layout != "librispeech" and utts[0].lang is None:
                p.error(f"cannot tell the language of {args.corpus}: pass --lang")
            d = save_data_dir(utts, args.out)
            print(f"prepare_data: {len(d)} utterances, {len(d.spk2utt)} speakers -> {args.out}")
        else:
            n = write_text_only(args.text_only, args.out, max_lines=args.max_lines,
                                normalize=text_only_normalizer(args.layout), prefix=args.prefix)
            print(f"prepare_data: {n} text-only sentences -> {args.out}/text")
    except (InputError, ValueError) as e:
        sys.exit(f"prepare_data: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
