"""Repair a Kaldi data dir in place (Kaldi's fix_data_dir.sh).

Sorts every file, drops blank/duplicate/empty lines and bad segments, keeps only the
utterances present in every per-utterance file (and recordings some kept utterance
uses), and rebuilds spk2utt from utt2spk. Every removed line is appended, as it was,
to ``<dir>/.backup/<file>`` before the files are rewritten (each atomically).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.datadir import EXTRA_UTT_FILES, KNOWN_FILES, read_entries, utt2spk_to_spk2utt
from toolkit.utils.kaldi_map import parse_segment, write_kaldi_map
from toolkit.utils.fileio import InputError, atomic_write


@dataclass(frozen=True)
class FixReport:
    path: Path
    before: int  # utterances in utt2spk (or spk2utt) before fixing
    kept: int  # utterances kept
    removed: dict[str, dict[str, int]]  # file -> reason -> number of lines removed

    def __str__(self) -> str:
        lines = [f"{self.path}: kept {self.kept} of {self.before} utterances"]
        for name, reasons in self.removed.items():
            detail = ", ".join(f"{n} {why}" for why, n in reasons.items())
            lines.append(f"  {name}: removed {sum(reasons.values())} line(s) ({detail}); "
                         f"see {self.path / '.backup' / name}")
        return "\n".join(lines)


def _line_problem(name: str, key: str, value: str, path: Path, lineno: int) -> str | None:
    """Why a single line cannot be kept, or None."""
    if not value:
        return "empty transcript" if name == "text" else "no value"
    if name == "utt2spk" and len(value.split()) != 1:
        return "speaker not one token"
    if name == "segments":
        try:
            seg = parse_segment(path, lineno, value)
        except InputError:
            return "malformed segment"
        if seg.start < 0 or seg.end <= seg.start:
            return "bad segment times"
    return None


def fix_data_dir(path: str | os.PathLike) -> FixReport:
    """Fix the data dir at ``path`` in place; InputError if it lacks wav.scp, text or speakers."""
    d = Path(path)
    for name in ("wav.scp", "text"):
        if not (d / name).is_file():
            raise InputError(d / name, "missing; fix_data_dir cannot invent it")
    removed: dict[str, list[tuple[str, str]]] = {}  # file -> [(raw line, reason)]
    kept: dict[str, dict[str, str]] = {}  # file -> key -> value, first good line wins
    raw_of: dict[tuple[str, str], str] = {}
    for name in KNOWN_FILES:
        if not (d / name).is_file():
            continue
        keep: dict[str, str] = {}
        for e in read_entries(d / name):
            why = ("empty line" if not e.key else "duplicate key" if e.key in keep
                   else _line_problem(name, e.key, e.value, d / name, e.lineno))
            if why:
                removed.setdefault(name, []).append((e.raw, why))
            else:
                keep[e.key] = e.value
                raw_of[name, e.key] = e.raw
        kept[name] = keep

    if "utt2spk" not in kept:
        if "spk2utt" not in kept:
            raise InputError(d / "utt2spk", "missing, and there is no spk2utt to rebuild it from")
        kept["utt2spk"] = {}
        for spk, utts in kept["spk2utt"].items():
            for utt in utts.split():
                kept["utt2spk"].setdefault(utt, spk)
    before = len(kept["utt2spk"])

    segments = kept.get("segments")
    if segments is not None:
        for utt, value in list(segments.items()):
            if value.split()[0] not in kept["wav.scp"]:
                del segments[utt]
                removed.setdefault("segments", []).append((raw_of["segments", utt], "unknown recording"))
    utt_files = ["utt2spk", "text", "segments" if segments is not None else "wav.scp", "utt2lang", *EXTRA_UTT_FILES]
    utts = set(kept["utt2spk"])
    for name in utt_files:
        if name in kept:
            utts &= kept[name].keys()
    recordings = {segments[u].split()[0] for u in utts} if segments is not None else utts

    for name in [*utt_files, "wav.scp"]:
        if name not in kept:
            continue
        wanted = recordings if name == "wav.scp" else utts
        why = "recording used by no kept utterance" if name == "wav.scp" and segments is not None \
            else "utterance not in every file"
        for key in [k for k in kept[name] if k not in wanted]:
            del kept[name][key]
            if (name, key) in raw_of:  # derived utt2spk lines have no original to back up
                removed.setdefault(name, []).append((raw_of[name, key], why))
    spk2utt = {spk: " ".join(u) for spk, u in utt2spk_to_spk2utt(kept["utt2spk"]).items()}
    if "spk2utt" in kept:
        new_lines = {f"{spk} {u}" for spk, u in spk2utt.items()}
        for spk in kept["spk2utt"]:
            raw = raw_of["spk2utt", spk]
            if " ".join(raw.split()) not in new_lines:
                removed.setdefault("spk2utt", []).append((raw, "rebuilt from utt2spk"))
    kept["spk2utt"] = spk2utt

    _back_up(d, removed)
    for name, mapping in kept.items():
        write_kaldi_map(d / name, mapping)
    return FixReport(d, before, len(utts),
                     {name: dict(Counter(why for _, why in lines)) for name, lines in removed.items()})


def _back_up(d: Path, removed: dict[str, list[tuple[str, str]]]) -> None:
    """Append removed lines to .backup/<file> (older backups kept), atomically."""
    for name, lines in removed.items():
        target = d / ".backup" / name
        old = target.read_text(encoding="utf-8") if target.is_file() else ""
        with atomic_write(target) as f:
            f.write(old + "".join(raw + "\n" for raw, _ in lines))
