"""The study runner (order, resume, versions), its statistics and its report."""
import json
import math
import os
import stat
import textwrap
from pathlib import Path

import numpy as np
import pytest

from toolkit.analysis import study
from toolkit.analysis.study_report import write_study_report
from toolkit.analysis.study_stats import sign_flip_test, two_level_bootstrap, utterance_bootstrap
from toolkit.utils.config import ConfigError

GRID = """
about: test grid
recipe_args: "--stage 5 --stop-stage 7"
seeds: [1, 2]
comparisons: [[C, B]]
conditions:
  B: {about: no consistency, set: [objective.consistency.weight=0]}
  C: {about: best, set: []}
  W: {about: sweep, set: [objective.consistency.weight=0.2], seeds: [1], phase: 2}
"""


def write_grid(tmp_path, text=GRID):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_cells_run_phase_by_phase_seed_major(tmp_path):
    cells = study.cells_of(study.load_grid(write_grid(tmp_path)))
    assert [c.tag for c in cells] == ["study/B/seed1", "study/C/seed1", "study/B/seed2", "study/C/seed2",
                                      "study/W/seed1"]
    assert cells[-1].overrides == ("objective.consistency.weight=0.2",)


def test_grid_typos_are_named(tmp_path):
    with pytest.raises(ConfigError, match="sedes"):
        study.load_grid(write_grid(tmp_path, GRID.replace("  W: {about: sweep,", "  W: {sedes: [1], about: sweep,")))
    with pytest.raises(ConfigError, match="no condition"):
        study.cells_of(study.load_grid(write_grid(tmp_path)), only=["Z"])


# A stand-in recipe: run.sh "trains" (appends to train.log), "decodes" (writes ref/hyp.trn
# whose errors depend on the seed and the consistency weight) and can be made to die midway.
FAKE_RUN = r"""#!/usr/bin/env bash
set -euo pipefail
while [ $# -gt 0 ]; do
  case $1 in --tag) tag=$2; shift 2;; --train-args) targs=$2; shift 2;; *) shift;; esac
done
d=exp/$tag; mkdir -p $d
echo "run $targs" >> $d/train.log
[ -f die ] && { rm die; exit 9; }
echo "2026 INFO epoch 0 validation: loss 1.0 wer 50.0" >> $d/train.log
seed=$(echo "$targs" | sed 's/.*seed=\([0-9]*\).*/\1/')
mkdir -p $d/decode_full_test
: > $d/decode_full_test/ref.trn; : > $d/decode_full_test/hyp.trn
for i in 1 2 3 4 5 6; do
  echo "a b c d (spk-u$i)" >> $d/decode_full_test/ref.trn
  if echo "$targs" | grep -q 'weight=0$'; then wrong=$(( (i + seed) % 2 )); else wrong=0; fi
  if [ $wrong = 1 ]; then echo "a x c (spk-u$i)"; else echo "a b c d (spk-u$i)"; fi >> $d/decode_full_test/hyp.trn
done
"""


