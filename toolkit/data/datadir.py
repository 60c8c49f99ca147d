"""A Kaldi data directory as one frozen value: load, select utterances, save.

Files: ``wav.scp`` (recording -> path, or ``cmd |``), ``text``, ``utt2spk``, ``spk2utt``,
optional ``segments`` (utt -> recording start end, seconds) and ``utt2lang``, plus other
per-utterance maps (``utt2dur``, ``utt2num_frames``, ``feats.scp``, ``utt2uniq``) carried
along by subset/combine/split. ``load`` parses; consistency is ``validate_data_dir``'s job.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, NamedTuple

from toolkit.utils.kaldi_map import Segment, c_sort_key, parse_segment, read_kaldi_map, write_kaldi_map
from toolkit.utils.fileio import InputError, read_lines

REQUIRED_FILES = ("wav.scp", "text", "utt2spk")
EXTRA_UTT_FILES = ("utt2dur", "utt2num_frames", "feats.scp", "utt2uniq")
KNOWN_FILES = REQUIRED_FILES + ("spk2utt", "segments", "utt2lang", "lang2unit") + EXTRA_UTT_FILES


class Entry(NamedTuple):
    """One line of a Kaldi map as written: 1-based line number, key, value, raw text."""
    lineno: int
    key: str
    value: str
    raw: str


def read_entries(path: str | os.PathLike) -> list[Entry]:
    """Every line of a Kaldi map, duplicates and blank lines included (blank: key '').

    For checkers and fixers that must see a broken file as it is; non-UTF-8 raises
    InputError naming the line.
    """
    out = []
    for lineno, line in read_lines(path):
        parts = line.strip().split(maxsplit=1)
        key = parts[0] if parts else ""
        out.append(Entry(lineno, key, parts[1] if len(parts) > 1 else "", line))
    return out


def is_pipe(wav_value: str) -> bool:
    """True for a ``wav.scp`` value that is a shell command writing audio (``cmd |``)."""
    return wav_value.rstrip().endswith("|")


def utt2spk_to_spk2utt(utt2spk: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Speaker -> its utterances, both C-sorted."""
    groups: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=c_sort_key):
        groups.setdefault(utt2spk[utt], []).append(utt)
    return {spk: tuple(groups[spk]) for spk in sorted(groups, key=c_sort_key)}


def format_seconds(x: float) -> str:
    """Seconds as Kaldi writes them: fixed point, no trailing zeros (1.5, 0, 12.34)."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class DataDir:
    path: Path
    wav_scp: dict[str, str]  # recording id (= utt id without segments) -> path or "cmd |"
    text: dict[str, str]  # utt -> transcript (may be empty: validation reports it)
    utt2spk: dict[str, str]
    spk2utt: dict[str, tuple[str, ...]]
    segments: dict[str, Segment] | None = None
    utt2lang: dict[str, str] | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)  # file name -> per-utt map

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Read a data dir; spk2utt is derived from utt2spk when absent.

        Raises InputError (file and line) on a missing required file, a duplicate key, a
        missing value or a malformed segments line. Does not check cross-file consistency.
        """
        path = Path(path)
        if not path.is_dir():
            raise InputError(path, "not a data directory")
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise InputError(path / name, "missing (a data dir needs wav.scp, text, utt2spk)")
        spk2utt = None
        if (path / "spk2utt").is_file():
            spk2utt = {k: tuple(v.split()) for k, v in read_kaldi_map(path / "spk2utt").items()}
        utt2spk = read_kaldi_map(path / "utt2spk")
        segments = None
        if (path / "segments").is_file():
            seg_path = path / "segments"
            segments = {}
            for lineno, line in read_lines(seg_path):
                parts = line.split(maxsplit=1)
                if not parts:
                    raise InputError(seg_path, "empty line", lineno)
                if parts[0] in segments:
                    raise InputError(seg_path, f"duplicate key '{parts[0]}'", lineno)
                segments[parts[0]] = parse_segment(seg_path, lineno, parts[1] if len(parts) > 1 else "")
        optional = {name: read_kaldi_map(path / name) for name in ("utt2lang",) + EXTRA_UTT_FILES
                    if (path / name).is_file()}
        return cls(path=path, wav_scp=read_kaldi_map(path / "wav.scp"),
                   text=read_kaldi_map(path / "text", allow_empty_value=True), utt2spk=utt2spk,
                   spk2utt=spk2utt if spk2utt is not None else utt2spk_to_spk2utt(utt2spk),
                   segments=segments, utt2lang=optional.pop("utt2lang", None), extra=optional)

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids (utt2spk keys), C-sorted."""
        return sorted(self.utt2spk, key=c_sort_key)

    def __len__(self) -> int:
        return len(self.utt2spk)

    def recording_of(self, utt: str) -> str:
        return self.segments[utt].recording if self.segments is not None else utt

    def subset(self, utts: Iterable[str]) -> "DataDir":
        """The same dir restricted to ``utts`` (unknown ids raise ValueError naming them)."""
        keep = set(utts)
        unknown = sorted(keep - self.utt2spk.keys(), key=c_sort_key)
        if unknown:
            raise ValueError(f"{self.path}: {len(unknown)} utterance(s) not in utt2spk: {' '.join(unknown[:5])}")

        def pick(m):
            return None if m is None else {k: v for k, v in m.items() if k in keep}

        utt2spk = pick(self.utt2spk)
        recordings = {self.recording_of(u) for u in keep}
        return replace(self, wav_scp={k: v for k, v in self.wav_scp.items() if k in recordings},
                       text=pick(self.text), utt2spk=utt2spk, spk2utt=utt2spk_to_spk2utt(utt2spk),
                       segments=pick(self.segments), utt2lang=pick(self.utt2lang),
                       extra={name: pick(m) for name, m in self.extra.items()})

    def write_files(self, path: str | os.PathLike) -> None:
        """Write every file of this dir into ``path`` (each atomically, C-sorted)."""
        path = Path(path)
        write_kaldi_map(path / "wav.scp", self.wav_scp)
        write_kaldi_map(path / "text", self.text)
        write_kaldi_map(path / "utt2spk", self.utt2spk)
        write_kaldi_map(path / "spk2utt", {s: " ".join(u) for s, u in self.spk2utt.items()})
        if self.segments is not None:
            write_kaldi_map(path / "segments", {u: f"{s.recording} {format_seconds(s.start)} {format_seconds(s.end)}"
                                                for u, s in self.segments.items()})
        if self.utt2lang is not None:
            write_kaldi_map(path / "utt2lang", self.utt2lang)
        for name, mapping in self.extra.items():
            write_kaldi_map(path / name, mapping)

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` as a whole: built beside it, then swapped in (old one removed)."""
        path = Path(path)
        replace_dir(path, self.write_files)
        return path


def replace_dir(path: Path, build, may_hold=lambda name: False) -> None:
    """Call ``build(tmp_dir)`` then put tmp_dir in place of ``path`` (never half-written).

    Refuses to replace an existing directory holding anything but data-dir files, split
    dirs, ``.backup`` and names ``may_hold(name)`` accepts, so a wrong destination (say
    ``data/``) is never wiped.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(path, "exists and is not a directory")
        foreign = [p.name for p in path.iterdir()
                   if p.name not in KNOWN_FILES and p.name != ".backup" and not p.name.startswith("split")
                   and not may_hold(p.name)]
        if foreign:
            raise InputError(path, f"refusing to replace: it holds non-data-dir entries {sorted(foreign)[:5]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a data dir is as shareable as mkdir's
    old = None
    try:
        build(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rename(path, old / path.name)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.rename(old / path.name, path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
