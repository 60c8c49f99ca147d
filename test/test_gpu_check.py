"""concord-gpu-check's CPU code paths: the no-CUDA exit, the budget logic, the report, and the
whole command with its device steps stubbed (CONCORD_GPU_CHECK_STUB, set only here)."""
import os
import subprocess
import sys

import pytest
import torch

from toolkit.bench import gpu_check, gpu_steps
from toolkit.bench.gpu_check import STEP_NAMES, Step, StepResult, markdown_report, run_steps
from toolkit.bin.gpu_check import main as gpu_check_main

INFO = {"machine": "box x86_64, 2 CPUs", "gpu": "H200, 139 GiB", "driver": "570.1", "torch": "2.13.0",
        "torch CUDA": "13.0", "numba": "0.68", "commit": "abc123"}


class FakeClock:
    """A clock that each step advances by the seconds it 'takes'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_runner(clock, durations, seen):
    def run_one(step, left):
        seen.append((step.name, left))
        clock.now += durations[step.name]
        return StepResult(step.name, "ok", 0.0, [["took", durations[step.name]]])
    return run_one


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_cuda_it_says_so_in_one_line_exits_0_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(gpu_check.STUB_ENV, raising=False)
    assert gpu_check_main(["--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("concord-gpu-check: no CUDA device") and out.count("\n") == 1
    assert not (tmp_path / "g").exists()


def test_help_lists_every_step_and_the_default_budget():
    out = subprocess.run([sys.executable, "-m", "toolkit.bin.gpu_check", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(gpu_check.Path(__file__).resolve().parents[1])})
    assert out.returncode == 0
    for name in STEP_NAMES:
        assert name in out.stdout
    assert "default 420" in out.stdout and "no CUDA device" in out.stdout


def test_every_step_has_a_device_function():
    assert set(gpu_steps.STEPS) == set(STEP_NAMES)


def test_steps_run_in_order_each_given_what_is_left_of_the_budget():
    clock, seen = FakeClock(), []
    steps = [Step("a", "", 10), Step("b", "", 10), Step("c", "", 10)]
    res = run_steps(steps, 100, fake_runner(clock, {"a": 30, "b": 25, "c": 5}, seen), clock=clock)
    assert seen == [("a", 100), ("b", 70), ("c", 45)]
    assert [(r.name, r.status, r.seconds) for r in res] == [("a", "ok", 30), ("b", "ok", 25), ("c", "ok", 5)]


def test_a_step_that_needs_more_than_is_left_is_skipped_with_the_reason_and_later_ones_still_run():
    clock, seen = FakeClock(), []
    steps = [Step("a", "", 10), Step("big", "", 50), Step("small", "", 5)]
    res = run_steps(steps, 60, fake_runner(clock, {"a": 20, "big": 0, "small": 1}, seen), clock=clock)
    assert [name for name, _ in seen] == ["a", "small"]
    skipped = res[1]
    assert skipped.status == "skipped" and skipped.seconds == 0
    assert skipped.notes == ["out of budget: 40 s left of 60, needs at least 50 s"]


def test_a_zero_budget_runs_nothing():
    clock, seen = FakeClock(), []
    res = run_steps(gpu_check.STEPS, 0, fake_runner(clock, {}, seen), clock=clock)
    assert seen == [] and {r.status for r in res} == {"skipped"}


def test_report_names_machine_driver_versions_and_has_one_row_per_step():
    results = [StepResult("alignment_dp", "ok", 12.345, [["ours", "3.1 ms"], ["same path", "True"]]),
               StepResult("train_bf16", "skipped", 0.0, notes=["out of budget: 5 s left of 420, needs at least 60 s"]),
               StepResult("ddp_torchrun", "FAIL", 3.0, [["a|b", "x"]])]
    text = markdown_report(results, INFO, 420, "2026-12-03 07:00 UTC")
    lines = text.splitlines()
    assert "- GPU: H200, 139 GiB; driver 570.1" in lines
    assert "- torch 2.13.0 (CUDA 13.0), numba 0.68, Concord commit abc123" in lines
    table = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| step")]
    assert table == ["| alignment_dp | ok | 12.3 | ours 3.1 ms; same path True |",
                     "| train_bf16 | skipped | 0.0 | out of budget: 5 s left of 420, needs at least 60 s |",
                     "| ddp_torchrun | FAIL | 3.0 | a/b x |"]   # a '|' in a figure cannot break the table


def test_stubbed_run_writes_the_report_and_says_stub_never_ok(tmp_path):
    env = {**os.environ, gpu_check.STUB_ENV: "1", "PYTHONPATH": str(gpu_check.Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-m", "toolkit.bin.gpu_check", "--out", str(tmp_path), "--steps",
                          "alignment_dp", "decode_rtf"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "gpu_check.md").read_text()
    assert out.stdout == report
    assert "| alignment_dp | stub |" in report and "| decode_rtf | stub |" in report
    assert "| ok |" not in report and "train_bf16" not in report
    assert (tmp_path / "gpu_check.json").exists() and (tmp_path / "logs" / "alignment_dp.json").exists()


def test_a_worker_that_dies_without_a_result_is_an_error_row_with_its_last_line(tmp_path):
    res = gpu_check.run_worker(Step("no_such_step", "", 1), 60, tmp_path)   # the worker refuses the name
    assert res.status == "error"
    assert res.notes[0].startswith("exit 2: ") and "invalid choice: 'no_such_step'" in res.notes[0]
    assert "invalid choice" in (tmp_path / "logs" / "no_such_step.log").read_text()


def test_a_step_past_its_limit_is_killed_with_its_children_and_reported_as_timeout(tmp_path, monkeypatch):
    import time
    pid_file = tmp_path / "child.pid"
    sleeper = tmp_path / "sleeper.py"   # stands in for the worker: it starts a child that would outlive it
    sleeper.write_text("import subprocess, time\n"
                       "child = subprocess.Popen(['sleep', '300'])\n"
                       f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                       "time.sleep(300)\n")
    monkeypatch.setattr(gpu_check.subprocess, "Popen", _popen_running(sleeper))
    t0 = time.monotonic()
    res = gpu_check.run_worker(Step("alignment_dp", "", 1), 5, tmp_path)
    assert res.status == "timeout" and res.notes == ["killed at the budget's 5 s"]
    assert time.monotonic() - t0 < 60
    child = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _popen_running(script):
    real = subprocess.Popen

    def popen(cmd, **kw):
        return real([sys.executable, str(script)], **kw)
    return popen
