"""sclite ``.trn`` transcripts: one ``words (uttid)`` line per utterance."""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from toolkit.utils.fileio import InputError, atomic_write, read_lines


def parse_trn_line(line: str) -> tuple[str, str]:
    """``'a b (spk-1)' -> ('spk-1', 'a b')``; raises ValueError when there is no ``(id)``."""
    body = line.rstrip()
    if not body.endswith(")") or "(" not in body:
        raise ValueError("expected 'words (uttid)'")
    start = body.rindex("(")
    uttid = body[start + 1:-1].strip()
    if not uttid or any(c.isspace() for c in uttid):
        raise ValueError(f"bad utterance id {body[start:]!r}")
    return uttid, " ".join(body[:start].split())


def read_trn(path: str | os.PathLike) -> dict[str, str]:
    """Read a .trn file into ``{uttid: words}`` in file order; blank lines are skipped."""
    out: dict[str, str] = {}
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        try:
            uttid, words = parse_trn_line(line)
        except ValueError as e:
            raise InputError(path, f"{e}: {line!r}", lineno) from None
        if uttid in out:
            raise InputError(path, f"duplicate utterance '{uttid}'", lineno)
        out[uttid] = words
    return out


def write_trn(path: str | os.PathLike, texts: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write ``words (uttid)`` lines atomically, in the given order."""
    items = texts.items() if isinstance(texts, Mapping) else texts
    with atomic_write(path) as f:
        for uttid, words in items:
            if not uttid or any(c.isspace() for c in uttid) or "(" in uttid or ")" in uttid:
                raise ValueError(f"{path}: invalid utterance id {uttid!r}")
            words = " ".join(words.split())
            f.write(f"{words} ({uttid})\n" if words else f" ({uttid})\n")
