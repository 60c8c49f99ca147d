"""Faults a long run meets: a full disk while saving, a kill while saving, a second run into
the same experiment dir, a SIGTERM to run.sh or run.pl (nothing may keep running)."""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit.bin.train import main as train_main
from toolkit.train import checkpoint as ckpt
from toolkit.train.guard import ExperimentLock

from test_trainer import build_stand_in, tiny_config, tiny_data, train_args  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp")) if d.is_dir() else []


# ---- a full disk -----------------------------------------------------------------------------------
class DiskFullAfter:
    """A file whose writes fail with ENOSPC once ``limit`` bytes are written (as a full disk does)."""

    def __init__(self, f, limit: int):
        self.f, self.left = f, limit

    def write(self, data) -> int:
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_during_torch_save_says_no_space_left_and_keeps_the_older_checkpoint(tmp_path, monkeypatch):
    state = {"w": torch.randn(64, 64)}
    older = ckpt.save_checkpoint(tmp_path, 1, state)
    real_atomic_write = ckpt.atomic_write

    @contextlib.contextmanager
    def disk_fills_up(path, mode="w", **kw):
        with real_atomic_write(path, mode, **kw) as f:
            yield DiskFullAfter(f, 2000)
    monkeypatch.setattr(ckpt, "atomic_write", disk_fills_up)
    with pytest.raises(OSError, match=f"no space left on {tmp_path} .* while writing ckpt-2.pt") as e:
        ckpt.save_checkpoint(tmp_path, 2, state)  # torch says RuntimeError "unexpected pos" for this
    assert e.value.errno == errno.ENOSPC and "inline_container" not in str(e.value)
    assert torch.equal(ckpt.load_checkpoint(older)["w"], state["w"])
    assert not (tmp_path / "ckpt-2.pt").exists() and temp_files(tmp_path) == []


def test_a_full_disk_in_training_is_reported_on_stderr_and_in_train_log(tiny_data, tmp_path, monkeypatch, capsys):
    real_save, saves = torch.save, []

    def save_then_disk_full(obj, f, *a, **k):
        saves.append(1)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save_then_disk_full)
    exp = tmp_path / "exp"
    rc = train_main(train_args(tiny_data, tiny_config(tmp_path / "c.yaml"), exp), build_model=build_stand_in)
    message = f"no space left on {exp / 'checkpoints'}"
    assert rc == 2 and message in capsys.readouterr().err
    log = (exp / "train.log").read_text()
    assert "ERROR" in log and message in log and "checkpoint of step 8 not saved" in log
    kept = ckpt.list_checkpoints(exp / "checkpoints")
    assert [s for s, _ in kept] == [4] and ckpt.load_checkpoint(kept[0][1])["step"] == 4
    assert temp_files(exp / "checkpoints") == []


# ---- a kill while saving -------------------------------------------------------------------------
def test_unfinished_checkpoint_temp_files_are_removed_at_the_next_start(tiny_data, tmp_path):
    exp = tmp_path / "exp"
    (exp / "checkpoints").mkdir(parents=True)
    (exp / "checkpoints" / ".ckpt-4.pt.k3j2_x.tmp").write_bytes(b"")  # what a SIGTERM mid-save leaves
    (exp / "checkpoints" / "notes.tmp").write_text("not ours")
    cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1)
    assert train_main(train_args(tiny_data, cfg, exp, "--resume"), build_model=build_stand_in) == 0
    assert temp_files(exp / "checkpoints") == ["notes.tmp"]
    assert "removed 1 unfinished checkpoint temp file(s)" in (exp / "train.log").read_text()


# ---- one run per experiment dir ------------------------------------------------------------------
HOLD_LOCK = ("import sys, time; sys.path.insert(0, %r); from toolkit.train.guard import ExperimentLock\n"
             "with ExperimentLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")


def test_a_second_training_into_the_same_exp_dir_is_refused_naming_the_running_one(tiny_data, tmp_path, capsys):
    exp = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK % str(REPO), str(exp)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = tiny_config(tmp_path / "c.yaml", max_epochs=1)
        assert train_main(train_args(tiny_data, cfg, exp, "--resume"), build_model=build_stand_in) == 2
        err = capsys.readouterr().err
        assert f"{exp} is being trained by another run (pid {holder.pid} on " in err
        assert not (exp / "checkpoints").exists()  # the refused run touched nothing
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, no cleanup runs
        holder.wait()
    assert train_main(train_args(tiny_data, cfg, exp, "--resume"), build_model=build_stand_in) == 0


