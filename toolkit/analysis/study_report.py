"""STUDY.md from a study's finished cells alone: verdicts, tables, intervals, plots.

Only cells of one code and data version are compared (the version most cells have); any
other cell is listed in the appendix and left out of every table. Every number and every
setting the report states (decode method, beam, blank penalty, averaged checkpoints, the seed
of the over-training table) is read from the cells (``cell.json`` and the files archived
beside it, toolkit/analysis/study_cells.py); a grid with few or no finished cells gives a
report that says which cells have not run. Verdicts and statistics:
toolkit/analysis/study_verdicts.py.
"""
from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from toolkit.analysis.study_cells import decode_setup
from toolkit.analysis.study_grid import cells_of, choose_sweep
from toolkit.analysis.study_plots import plot_over_training, plot_wer
from toolkit.analysis.study_tables import aligner_section, dev_curves, fmt, heldout_table, mean_sd, sweep_table
from toolkit.analysis.study_verdicts import DEFAULT_MARGIN, DETAILS_HEAD, verdicts
from toolkit.utils.config import ConfigError
from toolkit.utils.fileio import atomic_write


def version_key(cell: dict) -> tuple:
    v = cell["versions"]
    return v["code"]["code"], v["code"]["dirty"], v["data"]


def decode_names(cells: list[dict]) -> list[str]:
    """Decodes every cell has, test sets first, full-context before streaming."""
    names = set.intersection(*(set(c["decodes"]) for c in cells)) if cells else set()
    return sorted(names, key=lambda n: ("dev" in n, not n.startswith("full"), n))


def _of_this_corpus(grid: dict, cell: dict) -> bool:
    """A grid on the held-out-word corpus (``--heldout-words`` in its corpus_opts) reports only
    cells scored for held-out words, any other grid only cells that were not: the two corpora
    share condition names (B, C), and their cells must not be mixed, whatever their number."""
    heldout_grid = "--heldout-words" in str(grid.get("corpus_opts", ""))
    return heldout_grid == any("heldout" in d for d in cell["decodes"].values())


def _swept(grid: dict, name: str) -> str | None:
    """The swept condition a sweep cell's name (<condition>@<value>) belongs to."""
    base = name.split("@", 1)[0]
    return base if "@" in name and (grid["conditions"].get(base) or {}).get("sweep") else None


@dataclass(frozen=True)
class LinkedStudy:
    """Another recipe's grid (``linked:`` in the grid file) and that recipe's finished cells."""
    where: str          # e.g. "egs/multilingual/conf/study.yaml"
    grid: dict
    cells: list[dict]


@dataclass(frozen=True)
class _Compared:
    cells: list[dict]        # the grid's cells of its corpus, every version
    used: list[dict]         # those of the compared (most common) version
    sweep_cells: list[dict]  # sweep cells (<condition>@<value>) of that version
    groups: list             # (version, count), most common first
    by_cond: dict
    decodes: list[str]


def _compared(grid: dict, cells: list[dict]) -> _Compared:
    """The grid's cells, split by version: the most common code/data version is compared."""
    cells = [c for c in cells if _of_this_corpus(grid, c)]
    sweep_cells = [c for c in cells if _swept(grid, c["condition"])]
    cells = [c for c in cells if c["condition"] in grid["conditions"]]  # this grid's cells only
    groups = Counter(version_key(c) for c in cells + sweep_cells).most_common()
    ref_version = groups[0][0] if groups else None
    used = [c for c in cells if version_key(c) == ref_version]
    sweep_cells = [c for c in sweep_cells if version_key(c) == ref_version]
    used += _chosen_sweep_cells(grid, used, sweep_cells)
    return _Compared(cells, used, sweep_cells, groups, _by_condition(used), decode_names(used))


def _chosen_sweep_cells(grid: dict, used: list[dict], sweep_cells: list[dict]) -> list[dict]:
    """A finished sweep's chosen cell as its condition's seed 1, where the runner has not yet
    recorded it so (it does when it starts the condition's next seed): the runner's choice
    (:func:`toolkit.analysis.study_grid.choose_sweep`); a sweep cell without the dev decode
    it is chosen by leaves its condition without one here."""
    out, recs = [], {c["condition"]: c for c in sweep_cells}
    for name, cond in grid["conditions"].items():
        sweep = (cond or {}).get("sweep")
        if not sweep or any(c["condition"] == name and c.get("from_sweep") for c in used):
            continue
        try:
            choice = choose_sweep(name, sweep, lambda value: recs.get(f"{name}@{value}"))
        except ConfigError:
            continue
        if choice is not None:
            value, rec = choice
            out.append({**rec, "condition": name, "from_sweep": f"{name}@{value}"})
    return out


