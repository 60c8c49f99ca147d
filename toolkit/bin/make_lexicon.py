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
import random
import sys
import time
from pathlib import Path

from toolkit.utils.kaldi_map import read_kaldi_map
from toolkit.text.lexicon import (collect_vocab, collect_vocab_by_language, merge_lang_dirs, phone_table,
                                  write_lexicon, write_multilingual, write_phones)
from toolkit.text.phonemize import WordPhonemizer
from toolkit.utils.fileio import InputError, atomic_write

log = logging.getLogger("make_lexicon")


def build_lang_dir(texts: list[str], lang: str, out: str, nj: int = 1, cache: str | None = None,
                   with_stress: bool = False) -> WordPhonemizer:
    """Write lexicon.txt, phones.txt, language, fallbacks.txt; returns the phonemizer (for its counters)."""
    out_dir = Path(out)
    vocab = collect_vocab(texts)
    ph = WordPhonemizer(lang, cache_dir=cache if cache is not None else out_dir / "cache",
                        with_stress=with_stress, nj=nj)
    lexicon = ph(vocab)
    write_lexicon(out_dir / "lexicon.txt", lexicon)
    write_phones(out_dir / "phones.txt", phone_table([lexicon]))
    with atomic_write(out_dir / "language") as f:
        f.write(f"{lang}\n")
    with atomic_write(out_dir / "fallbacks.txt") as f:
        f.write("".join(f"{w} {how}\n" for w, how in sorted(ph.fallbacks.items())))
    if ph.fallbacks:
        shown = ", ".join(list(ph.fallbacks)[:10])
        log.warning("%d of %d words fell back to spelling or <unk> (e.g. %s); see %s",
                    len(ph.fallbacks), len(vocab), shown, out_dir / "fallbacks.txt")
    log.info("%s: %d words, %d new strings sent to espeak (the rest came from the cache)",
             out_dir, len(vocab), ph.n_phonemized)
    return ph


def build_multilingual_lang_dir(texts: list[str], utt2lang: str, langs: list[str] | None, out: str,
                                nj: int = 1, cache: str | None = None, with_stress: bool = False,
                                default_lang: str | None = None) -> dict[str, WordPhonemizer]:
    """Per-language lexicons from one run; returns ``lang -> phonemizer`` (for its counters)."""
    out_dir = Path(out)
    vocab = collect_vocab_by_language(texts, read_kaldi_map(utt2lang), default_lang)
    if langs:
        unknown = sorted(set(vocab) - set(langs))
        if unknown:
            raise InputError(utt2lang, f"languages {unknown} are not in --langs {' '.join(langs)}")
    lexicons, phonemizers = {}, {}
    for lang in sorted(vocab):
        ph = WordPhonemizer(lang, cache_dir=cache if cache is not None else out_dir / "cache",
                            with_stress=with_stress, nj=nj)
        lexicons[lang], phonemizers[lang] = ph(vocab[lang]), ph
        log.info("%s: %d words, %d new strings sent to espeak, %d fallbacks",
                 lang, len(vocab[lang]), ph.n_phonemized, len(ph.fallbacks))
    write_multilingual(out_dir, lexicons)
    with atomic_write(out_dir / "fallbacks.txt") as f:
        f.write("".join(f"{w} {how} {lang}\n" for lang, ph in phonemizers.items()
                        for w, how in sorted(ph.fallbacks.items())))
    return phonemizers


def bench(n_words: int, lang: str, nj: int) -> float:
    """Seconds per 10k words for a synthetic pronounceable vocabulary, no cache."""
    rng = random.Random(0)
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    words = {"".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 4)))
             + rng.choice(["", "s", "ed", "ing"]) for _ in range(n_words * 2)}
    words = sorted(words)[:n_words]
    ph = WordPhonemizer(lang, cache_dir=None, nj=nj)
    t0 = time.perf_counter()
    ph(words)
    dt = time.perf_counter() - t0
    per10k = dt / len(words) * 1e4
    print(f"{len(words)} words, nj={nj}: {dt:.1f} s total, {per10k:.2f} s per 10k words, "
          f"{len(ph.fallbacks)} fallbacks")
    return per10k


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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.bench:
        bench(args.bench, args.lang or "en-us", args.nj)
        return 0
    if not args.out:
        p.error("--out is required")
    try:
        if args.merge_phones:
            table = merge_lang_dirs(args.merge_phones, args.out)
            log.info("merged %s into %s: %d phone symbols", " ".join(args.merge_phones), args.out, len(table))
        else:
            if not args.text:
                p.error("give at least one --text (or --merge-phones)")
            if args.utt2lang:
                langs = [x for item in args.langs or [] for x in item.split(",") if x]
                build_multilingual_lang_dir(args.text, args.utt2lang, langs, args.out, args.nj, args.cache,
                                            args.with_stress, default_lang=args.lang)
            else:
                build_lang_dir(args.text, args.lang or "en-us", args.out, args.nj, args.cache, args.with_stress)
    except (InputError, ValueError, OSError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
