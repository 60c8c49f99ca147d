"""Phoneme lexicon from Kaldi text files with espeak-ng (batched, parallel, cached).

Usage:
    # one language: writes data/lang/{lexicon.txt,phones.txt,language,fallbacks.txt}
    python -m toolkit.bin.make_lexicon --text data/train/text --text data/text_only/text \
        --lang en-us --out data/lang --nj 2 --cache data/local/phonemizer_cache

    # multilingual, one run: each utterance's words are phonemized in its utt2lang language
    # (writes data/lang/{lexicon.<lang>.txt,languages,phones.txt}; dump_text --utt2lang reads it;
    # --lang, if given, is the language of utterances missing from utt2lang, e.g. text_only)
    python -m toolkit.bin.make_lexicon --text data/train/text --utt2lang data/train/utt2lang         --langs de fr-fr es --out data/lang --nj 2

    # multilingual, one run per language, then one phone inventory for all of them
    python -m toolkit.bin.make_lexicon --text data/train_de/text --lang de --out data/lang_de
    python -m toolkit.bin.make_lexicon --text data/train_fr/text --lang fr-fr --out data/lang_fr
    python -m toolkit.bin.make_lexicon --merge-phones data/lang_de data/lang_fr --out data/lang

    # speed check on a synthetic vocabulary (no cache, nothing written)
    python -m toolkit.bin.make_lexicon --bench 200000 --lang en-us --nj 2

The cache (default <out>/cache) keeps espeak's output per language, so rerunning with a
larger text phonemizes only the new words. Words espeak cannot say are spelled letter by
letter or mapped to <unk>; they are logged and listed in fallbacks.txt.
"""
from __future__ import annotations

import argparse
import logging
import sys

from toolkit.text.langdir import bench, build_lang_dir, build_multilingual_lang_dir
from toolkit.text.lexicon import merge_lang_dirs
from toolkit.utils.cli import cli

log = logging.getLogger("make_lexicon")


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", action="append", default=[], help="Kaldi text file (repeatable)")
    p.add_argument("--lang", help="espeak language code (en-us, de, fr-fr, cmn ...); default en-us, "
                   "with --utt2lang: the language of utterances not listed there")
    p.add_argument("--utt2lang", help="uttid -> espeak language: one lexicon per language")
    p.add_argument("--langs", nargs="+", help="with --utt2lang: the languages expected (space or comma separated)")
    p.add_argument("--out", help="lang dir to write")
    p.add_argument("--nj", type=int, default=1, help="espeak worker processes")
    p.add_argument("--cache", help="phonemizer cache dir (default <out>/cache)")
    p.add_argument("--with-stress", action="store_true", help="keep stress marks in phones")
    p.add_argument("--merge-phones", nargs="+", metavar="LANG_DIR",
                   help="merge per-language lang dirs into --out with one phones.txt")
    p.add_argument("--bench", type=int, metavar="N", help="time N synthetic words and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.bench:
        bench(args.bench, args.lang or "en-us", args.nj)
        return 0
    if not args.out:
        p.error("--out is required")
    if args.merge_phones:
        table = merge_lang_dirs(args.merge_phones, args.out)
        log.info("merged %s into %s: %d phone symbols", " ".join(args.merge_phones), args.out, len(table))
    else:
        if not args.text:
            p.error("give at least one --text (or --merge-phones)")
        if args.utt2lang:
            langs = [x for item in args.langs or [] for x in item.split(",") if x]
            build_multilingual_lang_dir(args.text, args.utt2lang, langs, args.out, args.nj, args.cache,
                                        args.with_stress, default_lang=args.lang, progress=not args.no_progress)
        else:
            build_lang_dir(args.text, args.lang or "en-us", args.out, args.nj, args.cache, args.with_stress,
                           progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