def _left_out(k: _Compared) -> int:
    """Cells of another code/data version than the compared one."""
    return sum(1 for c in k.cells if version_key(c) != k.groups[0][0])


def _trained(k: _Compared) -> list[dict]:
    """Every cell that trained a model once (a sweep's chosen cell is also its condition's seed 1)."""
    return [c for c in k.used if not c.get("from_sweep")] + k.sweep_cells


def write_study_report(grid: dict, cells: list[dict], out: Path, command: str = "",
                       linked: list[LinkedStudy] = (), heldout_data: dict | None = None) -> Path:
    """``heldout_data``: data version -> :func:`toolkit.analysis.heldout_data.summarize` (the
    report describes the held-out words from the one of its cells' data version, if given)."""
    out = Path(out)
    k = _compared(grid, cells)
    cells, used, sweep_cells, groups, by_cond, decodes = k.cells, k.used, k.sweep_cells, k.groups, k.by_cond, k.decodes
    ref_version = groups[0][0] if groups else None
    order = [n for n in grid["conditions"] if n in by_cond]
    lines = [f"# Study: {grid.get('about', '')}", ""]
    lines += _header(grid, k, command)
    lines += _finished(grid, used, sweep_cells)
    found = verdicts(grid, by_cond, decodes)
    lines += _verdict_section(grid, found.lines, linked)
    lines += _wer_table(grid, by_cond, decodes, out.stem + "_wer.png" if used else None)
    lines += heldout_table(grid, by_cond, decodes, (heldout_data or {}).get(ref_version[2]) if ref_version else None)
    lines += sweep_table(grid, sweep_cells, by_cond)
    lines += dev_curves(grid, by_cond, sweep_cells)
    lines += _schedule(grid, used)
    lines += aligner_section(used + sweep_cells)
    if found.details:
        lines += ["## Comparisons in detail", "", _DETAILS_ABOUT, ""] + DETAILS_HEAD + found.details + [""]
    lines += _layers(by_cond, out, order)
    for version, _ in groups[1:]:  # cells of other code/data: compared among themselves only
        other = _by_condition([c for c in cells if version_key(c) == version])
        if len(other) < 2:
            continue
        others = [c for cs in other.values() for c in cs]
        lines += [f"## Cells of another version (code {version[0]}{'+' + version[1] if version[1] else ''}, "
                  f"data {version[2]}): compared only with each other", ""]
        lines += _wer_table(grid, other, decode_names(others), None, only_run=True)
        lines += verdicts(grid, other, decode_names(others), skip_missing=True).lines + [""]
    lines += _appendix(cells + sweep_cells, ref_version, decodes)
    if used:
        plot_wer(by_cond, order, decodes, out.with_name(out.stem + "_wer.png"))
    with atomic_write(out) as f:
        f.write("\n".join(lines) + "\n")
    return out


_DETAILS_ABOUT = (
    "Δ = WER(condition) − WER(baseline), absolute %, of the seed-averaged per-utterance errors. "
    "*t over seeds* is the headline of every verdict (paired t over per-seed differences when the seeds "
    "are real pairs, Welch t otherwise; df as used). *detectable* is the true difference this t test "
    "finds with 80 % power at α 0.05 (noncentral t). *TOST 90 %*: the interval two one-sided tests at 5 % "
    "use; equivalence needs it inside the margin. Secondary, not used for verdicts: the *seeds+utterances* "
    "percentile bootstrap (resamples each side's seeds and the utterances; with 3-5 seeds it covers less "
    "than its nominal 95 %, 83-92 % in simulation: `python -m toolkit.analysis.study_coverage`), "
    "the *utterances* bootstrap "
    "(Bisani and Ney: test-set noise only) and the matched-pairs sign-flip test over utterances.")


