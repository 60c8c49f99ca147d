"""The study report: verdict lines, held-out recall, weight sweeps, missing cells, settings from cells."""
import json
import math
import os
import time

import numpy as np
import pytest
import yaml

from toolkit.analysis import study
from toolkit.analysis.study_report import write_study_report

UTTS, WORDS = 100, 10  # 1000 reference words per set: WER = errors / 10


def _utts(errors: int) -> dict:
    return {f"u{u:03d}": [errors // UTTS + (u < errors % UTTS), WORDS] for u in range(UTTS)}


def _decode(errors: int, recall: float | None = None) -> dict:
    d = {"wer": errors / 10.0, "words": UTTS * WORDS, "errors": errors, "utts": _utts(errors)}
    if recall is not None:
        d["heldout"] = {"recall": recall, "false_alarms": 2, "wer": 30.0, "occurrences": 50, "hits": 0}
    return d


def cell(cond, seed, errors: dict, recall: dict | None = None, **extra) -> dict:
    return {"condition": cond, "seed": seed, "about": "", "overrides": [],
            "versions": {"code": {"commit": "abc", "code": "c1", "dirty": ""}, "data": "d1"},
            "decodes": {d: _decode(e, (recall or {}).get(d)) for d, e in errors.items()}, "analysis": {},
            "train_log_tail": [], **extra}


GRID = {"about": "t", "seeds": [1, 2, 3], "comparisons": [["C", "B"], ["P", "C"]],
        "conditions": {"B": {"about": "base"}, "C": {"about": "paper"}, "P": {"about": "extra parameters"}}}
HELDOUT_GRID = {**GRID, "corpus_opts": "--heldout-words 60"}  # its cells carry held-out word scores
B_FULL, C_FULL = (230, 250, 240), (220, 238, 231)      # C lower by 1.0, 1.2, 0.9 in every seed
B_STREAM, C_STREAM = (320, 340, 300), (330, 320, 315)  # +1.0, -2.0, +1.5: no sign


def study_cells(with_p=True):
    cells = []
    for k in (1, 2, 3):
        same = f"init-seed{k}"  # B and C: identical step-0 weights; P: extra parameters, other digests
        cells.append(cell("B", k, {"full_test": B_FULL[k - 1], "streaming_test": B_STREAM[k - 1]},
                          {"full_test": 10.0 + k, "streaming_test": 5.0}, init_digest=same))
        cells.append(cell("C", k, {"full_test": C_FULL[k - 1], "streaming_test": C_STREAM[k - 1]},
                          {"full_test": 20.0 + 2 * k, "streaming_test": 5.0 + k}, init_digest=same))
        if with_p:
            cells.append(cell("P", k, {"full_test": C_FULL[k - 1] + 3 * (k - 2), "streaming_test": C_STREAM[k - 1]},
                              {"full_test": 20.0, "streaming_test": 5.0}, init_digest=f"pruned-seed{k}"))
    return cells


def report(tmp_path, grid, cells, name="S.md"):
    return write_study_report(grid, cells, tmp_path / name, "local/study.sh").read_text()


def test_a_verdict_line_per_comparison_and_decode_from_the_paired_t_interval(tmp_path):
    text = report(tmp_path, HELDOUT_GRID, study_cells())
    d = np.array(C_FULL) / 10.0 - np.array(B_FULL) / 10.0
    half = 4.303 * d.std(ddof=1) / math.sqrt(3)  # t_0.975 with 2 df, from the table
    assert (f"- C vs B, full-context, test: Δ WER {d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] "
            "(paired t, 3 seeds): C better.") in text
    streaming = next(ln for ln in text.splitlines() if "C vs B, streaming, test: Δ WER" in ln)
    assert "(paired t, 3 seeds): no difference shown (80 % power at |Δ| ≥" in streaming
    assert "not shown equivalent within ±1.0" in streaming  # a straddling interval claims no equivalence


def test_the_verdicts_say_how_many_better_calls_chance_would_make(tmp_path):
    text = report(tmp_path, HELDOUT_GRID, study_cells())
    lines = [ln for ln in text.split("## Verdicts")[1].split("##")[0].splitlines() if " t, " in ln]
    better = sum(ln.endswith(" better.") for ln in lines)
    assert len(lines) == 8 and better >= 1  # 2 comparisons x 2 decodes x (WER, recall)
    assert (f"Multiplicity: 8 intervals above, {better} calling a side better; were there no difference anywhere, "
            "about 0.4 would by chance") in text
    assert "Multiplicity" not in report(tmp_path, GRID, study_cells()[:2], "one_seed.md")  # no interval: nothing to say


def test_extra_parameters_break_the_pairing_and_get_welch(tmp_path):
    text = report(tmp_path, HELDOUT_GRID, study_cells())
    assert "**P vs C**" in text and "unpaired seeds (step-0 weights differ (init_digest))" in text
    line = next(ln for ln in text.splitlines() if "P vs C, full-context, test: Δ WER" in ln)
    assert "(Welch t, 3/3 seeds)" in line and "not shown equivalent within ±1.0" in line


def test_held_out_recall_gets_its_own_verdict_where_higher_is_better(tmp_path):
    text = report(tmp_path, HELDOUT_GRID, study_cells())
    line = next(ln for ln in text.splitlines() if "C vs B, full-context, test: Δ held-out recall" in ln)
    assert line.split(": Δ held-out recall ")[1].startswith("+12.00 [") and line.endswith("C better.")
    assert "## Held-out words (mean ± sd over seeds)" in text


def test_the_held_out_table_says_what_recall_is_out_of(tmp_path):
    cells = study_cells(with_p=False)
    for c in cells:
        c["decodes"]["full_test"]["heldout"].update(utts=37, per_utt={f"u{u:03d}": [0, 0, 0] for u in range(UTTS)})
    text = report(tmp_path, HELDOUT_GRID, cells)
    assert "Occurrences in the references: full_test 50 in 37 of 100 utterances; streaming_test 50." in text
    cells[0]["decodes"]["full_test"]["heldout"]["occurrences"] = 49  # other references: said, not hidden
    text = report(tmp_path, HELDOUT_GRID, cells)
    assert "full_test: the cells disagree (49, 50 occurrences)" in text


def test_equivalence_is_claimed_only_when_the_90_percent_interval_is_inside_the_margin(tmp_path):
    cells = [cell("B", k, {"full_test": 250 + k}, init_digest=str(k)) for k in (1, 2, 3)]
    cells += [cell("C", k, {"full_test": 250 + k + (k % 2)}, init_digest=str(k)) for k in (1, 2, 3)]
    text = report(tmp_path, GRID, cells)
    line = next(ln for ln in text.splitlines() if "C vs B, full-context, test: Δ WER" in ln)
    assert "no difference shown" in line and "; equivalent within ±1.0 (TOST: 90 % [" in line


def test_sweep_table_gives_each_value_its_dev_wer_and_the_choice(tmp_path):
    grid = {"about": "t", "seeds": [1, 2], "comparisons": [],
            "conditions": {"C": {"about": "swept", "sweep": {"key": "w", "values": [0.02, 0.05, 0.2], "by": "dev"}}}}
    dev = lambda e: {"full_dev": e, "streaming_dev": e + 20}  # noqa: E731  (mean of both modes: e/10 + 1)
    cells = [cell("C@0.02", 1, dev(180)), cell("C@0.05", 1, dev(140)),
             cell("C", 1, dev(140), from_sweep="C@0.05"), cell("C", 2, dev(150))]
    text = report(tmp_path, grid, cells)
    assert "| C | w | 0.02 | 19.00 | - |" in text and "| C | w | 0.05 | 15.00 | yes |" in text
    assert "| C | w | 0.2 | not yet run | - |" in text
    assert "Finished cells: 3 of 4 — C 3/4 (not yet: 0.2@1)" in text


def test_a_grid_with_no_finished_cell_reports_what_has_not_run(tmp_path):
    text = report(tmp_path, GRID, [])
    assert "Finished cells: 0 of 9 — B 0/3 (not yet run); C 0/3 (not yet run); P 0/3 (not yet run)" in text
    assert "| B | base | 0 | not yet run |" in text
    assert "**C vs B** (claim tested: the best-alignment consistency loss" in text and "not yet run (C and B have no finished cell)" in text


def test_a_few_finished_cells_give_rows_and_not_yet_run_verdicts(tmp_path):
    text = report(tmp_path, GRID, [cell("B", 1, {"full_test": 230}), cell("C", 1, {"full_test": 220})])
    assert "B 1/3 (not yet: 2, 3)" in text and "| P | extra parameters | 0 | not yet run |" in text
    assert "C vs B, full-context, test: Δ WER — only 1/1 seeds, no interval (needs 2 per side)." in text
    assert "not yet run (P has no finished cell)" in text


def test_settings_sentence_comes_from_the_cells(tmp_path):
    setup = {"method": "beam", "beam": 8, "blank_penalty": 0.3, "num_avg": 5}
    text = report(tmp_path, GRID, [cell("B", 1, {"full_test": 230}, decode_setup=setup)])
    assert "averages its last 5 checkpoints, decodes both modes (beam search, beam 8, blank penalty 0.3;" in text
    archived = tmp_path / "cells" / "B" / "seed1"  # an older cell: only its RESULTS.md says how it decoded
    archived.mkdir(parents=True)
    (archived / "RESULTS.md").write_text("|dataset|method|RTF|\n|---|---|---|\n|test|beam6 bp0.2|0.02|\n")
    text = report(tmp_path, GRID, [cell("B", 1, {"full_test": 230}, _dir=str(archived))])
    assert "(beam search, beam 6, blank penalty 0.2;" in text and "how many is not recorded in these cells" in text


def test_over_training_table_names_the_seed_of_its_cell(tmp_path):
    over = {str(step): {"layers": [{"layer": "shared.1", "matched_ratio": r}]} for step, r in ((0, 0.99), (200, 0.5))}
    cells = [cell("C", 2, {"full_test": 220}, analysis_over_training=over)]
    assert "**C**, seed 2" in report(tmp_path, GRID, cells)


def test_dev_curve_per_condition_from_the_validation_lines(tmp_path):
    log = ["x INFO epoch 0 validation: loss 3.0 wer 80.0", "x INFO epoch 1 validation: loss 2.0 wer 40.5"]
    text = report(tmp_path, GRID, [cell("B", 1, {"full_test": 230}, train_log_tail=log)])
    assert "| epochs done | B (seed 1) |" in text and "| 1 | 80.00 |" in text and "| 2 | 40.50 |" in text


def test_collect_cell_records_the_decode_setup_from_rtf_and_run_log(tmp_path):
    d = tmp_path / "cell"
    for mode in ("full", "streaming"):
        (d / f"decode_{mode}_test").mkdir(parents=True)
        (d / f"decode_{mode}_test" / "rtf.txt").write_text("rtf 0.02\nmethod beam4 bp0.5\n")
    (d / "run.log").write_text("averaged ckpt-1.pt -> a.pt\naveraged ckpt-1.pt, ckpt-2.pt, ckpt-3.pt -> a.pt\n")
    assert study.decode_setup(d) == {"method": "beam", "beam": 4, "blank_penalty": 0.5, "num_avg": 3}
    (d / "decode_streaming_test" / "rtf.txt").write_text("method greedy\n")  # decoded two ways: no one setting
    assert study.decode_setup(d)["beam"] is None


def test_a_held_out_grid_leaves_out_cells_of_the_standard_corpus(tmp_path):
    grid = {**GRID, "corpus_opts": "--num-test 1000 --heldout-words 60"}
    old = [cell("B", k, {"full_test": 230 + k}) for k in (1, 2, 3)]  # the first study's cells: no held-out scores
    new = [cell("B_sched", 1, {"full_test": 200}, {"full_test": 10.0})]
    grid["conditions"] = {"B_sched": {"about": "schedule", "seeds": [1]}, **GRID["conditions"]}
    text = report(tmp_path, grid, old + new)
    assert "from 1 finished cells" in text and "| B | base | 0 | not yet run |" in text
    assert "B/seed1" not in text and "B_sched/seed1" in text


def test_a_swept_condition_with_only_sweep_cells_shows_their_dev_curve(tmp_path):
    grid = {"about": "t", "seeds": [1, 2], "comparisons": [],
            "conditions": {"C": {"about": "swept", "sweep": {"key": "w", "values": [0.02, 0.05], "by": "dev"}}}}
    log = ["x INFO epoch 0 validation: loss 3.0 wer 70.0"]
    text = report(tmp_path, grid, [cell("C@0.02", 1, {"full_dev": 150, "streaming_dev": 170}, train_log_tail=log)])
    assert "| epochs done | C@0.02 (seed 1) |" in text and "| 1 | 70.00 |" in text
    assert "| C | w | 0.02 | 16.00 | (sweep unfinished) |" in text and "C 1/3 (not yet: 0.05@1, 2)" in text


def test_collect_cell_scores_held_out_words_from_the_recipes_own_list(tmp_path):
    """The list lives in <recipe>/data, four levels above a cell's dir (exp/study/<cond>/seed<k>):
    a finished cell of the held-out grid carries recall and false alarms per decode."""
    recipe = tmp_path / "recipe"
    (recipe / "data").mkdir(parents=True)
    (recipe / "data" / "heldout_words.txt").write_text("bakery\nwindow\n")
    d = recipe / "exp" / "study" / "C" / "seed1" / "decode_full_test"
    d.mkdir(parents=True)
    (d / "ref.trn").write_text("the bakery is open (u1)\na window here (u2)\nno word (u3)\n")
    (d / "hyp.trn").write_text("the bakery is open (u1)\na widow here (u2)\nno window (u3)\n")
    c = study.Cell("C", 1, (), "c")
    rec = study.collect_cell(c, d.parent, {"code": {}, "data": ""}, recipe)
    held = rec["decodes"]["full_test"]["heldout"]
    assert (held["occurrences"], held["hits"], held["false_alarms"]) == (2, 1, 1)
    assert held["recall"] == pytest.approx(50.0)  # percent


def test_collect_cell_reads_decode_dirs_not_the_decode_defaults_file_beside_them(tmp_path):
    """Stage 6 writes exp/<tag>/decode_defaults.yaml next to the decode_* dirs; it is no decode."""
    d = tmp_path / "recipe" / "exp" / "study" / "B" / "seed1"
    (d / "decode_full_test").mkdir(parents=True)
    (d / "decode_full_test" / "ref.trn").write_text("a b c (u1)\n")
    (d / "decode_full_test" / "hyp.trn").write_text("a b (u1)\n")
    (d / "decode_defaults.yaml").write_text("method: beam\nbeam: 4\n")
    rec = study.collect_cell(study.Cell("B", 1, (), "b"), d, {"code": {}, "data": ""}, tmp_path / "recipe")
    assert list(rec["decodes"]) == ["full_test"] and rec["decodes"]["full_test"]["errors"] == 1


def test_header_and_appendix_count_a_chosen_sweep_cell_once(tmp_path):
    grid = {"about": "t", "seeds": [1, 2], "comparisons": [],
            "conditions": {"C": {"about": "swept", "sweep": {"key": "w", "values": [0.02, 0.05], "by": "dev"}}}}
    dev = lambda e: {"full_dev": e, "streaming_dev": e}  # noqa: E731
    cells = [cell("C@0.02", 1, dev(180), wall_s=600.0), cell("C@0.05", 1, dev(140), wall_s=900.0),
             cell("C", 1, dev(140), wall_s=900.0, from_sweep="C@0.05"), cell("C", 2, dev(150), wall_s=1500.0)]
    text = report(tmp_path, grid, cells)
    assert "from 3 finished cells" in text and "Compute: 0.8 h of cell wall time." in text  # 50 min, not 65
    assert "| C/seed1 | 14.00 | 14.00 | = C@0.05 |" in text and "| C@0.05/seed1 | 14.00 | 14.00 | 15.0 |" in text


def test_a_cell_resumed_across_sessions_counts_its_runs_not_the_hours_between(tmp_path):
    old = cell("B", 1, {"full_test": 230}, wall_s=5 * 3600.0, wall_s_last_run=1200.0)  # no run_s: only its last run
    new = cell("B", 2, {"full_test": 230}, wall_s=5 * 3600.0, wall_s_last_run=1200.0, run_s=1800.0)
    text = report(tmp_path, GRID, [old, new])
    assert "| B/seed1 | 23.00 | 20.0+ |" in text and "| B/seed2 | 23.00 | 30.0 |" in text
    assert "Compute: at least 0.8 h of cell wall time." in text
    d = tmp_path / "cell"  # a run killed 900 s after it started: counted to its logs' last write
    d.mkdir()
    started, t = d / "cell_started.json", time.time()
    started.write_text(json.dumps({"versions": {}, "started": t - 5000, "runs": [{"start": t - 5000}]}))
    (d / "train.log").write_text("x\n")
    os.utime(d / "train.log", (t - 4100, t - 4100))
    runs = study._begin_run(started, d)
    assert runs[0]["end"] == pytest.approx(t - 4100) and len(runs) == 2 and "end" not in runs[1]
    assert json.loads(started.read_text())["runs"] == runs
    # started by a runner older than the run records, killed: its one run is counted the same way
    started.write_text(json.dumps({"versions": {}, "started": t - 5000}))
    runs = study._begin_run(started, d)
    assert runs[0] == {"start": t - 5000, "end": pytest.approx(t - 4100)} and len(runs) == 2


def _write_grid(path, grid):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(grid))


def test_a_linked_grid_states_its_comparisons_from_its_own_recipes_cells(tmp_path):
    mini, multi = tmp_path / "egs" / "mini", tmp_path / "egs" / "multilingual"
    _write_grid(mini / "conf" / "g.yaml", {**HELDOUT_GRID, "comparisons": [["C", "B"]],
                                           "linked": [{"recipe": "../multilingual", "grid": "conf/study.yaml",
                                                       "comparisons": [["C", "B"]]}]})
    _write_grid(multi / "conf" / "study.yaml", {"about": "four languages", "seeds": [1, 2, 3],
                                                "comparisons": [["C", "B"], ["B", "A"]],
                                                "conditions": {"B": {"about": "b"}, "C": {"about": "c"}}})
    text = study.write_report(mini / "conf" / "g.yaml", mini, tmp_path / "S.md").read_text()
    assert "- Linked grid `egs/multilingual/conf/study.yaml` (four languages): 0 of 6 cells finished." in text
    assert "  - **C vs B** (claim tested:" in text and "B vs A" not in text  # the link's comparisons only
    assert "Not tested here: anything about 960 h of LibriSpeech." in text
    for c in study_cells(with_p=False):  # the multilingual cells: no held-out scores; archived as committed
        c = {**c, "decodes": {d: {k: v for k, v in x.items() if k != "heldout"} for d, x in c["decodes"].items()}}
        dest = multi / "study" / "cells" / "c1" / c["condition"] / f"seed{c['seed']}" / "cell.json"
        dest.parent.mkdir(parents=True)
        dest.write_text(json.dumps(c))
    text = study.write_report(mini / "conf" / "g.yaml", mini, tmp_path / "S.md").read_text()
    assert "6 of 6 cells finished (code hash c1, data version d1; 0 of another version left out)." in text
    assert "    - C vs B, full-context, test: Δ WER -1.03 [-1.41, -0.65] (paired t, 3 seeds): C better." in text
    assert "Finished cells: 0 of 9" in text  # the linked cells are not this grid's


def test_a_linked_grid_must_name_its_recipe_and_grid(tmp_path):
    path = tmp_path / "g.yaml"
    _write_grid(path, {**GRID, "linked": [{"recipe": "../multilingual"}]})
    with pytest.raises(study.ConfigError, match="each 'linked' entry needs recipe and grid"):
        study.load_grid(path)
    _write_grid(path, {**GRID, "linked": [{"recipe": "../nowhere", "grid": "conf/study.yaml"}]})
    with pytest.raises(study.ConfigError, match="linked grid ../nowhere/conf/study.yaml not found"):
        study.write_report(path, tmp_path, tmp_path / "S.md")


def test_the_aligner_section_gives_its_phone_error_rate_and_unaligned_counts(tmp_path):
    rep = {"epochs": 10, "wall_seconds": 300.0, "phone_error_rate": {"per": 5.3125, "errors": 357, "phones": 6720, "utts": 200},
           "sets": {"train": {"unaligned": 2, "utts": 1500}, "dev_clean": {"unaligned": 0, "utts": 200}}}
    grid = {**GRID, "conditions": {**GRID["conditions"], "M": {"about": "maestro"}}}
    cells = [cell("M", k, {"full_test": 220}, aligner=rep) for k in (1, 2)] + [cell("B", 1, {"full_test": 230})]
    text = report(tmp_path, grid, cells)
    assert ("- 10 epochs, 5.0 min; phone error rate 5.31 % (357 errors / 6720 phones, 200 utterances); "
            "not aligned: dev_clean 0 of 200, train 2 of 1500. Used by M/seed1, M/seed2.") in text
    assert "## The explicit aligner" not in report(tmp_path, GRID, cells[2:])


def test_a_finished_sweep_gives_its_condition_seed_1_before_the_runner_copies_it(tmp_path):
    grid = {"about": "t", "seeds": [1, 2], "comparisons": [],
            "conditions": {"M": {"about": "swept", "sweep": {"key": "w", "values": [0.02, 0.05], "by": "dev"}}}}
    dev = lambda e: {"full_dev": e, "streaming_dev": e, "full_test": e}  # noqa: E731
    text = report(tmp_path, grid, [cell("M@0.02", 1, dev(180)), cell("M@0.05", 1, dev(140))])
    assert "| M | w | 0.05 | 14.00 | yes |" in text and "| M | w | 0.02 | 18.00 | - |" in text
    assert "| M | swept | 1 | 14.00 |" in text
    assert "from 2 finished cells (of 3 in the grid; 0 of another code/data version left out)" in text
