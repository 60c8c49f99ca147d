"""Dump transcripts as phoneme ids + wordpiece ids into a SeqStore (streaming).

Usage:
    python -m toolkit.bin.dump_text --lang-dir data/lang --bpe-model data/lang/wp256.model \
        --text data/train/text --out dump/train/seq [--oov phonemize|unk] [--utt2lang data/train/utt2lang]

--utt2lang (with a multilingual lang dir: make_lexicon --utt2lang, or --merge-phones) picks each
utterance's lexicon; without it the lang dir's (first) language is used. Out-of-lexicon
words are phonemized with espeak (or mapped to <unk> with --oov unk) and counted in the
log. The store is written to a temp dir and renamed to --out when complete.
"""
from __future__ import annotations

import argparse
import logging
import sys

from toolkit.text.text2ids import dump_text
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--bpe-model", required=True)
    p.add_argument("--text", required=True, help="Kaldi text file")
    p.add_argument("--out", required=True, help="SeqStore dir to write")
    p.add_argument("--oov", default="phonemize", choices=["phonemize", "unk"])
    p.add_argument("--utt2lang", help="uttid -> espeak language code (multilingual lang dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    dump_text(args.lang_dir, args.bpe_model, args.text, args.out, args.oov, args.utt2lang,
              progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