def cell_run_s(cell: dict) -> tuple[float, bool]:
    """(seconds the cell's runs took, exact?). Cells recorded before ``run_s`` existed give their
    last run's time when they were resumed (not exact: the appendix marks it ``+``), since their
    ``wall_s`` counts from the first start, hours between sessions included."""
    if "run_s" in cell:
        return cell["run_s"], True
    wall, last = cell.get("wall_s", 0.0), cell.get("wall_s_last_run")
    if last is None or wall - last < 300:  # one run (a few minutes of set-up before it at most)
        return wall, True
    return last, False


def _by_condition(cells: list[dict]) -> dict[str, list[dict]]:
    by_cond: dict[str, list[dict]] = defaultdict(list)
    for c in sorted(cells, key=lambda c: c["seed"]):
        by_cond[c["condition"]].append(c)
    return by_cond


def _setup_sentence(used: list[dict]) -> str:
    """What every cell did after training, as the cells record it (or their RESULTS.md says)."""
    setups = {tuple(sorted(decode_setup(c).items())) for c in used}
    if len(setups) != 1:
        return ("Each cell trains the recipe's model with one condition's overrides and one seed, averages "
                "checkpoints, decodes both modes and scores; the cells' decode settings differ or are not "
                "recorded (see each cell's RESULTS.md). WER in %.")
    s = dict(next(iter(setups)))
    avg = (f"averages its last {s['num_avg']} checkpoints" if s.get("num_avg") else
           "averages its last checkpoints (how many is not recorded in these cells: the recipe's "
           "`--num-avg`)")
    if s.get("method") == "beam":
        dec = f"beam search, beam {s['beam']}, blank penalty {s['blank_penalty']:g}"
    elif s.get("method"):
        dec = f"{s['method']} search, blank penalty {s['blank_penalty']:g}"
    else:
        dec = "the decode settings are not recorded in these cells"
    return (f"Each cell trains the recipe's model with one condition's overrides and one seed, {avg}, "
            f"decodes both modes ({dec}; from the cells' records or RESULTS.md) and scores; WER in %.")


def _header(grid, k: _Compared, command):
    total, trained = len(cells_of(grid)), _trained(k)
    if not trained:
        return [f"Generated by `python -m toolkit.bin.study report` from 0 finished cells (of {total} in the grid).",
                f"Command: `{command or 'local/study.sh'}`.", ""]
    commits = sorted({c["versions"]["code"]["commit"][:10] for c in trained})
    machines = sorted({c.get("machine", "?") for c in trained})
    times = [cell_run_s(c) for c in trained]
    hours = sum(s for s, _ in times) / 3600
    at_least = "" if all(exact for _, exact in times) else "at least "
    versions = trained[0]["versions"]
    return [f"Generated by `python -m toolkit.bin.study report` from {len(trained)} finished cells "
            f"(of {total} in the grid; {_left_out(k)} of another code/data version left out).",
            f"Command: `{command or 'local/study.sh'}`. Code: commit(s) {', '.join(commits)} "
            f"(code hash {versions['code']['code']}), data version {versions['data']}. "
            f"Machine: {', '.join(machines)}. Compute: {at_least}{hours:.1f} h of cell wall time.", "",
            _setup_sentence(trained), ""]


def _finished(grid, used, sweep_cells):
    """One line: which of the grid's cells finished (in the compared version) and which not."""
    done = {(c["condition"], c["seed"]) for c in used + sweep_cells}
    label = lambda c: f"{c.condition.partition('@')[2]}@{c.seed}" if "@" in c.condition else str(c.seed)  # noqa: E731
    parts = []
    for name in grid["conditions"]:
        mine = cells_of(grid, [name])
        todo = [label(c) for c in mine if (c.condition, c.seed) not in done]
        n_ok = len(mine) - len(todo)
        parts.append(f"{name} {n_ok}/{len(mine)}" + ("" if not todo else " (not yet run)" if not n_ok
                                                     else f" (not yet: {', '.join(todo)})"))
    n_done = sum(1 for c in cells_of(grid) if (c.condition, c.seed) in done)
    return [f"Finished cells: {n_done} of {len(cells_of(grid))} — " + "; ".join(parts) +
            " (seeds; a sweep cell is value@seed).", ""]


def _linked_lines(link: LinkedStudy) -> list[str]:
    """The linked grid's verdict lines, from its own cells of its compared version."""
    k = _compared(link.grid, link.cells)
    total, n = len(cells_of(link.grid)), len(_trained(k))
    head = f"- Linked grid `{link.where}` ({link.grid.get('about', '')}): {n} of {total} cells finished"
    if k.used:
        v = k.used[0]["versions"]
        head += (f" (code hash {v['code']['code']}, data version {v['data']}; "
                 f"{_left_out(k)} of another version left out)")
    return [head + "."] + ["  " + ln for ln in verdicts(link.grid, k.by_cond, k.decodes).lines]


