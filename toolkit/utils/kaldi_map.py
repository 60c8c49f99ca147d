"""Kaldi ``key value`` files (text, wav.scp, utt2spk, spk2utt, segments, feats.scp...).

One line per key, the key up to the first whitespace, the value the rest. Files are
sorted in C locale (byte order of the UTF-8 key), keys unique.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from toolkit.utils.fileio import InputError, atomic_write, read_lines


def c_sort_key(key: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort``: byte order of the UTF-8 encoding."""
    return key.encode("utf-8")


def iter_kaldi_map(path: str | os.PathLike, allow_empty_value: bool = False):
    """Yield ``(lineno, key, value)``; an empty line or missing value raises InputError."""
    for lineno, line in read_lines(path):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            raise InputError(path, "empty line", lineno)
        key = parts[0]
        value = parts[1] if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            raise InputError(path, f"key '{key}' has no value", lineno)
        yield lineno, key, value


def read_kaldi_map(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi map into an insertion-ordered dict; duplicate keys raise InputError."""
    out: dict[str, str] = {}
    for lineno, key, value in iter_kaldi_map(path, allow_empty_value):
        if key in out:
            raise InputError(path, f"duplicate key '{key}'", lineno)
        out[key] = value
    return out


def write_kaldi_map(path: str | os.PathLike, mapping: Mapping[str, str] | Iterable[tuple[str, str]],
                    sort: bool = True) -> None:
    """Write ``key value`` lines atomically, C-sorted by default."""
    items = list(mapping.items()) if isinstance(mapping, Mapping) else list(mapping)
    if sort:
        items.sort(key=lambda kv: c_sort_key(kv[0]))
    with atomic_write(path) as f:
        for key, value in items:
            if not key or any(c.isspace() for c in key):
                raise ValueError(f"{path}: invalid key {key!r} (empty or contains whitespace)")
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


@dataclass(frozen=True)
class Segment:
    recording: str
    start: float  # seconds
    end: float  # seconds


def parse_segment(path: str | os.PathLike, lineno: int, value: str) -> Segment:
    """``<recording> <start> <end>`` (the part after the utterance id) -> Segment."""
    fields = value.split()
    if len(fields) != 3:
        raise InputError(path, f"expected '<utt> <recording> <start> <end>', got {len(fields) + 1} fields", lineno)
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise InputError(path, f"start/end times must be numbers, got '{fields[1]}' '{fields[2]}'", lineno) from None
    return Segment(fields[0], start, end)
