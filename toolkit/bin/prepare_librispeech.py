"""LibriSpeech layout -> Kaldi data dir; or librispeech-lm-norm text -> data/text_only.

Usage:
    python -m toolkit.bin.prepare_librispeech --corpus corpus/LibriSpeech --subset train-clean-100 --out data/train
    python -m toolkit.bin.prepare_librispeech --lm-text corpus/librispeech-lm-norm.txt.gz --out data/text_only \
        [--max-lines 1000000]

Ids are ``<spk>-<chapter>-<utt>``, speaker = reader; wav.scp points at the .flac files.
The LM text is streamed (never loaded whole) to ``<out>/text`` with ids ``lm-<n:09d>``.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.data.corpora import read_librispeech, save_data_dir, write_text_only
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolkit.bin.prepare_librispeech", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="the LibriSpeech directory (holding train-clean-100/, dev-clean/, ...)")
    src.add_argument("--lm-text", help="one normalised sentence a line, plain or .gz")
    p.add_argument("--subset", help="with --corpus: e.g. train-clean-100, dev-clean, test-clean")
    p.add_argument("--out", required=True, help="data dir to write (replaced as a whole)")
    p.add_argument("--max-lines", type=int, default=None, help="with --lm-text: keep the first N sentences")
    args = p.parse_args(argv)
    if args.corpus and not args.subset:
        p.error("--corpus needs --subset")
    if args.corpus:
        d = save_data_dir(read_librispeech(args.corpus, args.subset), args.out)
        print(f"prepare_librispeech: {len(d)} utterances, {len(d.spk2utt)} speakers -> {args.out}")
    else:
        n = write_text_only(args.lm_text, args.out, max_lines=args.max_lines)
        print(f"prepare_librispeech: {n} text-only sentences -> {args.out}/text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
