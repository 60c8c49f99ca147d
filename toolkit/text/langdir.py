"""Stage 2's lang dir: a phoneme lexicon of the training text with espeak-ng (cached).

One language: ``lexicon.txt``, ``phones.txt``, ``language``, ``fallbacks.txt``; several
(each utterance in its utt2lang language): ``lexicon.<lang>.txt``, ``languages``,
``phones.txt``, ``fallbacks.txt``. The cache (default ``<out>/cache``) keeps espeak's
output per language, so a larger text phonemizes only the new words.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from toolkit.text.lexicon import (collect_vocab, collect_vocab_by_language, phone_table, write_lexicon,
                                  write_multilingual, write_phones)
from toolkit.text.phonemize import WordPhonemizer
from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.kaldi_map import read_kaldi_map

log = logging.getLogger(__name__)


def build_lang_dir(texts: list[str], lang: str, out: str, nj: int = 1, cache: str | None = None,
                   with_stress: bool = False, progress: bool = True) -> WordPhonemizer:
    """Write lexicon.txt, phones.txt, language, fallbacks.txt; returns the phonemizer (for its counters)."""
    out_dir = Path(out)
    vocab = collect_vocab(texts)
    ph = WordPhonemizer(lang, cache_dir=cache if cache is not None else out_dir / "cache",
                        with_stress=with_stress, nj=nj, progress=progress)
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
                                default_lang: str | None = None, progress: bool = True) -> dict[str, WordPhonemizer]:
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
                            with_stress=with_stress, nj=nj, progress=progress)
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
