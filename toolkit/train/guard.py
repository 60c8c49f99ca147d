"""What keeps one experiment dir to one training run, and a full disk from being a riddle.

- :class:`ExperimentLock`: a POSIX record lock (``fcntl.lockf``) on ``<exp>/train.lock``,
  held for the whole run by rank 0 (not ``flock``: a flock is shared with every process
  forked while it is held, e.g. data-loader workers, and outlives a SIGKILLed holder until
  they exit; a record lock belongs to the one process). A second training into the same dir (a second ``run.sh --stage 5``, a
  study cell started twice) is refused at once, naming the pid, host and start time of
  the run that holds it. The kernel drops the lock when the holder dies (even by
  SIGKILL), so a stale lock file never blocks a rerun. The lock is per host: on a cluster
  file system two hosts can both take it (NFS) — the lock guards one machine.
- :func:`remove_stale_temp_files`: the ``.ckpt-N.pt.*.tmp`` files that a run killed
  while writing a checkpoint leaves; removed at start, under the lock (no writer can be
  running), and counted in the log.
- :func:`no_space_message`: a checkpoint write that hits ENOSPC says "no space left on
  <dir>" (with the free space), not torch's ``inline_container.cc ... unexpected pos``.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from toolkit.utils.config import ConfigError

log = logging.getLogger(__name__)
LOCK_NAME = "train.lock"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class ExperimentLock:
    """``with ExperimentLock(exp):`` -- exclusive use of ``exp`` for training, or ConfigError."""

    def __init__(self, exp: str | os.PathLike):
        self.path = Path(exp) / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> "ExperimentLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that has not said"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is being trained by another run ({holder}): wait for it, "
                              f"or stop it (kill <pid>) before training here again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # the file stays (removing it would race a new holder)
            os.close(self.fd)         # closing releases the lock
            self.fd = None


def remove_stale_temp_files(ckpt_dir: str | os.PathLike) -> int:
    """Delete the temp files of checkpoint writes that never finished; returns how many."""
    d = Path(ckpt_dir)
    stale = sorted(d.glob(".ckpt-*.pt.*.tmp")) if d.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    if stale:
        log.info("removed %d unfinished checkpoint temp file(s) in %s (a run killed while saving): %s",
                 len(stale), d, ", ".join(p.name for p in stale))
    return len(stale)


def no_space_message(directory: str | os.PathLike, what: str) -> str:
    """'no space left on <dir>' for a failed write of ``what``, with the free space there."""
    try:
        free = f"{shutil.disk_usage(directory).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"no space left on {directory} ({free}) while writing {what}; nothing already saved was lost: "
            "free some space, then rerun with --resume")
