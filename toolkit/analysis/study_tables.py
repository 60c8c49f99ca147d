"""The study report's per-condition tables: held-out words, weight sweeps, dev WER per epoch."""
from __future__ import annotations

import json
import math
import statistics

from toolkit.analysis.heldout_data import describe
from toolkit.analysis.study_cells import dev_curve
from toolkit.analysis.study_grid import sweep_score


def fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def heldout_table(grid, by_cond, decodes, data: dict | None = None):
    """Held-out words (grids on that corpus): recall, false alarms, WER of the utterances holding one;
    ``data``: the corpus's :func:`toolkit.analysis.heldout_data.summarize`, described first."""
    tests = [d for d in decodes if "dev" not in d]
    if not any("heldout" in c["decodes"].get(d, {}) for cs in by_cond.values() for c in cs for d in tests):
        return []
    lines = ["## Held-out words (mean ± sd over seeds)", "",
             "Recall: hits / occurrences of the held-out words in the references (%); false alarms: "
             "held-out words in the hypotheses that are not correct there; WER of the utterances that hold one.", "",
             *heldout_occurrences(by_cond, tests), "", *((describe(data) + [""]) if data else []),
             "| condition | " + " | ".join(f"{d} recall | false alarms | WER" for d in tests) + " |",
             "|---|" + "---|---|---|" * len(tests)]
    for name in grid["conditions"]:
        if name not in by_cond:
            continue
        cols = []
        for d in tests:
            h = [c["decodes"][d]["heldout"] for c in by_cond[name] if "heldout" in c["decodes"][d]]
            cols += [mean_sd([x["recall"] for x in h]), mean_sd([float(x["false_alarms"]) for x in h]),
                     mean_sd([x["wer"] for x in h])]
        lines.append(f"| {name} | " + " | ".join(cols) + " |")
    return lines + [""]


def heldout_occurrences(by_cond, tests) -> list[str]:
    """What recall is out of: the held-out words' occurrences in each test set's references (the same
    in every comparable cell; a disagreement, which means other references, is shown, not hidden)."""
    parts = []
    for d in tests:
        seen = {(h["occurrences"], h.get("utts"), len(h.get("per_utt", {})) or None)
                for cs in by_cond.values() for c in cs
                if (h := c["decodes"].get(d, {}).get("heldout")) and "occurrences" in h}
        if len(seen) > 1:
            parts.append(f"{d}: the cells disagree ({', '.join(str(s[0]) for s in sorted(seen))} occurrences)")
        elif seen:
            occ, utts, total = seen.pop()
            parts.append(f"{d} {occ}" + (f" in {utts}" if utts is not None else "")
                         + (f" of {total} utterances" if total else (" utterances" if utts is not None else "")))
    return [f"Occurrences in the references: {'; '.join(parts)}."] if parts else []


def sweep_table(grid, sweep_cells, by_cond):
    """Per swept condition: each value's seed-1 dev WER (the choosing score) and the choice."""
    swept = {n: c["sweep"] for n, c in grid["conditions"].items() if (c or {}).get("sweep")}
    if not swept:
        return []
    lines = ["## Weight sweeps", "",
             "Seed 1 once per value; the value with the lowest mean of full-context and streaming WER on the "
             "sweep's dev set is chosen (ties: the first listed) and its cell becomes the condition's seed 1.", "",
             "| condition | swept key | value | dev WER (mean of both modes) | chosen |", "|---|---|---|---|---|"]
    for name, sweep in swept.items():
        scores = {}
        for c in sweep_cells:
            if c["condition"].split("@", 1)[0] == name:
                scores[c["condition"].split("@", 1)[1]] = sweep_score(c, sweep["by"])
        chosen = {c.get("from_sweep", "").split("@", 1)[-1] for c in by_cond.get(name, []) if c.get("from_sweep")}
        for value in sweep["values"]:
            score = scores.get(str(value))
            mark = "yes" if str(value) in chosen else ("-" if chosen or score is None else "(sweep unfinished)")
            lines.append(f"| {name} | {sweep['key']} | {value} | "
                         f"{'not yet run' if str(value) not in scores else fmt(score)} | {mark} |")
    return lines + [""]


def dev_curves(grid, by_cond, sweep_cells):
    """Per condition, one seed's greedy dev WER after each epoch (the training log's validation)."""
    curves = {}  # label -> (seed, {epoch: WER}); a swept condition with no seed yet shows a sweep cell
    for name in grid["conditions"]:
        swept = [c for c in sweep_cells if c["condition"].split("@", 1)[0] == name]
        for c in by_cond.get(name, []) + swept:
            curve = dev_curve(c)
            if curve:
                curves[c["condition"]] = (c["seed"], dict(curve))
                break
    if not curves:
        return []
    epochs = sorted({e for _, curve in curves.values() for e in curve})
    lines = ["## Dev WER per epoch (greedy, the training log's validation; one seed per condition)", "",
             "| epochs done | " + " | ".join(f"{n} (seed {s})" for n, (s, _) in curves.items()) + " |",
             "|---|" + "---|" * len(curves)]
    for e in epochs:
        lines.append(f"| {e + 1} | " + " | ".join(fmt(curve.get(e)) for _, curve in curves.values()) + " |")
    return lines + [""]


def aligner_section(cells):
    """The explicit alignment model the cells that use it recorded (conditions M and E): its
    own phone error rate and how many utterances it could not align, per distinct aligner."""
    seen = {}  # one line per distinct aligner report, with the cells that used it
    for c in sorted(cells, key=lambda c: (c["condition"], c["seed"])):
        rep = c.get("aligner")
        if rep and not c.get("from_sweep"):
            key = json.dumps(rep, sort_keys=True)
            seen.setdefault(key, (rep, []))[1].append(f"{c['condition']}/seed{c['seed']}")
    if not seen:
        return []
    lines = ["## The explicit aligner (conditions that read its alignments)", "",
             "A phoneme CTC model trained on the paired training data alone (`local/train_aligner.sh`), frozen; "
             "its Viterbi path gives each paired utterance's per-phoneme durations. Phone error rate: greedy "
             "CTC output against the reference phones. Not aligned: utterances CTC cannot align (fewer "
             "frames than phones plus repeats); those get the proportional split of their frames instead.", ""]
    for rep, users in seen.values():
        per = rep.get("phone_error_rate") or {}
        sets = rep.get("sets") or {}
        unaligned = ", ".join(f"{name} {s.get('unaligned', '?')} of {s.get('utts', '?')}" for name, s in sorted(sets.items()))
        minutes = rep.get("wall_seconds")
        lines.append(
            f"- {rep.get('epochs', '?')} epochs"
            + (f", {minutes / 60:.1f} min" if minutes else "")
            + (f"; phone error rate {per['per']:.2f} % ({per['errors']} errors / {per['phones']} phones, "
               f"{per['utts']} utterances)" if "per" in per else "; phone error rate not recorded")
            + f"; not aligned: {unaligned or 'not recorded'}. Used by {', '.join(users)}.")
    return lines + [""]
