"""Benchmark the HAT transducer loss: full vs pruned vs warprnnt_numba, time and peak memory.

Usage:
    python -m toolkit.bin.bench_transducer --threads 2 --repeat 3
    python -m toolkit.bin.bench_transducer --shapes tiny --repeat 1          # smoke run
    python -m toolkit.bin.bench_transducer --device cuda --repeat 5 --json bench.json
    python -m toolkit.bin.bench_transducer --shapes 8,400,100,4096,640 --methods full pruned

Per shape (B, T, U, V, J: batch, encoder frames, target labels, vocabulary, joint dim; "tiny"
and "paper" name presets) one HAT decoder (LSTM predictor, HAT joiner, encoder dim 512 and
predictor dim 640 at paper scale, as model_paper.yaml) computes the loss of random encoder
outputs, forward + backward to the encoder output and the decoder's weights, by:
  full        HatDecoder(transducer="full"): the joint on B x T x (U+1) x V, our DP
  full_whole  the same on one whole lattice (no sub-batches: the issue's "B x T x (U+1) x V")
  pruned      HatDecoder(transducer="pruned", prune_range): simple joiner + joint on B x T x S x V
  warprnnt    the full lattice, same sub-batches as full, through hat_log_probs + warprnnt_numba
Lattices are cut into sub-batches of --max-lattice-elems as training does (default: the
paper config's 2^27 elements, about one paper-scale utterance, recomputed in backward;
0 = one lattice), so "full" has its memory bounded and pays a recomputation for it. Lengths vary per example (70-100%, the first full).
Each method runs in its own fresh process, one after the other, in this one run; each
reports the best and median of --repeat timed steps after one warm-up step, and the peak
memory of that warm-up step: on CUDA torch.cuda.max_memory_allocated() minus the memory
allocated before it; on the CPU the growth of the process's peak resident set
(ru_maxrss) over its resident set before the step (torch's CPU allocator returns large
blocks to the OS, so RSS follows tensors; a fresh process keeps one method's peak from
hiding another's). Ratios are against the pruned loss of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from toolkit.utils.cli import cli
from toolkit.utils.fileio import atomic_write

PRESETS = {"tiny": "2,30,8,32,32", "paper": "8,400,100,4096,640"}
METHODS = ("full", "full_whole", "pruned", "warprnnt")
PAPER_MAX_LATTICE_ELEMS = 2 ** 27  # model_paper.yaml


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _decoder(method, V, J, tiny, max_lattice_elems, prune_range):
    from toolkit.models.hat import HatDecoder, HatJoiner, LstmPredictor
    enc_dim, pred_dim = (16, 16) if tiny else (512, 640)
    pred = LstmPredictor(V, pred_dim, pred_dim, dropout=0.0)
    joiner = HatJoiner(enc_dim, pred_dim, V, J)
    kind = "pruned" if method == "pruned" else "full"
    if method == "full_whole":
        max_lattice_elems = 0
    dec = HatDecoder(pred, joiner, V, max_lattice_elems or 2 ** 62, kind, {"prune_range": prune_range})
    dec.set_step(10 ** 9)  # past the warm-up: the scales do not change the work
    if method == "warprnnt":
        import numba
        from warprnnt_numba import RNNTLossNumba

        from toolkit.models.hat import hat_log_probs
        crit = RNNTLossNumba(blank=0, reduction="none")
        threads = numba.get_num_threads()

        def group_loss(enc_p, pred_p, tokens, enc_lens, token_lens):
            logits = joiner.logits_projected(enc_p[:, :, None], pred_p[:, None])  # (b, T, U+1, V)
            try:
                return crit(hat_log_probs(logits.float()), tokens.int(), enc_lens.int(), token_lens.int())
            finally:  # warprnnt sets numba's thread count for the whole process
                numba.set_num_threads(threads)
        dec._group_loss = group_loss
    return dec, enc_dim


def run_method(method, shape, device, repeat, seed, max_lattice_elems, prune_range):
    """In this process: time ``method`` on ``shape`` (B, T, U, V, J); returns a dict."""
    B, T, U, V, J = shape
    tiny = V <= 64
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dec, enc_dim = _decoder(method, V, J, tiny, max_lattice_elems, prune_range)
    dec = dec.to(device)
    enc = torch.randn(B, T, enc_dim, device=device, requires_grad=True)  # (B, T, D)
    t_lens = torch.from_numpy(rng.integers(int(0.7 * T), T + 1, B)).to(device)
    u_lens = torch.from_numpy(rng.integers(int(0.7 * U), U + 1, B)).to(device)
    t_lens[0], u_lens[0] = T, U
    tokens = torch.randint(1, V, (B, U), device=device)

    def step():
        dec.loss(enc, t_lens, tokens, u_lens).sum().backward()
        enc.grad = None
        dec.zero_grad(set_to_none=True)

    step_small = (enc[:1, :4].detach().requires_grad_(), t_lens[:1].clamp(max=4), tokens[:1, :2], u_lens[:1].clamp(max=2))
    dec.loss(*step_small).sum().backward()  # compile the kernels outside the measurements
    dec.zero_grad(set_to_none=True)
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    step()
    _sync(device)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"method": method, "seconds": min(times), "median_seconds": statistics.median(times),
            "peak_bytes": max(0, peak)}


def _in_fresh_process(args, method, spec):
    cmd = [sys.executable, "-m", "toolkit.bin.bench_transducer", "--worker", method, "--shapes", spec,
           "--device", args.device, "--repeat", str(args.repeat), "--seed", str(args.seed),
           "--threads", str(args.threads), "--max-lattice-elems", str(args.max_lattice_elems),
           "--prune-range", str(args.prune_range)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this toolkit's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"method": method, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _header(shape, device, threads):
    B, T, U, V, J = shape
    return (f"B={B} T={T} U={U} V={V} J={J} ({device}, {threads} threads)\n"
            f"  {'method':<12}{'fwd+bwd ms':>12}{'median ms':>12}{'peak MiB':>11}{'time / pruned':>15}"
            f"{'memory / pruned':>17}")


def _row(name, r, ref):
    if "error" in r:
        return f"  {name:<12} failed: {r['error']}"
    ratio_t = r["seconds"] / ref["seconds"] if "seconds" in ref else float("nan")
    ratio_m = r["peak_bytes"] / max(ref.get("peak_bytes", 0), 1) if "peak_bytes" in ref else float("nan")
    return (f"  {name:<12}{r['seconds'] * 1e3:12.1f}{r['median_seconds'] * 1e3:12.1f}"
            f"{r['peak_bytes'] / 2 ** 20:11.1f}{ratio_t:14.2f}x{ratio_m:16.2f}x")


def _parse_shape(spec):
    B, T, U, V, J = (int(x) for x in PRESETS.get(spec, spec).split(","))
    return B, T, U, V, J


@cli
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--shapes", nargs="+", default=["tiny", "paper"], metavar="tiny|paper|B,T,U,V,J")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--max-lattice-elems", type=int, default=PAPER_MAX_LATTICE_ELEMS,
                   help="sub-batch size of the joint lattice, as HatDecoder; 0 = one lattice")
    p.add_argument("--prune-range", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", default=None, choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        shapes = [_parse_shape(s) for s in args.shapes]
    except ValueError:
        p.error(f"--shapes: expected tiny, paper or B,T,U,V,J (5 integers), got {args.shapes}")
    if args.worker:
        print(json.dumps(run_method(args.worker, shapes[0], args.device, args.repeat, args.seed,
                                    args.max_lattice_elems, args.prune_range)))
        return 0
    results = []
    # pruned first (the ratios' reference); each row is printed when its method is done, so
    # a paper-scale run that is stopped early still shows what it measured
    order = sorted(args.methods, key=lambda m: m != "pruned")
    for spec, shape in zip(args.shapes, shapes):
        print(_header(shape, args.device, args.threads), flush=True)
        rows = {}
        for m in order:
            rows[m] = _in_fresh_process(args, m, ",".join(map(str, shape)))
            print(_row(m, rows[m], rows.get("pruned", {})), flush=True)
        results.append({"shape": dict(zip("BTUVJ", shape)), "device": args.device, "threads": args.threads,
                        "max_lattice_elems": args.max_lattice_elems, "prune_range": args.prune_range,
                        "methods": rows})
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(results, f, indent=1)
    return 0 if all("error" not in r for res in results for r in res["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
