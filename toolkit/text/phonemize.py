"""Batched, cached, multi-process word -> IPA phones with espeak-ng (phonemizer).

:class:`WordPhonemizer` sends each distinct word to espeak once per language: results are
kept in a per-language cache file (``<cache>/<lang>[.stress].tsv``), so a rerun on a larger
text only phonemizes the new words (``n_phonemized`` counts what went to espeak).
Words espeak cannot say (digits, symbols, empty output, errors) fall back to spelling
them letter by letter, and to ``<unk>`` when even that gives nothing; each fallback is
recorded in ``fallbacks``.
"""
from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path
from typing import Iterable

from toolkit.utils.fileio import InputError, atomic_write, read_lines
from toolkit.utils.parallel import imap_processes
from toolkit.utils.progress import progress_bar

log = logging.getLogger(__name__)

UNK = "<unk>"
_WORD_SEP = "|"  # phonemizer needs a word separator distinct from the phone one
_backends: dict[tuple[str, bool], object] = {}  # one espeak instance per process and config


def _setup_espeak() -> None:
    """Point phonemizer at the pip-shipped libespeak-ng and its data (no system espeak needed)."""
    import espeakng_loader
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    os.environ.setdefault("ESPEAK_DATA_PATH", espeakng_loader.get_data_path())
    EspeakWrapper.set_library(espeakng_loader.get_library_path())


def _backend(lang: str, with_stress: bool):
    key = (lang, with_stress)
    if key not in _backends:
        _setup_espeak()
        from phonemizer.backend import EspeakBackend

        # phonemizer logs a warning per mismatched line; we handle mismatches ourselves
        quiet = logging.getLogger("phonemizer.quiet")
        quiet.setLevel(logging.ERROR)
        _backends[key] = EspeakBackend(lang, with_stress=with_stress, language_switch="remove-flags",
                                       words_mismatch="ignore", logger=quiet)
    return _backends[key]


def _clean(ipa: str) -> list[str]:
    return ipa.replace(_WORD_SEP, " ").split()


def espeak_batch(args: tuple[str, bool, list[str]]) -> list[list[str]]:
    """Phonemize ``words`` in one espeak call; ``[]`` for a word espeak gives nothing for.

    Runs in worker processes. If the batch call fails or misaligns, retries word by word
    so one bad word costs only itself.
    """
    lang, with_stress, words = args
    from phonemizer.separator import Separator

    sep = Separator(phone=" ", word=_WORD_SEP, syllable="")
    backend = _backend(lang, with_stress)
    try:
        out = backend.phonemize(list(words), separator=sep, strip=True, njobs=1)
        if len(out) == len(words):
            return [_clean(x) for x in out]
    except Exception as e:  # espeak errors are per input; isolate them below
        log.debug("batch of %d failed (%s); retrying word by word", len(words), e)
    result = []
    for w in words:
        try:
            result.append(_clean(backend.phonemize([w], separator=sep, strip=True, njobs=1)[0]))
        except Exception:
            result.append([])
    return result


def is_speakable(word: str) -> bool:
    """Letters (any script, with combining marks), apostrophes and hyphens only."""
    return any(c.isalpha() for c in word) and all(
        c.isalpha() or c in "'-" or unicodedata.category(c).startswith("M") for c in word)


class WordPhonemizer:
    """Word -> phones for one espeak language, batched, parallel and cached.

    Args:
        lang: espeak language code (``en-us``, ``de``, ``fr-fr``, ``cmn`` ...).
        cache_dir: where ``<lang>.tsv`` persists raw espeak output; None keeps it in memory.
        with_stress: keep espeak's stress marks.
        nj: worker processes; batch_size: words per espeak call.
        progress: a progress bar over the words sent to espeak (on a terminal only).
    """

    def __init__(self, lang: str, cache_dir: str | os.PathLike | None = None, with_stress: bool = False,
                 nj: int = 1, batch_size: int = 2000, progress: bool = True):
        _setup_espeak()
        from phonemizer.backend import EspeakBackend

        if not EspeakBackend.is_supported_language(lang):
            raise ValueError(f"espeak-ng has no language '{lang}' (codes such as en-us, de, fr-fr, cmn; "
                             "list them with: espeak-ng --voices, or EspeakBackend.supported_languages())")
        self.lang, self.with_stress, self.nj, self.batch_size = lang, with_stress, max(1, nj), batch_size
        self.progress = progress
        self.cache_path = (Path(cache_dir) / f"{lang}{'.stress' if with_stress else ''}.tsv"
                           if cache_dir is not None else None)
        self._cache: dict[str, list[str]] = {}  # espeak input -> raw output ([] = nothing)
        self.n_phonemized = 0  # strings sent to espeak by this object (0 on a full cache hit)
        self.fallbacks: dict[str, str] = {}  # word -> "spelled" | "unk"
        if self.cache_path is not None and self.cache_path.exists():
            for lineno, line in read_lines(self.cache_path):
                key, sep, phones = line.partition("\t")
                if not sep:
                    raise InputError(self.cache_path, "expected 'word<TAB>phones'", lineno)
                self._cache[key] = phones.split()

    def _fill_cache(self, inputs: Iterable[str]) -> None:
        todo = sorted({x for x in inputs if x not in self._cache})
        if not todo:
            return
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        jobs = [(self.lang, self.with_stress, b) for b in batches]
        bar = progress_bar(total=len(todo), desc=f"lexicon {self.lang}", unit="word", enabled=self.progress)
        results = []
        with bar:
            # forked workers inherit imports; each builds its own espeak instance on first use
            for phones in imap_processes(espeak_batch, jobs, self.nj):
                results.append(phones)
                bar.update(len(phones))
        for batch, phones in zip(batches, results):
            self._cache.update(zip(batch, phones))
        self.n_phonemized += len(todo)
        self.save_cache()

    def save_cache(self) -> None:
        if self.cache_path is None:
            return
        with atomic_write(self.cache_path) as f:
            for key in sorted(self._cache):
                if "\t" not in key and "\n" not in key:
                    f.write(f"{key}\t{' '.join(self._cache[key])}\n")

    def __call__(self, words: Iterable[str]) -> dict[str, list[str]]:
        """Phones for every word (never empty: falls back to spelling, then ``[<unk>]``)."""
        words = list(dict.fromkeys(words))
        # lower-case for espeak: all-caps words (LibriSpeech) are otherwise read as acronyms
        self._fill_cache(w.lower() for w in words if is_speakable(w))
        said = {w: self._cache[w.lower()] if is_speakable(w) else [] for w in words}
        self._fill_cache(c.lower() for w, ph in said.items() if not ph for c in w if c.isalnum())
        out = {}
        for w, phones in said.items():
            if not phones:
                phones = [p for c in w if c.isalnum() for p in self._cache.get(c.lower(), [])]
                self.fallbacks[w] = "spelled" if phones else "unk"
                phones = phones or [UNK]
            out[w] = phones
        return out
