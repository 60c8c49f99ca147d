"""Corpus readers: LibriSpeech, Multilingual LibriSpeech and Common Voice layouts -> data dirs.

Each reader returns :class:`Utterance` values with speaker-prefixed ids
(``<spk>-<chapter>-<utt>``, ``<spk>-<book>-<utt>``, ``<spk>-<clip>``); :func:`save_data_dir`
writes them as a Kaldi data dir (C-sorted, swapped in whole). Bad input raises
InputError naming the file and line: a transcript line whose audio is missing, audio with
no transcript line, a malformed or non-UTF-8 line, a missing tsv column, an empty text.
:func:`write_text_only` streams an LM text file (plain or .gz) into ``<out>/text``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from toolkit.data.datadir import DataDir, replace_dir, utt2spk_to_spk2utt
from toolkit.utils.fileio import InputError, atomic_write, read_lines

MLS_LANGUAGES = {"english": "en", "german": "de", "dutch": "nl", "french": "fr", "spanish": "es",
                 "italian": "it", "portuguese": "pt", "polish": "pl"}
CV_REQUIRED_COLUMNS = ("client_id", "path", "sentence")
_PUNCT = re.compile(r"[^\w\s']")
_QUOTE = re.compile(r"(?<!\w)'|'(?!\w)")  # apostrophes used as quotes, not inside a word
# Han characters are words of their own: text without spaces (Chinese) is scored per character
_HAN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")
# Common Voice locales whose espeak language code differs (utt2lang holds espeak codes)
CV_LOCALE_LANG = {"zh-CN": "cmn", "zh-TW": "cmn", "zh-HK": "yue", "es-ES": "es", "sv-SE": "sv", "pa-IN": "pa"}


@dataclass(frozen=True)
class Utterance:
    uttid: str
    speaker: str
    audio: str          # absolute path of the audio file (soundfile reads flac/mp3/opus)
    text: str
    lang: str | None = None


def normalize_sentence(text: str) -> str:
    """Common Voice style text -> words: lower-case, punctuation dropped except in-word apostrophes.

    Han characters are split apart ("我们走" -> "我 们 走"), so WER on them is CER.
    """
    text = _HAN.sub(r" \1 ", text.replace("\u2019", "'").replace("\u2018", "'").lower())
    return " ".join(_QUOTE.sub(" ", _PUNCT.sub(" ", text)).split())


def _check_text(path, lineno: int, uttid: str, text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise InputError(path, f"utterance {uttid}: empty transcript", lineno)
    return text


def _audio_files(directory: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith(suffixes):
                yield Path(root) / name


def read_librispeech(corpus: str | os.PathLike, subset: str) -> list[Utterance]:
    """``<corpus>/<subset>/<spk>/<chapter>/{<spk>-<chapter>.trans.txt, *.flac}``; speaker = reader."""
    base = Path(corpus) / subset
    if not base.is_dir():
        raise InputError(base, "LibriSpeech subset directory not found")
    utts: list[Utterance] = []
    for spk_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for ch_dir in sorted(p for p in spk_dir.iterdir() if p.is_dir()):
            spk, ch = spk_dir.name, ch_dir.name
            trans = ch_dir / f"{spk}-{ch}.trans.txt"
            flacs = {p.name for p in ch_dir.glob("*.flac")}
            if not trans.is_file():
                if flacs:
                    raise InputError(ch_dir / sorted(flacs)[0], f"audio without transcript: {trans.name} is missing")
                continue
            seen = set()
            for lineno, line in read_lines(trans):
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise InputError(trans, "malformed line: expected '<spk>-<chapter>-<utt> TEXT'", lineno)
                uttid, text = parts
                if not uttid.startswith(f"{spk}-{ch}-") or uttid in seen:
                    raise InputError(trans, f"utterance id '{uttid}' is duplicated or not of the form "
                                            f"{spk}-{ch}-<n>", lineno)
                seen.add(uttid)
                if f"{uttid}.flac" not in flacs:
                    raise InputError(trans, f"utterance {uttid}: audio file {ch_dir / (uttid + '.flac')} not found",
                                     lineno)
                utts.append(Utterance(uttid, spk, str((ch_dir / f"{uttid}.flac").resolve()),
                                      _check_text(trans, lineno, uttid, text)))
            orphans = sorted(flacs - {f"{u}.flac" for u in seen})
            if orphans:
                raise InputError(ch_dir / orphans[0], f"audio without transcript: no line for it in {trans}")
    if not utts:
        raise InputError(base, "no utterances found (expected <spk>/<chapter>/<spk>-<chapter>.trans.txt)")
    return utts


def mls_language(corpus: str | os.PathLike) -> str | None:
    """Language code from an MLS root named like ``mls_german`` (or ``mls_german_opus``)."""
    parts = Path(corpus).resolve().name.split("_")
    return MLS_LANGUAGES.get(parts[1]) if len(parts) > 1 and parts[0] == "mls" else None


def read_mls(corpus: str | os.PathLike, split: str, lang: str | None = None) -> list[Utterance]:
    """``<corpus>/<split>/transcripts.txt`` (``<spk>_<book>_<utt>\\tTEXT``) + ``audio/<spk>/<book>/``."""
    base = Path(corpus) / split
    trans = base / "transcripts.txt"
    if not trans.is_file():
        raise InputError(trans, "MLS transcripts.txt not found")
    lang = lang or mls_language(corpus)
    utts: list[Utterance] = []
    seen: set[str] = set()
    for lineno, line in read_lines(trans):
        parts = line.split("\t", 1)
        ids = parts[0].split("_")
        if len(parts) != 2 or len(ids) != 3 or not all(ids):
            raise InputError(trans, "malformed line: expected '<spk>_<book>_<utt><TAB>text'", lineno)
        key = parts[0]
        if key in seen:
            raise InputError(trans, f"duplicate utterance '{key}'", lineno)
        seen.add(key)
        spk, book, _ = ids
        audio = next((p for p in (base / "audio" / spk / book / f"{key}{ext}" for ext in (".flac", ".opus"))
                      if p.is_file()), None)
        if audio is None:
            raise InputError(trans, f"utterance {key}: audio file {base / 'audio' / spk / book / key}.flac "
                                    "(or .opus) not found", lineno)
        utts.append(Utterance(key.replace("_", "-"), spk, str(audio.resolve()),
                              _check_text(trans, lineno, key, parts[1]), lang))
    for path in _audio_files(base / "audio", (".flac", ".opus")):
        if path.name.rsplit(".", 1)[0] not in seen:
            raise InputError(path, f"audio without transcript: no line for it in {trans}")
    return utts


def cv_speaker(client_id: str) -> str:
    """A short, id-safe speaker name for a Common Voice client_id (hex digest prefix)."""
    return hashlib.sha1(client_id.encode("utf-8")).hexdigest()[:12]


def read_commonvoice(corpus: str | os.PathLike, split: str, lang: str | None = None) -> list[Utterance]:
    """``<corpus>/<split>.tsv`` (client_id, path, sentence, ..., locale) + ``clips/``; text normalised."""
    tsv = Path(corpus) / f"{split}.tsv"
    if not tsv.is_file():
        raise InputError(tsv, "Common Voice split file not found")
    lines = read_lines(tsv)
    header = next(lines, (1, ""))[1].split("\t")
    missing = [c for c in CV_REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(tsv, f"missing column(s) {', '.join(missing)} in the header", 1)
    col = {name: i for i, name in enumerate(header)}
    utts: list[Utterance] = []
    speakers: dict[str, str] = {}
    seen: set[str] = set()
    for lineno, line in lines:
        row = line.split("\t")
        if len(row) != len(header):
            raise InputError(tsv, f"malformed line: {len(row)} fields, the header has {len(header)}", lineno)
        client, clip, sentence = (row[col[c]] for c in CV_REQUIRED_COLUMNS)
        spk = cv_speaker(client)
        if speakers.setdefault(spk, client) != client:
            raise InputError(tsv, f"client_id '{client}' hashes to the same speaker as '{speakers[spk]}'", lineno)
        audio = Path(corpus) / "clips" / clip
        if not clip or not audio.is_file():
            raise InputError(tsv, f"clip '{clip}': audio file {audio} not found", lineno)
        uttid = f"{spk}-{os.path.splitext(clip)[0]}"
        if uttid in seen:
            raise InputError(tsv, f"clip '{clip}' listed twice", lineno)
        seen.add(uttid)
        locale = row[col["locale"]] if "locale" in col and row[col["locale"]] else None
        locale = CV_LOCALE_LANG.get(locale, locale)
        utts.append(Utterance(uttid, spk, str(audio.resolve()),
                              _check_text(tsv, lineno, clip, normalize_sentence(sentence)), lang or locale))
    return utts


LAYOUTS = ("librispeech", "mls", "commonvoice")


def read_layout(layout: str, corpus: str | os.PathLike, subset: str, lang: str | None = None) -> list[Utterance]:
    """Utterances of one subset (LibriSpeech ``dev-clean``, MLS/Common Voice ``train``...) of a corpus layout.

    ``lang`` (MLS, Common Voice) overrides the language read from the corpus; LibriSpeech
    is English and writes no utt2lang.
    """
    if layout == "librispeech":
        if lang is not None:
            raise ValueError("the librispeech layout takes no language (it writes no utt2lang)")
        return read_librispeech(corpus, subset)
    if layout == "mls":
        return read_mls(corpus, subset, lang)
    if layout == "commonvoice":
        return read_commonvoice(corpus, subset, lang)
    raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")


def text_only_normalizer(layout: str) -> Callable[[str], str] | None:
    """How a layout's unpaired text is normalised: like its transcripts (Common Voice), else as is."""
    return normalize_sentence if layout == "commonvoice" else None


