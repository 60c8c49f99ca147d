"""The study report's comparisons: one verdict line per (comparison, decode), and their details.

For each (condition x, baseline y) of the grid's ``comparisons`` and each test decode, the
headline is the 95 % t interval over seeds of x - y (toolkit/analysis/study_stats.py):
paired t when seed k of x and y start from identical weights (toolkit/analysis/study_cells.py
decides: recorded init digests, else the same seed and model config), Welch t otherwise. The
verdict says which side is better only when the interval excludes 0; otherwise "no difference
shown", with the difference 80 % power would find, and the equivalence test (TOST at the
grid's margin): "equivalent within ±m" only when the whole 90 % interval lies inside ±m.
Grids on the held-out-word corpus get the same lines for held-out word recall (higher is
better).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from toolkit.analysis.study_cells import seeds_paired
from toolkit.analysis.study_stats import Comparison, SeedInterval, compare, seed_interval

DEFAULT_MARGIN = 1.0  # absolute WER / recall points: the equivalence margin unless the grid names one

# (condition, baseline) -> the claim it tests; "equal": the claim is that they do not differ
CLAIMS = {("C", "B"): ("the best-alignment consistency loss lowers WER over the same training without it", "better"),
          ("C", "D"): ("aligning along the best path beats the upsampling (uniform) heuristic", "better"),
          ("C", "E"): ("the best path does as well as an explicit alignment model", "equal"),
          ("B", "A"): ("text-only training helps when paired speech is scarce", "better"),
          ("C", "J"): ("the consistency loss replaces JOIST's upsampling heuristic", "better"),
          ("C", "Jp"): ("no upsampling + best alignment beats upsampling + frame-wise consistency", "better"),
          ("C", "M"): ("the best path replaces Maestro's explicit alignment and duration models", "better"),
          ("C", "Crep"): ("the best alignment needs no upsampling", "equal"),
          ("C_noctc", "B_noctc"): ("the consistency gain holds without the auxiliary CTC", "better"),
          ("C_pruned", "C"): ("toolkit check: the pruned HAT loss trains as well as the full one", "equal")}


@dataclass(frozen=True)
class Verdicts:
    lines: list[str]     # the report's "## Verdicts" bullet lines
    details: list[str]   # the rows of the comparisons table


def mode_label(decode: str) -> str:
    """'full_test_clean' -> 'full-context, test_clean'."""
    mode, _, test_set = decode.partition("_")
    return f"{'full-context' if mode == 'full' else mode}, {test_set}" if test_set else decode


def test_decodes(decodes: list[str]) -> list[str]:
    return [d for d in decodes if "dev" not in d] or decodes


def verdict(x: str, y: str, iv: SeedInterval, margin: float, lower_is_better: bool, kind: str) -> str:
    """The words of one verdict: who is better, or no difference shown (+ power and TOST)."""
    if iv.hi < 0 or iv.lo > 0:
        x_wins = (iv.hi < 0) == lower_is_better
        return f"{x if x_wins else y} better"
    equivalent, (lo90, hi90) = iv.tost(margin)
    text = f"no difference shown (80 % power at |Δ| ≥ {iv.detectable():.2f})"
    if equivalent:
        return text + f"; equivalent within ±{margin:.1f} (TOST: 90 % [{lo90:+.2f}, {hi90:+.2f}])"
    if kind == "equal" or abs(iv.mean) < margin:
        return text + f"; not shown equivalent within ±{margin:.1f} (TOST: 90 % [{lo90:+.2f}, {hi90:+.2f}])"
    return text


def _line(x, y, what, label, iv, margin, lower_is_better, kind, n_x, n_y):
    if iv is None:
        return f"- {x} vs {y}, {label}: {what} — only {n_x}/{n_y} seeds, no interval (needs 2 per side)."
    seeds = f"{iv.seeds[0]} seeds" if iv.method == "paired t" else f"{iv.seeds[0]}/{iv.seeds[1]} seeds"
    return (f"- {x} vs {y}, {label}: {what} {iv.mean:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}] ({iv.method}, {seeds}): "
            f"{verdict(x, y, iv, margin, lower_is_better, kind)}.")


def _heldout_recall(cells: list[dict], decode: str) -> dict[int, float]:
    return {c["seed"]: c["decodes"][decode]["heldout"]["recall"] for c in cells
            if "heldout" in c["decodes"].get(decode, {})}


def verdicts(grid: dict, by_cond: dict[str, list[dict]], decodes: list[str], skip_missing: bool = False) -> Verdicts:
    """``skip_missing``: no line for a comparison a side of which has no cell here."""
    margin = float(grid.get("equivalence_margin", DEFAULT_MARGIN))
    lines, details = [], []
    for x, y in grid.get("comparisons", []):
        claim, kind = CLAIMS.get((x, y), ("", "better"))
        head = f"**{x} vs {y}**" + (f" (claim tested: {claim})" if claim else "")
        if x not in by_cond or y not in by_cond:
            if skip_missing:
                continue
            missing = [n for n in (x, y) if n not in by_cond]
            lines.append(f"- {head}: not yet run ({' and '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no finished cell).")
            continue
        paired, why = seeds_paired(by_cond[x], by_cond[y])
        lines.append(f"- {head}: {'paired' if paired else 'unpaired'} seeds ({why}).")
        nx, ny = len(by_cond[x]), len(by_cond[y])
        for d in test_decodes(decodes):
            cmp_ = compare(by_cond[x], by_cond[y], d, paired)
            if cmp_ is None:
                continue
            lines.append("  " + _line(x, y, "Δ WER", mode_label(d), cmp_.seed, margin, True, kind, nx, ny))
            details.append(_detail_row(x, y, d, cmp_, by_cond, margin))
            rx, ry = _heldout_recall(by_cond[x], d), _heldout_recall(by_cond[y], d)
            if rx and ry:
                iv = seed_interval(rx, ry, paired)
                lines.append("  " + _line(x, y, "Δ held-out recall", mode_label(d), iv, margin, False, kind,
                                          len(rx), len(ry)))
    return Verdicts(lines, details)


def _detail_row(x, y, d, cmp_: Comparison, by_cond, margin) -> str:
    iv = cmp_.seed
    sds = [statistics.stdev([c["decodes"][d]["wer"] for c in by_cond[k]]) if len(by_cond[k]) > 1 else None
           for k in (x, y)]
    sd = " / ".join("-" if s is None else f"{s:.2f}" for s in sds)
    if iv is None:
        t_cols = "- | - | - | -"
    else:
        equivalent, (lo90, hi90) = iv.tost(margin)
        t_cols = (f"{iv.method} [{iv.lo:+.2f}, {iv.hi:+.2f}] | {iv.df:.1f} | {iv.detectable():.2f} | "
                  f"[{lo90:+.2f}, {hi90:+.2f}] {'inside' if equivalent else 'not inside'} ±{margin:.1f}")
    two = f"[{cmp_.two_level_ci[0]:+.2f}, {cmp_.two_level_ci[1]:+.2f}]" if cmp_.two_level_ci else "-"
    return (f"| {x} vs {y} | {d} | {len(by_cond[x])}/{len(by_cond[y])} | {cmp_.delta:+.2f} | {t_cols} | {sd} | "
            f"{two} | [{cmp_.utt_ci[0]:+.2f}, {cmp_.utt_ci[1]:+.2f}] | {cmp_.sign_flip_p:.3f} |")


DETAILS_HEAD = [
    "| condition vs baseline | decode | seeds | Δ | t over seeds, 95 % | df | detectable (80 % power) "
    "| TOST 90 % | seed sd (x / y) | seeds+utterances bootstrap 95 % | utterances bootstrap 95 % | p (sign flip) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|"]
