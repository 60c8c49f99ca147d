"""SIGKILL at an arbitrary step, then ``--resume``: the same losses, step for step, and the
same final weights as a run that was never interrupted (CPU). (A corrupt latest
checkpoint on resume is covered in-process in test_trainer.py.)

The runs use text interleaving, SpecAugment, gradient accumulation and a loader worker
process, so every source of randomness the trainer owns is exercised. The stand-in
model draws from the global torch RNG (dropout, phone masking) like the real one.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit.train import checkpoint as ckpt
from synthetic_data import write_lang_dir, write_paired_set, write_text_set
from toolkit.utils.config import dump_yaml

TEST_DIR = Path(__file__).resolve().parent
REPO = TEST_DIR.parent
LAUNCH = ("import sys; sys.path.insert(0, %r); from test_trainer import build_stand_in; "
          "from toolkit.bin.train import main; sys.exit(main(sys.argv[1:], build_model=build_stand_in))" % str(TEST_DIR))
# slow enough (sleep per forward) that the test can kill it mid-run
CONFIG = {"model": "stand_in", "model_conf": {"sleep": 0.04}, "seed": 11, "max_epochs": 2,
          "batching": {"max_frames": 600, "max_tokens": 300, "text_ratio": 0.5, "num_workers": 1},
          "accum_grad": 2, "scheduler_conf": {"warmup_steps": 3}, "save_every_steps": 2, "keep_last": 3,
          "log_every_steps": 2, "tensorboard": False, "progress_bar": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_paired_set(root / "train", 16, seed=0)
    write_paired_set(root / "dev", 3, seed=9, prefix="dev")
    write_text_set(root / "text_only", 30)
    write_lang_dir(root / "lang")
    dump_yaml(CONFIG, root / "train.yaml")
    clean = root / "clean"
    r = subprocess.run(command(root, clean), cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, clean


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def command(root: Path, exp: Path, *extra) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "--config", str(root / "train.yaml"), "--train-data", str(root / "train"),
            "--valid-data", str(root / "dev"), "--text-data", str(root / "text_only"),
            "--lang-dir", str(root / "lang"), "--cmvn", str(root / "train" / "cmvn.ark"), "--exp", str(exp), *extra]


def logged_steps(exp: Path) -> list[int]:
    path = exp / "losses.tsv"
    if not path.exists():
        return []
    return [int(l.split("\t")[0]) for l in path.read_text().splitlines() if l.count("\t") == 4]


def run_and_kill(root: Path, exp: Path, steps_after_checkpoint: int = 2) -> int:
    """Start training, SIGKILL it once a checkpoint exists and it has gone a few steps further."""
    proc = subprocess.Popen(command(root, exp), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 90
    try:
        while time.time() < deadline:
            found = ckpt.list_checkpoints(exp / "checkpoints")
            steps = logged_steps(exp)
            if len(found) >= 2 and steps and steps[-1] >= found[-1][0] + steps_after_checkpoint:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return found[-1][0]
            if proc.poll() is not None:
                pytest.fail("training finished before it could be killed: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.01)
        pytest.fail("no checkpoint within 90 s")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def resume(root: Path, exp: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(command(root, exp, "--resume"), cwd=REPO, env=env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def final_weights(exp: Path) -> dict:
    return ckpt.load_checkpoint(ckpt.list_checkpoints(exp / "checkpoints")[-1][1])["model"]


def assert_same_run(exp: Path, clean: Path) -> None:
    assert (exp / "losses.tsv").read_text() == (clean / "losses.tsv").read_text()
    a, b = final_weights(exp), final_weights(clean)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_then_resume_gives_the_same_losses_step_for_step(setup):
    root, clean = setup
    exp = root / "killed"
    killed_after = run_and_kill(root, exp)
    assert max(logged_steps(exp)) > killed_after  # it really had gone past the checkpoint
    assert len(logged_steps(exp)) < len(logged_steps(clean))  # ...and had not finished
    resume(root, exp)
    assert_same_run(exp, clean)
