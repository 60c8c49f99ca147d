"""Write Kaldi ark + scp pairs with kaldiio, atomically.

The ark is written under a temp name in its final directory, but the scp already points
at the final name (``<ark path>:<byte offset>``, offsets survive the rename); ``close``
renames the ark first and the scp last, so an scp that exists always refers to a
complete ark.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import kaldiio
import numpy as np

from toolkit.utils.fileio import CommitOnExit, atomic_write

COMPRESS_AUTOMATIC = 1  # Kaldi's kAutomaticMethod, what copy-feats --compress=true uses


class ArkScpWriter(CommitOnExit):
    """``with ArkScpWriter(ark, scp) as w: w.write(key, mat)``; nothing is left on failure."""

    def __init__(self, ark_path: str | os.PathLike, scp_path: str | os.PathLike, compress: bool = False):
        self.ark_path, self.scp_path = Path(ark_path), Path(scp_path)
        self.compression_method = COMPRESS_AUTOMATIC if compress else None
        self.ark_path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp_ark = tempfile.mkstemp(prefix=f".{self.ark_path.name}.", suffix=".tmp",
                                             dir=self.ark_path.parent)
        self._ark = os.fdopen(fd, "wb")
        self._scp_lines: list[str] = []

    def write(self, key: str, mat: np.ndarray) -> None:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"invalid ark key {key!r}")
        offset = self._ark.tell() + len(key.encode("utf-8")) + 1  # after "key "
        kaldiio.save_ark(self._ark, {key: mat}, compression_method=self.compression_method)
        self._scp_lines.append(f"{key} {self.ark_path}:{offset}\n")

    def close(self) -> None:
        self._ark.flush()
        os.fsync(self._ark.fileno())
        self._ark.close()
        os.chmod(self._tmp_ark, 0o644)  # mkstemp makes it private
        os.replace(self._tmp_ark, self.ark_path)
        with atomic_write(self.scp_path) as f:
            f.writelines(self._scp_lines)

    def abort(self) -> None:
        self._ark.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_ark)
