"""Token sequence store: per-utterance phoneme ids and wordpiece ids, memory-mapped.

Directory layout (docs/formats.md): ``uttids.txt``, ``phones.int32``, ``tokens.int32``
(flat little-endian int32) and ``index.npy`` (int64 (N, 4): phone offset, phone length,
token offset, token length). :class:`SeqStoreWriter` streams into ``<dir>.tmp-*`` and
renames it to ``<dir>`` on success, so a store that exists is complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from toolkit.utils.fileio import CommitOnExit, InputError, read_lines

_I32 = np.dtype("<i4")


class SeqStoreWriter(CommitOnExit):
    """``with SeqStoreWriter(dir) as w: w.add(uttid, phones, tokens)``; renamed into place on exit."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=self.out_dir.parent))
        os.chmod(self.tmp, 0o755)  # mkdtemp makes it private; the store is a normal output dir
        self._uttids = open(self.tmp / "uttids.txt", "w", encoding="utf-8")
        self._phones = open(self.tmp / "phones.int32", "wb")
        self._tokens = open(self.tmp / "tokens.int32", "wb")
        self._index: list[tuple[int, int, int, int]] = []
        self._seen: set[str] = set()
        self._np = self._nt = 0

    def add(self, uttid: str, phones, tokens) -> None:
        if not uttid or any(c.isspace() for c in uttid):
            raise ValueError(f"invalid utterance id {uttid!r}")
        if uttid in self._seen:
            raise ValueError(f"duplicate utterance id '{uttid}'")
        self._seen.add(uttid)
        ph = np.asarray(phones, dtype=_I32)  # (P,)
        tk = np.asarray(tokens, dtype=_I32)  # (K,)
        self._phones.write(ph.tobytes())
        self._tokens.write(tk.tobytes())
        self._uttids.write(uttid + "\n")
        self._index.append((self._np, len(ph), self._nt, len(tk)))
        self._np += len(ph)
        self._nt += len(tk)

    def close(self) -> None:
        for f in (self._uttids, self._phones, self._tokens):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        np.save(self.tmp / "index.npy", np.asarray(self._index, dtype=np.int64).reshape(-1, 4))
        if self.out_dir.exists():  # replace an older store: move it aside first, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.old-", dir=self.out_dir.parent))
            os.replace(self.out_dir, old / "store")
            os.replace(self.tmp, self.out_dir)
            shutil.rmtree(old)
        else:
            os.replace(self.tmp, self.out_dir)

    def abort(self) -> None:
        for f in (self._uttids, self._phones, self._tokens):
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _memmap(path: Path, n: int) -> np.ndarray:
    if n == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=_I32)
    return np.memmap(path, dtype=_I32, mode="r", shape=(n,))


class SeqStore:
    """Read a store: ``len(s)``, ``s[i] -> (uttid, phones, tokens)`` (int32, memory-mapped)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for name in ("uttids.txt", "phones.int32", "tokens.int32", "index.npy"):
            if not (self.path / name).exists():
                raise InputError(self.path / name, "missing: not a complete SeqStore (rerun dump_text)")
        self.uttids = [line for _, line in read_lines(self.path / "uttids.txt")]
        self.index = np.load(self.path / "index.npy")  # (N, 4) int64
        if self.index.shape != (len(self.uttids), 4):
            raise InputError(self.path / "index.npy", f"shape {self.index.shape} != ({len(self.uttids)}, 4)")
        n_ph = (self.path / "phones.int32").stat().st_size // 4
        n_tk = (self.path / "tokens.int32").stat().st_size // 4
        if len(self.index) and (self.index[:, 0] + self.index[:, 1]).max() > n_ph \
                or len(self.index) and (self.index[:, 2] + self.index[:, 3]).max() > n_tk:
            raise InputError(self.path, "index points past the end of phones.int32/tokens.int32")
        self._phones = _memmap(self.path / "phones.int32", n_ph)
        self._tokens = _memmap(self.path / "tokens.int32", n_tk)
        self._pos: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.uttids)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, np.ndarray]:
        po, pl, to, tl = (int(x) for x in self.index[i])
        return self.uttids[i], self._phones[po:po + pl], self._tokens[to:to + tl]

    @property
    def phone_lens(self) -> np.ndarray:
        return self.index[:, 1]  # (N,)

    @property
    def token_lens(self) -> np.ndarray:
        return self.index[:, 3]  # (N,)

    def index_of(self, uttid: str) -> int:
        """Position of ``uttid``; KeyError naming the store if absent."""
        if self._pos is None:
            self._pos = {u: i for i, u in enumerate(self.uttids)}
        try:
            return self._pos[uttid]
        except KeyError:
            raise KeyError(f"{self.path}: no utterance '{uttid}'") from None