def test_the_lock_is_free_again_once_its_holder_leaves(tmp_path):
    with ExperimentLock(tmp_path):
        pass
    with ExperimentLock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / "train.lock").read_text()


HOLD_LOCK_AND_FORK = (
    "import os, sys, time; sys.path.insert(0, %r); from toolkit.train.guard import ExperimentLock\n"
    "with ExperimentLock(sys.argv[1]):\n"
    "    child = os.fork()\n"
    "    if child == 0:\n        time.sleep(120); os._exit(0)\n"
    "    print(child, flush=True); time.sleep(120)")


def test_a_killed_runs_forked_workers_do_not_keep_its_lock(tmp_path):
    """Data-loader workers are forked while the lock is held; when the run is SIGKILLed they
    live on for a while, and a rerun must not be refused because of them."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK_AND_FORK % str(REPO), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait()
        os.kill(child, 0)  # the forked worker is still alive...
        with ExperimentLock(tmp_path):  # ...and the lock is free all the same
            pass
    finally:
        os.kill(child, signal.SIGKILL)


# ---- SIGTERM to run.sh / run.pl --------------------------------------------------------------------
FAKE_PYTHON = """#!/bin/bash
echo $$ >> "$FAKE_PIDS"
exec sleep 120
"""


def make_recipe(root: Path) -> Path:
    """A recipe dir whose 'python' is a stand-in that records its pid and sleeps: a stage
    that would run for long, with every input a stage 4 and a stage 5 need."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text(FAKE_PYTHON)
    (root / "bin" / "python").chmod(0o755)
    template = root / "egs" / "TEMPLATE"
    template.mkdir(parents=True)
    (template / "asr.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "asr.sh")
    recipe = root / "egs" / "r"
    recipe.mkdir()
    (recipe / "path.sh").write_text(f'export PATH="{root / "bin"}:{REPO / "utils"}:$PATH"\n')
    (recipe / "cmd.sh").write_text('export train_cmd="run.pl --max-jobs-run 4" decode_cmd="run.pl" cuda_cmd="run.pl"\n')
    for x in ("train", "dev"):
        (recipe / "data" / x).mkdir(parents=True)
        (recipe / "data" / x / "wav.scp").write_text("")
        (recipe / "dump" / x / "seq").mkdir(parents=True)
        (recipe / "dump" / x / "feats.scp").write_text("")
    (recipe / "dump" / "train" / "cmvn.ark").write_text("")
    (recipe / "data" / "lang").mkdir()
    (recipe / "data" / "lang" / "wp8.model").write_text("")
    return recipe


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def started_pids(path: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> list[int]:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        pids = [int(x) for x in path.read_text().split()] if path.exists() else []
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"{count} stand-in process(es) did not start (exit {proc.poll()}): "
                         f"{proc.stderr.read() if proc.poll() is not None else ''}")


@pytest.mark.parametrize("stage, jobs", [(5, 1), (4, 2)])  # 5: a training; 4: run.pl with 2 jobs
def test_sigterm_to_run_sh_stops_the_stages_commands_too(tmp_path, stage, jobs):
    recipe = make_recipe(tmp_path)
    pid_file = tmp_path / "pids"
    cmd = [str(recipe.parent / "TEMPLATE" / "asr.sh"), "--stage", str(stage), "--stop-stage", str(stage),
           "--nj", str(jobs), "--train-set", "train", "--valid-set", "dev", "--test-sets", "dev",
           "--text-only-set", "", "--bpe-size", "8", "--train-config", "conf/t.yaml"]
    proc = subprocess.Popen(cmd, cwd=recipe, env={**os.environ, "FAKE_PIDS": str(pid_file)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    pids = []
    try:
        pids = started_pids(pid_file, jobs, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert "got SIGTERM: stopping the running command" in err
        end = time.time() + 10
        while any(alive(p) for p in pids) and time.time() < end:
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], "a stage's command kept running after run.sh was stopped"
    finally:
        for p in pids:  # only the stand-ins this test started, should the assertion fail
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_to_run_pl_stops_every_running_job(tmp_path):
    pid_file = tmp_path / "pids"
    job = f"echo $$ >> {pid_file}; exec sleep 120"
    proc = subprocess.Popen([str(REPO / "utils" / "run.pl"), "--max-jobs-run", "3", "JOB=1:3",
                             str(tmp_path / "log" / "j.JOB.log"), "bash", "-c", job],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    pids = []
    try:
        pids = started_pids(pid_file, 3, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143 and "run.pl: got SIGTERM: stopped 3 running job(s)" in err
        assert not [p for p in pids if alive(p)]
    finally:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
