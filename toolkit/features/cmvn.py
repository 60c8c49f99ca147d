"""Global CMVN: Kaldi stats (float64 (2, D+1)) and their application.

Row 0 holds per-dim sums with the frame count in the last column, row 1 the sums of
squares (last column 0), exactly as ``compute-cmvn-stats`` writes them.
"""
from __future__ import annotations

import os
from typing import Iterable

import kaldiio
import numpy as np

from toolkit.utils.fileio import InputError, atomic_write


def accumulate_stats(feats: Iterable[np.ndarray]) -> np.ndarray:
    """Kaldi CMVN stats ``(2, D+1)`` float64 over ``(T, D)`` matrices (float64 sums)."""
    stats = None
    for mat in feats:
        x = np.asarray(mat, dtype=np.float64)  # (T, D)
        if x.ndim != 2 or (stats is not None and x.shape[1] != stats.shape[1] - 1):
            raise ValueError(f"feature matrix of shape {x.shape} does not match the earlier ones")
        if stats is None:
            stats = np.zeros((2, x.shape[1] + 1))
        stats[0, :-1] += x.sum(0)
        stats[1, :-1] += np.square(x).sum(0)
        stats[0, -1] += len(x)
    if stats is None or stats[0, -1] == 0:
        raise ValueError("no feature frames to compute CMVN stats from")
    return stats


def write_stats(path: str | os.PathLike, stats: np.ndarray) -> None:
    """Binary Kaldi matrix (no key), like ``compute-cmvn-stats scp:... cmvn.ark``."""
    with atomic_write(path, "wb") as f:
        kaldiio.save_mat(f, np.asarray(stats, dtype=np.float64))


class GlobalCMVN:
    """``(feats - mean) / std`` per dimension; works on numpy arrays and torch tensors ``(..., D)``."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32)  # (D,)
        self.std = np.asarray(std, dtype=np.float32)  # (D,)
        self._torch: dict = {}  # (device, dtype) -> (mean, std) tensors

    @classmethod
    def from_stats(cls, stats: np.ndarray, var_floor: float = 1e-10) -> "GlobalCMVN":
        """Mean and std from Kaldi stats; the floor keeps a constant dimension finite."""
        stats = np.asarray(stats, dtype=np.float64)
        count = stats[0, -1]
        mean = stats[0, :-1] / count
        var = np.maximum(stats[1, :-1] / count - mean ** 2, var_floor)
        return cls(mean, np.sqrt(var))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GlobalCMVN":
        try:
            stats = kaldiio.load_mat(str(path))
        except Exception as e:
            raise InputError(path, f"cannot read CMVN stats: {e}") from None
        if stats.ndim != 2 or stats.shape[0] != 2 or stats[0, -1] <= 0:
            raise InputError(path, f"not Kaldi global CMVN stats (shape {stats.shape}, count {stats[0, -1]})")
        return cls.from_stats(stats)

    def __call__(self, feats):
        if isinstance(feats, np.ndarray):
            return ((feats - self.mean) / self.std).astype(feats.dtype, copy=False)
        key = (feats.device, feats.dtype)  # torch tensor
        if key not in self._torch:
            import torch
            self._torch[key] = tuple(torch.as_tensor(a, dtype=feats.dtype, device=feats.device)
                                     for a in (self.mean, self.std))
        mean, std = self._torch[key]
        return (feats - mean) / std
