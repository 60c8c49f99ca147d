"""The device steps of concord-gpu-check, one per process (see toolkit.bench.gpu_check).

Usage:
    python -m toolkit.bench.gpu_steps alignment_dp --json /tmp/a.json --time-limit 120
    python -m toolkit.bench.gpu_steps train_bf16 --device cpu --small --json /tmp/t.json   # the code path on CPU

Each step returns (ok, figures, notes): ``ok`` is its check (equal paths, finite and matching
losses, identical hypotheses, passing tests), figures are ``[label, value]`` pairs for the
report. ``--device cpu --small`` runs the same code at toy sizes (for developing without a GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.bench.gpu_check import STEP_NAMES, stubbed
from toolkit.utils.fileio import atomic_write

REPO = Path(__file__).resolve().parents[2]
ALIGNMENT_SHAPES = ((64, 500, 150, 512, 12), (8, 1500, 400, 512, 12))
TRAIN_STEPS, COMPARE_STEPS, TRAIN_BATCH = 200, 5, (16, 1000)   # paper model; (utterances, frames)
LOSS_RTOL = 0.02   # bf16 autocast vs float32, each of the first COMPARE_STEPS losses, relative
DDP_STEPS = 20


@dataclass(frozen=True)
class Ctx:
    device: str
    small: bool
    deadline: float   # time.monotonic() by which the step must be done

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms"


def _env_with_repo(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **extra}


# ---- pytest -m cuda ------------------------------------------------------------------------
def cuda_tests(ctx: Ctx):
    tests = REPO / "test"
    if not tests.is_dir():
        return False, [], [f"no test/ beside {REPO / 'toolkit'} (an installed copy): run from a checkout"]
    xml = Path(tempfile.mkdtemp()) / "junit.xml"
    env = _env_with_repo(**({"CONCORD_CUDA_TESTS": "device"} if ctx.device == "cuda" else {}))
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           str(tests)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(ctx.left(), 1))
    print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n")
    if not xml.exists():
        return False, [], [f"pytest exit {proc.returncode}, no report"]
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for suite in ET.parse(xml).getroot().iter("testsuite"):
        for k in counts:
            counts[k] += int(suite.get(k, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(case.get("name"))
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    figures = [["passed", passed], ["failed", counts["failures"] + counts["errors"]], ["skipped", counts["skipped"]]]
    notes = [f"failing: {', '.join(failed[:4])}"] if failed else []
    return proc.returncode == 0 and passed > 0, figures, notes


# ---- alignment DP --------------------------------------------------------------------------
def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> float:
    """Bytes per second moved by a device-to-device copy (read + write), best of 5."""
    import torch
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    y = torch.empty_like(x)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        y.copy_(x)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * 4 / best


def _sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def _numba_cuda_state() -> str:
    """Whether best_path(backend="auto") can use the numba.cuda kernels here, or falls back to torch."""
    from toolkit.losses import best_alignment_cuda
    try:
        from numba.cuda.cudadrv import nvvm
        has_nvvm = nvvm.is_available()
    except Exception:  # noqa: BLE001 (numba's import errors vary by version)
        has_nvvm = False
    return f"device {best_alignment_cuda.available()}, libNVVM {has_nvvm}"


def alignment_dp(ctx: Ctx):
    from toolkit.bin.bench_alignment import bench_loss, bench_shape
    shapes = ((4, 60, 20, 16, 2),) if ctx.small else ALIGNMENT_SHAPES
    rng = np.random.default_rng(0)
    bw = copy_bandwidth(ctx.device, 1 << 24 if ctx.small else 1 << 30)
    figures, ok = [["copy bandwidth", f"{bw / 1e9:.0f} GB/s"], ["numba.cuda kernels", _numba_cuda_state()]], True
    for B, n, m, d, L in shapes:
        res = bench_shape(B, n, m, d, L, 3, ctx.device, rng, mas=False)
        loss = bench_loss(B, n, m, d, L, 3, ctx.device, rng)
        floor = L * B * n * m * 4 / bw   # the float32 cost tensor read once
        tag = f"({B},{n},{m},{d},{L})"
        figures += [[f"{tag} ours DP+backtrace", f"{_ms(res['ours_s'])} ({res['ours_s'] / floor:.1f}x the floor "
                                                  f"{_ms(floor)})"],
                    [f"{tag} PyTorch reference", f"{_ms(res['torch_loop_s'])} ({res['loop_over_ours']:.1f}x ours)"],
                    [f"{tag} cost matrix", f"{_ms(res['cost_matmul_s'])} ({res['cost_matmul_s'] / res['plain_bmm_s']:.2f}x bmm)"],
                    [f"{tag} loss fwd+bwd", f"{_ms(loss['loss_fwd_bwd'])} ({loss['loss_fwd_bwd'] / loss['plain_bmm']:.2f}x "
                                           f"plain bmm {_ms(loss['plain_bmm'])}; fwd {loss['loss_fwd'] / loss['plain_bmm']:.2f}x)"],
                    [f"{tag} same path cost as the reference", str(res["paths_equal_cost"])]]
        ok &= bool(res["paths_equal_cost"])
        if ctx.left() < 10:
            break
    return ok, figures, ["PyTorch reference: best_alignment_reference (one vectorised step per frame: the "
                         "default pattern has no (i, j-1) edge, so each frame row is its wavefront)"]


# ---- transducer loss -----------------------------------------------------------------------
def transducer_loss(ctx: Ctx):
    out = Path(tempfile.mkdtemp()) / "transducer.json"
    cmd = [sys.executable, "-m", "toolkit.bin.bench_transducer", "--device", ctx.device, "--shapes",
           "tiny" if ctx.small else "paper", "--methods", "pruned", "full", "full_whole",
           "--repeat", "1" if ctx.small else "3", "--json", str(out)]
    proc = subprocess.run(cmd, env=_env_with_repo(), capture_output=True, text=True, timeout=max(ctx.left(), 1))
    print(proc.stdout, proc.stderr[-5000:], sep="\n")
    if not out.exists():
        return False, [], [f"bench_transducer exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}"]
    res = json.loads(out.read_text())[0]
    rows, ref = res["methods"], res["methods"].get("pruned", {})
    figures = [["shape", ",".join(f"{k}={v}" for k, v in res["shape"].items())]]
    for name, r in rows.items():
        if "error" in r:
            figures.append([name, f"failed: {r['error']}"])
            continue
        rel = "" if name == "pruned" or "seconds" not in ref else \
            f" ({r['seconds'] / ref['seconds']:.2f}x time, {r['peak_bytes'] / max(ref['peak_bytes'], 1):.2f}x memory of pruned)"
        figures.append([name, f"{_ms(r['seconds'])}, peak {r['peak_bytes'] / 2 ** 20:.0f} MiB{rel}"])
    return all("error" not in r for r in rows.values()), figures, [
        f"forward + backward of one HAT decoder, best of {1 if ctx.small else 3} steps (bench_transducer)"]


# ---- training in bf16 ------------------------------------------------------------------------
def _train_setup(small: bool, dropout: bool):
    from toolkit.train.config import RESOURCE_CONF, fill_model_defaults, resolve_config
    conf = resolve_config(RESOURCE_CONF / ("train_tiny.yaml" if small else "train_paper.yaml"))
    conf.update(vocab_size=256 if small else 4096, num_phones=64)
    if not dropout:
        conf["model_conf"] = {k: ({**v, "dropout": 0.0} if isinstance(v, dict) and "dropout" in v else v)
                              for k, v in conf["model_conf"].items()}
    return fill_model_defaults(conf)


def _train_steps(conf, state, batches, device, amp, steps, deadline, warmup=0):
    """``steps`` optimizer steps (past every warm-up of the objective) from ``state`` ->
    (losses, seconds of the steps after ``warmup``, audio seconds of those, peak bytes)."""
    import torch
    from toolkit.models import build_model
    from toolkit.train.objective import Objective
    from toolkit.train.trainer import build_optimizer
    torch.manual_seed(0)
    model = build_model(conf).to(device)
    if state is not None:
        model.load_state_dict(state)
    model.train()
    objective = Objective.for_model(conf["objective"], model)
    opt = build_optimizer(model, conf["optim"], conf["optim_conf"])
    scheduled = [m for m in model.modules() if hasattr(m, "set_step")]
    losses, timed, audio = [], 0.0, 0.0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps):
        if time.monotonic() > deadline:
            break
        batch, meta = batches[i]
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for m in scheduled:
            m.set_step(10 ** 6 + i)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = objective(model, batch, 10 ** 6 + i)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), conf["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        _sync(device)
        if i >= warmup:
            timed += time.perf_counter() - t0
            audio += meta["audio_seconds"]
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    n_params = sum(p.numel() for p in model.parameters())
    return losses, timed, audio, peak, n_params


def train_bf16(ctx: Ctx):
    import torch
    from toolkit.bin.bench_train import _Batches
    B, T = (4, 200) if ctx.small else TRAIN_BATCH
    steps, compare = (4, 2) if ctx.small else (TRAIN_STEPS, COMPARE_STEPS)
    conf = _train_setup(ctx.small, dropout=False)
    batches = _Batches(4, B, T, conf["vocab_size"], conf["num_phones"])
    torch.manual_seed(0)
    from toolkit.models import build_model
    init = build_model(conf).state_dict()
    f32 = _train_steps(conf, init, batches, ctx.device, False, compare, ctx.deadline)[0]
    b16 = _train_steps(conf, init, batches, ctx.device, True, compare, ctx.deadline)[0]
    rel = [abs(a - b) / max(abs(a), 1e-9) for a, b in zip(f32, b16)]
    match = len(rel) == compare and max(rel) <= LOSS_RTOL
    del init
    losses, secs, audio, peak, n_params = _train_steps(_train_setup(ctx.small, dropout=True), None, batches,
                                                       ctx.device, True, steps, ctx.deadline - 5, warmup=3)
    done = len(losses)
    finite = all(math.isfinite(x) for x in losses)
    figures = [["model", f"{'model_tiny' if ctx.small else 'model_paper'}.yaml, {n_params / 1e6:.1f}M parameters, "
                         f"batch {B}x{T} frames, paired steps"],
               ["steps", f"{done} of {steps}" + ("" if done == steps else " (stopped at the time limit)")],
               ["steps/s", f"{(done - 3) / max(secs, 1e-9):.2f}"], ["audio s/s", f"{audio / max(secs, 1e-9):.0f}"],
               ["peak memory", f"{peak / 2 ** 30:.1f} GiB"],
               ["loss first/last", f"{losses[0]:.2f} / {losses[-1]:.2f}" if losses else "none"],
               [f"bf16 vs float32, first {compare} steps (dropout 0)",
                "rel diff " + ", ".join(f"{r:.4f}" for r in rel) + f" (tolerance {LOSS_RTOL})"]]
    return match and finite and done > 3, figures, []


# ---- torchrun DDP ----------------------------------------------------------------------------
def torchrun_training(work: Path, ngpu: int, steps: int, timeout: float) -> tuple[bool, list, list]:
    """``torchrun --nproc_per_node 1 -m toolkit.bin.train`` on synthetic data for ``steps``
    steps; checks that it wrapped the model in DDP and trained every step to a finite loss."""
    from toolkit.bench.synthetic_data import write_lang_dir, write_paired_set, write_text_set
    from toolkit.train.config import RESOURCE_CONF
    write_paired_set(work / "train", 48, seed=0)
    write_text_set(work / "text_only", 60)
    write_lang_dir(work / "lang")
    exp = work / "exp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "toolkit.bin.train", "--ngpu", str(ngpu), "--config", str(RESOURCE_CONF / "train_tiny.yaml"),
           "--train-data", str(work / "train"), "--text-data", str(work / "text_only"),
           "--lang-dir", str(work / "lang"), "--cmvn", str(work / "train" / "cmvn.ark"), "--exp", str(exp),
           "--set", f"max_steps={steps}", "--set", "tensorboard=false", "--set", "progress_bar=false",
           "--set", "batching.num_workers=0", "--set", "log_every_steps=10"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env_with_repo(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")),
                          capture_output=True, text=True, timeout=max(timeout, 1))
    wall = time.perf_counter() - t0
    print(proc.stdout[-5000:], proc.stderr[-10000:], sep="\n")
    log = (exp / "train.log").read_text() if (exp / "train.log").exists() else ""
    backend = "nccl" if ngpu else "gloo"
    wrapped = f"DistributedDataParallel over 1 rank(s), backend {backend}" in log
    rows = [ln.split("\t") for ln in (exp / "losses.tsv").read_text().splitlines()[1:]] \
        if (exp / "losses.tsv").exists() else []
    last_step = max((int(r[0]) for r in rows), default=0)
    finite = bool(rows) and all(math.isfinite(float(r[4])) for r in rows)
    figures = [["exit", proc.returncode], ["wrapped in DDP", f"{wrapped} ({backend})"],
               ["steps", f"{last_step} of {steps}"], ["losses finite", finite], ["wall", f"{wall:.1f} s"]]
    notes = [] if proc.returncode == 0 else [(proc.stderr.strip().splitlines() or [""])[-1][:200]]
    return proc.returncode == 0 and wrapped and last_step == steps and finite, figures, notes


def ddp_torchrun(ctx: Ctx):
    with tempfile.TemporaryDirectory() as work:
        return torchrun_training(Path(work), 1 if ctx.device == "cuda" else 0, 2 if ctx.small else DDP_STEPS,
                                 ctx.left())


# ---- decoding RTF ----------------------------------------------------------------------------
class _IdsAsText:
    """Token ids as words: a random model has no wordpiece model, and only equality matters."""

    def decode(self, ids):
        return " ".join(str(int(i)) for i in ids)


def decode_rtf(ctx: Ctx):
    import torch
    from toolkit.bench.decode_speed import speech_like, time_concord_streaming, time_full
    from toolkit.features.fbank import FbankExtractor
    from toolkit.models import build_model
    from toolkit.models.experiment import Experiment
    from toolkit.train.config import RESOURCE_CONF, fill_model_defaults, resolve_config
    conf = fill_model_defaults({**resolve_config(RESOURCE_CONF / "train_tiny.yaml"), "vocab_size": 500,
                                "num_phones": 64})
    torch.manual_seed(0)
    model = build_model(conf)
    with torch.no_grad():  # an untrained model emits too few tokens to time the search
        for dec in (model.stream_decoder, model.full_decoder):
            dec.joiner.out.bias[0] = -6.0
    exp = Experiment(model.to(ctx.device).eval(), None, _IdsAsText(), conf)
    n, secs = (3, 1.5) if ctx.small else (32, 6.0)
    audio = [(f"utt{i:03d}", speech_like(i, secs * (0.6 + 0.4 * (i % 5) / 4))) for i in range(n)]
    feats = [(u, FbankExtractor().compute(a)) for u, a in audio]
    piece = 160 * model.chunk_size_frames
    time_concord_streaming(exp, audio[:1], piece)   # CUDA context, kernels, caches: not timed
    time_full(exp, feats[:2], 2)
    greedy = time_concord_streaming(exp, audio, piece)
    beam = time_concord_streaming(exp, audio, piece, method="beam", beam=4)
    batched, single = time_full(exp, feats, 16), time_full(exp, feats, 1)
    same = sum(batched.texts[u] == single.texts[u] for u in single.texts)
    figures = [["model", f"model_tiny.yaml (random, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M), "
                         f"{n} utterances, {greedy.audio_s:.0f} s"]]
    for t in (greedy, beam):
        figures.append([f"streaming {t.name}", f"RTF {t.rtf:.4f}, chunk median {t.chunk_ms(0.5):.1f} ms, "
                                               f"p95 {t.chunk_ms(0.95):.1f} ms"])
    figures += [["full-context greedy batch 16", f"RTF {batched.rtf:.4f}"],
                ["full-context greedy one at a time", f"RTF {single.rtf:.4f} ({single.rtf / batched.rtf:.1f}x batch 16)"],
                ["batched == one at a time", f"{same}/{n}"]]
    return same == n, figures, []


STEPS = {"cuda_tests": cuda_tests, "alignment_dp": alignment_dp, "transducer_loss": transducer_loss,
         "train_bf16": train_bf16, "ddp_torchrun": ddp_torchrun, "decode_rtf": decode_rtf}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=STEP_NAMES)
    p.add_argument("--json", required=True, help="where the result goes")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds this step may take")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--small", action="store_true", help="toy sizes (with --device cpu: the code path without a GPU)")
    args = p.parse_args(argv)
    if stubbed():  # the tests' stand-in: no device touched, and the row says so
        result = {"ok": True, "stub": True, "figures": [["stubbed", f"{args.step} ran nothing"]], "notes": []}
    else:
        ctx = Ctx(args.device, args.small, time.monotonic() + args.time_limit)
        ok, figures, notes = STEPS[args.step](ctx)
        result = {"ok": bool(ok), "figures": [[str(a), str(b)] for a, b in figures], "notes": notes}
    with atomic_write(args.json) as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
