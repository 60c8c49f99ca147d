"""Lexicon (``WORD ph1 ph2 ...``) and phone table (``<sym> <id>``) files of a lang dir.

A lang dir (``data/lang``) holds ``lexicon.txt``, ``phones.txt`` and ``language`` (the
espeak code). A multilingual lang dir (:func:`write_multilingual`: one run with utt2lang,
or :func:`merge_lang_dirs` over per-language runs) holds one
``lexicon.<lang>.txt`` per language, ``languages`` (one code a line) and a single
``phones.txt`` covering all of them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from toolkit.utils.kaldi_map import c_sort_key, iter_kaldi_map
from toolkit.utils.fileio import InputError, atomic_write, read_lines

PAD, UNK, MASK, WB = "<pad>", "<unk>", "<mask>", "<wb>"
SPECIAL_PHONES = (PAD, UNK, MASK, WB)  # ids 0..3, fixed by docs/formats.md


def collect_vocab_by_language(text_paths: Iterable[str | os.PathLike], utt2lang: Mapping[str, str],
                              default: str | None = None) -> dict[str, list[str]]:
    """``lang -> C-sorted words``, each utterance's language from ``utt2lang`` (else ``default``)."""
    vocab: dict[str, set[str]] = {}
    for path in text_paths:
        for lineno, uttid, value in iter_kaldi_map(path):
            lang = utt2lang.get(uttid, default)
            if lang is None:
                raise InputError(path, f"utterance '{uttid}' has no language in utt2lang (give --lang "
                                       "for utterances without one)", lineno)
            vocab.setdefault(lang, set()).update(value.split())
    return {lang: sorted(words, key=c_sort_key) for lang, words in vocab.items()}


def iter_words(text_paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Stream the words of Kaldi ``text`` files (``uttid w1 w2 ...``), a line at a time."""
    for path in text_paths:
        for _, _, value in iter_kaldi_map(path):
            yield from value.split()


def collect_vocab(text_paths: Iterable[str | os.PathLike]) -> list[str]:
    """Distinct words of the text files, C-sorted."""
    return sorted(set(iter_words(text_paths)), key=c_sort_key)


def write_lexicon(path: str | os.PathLike, lexicon: Mapping[str, list[str]]) -> None:
    with atomic_write(path) as f:
        for word in sorted(lexicon, key=c_sort_key):
            f.write(f"{word} {' '.join(lexicon[word])}\n")


def read_lexicon(path: str | os.PathLike) -> dict[str, list[str]]:
    """``WORD -> phones``; a word without phones or listed twice raises InputError."""
    lex: dict[str, list[str]] = {}
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) < 2:
            raise InputError(path, "expected 'WORD ph1 ph2 ...'", lineno)
        if parts[0] in lex:
            raise InputError(path, f"duplicate word '{parts[0]}'", lineno)
        lex[parts[0]] = parts[1:]
    return lex


def phone_table(lexicons: Iterable[Mapping[str, list[str]]]) -> dict[str, int]:
    """Specials at 0..3, then every phone used, C-sorted (stable across reruns)."""
    phones = {p for lex in lexicons for ps in lex.values() for p in ps} - set(SPECIAL_PHONES)
    return {p: i for i, p in enumerate(list(SPECIAL_PHONES) + sorted(phones, key=c_sort_key))}


def write_phones(path: str | os.PathLike, table: Mapping[str, int]) -> None:
    with atomic_write(path) as f:
        for sym, i in sorted(table.items(), key=lambda kv: kv[1]):
            f.write(f"{sym} {i}\n")


def read_phones(path: str | os.PathLike) -> dict[str, int]:
    """``symbol -> id``; checks the fixed special ids and that ids are 0..N-1."""
    table: dict[str, int] = {}
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise InputError(path, "expected '<symbol> <id>'", lineno)
        if parts[0] in table:
            raise InputError(path, f"duplicate symbol '{parts[0]}'", lineno)
        table[parts[0]] = int(parts[1])
    for i, sym in enumerate(SPECIAL_PHONES):
        if table.get(sym) != i:
            raise InputError(path, f"'{sym}' must have id {i}")
    if sorted(table.values()) != list(range(len(table))):
        raise InputError(path, "ids are not 0..N-1")
    return table


def lang_dir_languages(lang_dir: str | os.PathLike) -> list[str]:
    """Language codes of a lang dir: ``languages`` (merged) or ``language`` (single)."""
    lang_dir = Path(lang_dir)
    for name in ("languages", "language"):
        if (lang_dir / name).exists():
            return [line.strip() for _, line in read_lines(lang_dir / name) if line.strip()]
    raise InputError(lang_dir, "no 'language' or 'languages' file: not made by make_lexicon")


def lexicon_path(lang_dir: str | os.PathLike, lang: str | None = None) -> Path:
    """``lexicon.<lang>.txt`` in a merged dir, else ``lexicon.txt``."""
    lang_dir = Path(lang_dir)
    if lang is not None and (lang_dir / f"lexicon.{lang}.txt").exists():
        return lang_dir / f"lexicon.{lang}.txt"
    return lang_dir / "lexicon.txt"


def merge_lang_dirs(src_dirs: Iterable[str | os.PathLike], out: str | os.PathLike) -> dict[str, int]:
    """One phone inventory across languages: copy each ``lexicon.txt`` to
    ``out/lexicon.<lang>.txt`` and write the union ``phones.txt``. Returns the table."""
    lexicons: dict[str, dict[str, list[str]]] = {}
    for d in src_dirs:
        for lang in lang_dir_languages(d):
            if lang in lexicons:
                raise InputError(d, f"language '{lang}' given twice")
            lexicons[lang] = read_lexicon(lexicon_path(d, lang))
    return write_multilingual(out, lexicons)


def write_multilingual(out: str | os.PathLike, lexicons: Mapping[str, Mapping[str, list[str]]]) -> dict[str, int]:
    """``out/lexicon.<lang>.txt`` per language, ``languages`` and the union ``phones.txt``."""
    out = Path(out)
    table = phone_table(lexicons.values())
    for lang, lex in lexicons.items():
        write_lexicon(out / f"lexicon.{lang}.txt", lex)
    with atomic_write(out / "languages") as f:
        f.write("".join(f"{lang}\n" for lang in lexicons))
    write_phones(out / "phones.txt", table)
    return table