def _verdict_section(grid, verdict_lines, linked=()):
    margin = float(grid.get("equivalence_margin", DEFAULT_MARGIN))
    linked_lines = [ln for link in linked for ln in _linked_lines(link)]
    not_tested = ("Not tested here: anything about 960 h of LibriSpeech." if linked else
                  "Not tested by this grid: other corpora and languages (a grid states their comparisons "
                  "under `linked:`) and anything about 960 h of LibriSpeech.")
    return ["## Verdicts", "",
            "Each line: Δ = condition − baseline (absolute %) with its 95 % t interval over seeds — *paired t* "
            "where seed k of both conditions starts from identical weights (recorded init digests, else the "
            "same seed and model config), *Welch t* otherwise (e.g. a condition with extra parameters: its "
            "seed k is not the baseline's seed k). A side is called better only when the interval excludes 0. "
            f"Equivalence is claimed only by TOST: the whole 90 % interval inside ±{margin:.1f}.", ""] + \
        (verdict_lines or ["- The grid names no comparison."]) + linked_lines + \
        ["", *_multiplicity(verdict_lines + linked_lines), not_tested, ""]


def _multiplicity(lines) -> list[str]:
    """How many 'better' calls chance alone would make among this many 95 % intervals."""
    tested = [ln for ln in lines if re.search(r"\((paired|Welch) t, ", ln)]
    if not tested:
        return []
    better = sum(ln.rstrip().endswith(" better.") for ln in tested)
    return [f"Multiplicity: {len(tested)} interval{'s' if len(tested) != 1 else ''} above, {better} calling a side "
            f"better; were there no difference anywhere, about {len(tested) / 20:.1f} would by chance (5 % each, "
            f"no correction): a lone 'better' whose interval ends near 0 is weak evidence.", ""]


def _schedule(grid, used) -> list[str]:
    """The grid's ``schedule:`` as the runner resolved it (from the same cells and rule)."""
    from toolkit.analysis.study import schedule_choice
    sched = grid.get("schedule")
    if not sched:
        return []
    rule = f"the first epoch whose greedy dev WER is within {sched['within']} of the run's best"
    got = schedule_choice(grid, None, records=used)
    if got is None:
        return [f"Schedule: `{sched['key']}` for every other cell comes from {sched['from']}'s per-epoch dev "
                f"curve ({rule}); {sched['from']} has not finished, so no other cell has run.", ""]
    return [f"Schedule: `{got['key']}={got['value']}` for every cell but {got['from']}'s, by the rule fixed "
            f"before it ran ({rule}): {got['from']} seed {got['seed']}'s best is {got['best']:.2f} after "
            f"{got['best_epoch']} epochs; after {got['value']}: {got['at_value']:.2f}.", ""]


