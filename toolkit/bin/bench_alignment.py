"""Benchmark the best-alignment DP: our kernel vs a PyTorch frame loop vs monotonic_align.

Usage:
    python -m toolkit.bin.bench_alignment --threads 2 --repeat 3
    python -m toolkit.bin.bench_alignment --quick
    python -m toolkit.bin.bench_alignment --shapes 32,500,150,256,6 8,1500,400,512,12 --json bench.json

Per shape (B, n, m, d, L) it times, given the float32 cost matrix (L*B, n, m): our kernel
(DP + backtrace; numba on CPU, numba.cuda with --device cuda), the PyTorch frame loop
(toolkit.losses.best_alignment_reference), and monotonic_align's Cython MAS core (fed
-cost, frames as rows: its pattern is our frames_to_tokens; single-threaded), checks the
three paths cost the same, and prints ratios. The floor is a plain bmm a @ t^T of the same
shapes (the cost matrix adds the norms to it). For the first shape it also times the whole
consistency loss, forward alone and forward+backward, and prints forward / (cost matrix +
DP) and both against the plain bmm of the same run, and the backward beside the time of
writing one fresh speech-sized tensor (what handing autograd a dense gradient costs).
Lengths vary per example (70-100% of n and m). Methods run interleaved, --repeat rounds;
the table shows the best round (the machine may be shared), --json also the medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from toolkit.losses import best_alignment_reference
from toolkit.losses.best_alignment import alignment_cost_matrix, best_alignment_loss, best_path
from toolkit.utils.fileio import atomic_write
from toolkit.utils.cli import cli

FULL_SHAPES = ["32,500,150,256,6", "8,1500,400,512,12"]
QUICK_SHAPES = ["8,120,40,64,2", "4,300,80,64,3"]


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time_interleaved(runs: dict, repeat: int) -> tuple[dict, dict, dict]:
    """Time each ``name -> (fn, setup)`` once per round, rounds interleaved so a busy
    machine slows all methods alike; returns (min seconds, median seconds, last output)."""
    times, outs = {k: [] for k in runs}, {}
    for _ in range(repeat):
        for name, (fn, setup) in runs.items():
            arg = setup() if setup else None
            _sync()
            t0 = time.perf_counter()
            outs[name] = fn(arg) if setup else fn()
            _sync()
            times[name].append(time.perf_counter() - t0)
    return ({k: min(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in times.items()}, outs)


def _threads(n):
    """Wrap fn(arg) to run with torch (hence our kernel) limited to n threads."""
    def wrap(fn):
        def run(arg):
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return fn(arg)
            finally:
                torch.set_num_threads(before)
        return run
    return wrap


def _path_cost(cost64, tokens, n_lens):
    """Sum of cost over a frames_to_tokens path given as a token per frame: (P,) float64."""
    total = np.zeros(len(n_lens))
    for p, n in enumerate(n_lens):
        total[p] = cost64[p, np.arange(n), tokens[p, :n]].sum()
    return total


def _mas(cost, n_lens, m_lens):
    """monotonic_align's core on -cost; returns (runner, setup) so copies stay untimed."""
    from monotonic_align.core import maximum_path_c
    neg = (-cost).numpy()  # (P, n, m): frames are MAS's t_t rows, tokens its t_s columns
    nl, ml = n_lens.numpy().astype(np.int32), m_lens.numpy().astype(np.int32)

    def setup():  # it accumulates into its input in place, so each run gets a fresh copy
        path = np.empty(neg.shape, np.int32)
        path.fill(0)  # touched here: page faults on a lazily zeroed array would be timed as MAS's
        return neg.copy(), path

    def run(arg):
        value, path = arg
        maximum_path_c(path, value, nl, ml)
        return path
    return run, setup


