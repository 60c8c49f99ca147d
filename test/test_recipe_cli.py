"""Every recipe's run.sh: --help lists the stages and options; a bad option is an error naming it."""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["mini", "librispeech", "multilingual"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_run_sh_help_lists_every_stage_and_option(recipe):
    out = subprocess.run(["./run.sh", "--help"], cwd=ROOT / "egs" / recipe, capture_output=True, text=True,
                         timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    stages = text[text.index("Stages:"):text.index("Options")]
    assert all(re.search(rf"\b{n} ", stages) for n in range(9)), stages
    for opt in ("--stage", "--stop-stage 8", "--train-config", "--decode-modes", "--analysis-sets"):
        assert opt in text
    # option names are spelled with dashes, the comments beside them are left as written
    assert "--prepare-corpus-opts" in text and "local/prepare_corpus.sh" in text


def test_run_sh_help_shows_the_recipes_own_defaults_and_earlier_options():
    def help_of(*args):
        out = subprocess.run(["./run.sh", *args, "--help"], cwd=ROOT / "egs" / "mini", capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    text = help_of()
    decode_args = re.search(r'--decode-args "[^"]*" ', (ROOT / "egs" / "mini" / "run.sh").read_text()).group(0)
    for line in ("--stage 0 ", "--decode-method beam ", "--beam 4 ", decode_args,
                 '--test-sets "dev_clean test_clean" '):
        assert f"\n  {line}" in text, line
    assert "\n  --nj 7 " in help_of("--nj", "7")


@pytest.mark.parametrize("recipe", RECIPES)
def test_run_sh_rejects_an_unknown_option_by_name(recipe):
    out = subprocess.run(["./run.sh", "--no-such-option", "1"], cwd=ROOT / "egs" / recipe, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "--no-such-option" in out.stderr


def run_mini(*args):
    return subprocess.run(["./run.sh", *args], cwd=ROOT / "egs" / "mini", capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stage", ["9", "abc", "-1"])
def test_run_sh_refuses_a_stage_that_does_not_exist_instead_of_doing_nothing(stage):
    out = run_mini("--stage", stage)
    assert out.returncode != 0
    assert out.stderr.strip() == f"asr.sh: error: --stage must be a stage number 0..8, got '{stage}'"


def test_run_sh_unknown_option_as_last_argument_is_named_invalid():
    out = run_mini("--unknown-option")
    assert out.returncode != 0 and "invalid option --unknown-option" in out.stderr and "needs a value" not in out.stderr


def test_training_threads_default_to_the_usable_cpus_even_under_path_sh():
    """path.sh exports OMP_NUM_THREADS=1 for the data tools; a caller that sourced it (the
    study runner) must still train on every CPU it may use, not on the 1 that nproc reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["./run.sh", "--help"], cwd=ROOT / "egs" / "mini", capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert f"\n  --train-threads {len(os.sched_getaffinity(0))} " in out.stdout
