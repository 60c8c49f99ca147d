"""The GPU check: a fixed list of device steps, each run in its own process within a time
budget, and one markdown report (the machine, driver, torch and numba versions, a row per step).

Each step is ``python -m toolkit.bench.gpu_steps <step> --time-limit S --json F`` (a crash,
hang or out-of-memory in one step cannot take the others or the report with it); the worker
writes ``{"ok": bool, "figures": [[label, value], ...], "notes": [...]}``. A step starts only
when the budget has at least its ``min_s`` left, and runs with what is left as its time
limit; one that would not fit is skipped with the reason in its row. Output in ``--out``:
``gpu_check.md`` (the table), ``gpu_check.json`` (every figure), ``logs/<step>.log``.

``CONCORD_GPU_CHECK_STUB=1`` (set only by the tests) pretends there is a device and makes
each worker answer without touching one: the rows then say ``stub``, never ``ok``.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from toolkit.utils.fileio import atomic_write

STUB_ENV = "CONCORD_GPU_CHECK_STUB"
DEFAULT_BUDGET_S = 420.0


@dataclass(frozen=True)
class Step:
    name: str
    what: str       # one line for --help and the report
    min_s: float    # not started with less budget left than this


STEPS = (
    Step("cuda_tests", "pytest -m cuda on the device (CONCORD_CUDA_TESTS=device): the CUDA kernels == CPU", 40),
    Step("alignment_dp", "alignment DP at (64,500,150,512,12) and (8,1500,400,512,12): ours vs a PyTorch "
                         "frame-wavefront reference; consistency loss fwd+bwd vs plain bmm; memory floor", 30),
    Step("transducer_loss", "HAT loss at B=8 T=400 U=100 V=4096: pruned vs full, time and "
                            "torch.cuda.max_memory_allocated", 30),
    Step("train_bf16", "200 bf16-autocast steps of model_paper.yaml on synthetic batches: steps/s, audio s/s, "
                       "peak memory; first steps' losses vs float32", 60),
    Step("ddp_torchrun", "torchrun --nproc_per_node 1, NCCL, 20 steps of toolkit.bin.train (the DDP path)", 30),
    Step("decode_rtf", "streaming and full-context decoding RTF of a mini-sized model on the GPU", 20),
)
STEP_NAMES = tuple(s.name for s in STEPS)


@dataclass
class StepResult:
    name: str
    status: str               # ok | FAIL | error | timeout | skipped | stub
    seconds: float
    figures: list = field(default_factory=list)   # [[label, value], ...]
    notes: list = field(default_factory=list)


def stubbed() -> bool:
    return os.environ.get(STUB_ENV, "") not in ("", "0")


def run_steps(steps, budget_s: float, run_one: Callable[[Step, float], StepResult],
              clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = lambda s: None
              ) -> list[StepResult]:
    """Run ``steps`` in order within ``budget_s`` seconds: ``run_one(step, time_limit_s)`` for
    each step that has at least ``step.min_s`` left, a ``skipped`` row with the reason otherwise."""
    start, out = clock(), []
    for step in steps:
        left = budget_s - (clock() - start)
        if left < step.min_s:
            out.append(StepResult(step.name, "skipped", 0.0,
                                  notes=[f"out of budget: {max(left, 0):.0f} s left of {budget_s:.0f}, "
                                         f"needs at least {step.min_s:.0f} s"]))
            log(f"{step.name}: skipped (out of budget)")
            continue
        log(f"{step.name}: running (limit {left:.0f} s)")
        t0 = clock()
        res = run_one(step, left)
        res.seconds = clock() - t0
        log(f"{step.name}: {res.status} in {res.seconds:.1f} s")
        out.append(res)
    return out


def run_worker(step: Step, time_limit_s: float, out_dir: Path) -> StepResult:
    """One step in a fresh process, killed at ``time_limit_s``; its output goes to logs/<step>.log."""
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result_file = logs / f"{step.name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "toolkit.bench.gpu_steps", step.name, "--time-limit", f"{time_limit_s:.0f}",
           "--json", str(result_file)]
    root = str(Path(__file__).resolve().parents[2])  # this toolkit, whatever the working dir
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with open(logs / f"{step.name}.log", "w", encoding="utf-8") as log:
        # its own process group, so that a step killed at the limit takes its children along
        # (pytest, torchrun's ranks, bench_transducer's workers) and frees the device
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=time_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return StepResult(step.name, "timeout", 0.0, notes=[f"killed at the budget's {time_limit_s:.0f} s"])
    if not result_file.exists():
        tail = _tail(logs / f"{step.name}.log")
        return StepResult(step.name, "error", 0.0, notes=[f"exit {proc.returncode}: {tail}"])
    data = json.loads(result_file.read_text())
    status = "stub" if data.get("stub") else ("ok" if data["ok"] else "FAIL")
    return StepResult(step.name, status, 0.0, data.get("figures", []), data.get("notes", []))


def _tail(path: Path) -> str:
    lines = [s.strip() for s in path.read_text(encoding="utf-8", errors="replace").splitlines() if s.strip()]
    return lines[-1][:300] if lines else "no output"


def machine_info() -> dict:
    """What the report's header names: host CPU, GPU, driver, CUDA, torch, numba, git commit."""
    import numba
    import torch
    info = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
                       f"{platform.python_version()}",
            "torch": torch.__version__, "torch CUDA": str(torch.version.cuda), "numba": numba.__version__,
            "gpu": "none", "driver": "unknown", "commit": _git_commit()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name}, {p.total_memory / 2 ** 30:.0f} GiB, compute capability {p.major}.{p.minor}"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["driver"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def markdown_report(results: list[StepResult], info: dict, budget_s: float, when: str) -> str:
    """The report: a header naming the machine and versions, then one table row per step."""
    head = [f"# concord-gpu-check ({when})", "",
            f"- machine: {info['machine']}",
            f"- GPU: {info['gpu']}; driver {info['driver']}",
            f"- torch {info['torch']} (CUDA {info['torch CUDA']}), numba {info['numba']}, Concord commit {info['commit']}",
            f"- budget {budget_s:.0f} s, used {sum(r.seconds for r in results):.0f} s", "",
            "| step | status | seconds | figures |", "|---|---|---:|---|"]
    rows = []
    for r in results:
        cells = [f"{label} {value}" for label, value in r.figures] + list(r.notes)
        text = "; ".join(cells).replace("|", "/").replace("\n", " ") or "-"
        rows.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {text} |")
    return "\n".join(head + rows) + "\n"


def write_report(out_dir: Path, results: list[StepResult], info: dict, budget_s: float, when: str) -> str:
    text = markdown_report(results, info, budget_s, when)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "gpu_check.md") as f:
        f.write(text)
    with atomic_write(out_dir / "gpu_check.json") as f:
        json.dump({"when": when, "budget_s": budget_s, "info": info, "steps": [asdict(r) for r in results]}, f,
                  indent=1)
    return text