def save_data_dir(utts: Iterable[Utterance], out: str | os.PathLike) -> DataDir:
    """Write wav.scp, text, utt2spk, spk2utt (+ utt2lang when every utterance has a language)."""
    utts = list(utts)
    utt2spk = {u.uttid: u.speaker for u in utts}
    if len(utt2spk) != len(utts):
        raise ValueError(f"{out}: duplicate utterance ids")
    langs = {u.uttid: u.lang for u in utts}
    d = DataDir(Path(out), wav_scp={u.uttid: u.audio for u in utts}, text={u.uttid: u.text for u in utts},
                utt2spk=utt2spk, spk2utt=utt2spk_to_spk2utt(utt2spk),
                utt2lang=langs if utts and all(langs.values()) else None)
    d.save(out)
    return d


def iter_text_file(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(lineno, line)`` of a plain or gzip text file, streamed; non-UTF-8 raises InputError."""
    if str(path).endswith(".gz"):
        with gzip.open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    yield lineno, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})", lineno) from None
    else:
        yield from read_lines(path)


def write_text_only(lm_text: str | os.PathLike, out: str | os.PathLike, max_lines: int | None = None,
                    normalize: Callable[[str], str] | None = None, prefix: str = "lm") -> int:
    """Stream ``lm_text`` (one sentence a line) to ``<out>/text`` as ``<prefix>-<n:09d> words``.

    Never holds the file in memory; blank lines are skipped; ids are C-sorted by
    construction. Returns the number of sentences written.
    """
    if not Path(lm_text).is_file():
        raise InputError(lm_text, "text file not found")
    count = 0

    def build(tmp: Path) -> None:
        nonlocal count
        with atomic_write(tmp / "text") as f:
            for _lineno, line in iter_text_file(lm_text):
                if max_lines is not None and count >= max_lines:
                    break
                words = normalize(line) if normalize else " ".join(line.split())
                if words:
                    f.write(f"{prefix}-{count:09d} {words}\n")
                    count += 1

    replace_dir(Path(out), build)
    return count