@pytest.fixture()
def fake_recipe(tmp_path, monkeypatch):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    run = recipe / "run.sh"
    run.write_text(FAKE_RUN)
    run.chmod(run.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(study, "data_version", lambda r: "data1")
    return recipe


def test_run_grid_skips_finished_cells_and_resumes_a_killed_one(tmp_path, fake_recipe):
    grid = write_grid(tmp_path)
    (fake_recipe / "die").touch()  # the first cell dies mid-run
    with pytest.raises(RuntimeError, match="study/B/seed1"):
        study.run_grid(grid, fake_recipe)
    assert not (fake_recipe / "exp/study/B/seed1/cell.json").exists()
    done = study.run_grid(grid, fake_recipe)
    assert [(r["condition"], r["seed"]) for r in done] == [("B", 1), ("C", 1), ("B", 2), ("C", 2), ("W", 1)]
    # the killed cell was resumed in place (same versions), not restarted
    assert (fake_recipe / "exp/study/B/seed1/train.log").read_text().count("run ") == 2
    rec = json.loads((fake_recipe / "exp/study/B/seed1/cell.json").read_text())
    assert rec["decodes"]["full_test"]["utts"]["spk-u1"] == [0, 4]  # (1 + 1) % 2 = 0: right
    assert rec["decodes"]["full_test"]["utts"]["spk-u2"] == [2, 4]  # one substitution, one deletion
    assert rec["overrides"] == ["objective.consistency.weight=0"]
    assert rec["runs"] == 2 and [r["runs"] for r in done[1:]] == [1, 1, 1, 1]  # the killed run counts, no other
    assert study.run_grid(grid, fake_recipe) == []  # everything finished: nothing runs


def test_a_cell_started_with_other_code_starts_again_clean(tmp_path, fake_recipe, monkeypatch):
    grid = write_grid(tmp_path)
    (fake_recipe / "die").touch()
    with pytest.raises(RuntimeError):
        study.run_grid(grid, fake_recipe, only=["B"])
    real = study.code_version
    monkeypatch.setattr(study, "code_version", lambda: {**real(), "code": "changed"})
    study.run_grid(grid, fake_recipe, only=["B"])
    assert (fake_recipe / "exp/study/B/seed1/train.log").read_text().count("run ") == 1


def test_report_from_cells_has_tables_intervals_verdicts_and_plot(tmp_path, fake_recipe):
    grid = write_grid(tmp_path)
    study.run_grid(grid, fake_recipe)
    out = tmp_path / "STUDY.md"
    write_study_report(study.load_grid(grid), study.finished_cells(fake_recipe), out, "local/study.sh")
    text = out.read_text()
    # B: seeds 1 and 2 each get 3 of 6 utterances wrong (2 errors of 4 words): 25 % WER; C: 0 %
    assert "| B | no consistency | 2 | 25.00 ± 0.00 |" in text
    assert "| C vs B | full_test | 2/2 | -25.00 | Welch t [-25.00, -25.00] |" in text
    # the fake cells record no initialisation (no config.yaml): their seeds are not claimed as pairs
    assert "- C vs B, full-context, test: Δ WER -25.00 [-25.00, -25.00] (Welch t, 2/2 seeds): C better." in text
    assert "| W/seed1 |" in text
    assert (tmp_path / "STUDY_wer.png").read_bytes()[:4] == b"\x89PNG"


def test_report_leaves_out_cells_of_another_code_version(tmp_path, fake_recipe):
    grid = write_grid(tmp_path)
    study.run_grid(grid, fake_recipe)
    cells = study.finished_cells(fake_recipe)
    cells[0]["versions"]["code"]["code"] = "other"
    out = write_study_report(study.load_grid(grid), cells, tmp_path / "S.md")
    assert "1 of another code/data version left out" in out.read_text()
    for c in cells:  # B/seed1 and C/seed1 of another version: compared with each other only
        if c["seed"] == 1 and c["condition"] in ("B", "C"):
            c["versions"]["code"]["code"] = "other"
    text = write_study_report(study.load_grid(grid), cells, tmp_path / "S.md").read_text()
    assert "## Cells of another version (code other" in text
    assert text.count("- C vs B, full-context, test: Δ WER — only 1/1 seeds, no interval") == 2


def test_bootstrap_delta_is_the_wer_difference_and_identical_systems_give_zero():
    rng = np.random.default_rng(0)
    words = rng.integers(3, 12, 200).astype(float)
    ex = rng.integers(0, 3, (3, 200)).astype(float)
    ey = ex + (rng.random((3, 200)) < 0.3)
    delta, (lo, hi), p = utterance_bootstrap(ex, ey, words)
    assert delta == pytest.approx(100 * (ex.mean(0).sum() - ey.mean(0).sum()) / words.sum())
    assert lo <= delta <= hi < 0 and p == 1.0
    same = np.stack([ex[0]] * 3)  # seeds that agree exactly: nothing left to resample
    assert two_level_bootstrap(same, same, words) == (0.0, 0.0)
    assert sign_flip_test(np.zeros(50)) == 1.0


def test_sign_flip_test_separates_a_real_difference_from_noise():
    rng = np.random.default_rng(1)
    assert sign_flip_test(rng.normal(0.5, 1.0, 400)) < 0.01
    assert sign_flip_test(rng.normal(0.0, 1.0, 400)) > 0.01


def test_two_level_interval_widens_with_seed_spread():
    rng = np.random.default_rng(2)
    words = np.full(300, 8.0)
    base = rng.integers(0, 3, 300).astype(float)
    calm = np.stack([base, base, base])
    noisy = np.stack([base, base + 1, np.maximum(base - 1, 0)])
    lo_c, hi_c = two_level_bootstrap(calm, calm * 0.9, words)
    lo_n, hi_n = two_level_bootstrap(noisy, calm * 0.9, words)
    assert hi_n - lo_n > 2 * (hi_c - lo_c)


def test_archived_cells_regenerate_the_report_and_are_not_run_again(tmp_path, fake_recipe):
    grid = write_grid(tmp_path)
    study.run_grid(grid, fake_recipe, only=["B", "C"])
    study.archive_cells(fake_recipe)
    before = write_study_report(study.load_grid(grid), study.finished_cells(fake_recipe), tmp_path / "a.md")
    (fake_recipe / "exp").rename(tmp_path / "exp_gone")  # a clean clone: only the archive is left
    after = write_study_report(study.load_grid(grid), study.finished_cells(fake_recipe), tmp_path / "b.md")
    assert after.read_text() == before.read_text().replace("a_wer.png", "b_wer.png")
    assert [(r["condition"], r["seed"]) for r in study.run_grid(grid, fake_recipe)] == [("W", 1)]


def test_a_cell_archived_on_newer_code_keeps_the_older_one(tmp_path, fake_recipe):
    """Cells are archived per code version: rerunning C on new code must not overwrite the
    archived C of the older code (the older study's report is made from it)."""
    grid = write_grid(tmp_path)
    study.run_grid(grid, fake_recipe, only=["C"])
    old = study.archive_cells(fake_recipe)
    cell_json = next((fake_recipe / "exp" / "study").glob("C/seed*/cell.json"))
    rec = json.loads(cell_json.read_text())
    rec["versions"]["code"]["code"] = "newercode000"
    rec["wall_s_last_run"] = 12345.0
    cell_json.write_text(json.dumps(rec))
    new = study.archive_cells(fake_recipe)
    assert len(set(old) | set(new)) == len(old) + 1  # one more folder: the newer C/seed1
    archived = [c for c in study.archived_cells(fake_recipe) if (c["condition"], c["seed"]) == ("C", rec["seed"])]
    assert sorted(c["versions"]["code"]["code"] == "newercode000" for c in archived) == [False, True]
    assert sorted(c["wall_s_last_run"] == 12345.0 for c in archived) == [False, True]


def test_every_condition_with_a_stage8_analysis_gets_its_per_layer_table(tmp_path, fake_recipe):
    """Not only B and C: the pruned grid's C_pruned (here W) has its own per-layer table."""
    grid = write_grid(tmp_path)
    study.run_grid(grid, fake_recipe)
    cells = study.finished_cells(fake_recipe)
    for c in cells:
        ratio = {"B": 0.9, "C": 0.5, "W": 0.25}[c["condition"]]
        c["analysis"] = {"test": {"layers": [{"layer": "shared.1", "best": 1.0, "uniform": 2.0,
                                              "mismatched": 4.0, "matched_ratio": ratio}]}}
    text = write_study_report(study.load_grid(grid), cells, tmp_path / "r.md").read_text()
    for name, ratio in (("B", "0.900"), ("C", "0.500"), ("W", "0.250")):
        table = text.split(f"**{name}** (")[1].split("\n\n")[1]
        assert f"| shared.1 | 1.00 | 2.00 | 4.00 | {ratio}" in table


def test_a_sweep_chooses_the_lowest_value_and_its_cell_becomes_seed_1(tmp_path, fake_recipe):
    grid = write_grid(tmp_path, """
    seeds: [1, 2]
    conditions:
      S: {about: swept, set: [], sweep: {key: objective.consistency.weight, values: [0, 0.2], by: test}}
    """)
    done = study.run_grid(grid, fake_recipe)
    assert [(r["condition"], r["seed"]) for r in done] == [("S@0", 1), ("S@0.2", 1), ("S", 2)]
    assert done[-1]["overrides"] == ["objective.consistency.weight=0.2"]  # weight 0 errs in the fake recipe
    seed1 = json.loads((fake_recipe / "exp/study/S/seed1/cell.json").read_text())
    assert seed1["from_sweep"] == "S@0.2" and "_dir" not in seed1
    text = write_study_report(study.load_grid(grid), study.finished_cells(fake_recipe), tmp_path / "r.md").read_text()
    assert "| S | objective.consistency.weight | 0.2 | 0.00 | yes |" in text


SCHEDULE_GRID = """
about: schedule grid
recipe_args: "--stage 5 --stop-stage 7"
seeds: [1]
common_set: [max_epochs=3]
schedule: {from: S, key: max_epochs, within: 1.0}
comparisons: [[C, B]]
conditions:
  B: {about: b, set: [objective.consistency.weight=0]}
  C: {about: c, set: []}
  S: {about: the schedule run, set: [objective.consistency.weight=0, max_epochs=8], phase: 2}
"""
CURVE = [50.0, 30.0, 20.0, 15.0, 14.5, 14.2, 14.0, 14.4]  # best 14.0 after 7 epochs; first within 1.0: 4


def test_a_schedule_run_fixes_every_other_cells_epochs_by_the_rule(tmp_path, fake_recipe):
    """The runner waits for the schedule run, chooses by the rule (first epoch within 1.0 of the
    best), gives the value to every other cell (a second pass runs the cells that waited), and
    the report says it."""
    run = fake_recipe / "run.sh"
    curve = " ".join(map(str, CURVE))
    run.write_text(FAKE_RUN.replace(
        'echo "2026 INFO epoch 0 validation: loss 1.0 wer 50.0" >> $d/train.log',
        'n=$(echo "$targs" | grep -o "max_epochs=[0-9]*" | tail -1 | cut -d= -f2); e=0\n'
        f'for w in {curve}; do [ $e -lt $n ] && echo "2026 INFO epoch $e validation: loss 1 wer $w" >> $d/train.log; '
        'e=$((e+1)); done'))
    grid_path = write_grid(tmp_path, SCHEDULE_GRID)
    grid = study.load_grid(grid_path)
    assert study.resolve_schedule(study.cells_of(grid)[0], grid, fake_recipe) is None  # S has not run
    done = study.run_grid(grid_path, fake_recipe)
    assert [r["condition"] for r in done] == ["S", "B", "C"]
    by = {r["condition"]: r for r in done}
    assert by["S"]["overrides"] == ["objective.consistency.weight=0", "max_epochs=8"]  # its own setting
    assert by["B"]["overrides"][0] == "max_epochs=4" and by["C"]["overrides"] == ["max_epochs=4"]
    assert len(by["C"]["train_log_tail"]) == 4  # it trained 4 epochs
    text = write_study_report(grid, study.finished_cells(fake_recipe), tmp_path / "S.md").read_text()
    assert ("Schedule: `max_epochs=4` for every cell but S's, by the rule fixed before it ran (the first epoch "
            "whose greedy dev WER is within 1.0 of the run's best): S seed 1's best is 14.00 after 7 epochs; "
            "after 4: 15.00.") in text


@pytest.mark.parametrize("bad", ["{from: Z, key: max_epochs, within: 1.0}", "{from: S, key: max_epochs}",
                                 "{from: S, key: max_epochs, within: 1.0, by: dev}"])
def test_a_bad_schedule_is_named(tmp_path, bad):
    with pytest.raises(ConfigError, match="schedule needs from"):
        study.load_grid(write_grid(tmp_path, SCHEDULE_GRID.replace(
            "schedule: {from: S, key: max_epochs, within: 1.0}", f"schedule: {bad}")))
