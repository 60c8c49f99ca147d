"""Checkpoints: atomic save, newest-loadable resume, rotation, averaging, RNG capture.

A checkpoint holds only tensors, numbers, strings, lists and dicts so that it loads with
``torch.load(weights_only=True)``; RNG states are stored as tensors. Files are
``<exp>/checkpoints/ckpt-<step>.pt``, written to a temp name and renamed, so a killed
run never leaves a half-written file under the final name. A damaged file (disk
trouble, a copy cut short) is reported and the previous checkpoint is used instead.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from toolkit.utils.fileio import atomic_write

log = logging.getLogger(__name__)
CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")


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


def save_checkpoint(ckpt_dir: str | os.PathLike, step: int, state: dict, keep_last: int = 0) -> Path:
    """Write ``ckpt-<step>.pt`` atomically; then keep only the newest ``keep_last`` (0: all)."""
    path = checkpoint_path(ckpt_dir, step)
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    if keep_last > 0:
        for _, old in list_checkpoints(ckpt_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_latest(ckpt_dir: str | os.PathLike) -> tuple[dict | None, Path | None]:
    """The newest checkpoint that loads; unreadable ones are logged (with the reason) and skipped."""
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load_checkpoint(path), path
        except Exception as e:  # truncated zip, bad pickle, I/O error: all mean "unusable"
            log.error("checkpoint %s is unreadable (%s: %s); falling back to the previous one",
                      path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
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