def _wer_table(grid, by_cond, decodes, plot_name, only_run=False):
    cols = decodes or ["WER"]  # no finished cell yet: one column of "not yet run"
    lines = ["## WER by condition (mean ± sd over seeds)", "",
             "| condition | what | seeds | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for name, cond in grid["conditions"].items():
        if name in by_cond:
            cs = by_cond[name]
            lines.append(f"| {name} | {(cond or {}).get('about', '')} | {len(cs)} | "
                         + " | ".join(mean_sd([c["decodes"][d]["wer"] for c in cs]) for d in decodes) + " |")
        elif not only_run:
            lines.append(f"| {name} | {(cond or {}).get('about', '')} | 0 | "
                         + " | ".join("not yet run" for _ in cols) + " |")
    if by_cond and decodes:
        first = next(iter(by_cond.values()))[0]
        lines += ["", "Reference words per set: " + ", ".join(f"{d} {first['decodes'][d]['words']}"
                                                              for d in decodes) + "."]
    lines.append("")
    if plot_name:
        lines += [f"![WER by condition]({plot_name}) (dots: seeds; bars: ± 1 sd)", ""]
    return lines


def _layer_rows(cells: list[dict]) -> dict[str, dict[str, list[float]]]:
    """layer -> quantity -> values over cells, from each cell's stage-8 analysis (first set)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        if not c.get("analysis"):
            continue
        analysis = next(iter(c["analysis"].values()))
        for layer in analysis["layers"]:
            for k in ("best", "uniform", "mismatched", "matched_ratio"):
                rows[layer["layer"]][k].append(layer[k])
    return rows


def _layers(by_cond, out: Path, order: list[str]):
    if not any(c.get("analysis") or c.get("analysis_over_training") for cs in by_cond.values() for c in cs):
        return []
    lines = ["## Per-layer consistency", "",
             "Mean squared distance between per-frame normalised speech and text representations along "
             "the best alignment, the uniform one and the best alignment to a *mismatched* transcript; "
             "best/mismatched is the per-utterance ratio (1: the layer cannot tell its own transcript "
             "from another's). Mean over seeds (sd over seeds in brackets for the ratio).", ""]
    for name in order:  # every condition whose cells carry a stage-8 analysis
        rows = _layer_rows(by_cond[name])
        if not rows:
            continue
        lines += [f"**{name}** ({len(by_cond[name])} seeds)", "",
                  "| layer | best | uniform | mismatched | best/mismatched |", "|---|---|---|---|---|"]
        for layer, q in rows.items():
            ratio = q["matched_ratio"]
            sd = f" ({statistics.stdev(ratio):.3f})" if len(ratio) > 1 else ""
            lines.append(f"| {layer} | {statistics.mean(q['best']):.2f} | {statistics.mean(q['uniform']):.2f} | "
                         f"{statistics.mean(q['mismatched']):.2f} | {statistics.mean(ratio):.3f}{sd} |")
        lines.append("")
    over, seeds = {}, {}  # the cells that ran the analysis over training (the grid's checkpoint_analysis)
    for name in order:
        for c in by_cond[name]:
            if c.get("analysis_over_training") and name not in over:
                over[name], seeds[name] = c["analysis_over_training"], c["seed"]
    if over:
        lines += ["### Over training (best/mismatched per layer; step 0 = the untrained initialisation)", ""]
        for name, steps in over.items():
            layer_names = [r["layer"] for r in next(iter(steps.values()))["layers"]]
            lines += [f"**{name}**, seed {seeds[name]}", "", "| step | " + " | ".join(layer_names) + " |",
                      "|---|" + "---|" * len(layer_names)]
            for step in sorted(steps, key=int):
                vals = {r["layer"]: r["matched_ratio"] for r in steps[step]["layers"]}
                lines.append(f"| {step} | " + " | ".join(fmt(vals.get(n), 3) for n in layer_names) + " |")
            lines.append("")
        plot_over_training(over, out.with_name(out.stem + "_layers.png"))
        lines += [f"![per-layer consistency over training]({out.stem}_layers.png)", ""]
    return lines


def _appendix(cells, ref_version, decodes):
    if not cells:
        return []
    lines = ["## Appendix: every cell", "",
             "wall: the minutes the cell's runs took (`24.1+`: resumed in a later session, only its last run "
             "recorded); `= C@0.02`: the sweep cell chosen as the condition's seed 1.", "",
             "| cell | " + " | ".join(decodes) + " | wall (min) | commit | comparable | last validation |",
             "|---|" + "---|" * (len(decodes) + 4)]
    def wall(c):
        if c.get("from_sweep"):
            return f"= {c['from_sweep']}"
        s, exact = cell_run_s(c)
        return f"{s / 60:.1f}" + ("" if exact else "+")
    for c in sorted(cells, key=lambda c: (c["condition"], c["seed"])):
        last = c["train_log_tail"][-1].split("validation: ", 1)[-1] if c.get("train_log_tail") else "-"
        lines.append(f"| {c['condition']}/seed{c['seed']} | "
                     + " | ".join(fmt(c["decodes"].get(d, {}).get("wer")) for d in decodes)
                     + f" | {wall(c)} | {c['versions']['code']['commit'][:10]} | "
                     + f"{'yes' if version_key(c) == ref_version else 'no'} | {last} |")
    lines += ["", "Rerun one cell: `cd egs/mini && ./run.sh --stage 5 --stop-stage 8 --tag study/<condition>/seed<k> "
              "--train-args \"--set seed=<k> --set <the condition's overrides>\"` (the cell's config.yaml and "
              "run.sh hold the exact call).", ""]
    return lines
