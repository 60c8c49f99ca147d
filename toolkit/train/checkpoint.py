"""Checkpoints: atomic save, newest-loadable resume, rotation, averaging, RNG capture.

A checkpoint holds only tensors, numbers, strings, lists and dicts so that it loads with
``torch.load(weights_only=True)``; RNG states are stored as tensors. Files are
``<exp>/checkpoints/ckpt-<step>.pt``, written to a temp name and renamed, so a killed
run never leaves a half-written file under the final name. A damaged file (disk
trouble, a copy cut short) is reported and the previous checkpoint is used instead;
when no checkpoint at all is readable, resuming stops with an error and changes nothing.

Rotation (``keep_last``) orders checkpoints by when they were written, not by step
number, so it never removes a checkpoint newer than the ones it keeps (a stale
high-numbered file from an earlier run cannot push out the run's own checkpoints).
Unreadable checkpoints never take a kept slot: they are renamed ``ckpt-<step>.pt.unreadable``
(out of resume's and averaging's way, kept for inspection), never deleted.
"""
from __future__ import annotations

import logging
import os
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from toolkit.train.guard import NO_SPACE, no_space_message
from toolkit.utils.fileio import InputError, atomic_write

log = logging.getLogger(__name__)
CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")
UNREADABLE_SUFFIX = ".unreadable"


def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) generator states as tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(internal, dtype=torch.int64), "python_version": int(version),
        "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss), "numpy_cached": float(cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt-{step}.pt"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` sorted by step, oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / n) for n in os.listdir(d) if (m := CKPT_RE.match(n))]
    return sorted(found)


class _WriteErrors:
    """A file that remembers the OSError its write raised: torch.save reports that as a
    RuntimeError ("inline_container.cc ... unexpected pos"), which says nothing of the cause."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def save_checkpoint(ckpt_dir: str | os.PathLike, step: int, state: dict, keep_last: int = 0) -> Path:
    """Write ``ckpt-<step>.pt`` atomically; then :func:`rotate` to ``keep_last`` (0: keep all).

    A full disk (ENOSPC, EDQUOT) raises OSError "no space left on <dir> ...": the temp file
    is removed and the checkpoints already written are untouched.
    """
    path = checkpoint_path(ckpt_dir, step)
    try:
        with atomic_write(path, "wb") as f:
            sink = _WriteErrors(f)
            try:
                torch.save(state, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise
    except OSError as e:
        if e.errno in NO_SPACE:
            raise OSError(e.errno, no_space_message(path.parent, path.name)) from None
        raise
    if keep_last > 0:
        rotate(ckpt_dir, keep_last)
    return path


def looks_readable(path: str | os.PathLike) -> bool:
    """A cheap check without unpickling: the file is a zip (torch's format) whose directory,
    at its end, is intact. Catches truncation and garbage, not a flipped bit inside."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _written_at(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return -1


def rotate(ckpt_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Keep the ``keep_last`` most recently written readable checkpoints; returns them, newest first.

    Older readable ones are deleted; unreadable ones, whatever their age, are renamed
    ``*.unreadable`` and reported, so nothing newer than a kept checkpoint is ever deleted.
    """
    by_write = sorted(list_checkpoints(ckpt_dir), key=lambda sp: (_written_at(sp[1]), sp[0]), reverse=True)
    kept: list[Path] = []
    for _, path in by_write:
        if not looks_readable(path):
            aside = path.with_name(path.name + UNREADABLE_SUFFIX)
            os.replace(path, aside)
            log.warning("checkpoint %s is unreadable: renamed to %s (not kept, not used)", path, aside.name)
        elif len(kept) < keep_last:
            kept.append(path)
        else:
            path.unlink(missing_ok=True)
    return kept


def load_checkpoint(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_latest(ckpt_dir: str | os.PathLike) -> tuple[dict | None, Path | None]:
    """The newest (by step) checkpoint that loads; unreadable ones are logged and skipped.

    ``(None, None)`` when there is no checkpoint; InputError when there are some and none
    loads (nothing is changed: a fresh start here would overwrite the run's history).
    """
    found = list_checkpoints(ckpt_dir)
    reasons = []
    for step, path in reversed(found):
        try:
            return load_checkpoint(path), path
        except Exception as e:  # truncated zip, bad pickle, I/O error: all mean "unusable"
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            reasons.append(f"{path.name} ({reason})")
            log.error("checkpoint %s is unreadable (%s); falling back to the previous one", path, reason)
    if found:
        raise InputError(ckpt_dir, f"none of the {len(found)} checkpoint(s) is readable ({'; '.join(reasons[:3])}"
                                   f"{'; ...' if len(reasons) > 3 else ''}); nothing was changed. Restore them, or "
                                   "start from scratch with a new --exp")
    return None, None


def average_state_dicts(paths: list[str | os.PathLike]) -> dict:
    """Element-wise mean of the ``model`` entries of checkpoints (or plain state_dicts).

    Floating tensors are averaged in float64 and cast back; integer tensors (counters)
    are taken from the last checkpoint.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for p in paths:
        try:
            sd = load_checkpoint(p)
        except Exception as e:
            raise ValueError(f"{p}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        sd = sd.get("model", sd)
        if avg and set(sd) != set(avg):
            raise ValueError(f"{p}: parameter names differ from {paths[0]}")
        for k, v in sd.items():
            if v.is_floating_point():
                avg[k] = avg[k] + v.double() if k in avg else v.double()
            else:
                avg.setdefault(k, v)
            last[k] = v
    return {k: (avg[k] / len(paths)).to(last[k].dtype) if last[k].is_floating_point() else last[k]
            for k in last}
