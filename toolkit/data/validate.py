"""Check a Kaldi data dir and report every problem with its file and line.

Errors: missing files, unsorted (C locale) or duplicate keys, ids in one file but not
another (text / utt2spk / wav.scp or segments / utt2lang), spk2utt disagreeing with
utt2spk, empty transcripts, missing audio files (pipes are not run), bad segments.
Warnings: utterance ids not prefixed by their speaker id, recordings no segment uses.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.datadir import Entry, is_pipe, read_entries
from toolkit.utils.kaldi_map import c_sort_key, parse_segment
from toolkit.utils.fileio import InputError

FIX_HINT = "utils/fix_data_dir.sh"


@dataclass(frozen=True)
class Problem:
    path: str  # the file (or the dir when the dir itself is wrong)
    line: int | None
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {'warning: ' if self.severity == 'warning' else ''}{self.message}"


class _Checker:
    def __init__(self, path: Path):
        self.dir = path
        self.problems: list[Problem] = []

    def add(self, name: str, line: int | None, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(str(self.dir / name), line, message, severity))

    def read(self, name: str, value_kind: str | None = "value") -> dict[str, Entry] | None:
        """Key -> first entry; reports blank lines, missing values, unsorted and duplicate keys."""
        path = self.dir / name
        try:
            entries = read_entries(path)
        except InputError as e:
            self.problems.append(Problem(e.path, e.line, str(e).split(": ", 1)[1]))
            return None
        first: dict[str, Entry] = {}
        prev = None
        for e in entries:
            if not e.key:
                self.add(name, e.lineno, "empty line")
                continue
            if not e.value and value_kind:
                self.add(name, e.lineno, f"'{e.key}' has no {value_kind}")
            if e.key in first:
                self.add(name, e.lineno, f"duplicate key '{e.key}' (first on line {first[e.key].lineno})")
                continue
            if prev is not None and c_sort_key(e.key) < c_sort_key(prev.key):
                self.add(name, e.lineno, f"not sorted (C locale): '{e.key}' comes after '{prev.key}' "
                                         f"on line {prev.lineno}; run {FIX_HINT}")
            first[e.key] = e
            prev = e
        return first

    def same_keys(self, name_a: str, a: dict[str, Entry], name_b: str, b: dict[str, Entry], what: str) -> None:
        for key, e in a.items():
            if key not in b:
                self.add(name_a, e.lineno, f"{what} '{key}' is not in {name_b}")
        for key, e in b.items():
            if key not in a:
                self.add(name_b, e.lineno, f"{what} '{key}' is not in {name_a}")


def validate_data_dir(path: str | os.PathLike, check_audio: bool = True,
                      allow_empty_text: bool = False) -> list[Problem]:
    """Every problem of the data dir at ``path``, in file order; [] when it is valid.

    Audio paths are checked relative to the current directory (the recipe dir, as in
    Kaldi); ``cmd |`` entries are not run.
    """
    c = _Checker(Path(path))
    if not c.dir.is_dir():
        return [Problem(str(c.dir), None, "not a directory")]
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        if not (c.dir / name).is_file():
            hint = "; create it with utils/utt2spk_to_spk2utt.pl" if name == "spk2utt" else ""
            c.add(name, None, f"missing (required){hint}")
    present = {name: c.read(name, kind) for name, kind in [
        ("wav.scp", "audio path or command"), ("text", None if allow_empty_text else "transcript (empty)"),
        ("utt2spk", "speaker"), ("spk2utt", "utterances"), ("segments", "recording and times"),
        ("utt2lang", "language")] if (c.dir / name).is_file()}
    wav, text, utt2spk = present.get("wav.scp"), present.get("text"), present.get("utt2spk")
    spk2utt, segments, utt2lang = present.get("spk2utt"), present.get("segments"), present.get("utt2lang")

    if utt2spk is not None:
        if text is not None:
            c.same_keys("text", text, "utt2spk", utt2spk, "utterance")
        if segments is not None:
            c.same_keys("segments", segments, "utt2spk", utt2spk, "utterance")
        elif wav is not None:
            c.same_keys("wav.scp", wav, "utt2spk", utt2spk, "utterance")
        if utt2lang is not None:
            c.same_keys("utt2lang", utt2lang, "utt2spk", utt2spk, "utterance")
        if spk2utt is not None:
            _check_spk2utt(c, utt2spk, spk2utt)
        for utt, e in utt2spk.items():
            spk = e.value.split()[0] if e.value else ""
            if len(e.value.split()) > 1:
                c.add("utt2spk", e.lineno, f"utterance '{utt}': speaker must be one token, got '{e.value}'")
            if spk and not utt.startswith(spk):
                c.add("utt2spk", e.lineno, f"utterance id '{utt}' does not start with its speaker id "
                                           f"'{spk}' (Kaldi sorting needs speaker-prefixed ids)", "warning")
    elif text is not None and wav is not None and segments is None:
        c.same_keys("text", text, "wav.scp", wav, "utterance")  # without utt2spk, still compare these
    if segments is not None:
        _check_segments(c, segments, wav)
    if wav is not None and check_audio:
        _check_audio(c, wav)
    return c.problems


def _check_spk2utt(c: _Checker, utt2spk: dict[str, Entry], spk2utt: dict[str, Entry]) -> None:
    listed: dict[str, int] = {}
    for spk, e in spk2utt.items():
        for utt in e.value.split():
            if utt in listed:
                c.add("spk2utt", e.lineno, f"utterance '{utt}' listed twice (also on line {listed[utt]})")
                continue
            listed[utt] = e.lineno
            if utt not in utt2spk:
                c.add("spk2utt", e.lineno, f"utterance '{utt}' of speaker '{spk}' is not in utt2spk")
            elif utt2spk[utt].value != spk:
                c.add("spk2utt", e.lineno, f"utterance '{utt}' is listed under speaker '{spk}' but "
                                           f"utt2spk line {utt2spk[utt].lineno} says '{utt2spk[utt].value}'")
    for utt, e in utt2spk.items():
        if e.value and utt not in listed:
            c.add("utt2spk", e.lineno, f"utterance '{utt}' (speaker '{e.value}') is missing from spk2utt")


def _check_segments(c: _Checker, segments: dict[str, Entry], wav: dict[str, Entry] | None) -> None:
    used = set()
    for utt, e in segments.items():
        if not e.value:
            continue  # already reported as missing its value
        try:
            seg = parse_segment(c.dir / "segments", e.lineno, e.value)
        except InputError as err:
            c.add("segments", e.lineno, str(err).split(": ", 1)[1])
            continue
        used.add(seg.recording)
        if seg.start < 0:
            c.add("segments", e.lineno, f"segment '{utt}' starts before 0 ({seg.start})")
        if seg.end <= seg.start:
            c.add("segments", e.lineno, f"segment '{utt}' ends ({seg.end}) at or before its start ({seg.start})")
        if wav is not None and seg.recording not in wav:
            c.add("segments", e.lineno, f"segment '{utt}' refers to unknown recording '{seg.recording}' "
                                        f"(not in wav.scp)")
    for rec, e in (wav or {}).items():
        if rec not in used:
            c.add("wav.scp", e.lineno, f"recording '{rec}' is used by no segment", "warning")


def _check_audio(c: _Checker, wav: dict[str, Entry]) -> None:
    for rec, e in wav.items():
        if not e.value or is_pipe(e.value):
            continue
        if len(e.value.split()) > 1:
            c.add("wav.scp", e.lineno, f"'{rec}': value has spaces but is not a pipe ending in '|'")
            continue
        # kaldiio-style "file.ark:offset" points into an archive.
        m = re.fullmatch(r"(.+\.ark):\d+", e.value)
        audio = m.group(1) if m else e.value
        if not os.path.isfile(audio):
            c.add("wav.scp", e.lineno, f"audio file '{audio}' of '{rec}' does not exist")