def bench_shape(B, n, m, d, L, repeat, device, rng, mas=True):
    """Time one shape; returns a dict of seconds, ratios and the path-cost check."""
    n_lens = torch.from_numpy(rng.integers(int(0.7 * n), n + 1, B))  # (B,)
    m_lens = torch.from_numpy(np.minimum(rng.integers(int(0.7 * m), m + 1, B), n_lens.numpy()))
    speech = torch.randn(L, B, n, d, device=device)  # (L, B, n, d)
    text = torch.randn(L, B, m, d, device=device)  # (L, B, m, d)
    res = {"shape": dict(B=B, n=n, m=m, d=d, L=L), "device": device, "threads": torch.get_num_threads()}
    cost = alignment_cost_matrix(speech, text).reshape(L * B, n, m)  # (P, n, m)
    nl, ml = n_lens.repeat(L).to(device), m_lens.repeat(L).to(device)
    best_path(cost[:1, :8, :4], nl[:1].clamp(max=8), ml[:1].clamp(max=4))  # compile outside the timer
    fresh = cost.clone  # every DP run gets a new copy, so all start from the same cache state
    runs = {"plain_bmm": (lambda: torch.bmm(speech.reshape(-1, n, d), text.reshape(-1, m, d).transpose(1, 2)), None),
            "cost_matmul": (lambda: alignment_cost_matrix(speech, text), None),
            "ours": (lambda c: best_path(c, nl, ml), fresh)}
    if device == "cpu":  # per-core view: MAS is single-threaded
        runs["ours_1thread"] = (_threads(1)(lambda c: best_path(c, nl, ml)), fresh)
    runs["torch_loop"] = (lambda c: best_alignment_reference.frames_to_tokens(c, nl, ml), fresh)
    cpu_cost = cost.cpu()
    if mas:
        runs["monotonic_align"] = _mas(cpu_cost, nl.cpu(), ml.cpu())
    best, median, outs = _time_interleaved(runs, repeat)
    res.update({f"{k}_s": v for k, v in best.items()})
    res.update({f"{k}_median_s": v for k, v in median.items()})
    cost64, nln = cpu_cost.double().numpy(), nl.cpu().numpy()
    costs = {"ours": _path_cost(cost64, outs["ours"][1].cpu().numpy(), nln),
             "torch_loop": _path_cost(cost64, outs["torch_loop"][1].cpu().numpy(), nln)}
    if mas:
        costs["monotonic_align"] = _path_cost(cost64, outs["monotonic_align"].argmax(-1), nln)
    worst = max(float(np.max(np.abs(c - costs["ours"]) / np.maximum(costs["ours"], 1e-9))) for c in costs.values())
    res["max_rel_path_cost_diff"] = worst
    res["paths_equal_cost"] = worst < 1e-5
    res["loop_over_ours"] = res["torch_loop_s"] / res["ours_s"]
    if mas:
        res["mas_over_ours"] = res["monotonic_align_s"] / res["ours_s"]
        if "ours_1thread_s" in res:
            res["mas_over_ours_1thread"] = res["monotonic_align_s"] / res["ours_1thread_s"]
    return res


def bench_loss(B, n, m, d, L, repeat, device, rng):
    """Whole consistency loss (cost matrix + DP + loss), forward alone and forward+backward,
    and a plain bmm of the same shapes, timed interleaved: dict of seconds."""
    n_lens = torch.from_numpy(rng.integers(int(0.7 * n), n + 1, B))
    m_lens = torch.from_numpy(np.minimum(rng.integers(int(0.7 * m), m + 1, B), n_lens.numpy()))
    speech = torch.randn(L, B, n, d, device=device, requires_grad=True)
    text = torch.randn(L, B, m, d, device=device, requires_grad=True)

    def forward():
        return best_alignment_loss(speech, n_lens, text, m_lens)[0].mean()

    def step():
        forward().backward()
        speech.grad = text.grad = None
    a = speech.detach()
    runs = {"plain_bmm": (lambda: torch.bmm(a.reshape(-1, n, d), text.detach().reshape(-1, m, d).transpose(1, 2)), None),
            # what any backward pays to hand autograd a fresh dense gradient of the speech side
            "grad_write": (lambda: torch.empty_like(a).copy_(a), None),
            "loss_fwd": (forward, None), "loss_fwd_bwd": (step, None)}
    return _time_interleaved(runs, repeat)[0]


