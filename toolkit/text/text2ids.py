"""Transcript -> (phoneme ids, wordpiece ids), as stored in a SeqStore.

Phones come from the lang dir's lexicon (per language for a merged multilingual dir);
consecutive words are separated by ``<wb>``. Out-of-lexicon words are phonemized with the
same espeak setup (``oov="phonemize"``) or mapped to ``<unk>`` (``oov="unk"``); phones
missing from phones.txt map to ``<unk>``; ``oov_words`` and ``unk_phones`` count both.
"""
from __future__ import annotations

import itertools
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from toolkit.text.lexicon import UNK, WB, lang_dir_languages, lexicon_path, read_lexicon, read_phones
from toolkit.text.phonemize import WordPhonemizer
from toolkit.text.seqstore import SeqStoreWriter
from toolkit.text.wordpiece import load_wordpiece
from toolkit.utils.fileio import InputError
from toolkit.utils.kaldi_map import iter_kaldi_map, read_kaldi_map
from toolkit.utils.progress import progress_bar

log = logging.getLogger(__name__)


class TextToIds:
    """Convert transcripts of one lang dir; call :meth:`convert` on batches of utterances."""

    def __init__(self, lang_dir: str | os.PathLike, bpe_model: str | os.PathLike, oov: str = "phonemize",
                 cache_dir: str | os.PathLike | None = None):
        if oov not in ("phonemize", "unk"):
            raise ValueError(f"oov must be 'phonemize' or 'unk', not {oov!r}")
        lang_dir = Path(lang_dir)
        self.languages = lang_dir_languages(lang_dir)
        self.phones = read_phones(lang_dir / "phones.txt")
        self.lexicons = {lang: read_lexicon(lexicon_path(lang_dir, lang)) for lang in self.languages}
        self.sp = load_wordpiece(bpe_model)
        self.oov = oov
        self.cache_dir = cache_dir if cache_dir is not None else lang_dir / "cache"
        self._phonemizers: dict[str, WordPhonemizer] = {}
        self.oov_words: Counter = Counter()  # occurrences of each out-of-lexicon word
        self.unk_phones = 0  # phones mapped to <unk> (not in phones.txt, or unsayable words)
        self.unsayable: list[str] = []  # utterances with no known phone at all (written with none)
        self._oov: dict[str, set[str]] = {}

    def _oov_phones(self, words: set[str], lang: str) -> None:
        """Add phones for unseen words to the in-memory lexicon (one espeak batch)."""
        if self.oov == "phonemize":
            if lang not in self._phonemizers:
                self._phonemizers[lang] = WordPhonemizer(lang, cache_dir=self.cache_dir)
            self.lexicons[lang].update(self._phonemizers[lang](words))
        else:
            self.lexicons[lang].update({w: [UNK] for w in words})
        self._oov.setdefault(lang, set()).update(words)

    def convert(self, utts: Iterable[tuple[str, str, str | None]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``[(uttid, text, lang or None)] -> [(uttid, phones int32, tokens int32)]``."""
        utts = list(utts)
        for uttid, _, lang in utts:
            if lang is not None and lang not in self.lexicons:
                raise KeyError(f"utterance '{uttid}': language '{lang}' not in the lang dir "
                               f"(has {', '.join(self.languages)})")
        default = self.languages[0]
        missing: dict[str, set[str]] = {}
        for _, text, lang in utts:
            lex = self.lexicons[lang or default]
            missing.setdefault(lang or default, set()).update(w for w in text.split() if w not in lex)
        for lang, words in missing.items():
            if words:
                self._oov_phones(words, lang)
        out = []
        unk_id = self.phones[UNK]
        for uttid, text, lang in utts:
            lex = self.lexicons[lang or default]
            ids: list[int] = []
            for k, word in enumerate(text.split()):
                if k:
                    ids.append(self.phones[WB])
                if word in self._oov.get(lang or default, ()):
                    self.oov_words[word] += 1
                for p in lex[word]:
                    i = self.phones.get(p, unk_id)
                    self.unk_phones += i == unk_id
                    ids.append(i)
            if all(i in (unk_id, self.phones[WB]) for i in ids):
                # e.g. a transcript of punctuation only: all-<unk> phones would teach the phone
                # CTC and the text encoder nothing true; none are written, and the training
                # datasets drop (and count) utterances with empty phones
                self.unsayable.append(uttid)
                ids = []
            tokens = self.sp.encode(text)
            out.append((uttid, np.asarray(ids, dtype=np.int32), np.asarray(tokens, dtype=np.int32)))
        return out


def dump_text(lang_dir: str, bpe_model: str, text: str, out: str, oov: str = "phonemize",
              utt2lang: str | None = None, chunk: int = 2000, progress: bool = True) -> TextToIds:
    """Write the SeqStore; returns the converter (its ``oov_words``/``unk_phones`` counters)."""
    conv = TextToIds(lang_dir, bpe_model, oov=oov)
    langs = read_kaldi_map(utt2lang) if utt2lang else None
    lines = iter_kaldi_map(text)
    n = 0
    bar = progress_bar(desc=f"text -> ids {Path(text).parent.name}", enabled=progress)
    with SeqStoreWriter(out) as writer, bar:
        while batch := list(itertools.islice(lines, chunk)):
            utts = []
            for lineno, uttid, words in batch:
                lang = None
                if langs is not None:
                    if uttid not in langs:
                        raise InputError(text, f"utterance '{uttid}' has no language in {utt2lang}", lineno)
                    lang = langs[uttid]
                utts.append((uttid, words, lang))
            try:
                converted = conv.convert(utts)
            except KeyError as e:
                raise InputError(utt2lang, e.args[0]) from None
            for uttid, phones, tokens in converted:
                writer.add(uttid, phones, tokens)
            n += len(batch)
            bar.update(len(batch))
    n_occ = sum(conv.oov_words.values())
    top = ", ".join(f"{w}({c})" for w, c in conv.oov_words.most_common(10))
    log.info("%s: %d utterances; %d out-of-lexicon words (%d occurrences%s); %d phones -> <unk>",
             out, n, len(conv.oov_words), n_occ, f": {top}" if top else "", conv.unk_phones)
    if conv.unsayable:
        log.warning("%s: %d utterance(s) have no known phone (all <unk>: e.g. a transcript that normalises to "
                    "nothing) and get no phones, so training drops them: %s", out, len(conv.unsayable),
                    ", ".join(conv.unsayable[:5]) + (" ..." if len(conv.unsayable) > 5 else ""))
    return conv
