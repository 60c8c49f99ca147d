"""Train sentencepiece wordpieces on Kaldi text files.

Usage:
    # writes data/lang/wp256.model and data/lang/tokens.txt (<blank> 0, <unk> 1, no bos/eos)
    python -m toolkit.bin.train_wordpiece --text data/train/text --text data/text_only/text \
        --vocab-size 256 --out data/lang [--model-type unigram]

For a multilingual recipe pass every language's text to train one shared model. The text
is streamed and reservoir-sampled to --max-sentences lines.
"""
from __future__ import annotations

import argparse
import logging
import sys

from toolkit.text.wordpiece import train_wordpiece
from toolkit.utils.cli import cli

log = logging.getLogger("train_wordpiece")


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", action="append", required=True, help="Kaldi text file (repeatable)")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True, help="lang dir")
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--max-sentences", type=int, default=2_000_000, help="sample at most this many lines")
    p.add_argument("--character-coverage", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    model = train_wordpiece(args.text, args.vocab_size, args.out, args.model_type,
                            args.max_sentences, args.character_coverage)
    log.info("wrote %s and %s/tokens.txt", model, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
