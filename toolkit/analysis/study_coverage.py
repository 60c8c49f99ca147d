r"""How often do the study's 95 % intervals cover the true difference with 3-5 seeds?

Usage:
    python -m toolkit.analysis.study_coverage                      # 3, 4, 5 seeds, 400 simulations each
    python -m toolkit.analysis.study_coverage --seeds 3,5 --sims 1000 --seed 7

Simulated studies with a known answer (no difference): U test utterances (3 + Poisson(5)
words, error probability p_u ~ Beta(2, 8)) are drawn once per study; each trained system
(one seed) shifts every p_u by its own b ~ N(0, seed_sd), which is what seeds do to a WER
(the mini study's seed sd is 1.2-2.3 absolute). Both conditions are the same distribution,
so the true difference is 0 and an interval covers when it contains 0.

- *unpaired*: x's and y's seeds are independent draws; Welch t vs the seeds+utterances
  percentile bootstrap (:func:`toolkit.analysis.study_stats.two_level_bootstrap`).
- *paired*: seed k of x and y share most of their shift (b_k + c, c ~ N(0, seed_sd / 3)),
  as identical step-0 weights and batches do; paired t vs the same bootstrap.

Prints one row per seed count. Seeded: the same arguments print the same table.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from toolkit.analysis.study_stats import seed_interval, two_level_bootstrap


def _errors(rng, words: np.ndarray, p: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    probs = np.clip(p[None, :] + shifts[:, None], 0.0, 1.0)  # (S, U)
    return rng.binomial(words[None, :].astype(np.int64), probs).astype(np.float64)


def simulate(n_seeds: int, n_sims: int, seed: int = 0, utts: int = 1000, seed_sd: float = 0.015,
             n_boot: int = 1000) -> dict[str, float]:
    """Coverage (share of simulations whose 95 % interval holds 0) of each interval."""
    rng = np.random.default_rng(seed)
    hits = {"welch": 0, "boot_unpaired": 0, "paired": 0, "boot_paired": 0}
    for sim in range(n_sims):
        words = 3.0 + rng.poisson(5, utts)
        p = rng.beta(2.0, 8.0, utts)
        bx, by = rng.normal(0, seed_sd, n_seeds), rng.normal(0, seed_sd, n_seeds)
        shared_y = bx + rng.normal(0, seed_sd / 3.0, n_seeds)
        for design, y_shift, t_key, b_key in (("unpaired", by, "welch", "boot_unpaired"),
                                               ("paired", shared_y, "paired", "boot_paired")):
            ex, ey = _errors(rng, words, p, bx), _errors(rng, words, p, y_shift)
            wx = dict(enumerate(100.0 * ex.sum(1) / words.sum()))
            wy = dict(enumerate(100.0 * ey.sum(1) / words.sum()))
            t = seed_interval(wx, wy, paired=design == "paired")
            hits[t_key] += t.lo <= 0.0 <= t.hi
            lo, hi = two_level_bootstrap(ex, ey, words, n_boot=n_boot, seed=sim)
            hits[b_key] += lo <= 0.0 <= hi
    return {k: v / n_sims for k, v in hits.items()}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="3,4,5", help="comma-separated seed counts per condition")
    p.add_argument("--sims", type=int, default=400, help="simulated studies per seed count")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    p.add_argument("--utts", type=int, default=1000, help="test utterances per simulated study (the studies: 1000)")
    p.add_argument("--seed-sd", type=float, default=1.5,
                   help="sd of a seed's shift of every utterance's error rate, in WER points")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    counts = [int(s) for s in args.seeds.split(",") if s]
    if not counts or min(counts) < 2 or args.sims < 1:
        print("error: --seeds needs counts >= 2 and --sims >= 1", file=sys.stderr)
        return 2
    se = 100.0 * np.sqrt(0.95 * 0.05 / args.sims)  # binomial standard error of a coverage near 95 %, in points
    print(f"Coverage of nominal 95 % intervals, true difference 0; {args.sims} simulated studies per row "
          f"(coverage se ~{se:.1f} points), {args.utts} test utterances, seed sd {args.seed_sd:g} WER points, "
          f"seed {args.seed}.")
    print("| seeds | Welch t (unpaired) | bootstrap (unpaired) | paired t (paired) | bootstrap (paired) |")
    print("|---|---|---|---|---|")
    for n in counts:
        c = simulate(n, args.sims, seed=args.seed + n, utts=args.utts, seed_sd=args.seed_sd / 100.0)
        print(f"| {n} | {100 * c['welch']:.1f} % | {100 * c['boot_unpaired']:.1f} % | "
              f"{100 * c['paired']:.1f} % | {100 * c['boot_paired']:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
