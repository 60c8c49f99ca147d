"""Statistics of a study: seed spread, paired bootstrap intervals, a matched-pairs test, power.

Per-utterance errors come from the scorer's alignments (cell.json: uttid -> [errors,
reference words]). A condition with S seeds gives an (S, U) error matrix over the U test
utterances that every cell decoded.

- :func:`utterance_bootstrap`: Bisani and Ney (2004): resample utterances with
  replacement, recompute the WER difference of the seed-averaged systems; the 2.5/97.5
  percentiles are the interval, the share of resamples below 0 the probability of
  improvement. Covers test-set sampling only (the training noise is averaged, not measured).
- :func:`two_level_bootstrap`: also resamples the seeds of each condition, so the interval
  covers training noise (seed variance) as well as the test sample. The headline interval.
- :func:`sign_flip_test`: matched-pairs permutation test of the per-utterance differences
  (two-sided p-value), the randomisation analogue of sclite's MAPSSWE.
- :func:`seed_paired_interval`: seed k of both conditions starts from the same
  initialisation and sees the same batches (the seed fixes both), so the per-seed WER
  differences are paired (common random numbers): their mean with a t interval.
- :func:`detectable_difference`: the smallest difference of means that n seeds per side
  detect with 80 % power at alpha 0.05 (two-sided, normal approximation), given the seed sd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    delta: float          # WER(x) - WER(y), absolute %, seed-averaged systems on the same utterances
    utt_ci: tuple[float, float]
    p_improve: float      # share of utterance resamples with delta < 0
    two_level_ci: tuple[float, float] | None   # None with a single seed on either side
    sign_flip_p: float
    seed_delta_sd: float | None   # standard error of the difference of seed means (Welch), None if n < 2
    utterances: int
    seed_paired: tuple[float, float, float, int] | None = None   # (mean, lo, hi, seeds) of per-seed deltas


def error_matrix(cells: list[dict], decode: str, utts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(errors (S, U), reference words (U,)) of ``decode`` over ``utts`` for the cells of one condition."""
    errs = np.array([[c["decodes"][decode]["utts"][u][0] for u in utts] for c in cells], dtype=np.float64)
    words = np.array([cells[0]["decodes"][decode]["utts"][u][1] for u in utts], dtype=np.float64)
    return errs, words


def utterance_bootstrap(ex: np.ndarray, ey: np.ndarray, words: np.ndarray, n_boot: int = 2000,
                        seed: int = 0) -> tuple[float, tuple[float, float], float]:
    rng = np.random.default_rng(seed)
    d = ex.mean(0) - ey.mean(0)
    idx = rng.integers(0, len(words), size=(n_boot, len(words)))
    deltas = 100.0 * d[idx].sum(1) / words[idx].sum(1)
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return 100.0 * d.sum() / words.sum(), (float(lo), float(hi)), float((deltas < 0).mean())


def two_level_bootstrap(ex: np.ndarray, ey: np.ndarray, words: np.ndarray, n_boot: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    U = len(words)
    deltas = np.empty(n_boot)
    for b in range(n_boot):
        sx = rng.integers(0, len(ex), len(ex))
        sy = rng.integers(0, len(ey), len(ey))
        u = rng.integers(0, U, U)
        deltas[b] = 100.0 * (ex[sx][:, u].mean(0).sum() - ey[sy][:, u].mean(0).sum()) / words[u].sum()
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)


def sign_flip_test(d: np.ndarray, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of sum(d) under random sign flips of the per-utterance differences."""
    rng = np.random.default_rng(seed)
    observed = abs(d.sum())
    hits = 0
    for start in range(0, n_perm, 1000):
        k = min(1000, n_perm - start)
        signs = rng.choice((-1.0, 1.0), size=(k, len(d)))
        hits += int((np.abs(signs @ d) >= observed - 1e-9).sum())
    return (hits + 1) / (n_perm + 1)


T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # t_{0.975}, df 1..10


def seed_paired_interval(deltas: list[float]) -> tuple[float, float, float, int] | None:
    """Mean of per-seed differences and its 95 % t interval; None with fewer than 2 seeds."""
    n = len(deltas)
    if n < 2:
        return None
    mean = float(np.mean(deltas))
    half = (T_975[n - 2] if n - 1 <= len(T_975) else 1.96) * float(np.std(deltas, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def detectable_difference(sd: float, n_per_side: int) -> float:
    """(z_0.975 + z_0.8) * sd * sqrt(2 / n): the difference 80 % power finds at alpha 0.05."""
    return (1.959964 + 0.841621) * sd * math.sqrt(2.0 / n_per_side)


def compare(x_cells: list[dict], y_cells: list[dict], decode: str) -> Comparison | None:
    """Condition x against baseline y on one decode, over the utterances both decoded."""
    utts = sorted(set.intersection(*(set(c["decodes"][decode]["utts"]) for c in x_cells + y_cells)))
    if not utts:
        return None
    ex, words = error_matrix(x_cells, decode, utts)
    ey, _ = error_matrix(y_cells, decode, utts)
    delta, utt_ci, p_improve = utterance_bootstrap(ex, ey, words)
    two = two_level_bootstrap(ex, ey, words) if len(ex) > 1 and len(ey) > 1 else None
    wx = 100.0 * ex.sum(1) / words.sum()
    wy = 100.0 * ey.sum(1) / words.sum()
    se = (math.sqrt(wx.var(ddof=1) / len(wx) + wy.var(ddof=1) / len(wy))
          if len(wx) > 1 and len(wy) > 1 else None)
    x_by_seed = {c["seed"]: float(w) for c, w in zip(x_cells, wx)}  # the per-cell WERs above, by seed
    y_by_seed = {c["seed"]: float(w) for c, w in zip(y_cells, wy)}
    paired = seed_paired_interval([x_by_seed[k] - y_by_seed[k] for k in sorted(x_by_seed.keys() & y_by_seed.keys())])
    return Comparison(delta, utt_ci, p_improve, two, sign_flip_test(ex.mean(0) - ey.mean(0)), se, len(utts), paired)