def _fmt(res):
    s = res["shape"]
    head = f"B={s['B']} n={s['n']} m={s['m']} d={s['d']} L={s['L']} ({res['device']}, {res['threads']} threads)"
    rows = [f"  plain bmm (floor)     {res['plain_bmm_s'] * 1e3:9.1f} ms",
            f"  cost matrix           {res['cost_matmul_s'] * 1e3:9.1f} ms   "
            f"({res['cost_matmul_s'] / res['plain_bmm_s']:.2f}x plain bmm)",
            f"  ours DP+backtrace     {res['ours_s'] * 1e3:9.1f} ms"]
    if "ours_1thread_s" in res:
        rows.append(f"  ours, 1 thread        {res['ours_1thread_s'] * 1e3:9.1f} ms")
    rows += [
            f"  pytorch frame loop    {res['torch_loop_s'] * 1e3:9.1f} ms   ({res['loop_over_ours']:.1f}x ours)"]
    if "monotonic_align_s" in res:
        per_core = f", {res['mas_over_ours_1thread']:.1f}x ours on 1 thread" if "mas_over_ours_1thread" in res else ""
        rows.append(f"  monotonic_align (MAS) {res['monotonic_align_s'] * 1e3:9.1f} ms   "
                    f"({res['mas_over_ours']:.1f}x ours{per_core})")
    rows.append(f"  same path cost: {res['paths_equal_cost']} (max rel diff {res['max_rel_path_cost_diff']:.2e})")
    if "loss" in res:
        t, floor = res["loss"], res["loss"]["plain_bmm"]
        parts = res["cost_matmul_s"] + res["ours_s"]
        rows.append(f"  consistency loss forward          {t['loss_fwd'] * 1e3:9.1f} ms   "
                    f"({t['loss_fwd'] / parts:.2f}x cost matrix + DP, {t['loss_fwd'] / floor:.2f}x plain bmm)")
        rows.append(f"  consistency loss forward+backward {t['loss_fwd_bwd'] * 1e3:9.1f} ms   "
                    f"({t['loss_fwd_bwd'] / floor:.2f}x plain bmm {floor * 1e3:.1f} ms, same rounds)")
        rows.append(f"  backward alone (fwd+bwd - fwd)    {(t['loss_fwd_bwd'] - t['loss_fwd']) * 1e3:9.1f} ms   "
                    f"(a fresh speech-sized tensor written once: {t['grad_write'] * 1e3:.1f} ms)")
    return "\n".join([head] + rows)


def _mas_available() -> bool:
    """monotonic_align is a test extra: without it the benchmark runs the other methods."""
    try:
        import monotonic_align.core  # noqa: F401
    except ImportError:
        print("bench_alignment: monotonic_align is not installed, skipping it; get it with "
              "`pip install 'monotonic-align>=1.0'` (tools/install.sh installs it with the test extra)",
              file=sys.stderr)
        return False
    return True


@cli
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--shapes", nargs="+", default=None, metavar="B,n,m,d,L")
    p.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    p.add_argument("--threads", type=int, default=2, help="torch and numba threads (MAS is single-threaded)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--no-mas", action="store_true", help="skip monotonic_align")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import numba
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    mas = not args.no_mas and _mas_available()
    results = []
    for k, spec in enumerate(shapes):
        try:
            B, n, m, d, L = (int(x) for x in spec.split(","))
        except ValueError:
            p.error(f"--shapes: expected B,n,m,d,L (5 integers), got {spec!r}")
        res = bench_shape(B, n, m, d, L, args.repeat, args.device, rng, mas=mas)
        if k == 0:
            res["loss"] = bench_loss(B, n, m, d, L, args.repeat, args.device, rng)
        print(_fmt(res), flush=True)
        results.append(res)
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["paths_equal_cost"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
