"""utils/: parse_options.sh, run.pl, slurm.pl (through a fake sbatch) and the data-dir shell wrappers."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "utils"


def sh(cmd, env, cwd, **kw):
    return subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def opts_script(tmp_path):
    """A script in Kaldi style: defaults, help_message, parse_options, then print the results."""
    script = tmp_path / "demo.sh"
    script.write_text(f"""#!/usr/bin/env bash
set -euo pipefail
nj=4
train_config=conf/a.yaml
use_gpu=false
help_message="Usage: demo.sh [options] <dir>
  --nj N   number of jobs"
. {UTILS}/parse_options.sh
echo "nj=$nj train_config=$train_config use_gpu=$use_gpu args=$*"
""")
    script.chmod(0o755)
    return script


def run_opts(script, *args, env):
    return subprocess.run([str(script), *args], env=env, cwd=script.parent, capture_output=True, text=True,
                          timeout=30)


def test_parse_options_dashes_become_underscores(opts_script, tool_env):
    r = run_opts(opts_script, "--train-config", "conf/b.yaml", "--nj", "2", "x", "y", env=tool_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "nj=2 train_config=conf/b.yaml use_gpu=false args=x y"


def test_parse_options_equals_form_keeps_spaces(opts_script, tool_env):
    r = run_opts(opts_script, "--train-config=conf/with space.yaml", "--use-gpu=true", env=tool_env)
    assert r.returncode == 0, r.stderr
    assert "train_config=conf/with space.yaml use_gpu=true args=" in r.stdout


def test_parse_options_unknown_option_is_named(opts_script, tool_env):
    r = run_opts(opts_script, "--n-jobs", "3", env=tool_env)
    assert r.returncode == 1
    assert "invalid option --n-jobs" in r.stderr
    assert r.stdout == ""


def test_parse_options_boolean_accepts_only_true_false(opts_script, tool_env):
    r = run_opts(opts_script, "--use-gpu", "yes", env=tool_env)
    assert r.returncode == 1
    assert "--use-gpu" in r.stderr and "'yes'" in r.stderr


def test_parse_options_value_is_not_evaluated(opts_script, tool_env, tmp_path):
    r = run_opts(opts_script, "--train-config", "$(touch pwned)`touch pwned2`", env=tool_env)
    assert r.returncode == 0, r.stderr
    assert "train_config=$(touch pwned)`touch pwned2`" in r.stdout
    assert not list(tmp_path.glob("pwned*"))


def test_parse_options_config_file_is_overridden_by_command_line(opts_script, tool_env, tmp_path):
    cfg = tmp_path / "opts.conf"
    cfg.write_text("nj=7\ntrain_config=conf/from_cfg.yaml\n")
    r = run_opts(opts_script, "--nj", "1", "--config", str(cfg), "pos", env=tool_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "nj=1 train_config=conf/from_cfg.yaml use_gpu=false args=pos"


def test_parse_options_missing_config_is_an_error(opts_script, tool_env, tmp_path):
    r = run_opts(opts_script, "--config", str(tmp_path / "nope.conf"), env=tool_env)
    assert r.returncode == 1 and "nope.conf" in r.stderr


def test_parse_options_help_prints_help_message(opts_script, tool_env):
    r = run_opts(opts_script, "--nj", "2", "--help", env=tool_env)
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["Usage: demo.sh [options] <dir>", "  --nj N   number of jobs"]


def test_parse_options_missing_value_and_double_dash(opts_script, tool_env):
    r = run_opts(opts_script, "--nj", env=tool_env)
    assert r.returncode == 1 and "--nj needs a value" in r.stderr
    r = run_opts(opts_script, "--", "--nj", env=tool_env)
    assert r.returncode == 0 and "args=--nj" in r.stdout


# ---------------------------------------------------------------- run.pl

LOG_RE = re.compile(r"# (?P<cmd>.*)\n# Started at .+\n#\n(?P<out>(?:.*\n)*)"
                    r"# Accounting: time=\d+ threads=(?P<threads>\d+)\n"
                    r"# Ended \(code (?P<code>\d+)\) at .+, elapsed time \d+ seconds\n\Z")


def test_run_pl_substitutes_job_and_writes_kaldi_logs(tool_env, tmp_path):
    r = sh("run.pl --mem 2G --num-threads 2 JOB=1:3 exp/log/echo.JOB.log echo part JOB of 3", tool_env, tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        m = LOG_RE.fullmatch((tmp_path / f"exp/log/echo.{j}.log").read_text())
        assert m, (tmp_path / f"exp/log/echo.{j}.log").read_text()
        assert m["cmd"] == f"echo part {j} of 3" and m["out"] == f"part {j} of 3\n"
        assert m["code"] == "0" and m["threads"] == "2"


def test_run_pl_single_job_keeps_quoted_args(tool_env, tmp_path):
    # Kaldi semantics: words pass as they are (so "\\|" makes a pipeline), a word with spaces is quoted.
    r = subprocess.run(["run.pl", "log/one.log", "printf", "%s,", "a b", "c", "|", "tr", ",", ":"], env=tool_env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert LOG_RE.fullmatch((tmp_path / "log/one.log").read_text())["out"] == "a b:c:\n"  # newline added before the accounting lines


def test_run_pl_failure_names_failed_jobs_and_their_logs(tool_env, tmp_path):
    r = sh("run.pl JOB=1:4 log/t.JOB.log bash -c 'exit $(( JOB % 2 ))'", tool_env, tmp_path)
    assert r.returncode == 1
    assert "log/t.1.log" in r.stderr and "log/t.3.log" in r.stderr
    assert "log/t.2.log" not in r.stderr and "log/t.4.log" not in r.stderr
    assert LOG_RE.fullmatch((tmp_path / "log/t.3.log").read_text())["code"] == "1"
    assert LOG_RE.fullmatch((tmp_path / "log/t.4.log").read_text())["code"] == "0"


def test_run_pl_refuses_many_jobs_into_one_log(tool_env, tmp_path):
    r = sh("run.pl JOB=1:2 log/same.log true", tool_env, tmp_path)
    assert r.returncode != 0 and "one log file" in r.stderr


def test_run_pl_runs_jobs_in_parallel(tool_env, tmp_path):
    t0 = time.monotonic()
    r = sh("run.pl --max-jobs-run 4 JOB=1:4 log/s.JOB.log sleep 1", tool_env, tmp_path)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed < 2.5, f"4 one-second jobs took {elapsed:.1f} s with --max-jobs-run 4"


def test_run_pl_respects_max_jobs_run(tool_env, tmp_path):
    # Each job records how many jobs are running when it starts (a marker file per live job).
    cmd = ("run.pl --max-jobs-run 2 JOB=1:5 log/m.JOB.log bash -c "
           "'touch live.JOB; ls live.* | wc -l > seen.JOB; sleep 0.4; rm live.JOB'")
    t0 = time.monotonic()
    r = sh(cmd, tool_env, tmp_path)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    seen = [int((tmp_path / f"seen.{j}").read_text()) for j in range(1, 6)]
    assert max(seen) <= 2
    assert elapsed >= 1.2  # 5 jobs of 0.4 s, two at a time: at least 3 rounds


# ---------------------------------------------------------------- slurm.pl

FAKE_SBATCH = r"""#!/usr/bin/env bash
# Fake sbatch: records its arguments, prints a job id, runs the array here, one task at a time.
printf '%s\n' "$@" > "$FAKE_SBATCH_ARGS"
array= out= script=
for a in "$@"; do
  case "$a" in --array=*) array=${a#--array=} ;; --output=*) out=${a#--output=} ;; -*) ;; *) script=$a ;; esac
done
range=${array%%%*}; first=${range%-*}; last=${range#*-}
echo 4242
rc=0
for ((i = first; i <= last; i++)); do
  SLURM_ARRAY_TASK_ID=$i bash "$script" > "${out//%a/$i}" 2>&1 || rc=1
done
exit $rc
"""


@pytest.fixture
def slurm_env(tool_env, tmp_path):
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "sbatch").write_text(FAKE_SBATCH)
    (fake / "sbatch").chmod(0o755)
    env = dict(tool_env, PATH=f"{fake}:{tool_env['PATH']}", FAKE_SBATCH_ARGS=str(tmp_path / "sbatch.args"),
               SLURM_PL_SYNC_WAIT="1")
    return env


def test_slurm_pl_submits_array_and_writes_run_pl_logs(slurm_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    r = sh("slurm.pl --gpu 1 --mem 4G --num-threads 2 --max-jobs-run 2 JOB=1:3 exp/log/dec.JOB.log "
           "echo decoding JOB", slurm_env, work)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "sbatch.args").read_text().splitlines()
    assert {"--gres=gpu:1", "--mem=4G", "--cpus-per-task=2", "--array=1-3%2", "--wait"} <= set(args)
    for j in (1, 2, 3):
        m = LOG_RE.fullmatch((work / f"exp/log/dec.{j}.log").read_text())
        assert m and m["cmd"] == f"echo decoding {j}" and m["out"] == f"decoding {j}\n"
        assert m["code"] == "0" and m["threads"] == "2"


def test_slurm_pl_reports_failed_and_vanished_jobs(slurm_env, tmp_path):
    r = sh("slurm.pl JOB=1:3 log/f.JOB.log test JOB -ne 2", slurm_env, tmp_path)
    assert r.returncode == 1
    assert "log/f.2.log" in r.stderr and "log/f.1.log" not in r.stderr
    # A job Slurm kills never writes its exit code: it must count as failed, not succeeded.
    r = sh("slurm.pl JOB=1:2 log/k.JOB.log kill -9 '$$'", slurm_env, tmp_path)
    assert r.returncode == 1 and "log/k.1.log" in r.stderr


def test_slurm_pl_without_sbatch_fails_clearly(tool_env, tmp_path):
    env = dict(tool_env, PATH=f"{UTILS}:/usr/bin:/bin")
    r = sh("slurm.pl log/x.log true", env, tmp_path)
    assert r.returncode != 0 and "sbatch" in r.stderr


# ---------------------------------------------------------------- Kaldi data-dir helpers

def test_utt2spk_spk2utt_roundtrip(tool_env, tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\n")
    r = sh("utt2spk_to_spk2utt.pl utt2spk > spk2utt && spk2utt_to_utt2spk.pl spk2utt", tool_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "spk2utt").read_text() == "a a-1 a-2\nb b-1\n"
    assert r.stdout == "a-1 a\na-2 a\nb-1 b\n"


def test_utt2spk_to_spk2utt_names_bad_line(tool_env, tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\na-2\n")
    r = sh("utt2spk_to_spk2utt.pl utt2spk", tool_env, tmp_path)
    assert r.returncode != 0 and "utt2spk:2:" in r.stderr


def test_split_scp_pl_is_contiguous_and_balanced(tool_env, tmp_path):
    (tmp_path / "in.scp").write_text("".join(f"u{i} /x/{i}.wav\n" for i in range(7)))
    r = sh("split_scp.pl in.scp o1 o2 o3", tool_env, tmp_path)
    assert r.returncode == 0, r.stderr
    parts = [(tmp_path / f"o{k}").read_text().splitlines() for k in (1, 2, 3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    assert sum(parts, []) == (tmp_path / "in.scp").read_text().splitlines()


def test_split_scp_pl_keeps_speakers_together(tool_env, tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\na-2 a\na-3 a\nb-1 b\nc-1 c\nc-2 c\n")
    (tmp_path / "text").write_text("a-1 x\na-2 x\na-3 x\nb-1 x\nc-1 x\nc-2 x\n")
    r = sh("split_scp.pl --utt2spk=utt2spk text t1 t2", tool_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t1").read_text() == "a-1 x\na-2 x\na-3 x\n"
    assert (tmp_path / "t2").read_text() == "b-1 x\nc-1 x\nc-2 x\n"
    r = sh("split_scp.pl -j 2 1 text only2", tool_env, tmp_path)
    assert r.returncode == 0 and (tmp_path / "only2").read_text() == "b-1 x\nc-1 x\nc-2 x\n"


def test_split_scp_pl_noncontiguous_speaker_names_line(tool_env, tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\nb-1 b\nz a\n")
    (tmp_path / "text").write_text("a-1 x\nb-1 x\nz x\n")
    r = sh("split_scp.pl --utt2spk=utt2spk text t1 t2", tool_env, tmp_path)
    assert r.returncode == 2 and "text:3:" in r.stderr


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} cat /dev/null |\n" for u in ("a-1", "a-2", "b-1", "c-1")))
    (d / "text").write_text("a-1 HELLO\na-2 THERE\nb-1 HI\nc-1 BYE\n")
    (d / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\nc-1 c\n")
    (d / "spk2utt").write_text("a a-1 a-2\nb b-1\nc c-1\n")
    return d


def test_shell_wrappers_work_from_a_recipe_dir_with_utils_symlink(tool_env, tmp_path, data_dir):
    # Recipes reach utils through a symlink (egs/x/utils -> ../../utils), with plain PATH.
    (tmp_path / "utils").symlink_to(UTILS)
    env = dict(tool_env, PATH=tool_env["PATH"].split(":", 1)[1])
    env.pop("PYTHONPATH", None)
    r = sh("utils/validate_data_dir.sh --no-feats data/train && utils/split_data.sh data/train 2 && "
           "utils/subset_data_dir.sh --first data/train 2 data/sub && "
           "utils/combine_data.sh data/all data/sub data/train/split2/2 && utils/fix_data_dir.sh data/all",
           env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    assert (tmp_path / "data/all/utt2spk").read_text() == "a-1 a\na-2 a\nb-1 b\nc-1 c\n"


def test_validate_data_dir_sh_prints_file_and_line(tool_env, tmp_path, data_dir):
    (data_dir / "text").write_text("a-1 HELLO\na-2\nb-1 HI\nc-1 BYE\n")
    r = sh("validate_data_dir.sh data/train", tool_env, tmp_path)
    assert r.returncode == 2
    assert "data/train/text:2: 'a-2' has no transcript" in r.stderr


def test_scripts_are_executable_in_git():
    out = subprocess.run(["git", "ls-files", "-s", "utils"], cwd=REPO, capture_output=True, text=True).stdout
    modes = {line.split("\t")[1]: line.split()[0] for line in out.splitlines()}
    assert modes and all(mode == "100755" for mode in modes.values()), modes
    assert os.access(UTILS / "run.pl", os.X_OK)
