"""Statistics of a study: seed intervals (t), equivalence (TOST), power (noncentral t), bootstraps.

Per-utterance errors come from the scorer's alignments (cell.json: uttid -> [errors,
reference words]). A condition with S seeds gives an (S, U) error matrix over the U test
utterances that every cell decoded.

The headline is a t interval over seeds (:func:`seed_interval`), because a percentile bootstrap
that resamples 3-5 seeds does not allow for how poorly so few seeds estimate their own spread:
in simulation (``python -m toolkit.analysis.study_coverage``: 1000 utterances, seed sd 1.5 WER
points, 400 studies a row) it covered 89.8 / 90.2 / 92.5 % of a nominal 95 % with 3 / 4 / 5
seeds, Welch t 97.2 / 97.2 / 96.5 % (with a seed sd of 3 points: bootstrap 82.8 / 86.8 % at 3 / 5
seeds). It is

- *paired t* over the per-seed differences when seed k of both conditions is a real pair
  (identical step-0 weights; the caller decides, see toolkit/analysis/study_cells.py), with
  n - 1 df;
- *Welch t* on the two sets of per-seed values otherwise (Welch-Satterthwaite df).

- :meth:`SeedInterval.tost`: two one-sided tests at 5 %: "equivalent within +-m" only when the
  whole 90 % t interval lies inside (-m, +m); an interval that straddles zero shows nothing.
- :meth:`SeedInterval.detectable`: the true difference the same t test finds with 80 % power
  at alpha 0.05 (two-sided, noncentral t with this df and standard error).
- :func:`utterance_bootstrap`: Bisani and Ney (2004): resample utterances with replacement,
  recompute the WER difference of the seed-averaged systems; covers test-set sampling only.
- :func:`two_level_bootstrap`: also resamples each side's seeds (secondary; under-covers).
- :func:`sign_flip_test`: matched-pairs permutation test of the per-utterance differences
  (two-sided p-value), the randomisation analogue of sclite's MAPSSWE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolkit.analysis.student_t import detectable_difference, t_ppf


@dataclass(frozen=True)
class SeedInterval:
    """A difference x - y over seeds with its t interval (``level``, two-sided)."""
    method: str           # "paired t" or "Welch t"
    mean: float
    se: float             # standard error of ``mean``
    df: float
    seeds: tuple[int, int]  # seeds used on each side (paired: the common seeds, on both)
    level: float = 0.95

    def interval(self, level: float | None = None) -> tuple[float, float]:
        half = t_ppf(0.5 + (level or self.level) / 2.0, self.df) * self.se
        return self.mean - half, self.mean + half

    @property
    def lo(self) -> float:
        return self.interval()[0]

    @property
    def hi(self) -> float:
        return self.interval()[1]

    def tost(self, margin: float, alpha: float = 0.05) -> tuple[bool, tuple[float, float]]:
        """(equivalent within +-margin, the 1 - 2 alpha interval) by two one-sided t tests."""
        lo, hi = self.interval(1.0 - 2.0 * alpha)
        return (-margin < lo and hi < margin), (lo, hi)

    def detectable(self, power: float = 0.8, alpha: float = 0.05) -> float:
        return detectable_difference(self.se, self.df, power, alpha)


def welch_df(var_x: float, n_x: int, var_y: float, n_y: int) -> float:
    """Welch-Satterthwaite degrees of freedom of x̄ - ȳ (n_x + n_y - 2 when both variances are 0)."""
    a, b = var_x / n_x, var_y / n_y
    if a + b == 0:
        return float(n_x + n_y - 2)
    return (a + b) ** 2 / (a * a / (n_x - 1) + b * b / (n_y - 1))


def seed_interval(x: dict[int, float], y: dict[int, float], paired: bool,
                  level: float = 0.95) -> SeedInterval | None:
    """x - y over seeds (seed -> value): paired t over the common seeds when ``paired`` and at
    least 2 seeds are common, else Welch t; None with fewer than 2 seeds on a side."""
    common = sorted(x.keys() & y.keys())
    if paired and len(common) >= 2:
        d = np.array([x[k] - y[k] for k in common])
        return SeedInterval("paired t", float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))),
                            float(len(d) - 1), (len(d), len(d)), level)
    if len(x) < 2 or len(y) < 2:
        return None
    vx, vy = np.var(list(x.values()), ddof=1), np.var(list(y.values()), ddof=1)
    return SeedInterval("Welch t", float(np.mean(list(x.values())) - np.mean(list(y.values()))),
                        float(math.sqrt(vx / len(x) + vy / len(y))), welch_df(vx, len(x), vy, len(y)),
                        (len(x), len(y)), level)


@dataclass(frozen=True)
class Comparison:
    delta: float          # WER(x) - WER(y), absolute %, seed-averaged systems on the same utterances
    seed: SeedInterval | None   # the headline: t over seeds; None with a single seed on a side
    utt_ci: tuple[float, float]
    p_improve: float      # share of utterance resamples with delta < 0
    two_level_ci: tuple[float, float] | None   # None with a single seed on either side
    sign_flip_p: float
    utterances: int


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
                        seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the WER difference when each side's seeds (rows) and the
    utterances (columns) are resampled with replacement: resample b weights utterance u by
    its multiplicity and seed s by its count, so no (S, U) copy is made per resample."""
    rng = np.random.default_rng(seed)
    U, (Sx, Sy) = len(words), (len(ex), len(ey))
    deltas = []
    for start in range(0, n_boot, 250):
        k = min(250, n_boot - start)
        cu = rng.multinomial(U, np.full(U, 1.0 / U), size=k).astype(np.float64)     # (k, U)
        cx = rng.multinomial(Sx, np.full(Sx, 1.0 / Sx), size=k).astype(np.float64)  # (k, Sx)
        cy = rng.multinomial(Sy, np.full(Sy, 1.0 / Sy), size=k).astype(np.float64)  # (k, Sy)
        diff = (cx @ ex) / Sx - (cy @ ey) / Sy                                       # (k, U)
        deltas.append(100.0 * (diff * cu).sum(1) / (cu @ words))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(np.concatenate(deltas), [tail, 100.0 - tail])
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


def compare(x_cells: list[dict], y_cells: list[dict], decode: str, paired: bool) -> Comparison | None:
    """Condition x against baseline y on one decode, over the utterances both decoded;
    ``paired``: seed k of x and of y start from identical weights (see :func:`seed_interval`)."""
    utts = sorted(set.intersection(*(set(c["decodes"][decode]["utts"]) for c in x_cells + y_cells)))
    if not utts:
        return None
    ex, words = error_matrix(x_cells, decode, utts)
    ey, _ = error_matrix(y_cells, decode, utts)
    delta, utt_ci, p_improve = utterance_bootstrap(ex, ey, words)
    two = two_level_bootstrap(ex, ey, words) if len(ex) > 1 and len(ey) > 1 else None
    wx = {c["seed"]: float(w) for c, w in zip(x_cells, 100.0 * ex.sum(1) / words.sum())}
    wy = {c["seed"]: float(w) for c, w in zip(y_cells, 100.0 * ey.sum(1) / words.sum())}
    return Comparison(delta, seed_interval(wx, wy, paired), utt_ci, p_improve, two,
                      sign_flip_test(ex.mean(0) - ey.mean(0)), len(utts))
