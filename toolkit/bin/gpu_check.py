"""Prove Concord's CUDA paths on a GPU in one bounded command; one markdown table of figures.

Usage:
    tools/install.sh && tools/venv/bin/concord-gpu-check --out docs/gpu/     # the GPU day's command
    python -m toolkit.bin.gpu_check --out /tmp/g --budget-s 300
    python -m toolkit.bin.gpu_check --out /tmp/g --steps alignment_dp transducer_loss

On a machine without a CUDA device it prints one line ("no CUDA device ...") and exits 0
without running anything. With one, it runs these steps in order, each in its own process,
each timed and given what is left of --budget-s (a step that needs more than is left is
skipped, with the reason in its row):

{steps}

and prints the table, also written to OUT/gpu_check.md (with the machine, GPU, driver,
torch and numba versions and the Concord commit), OUT/gpu_check.json, OUT/logs/<step>.log.
Exit 0 when every step that ran passed its checks, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from toolkit.bench.gpu_check import (DEFAULT_BUDGET_S, STEP_NAMES, STEPS, machine_info, run_steps, run_worker,
                                     stubbed, write_report)
from toolkit.utils.cli import cli

STEP_LIST = "\n".join(f"  {s.name:<16} {s.what} (needs >= {s.min_s:.0f} s)" for s in STEPS)
__doc__ = __doc__.format(steps=STEP_LIST)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="report dir: gpu_check.md, gpu_check.json, logs/")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help=f"wall-clock budget of all steps together, seconds (default {DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--steps", nargs="+", choices=STEP_NAMES, default=list(STEP_NAMES),
                   help="run only these steps (in the fixed order)")
    return p


@cli
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.budget_s < 0:
        raise ValueError(f"--budget-s must be >= 0, got {args.budget_s}")
    import torch
    if not (torch.cuda.is_available() or stubbed()):
        print(f"concord-gpu-check: no CUDA device (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}): nothing run")
        return 0
    out = Path(args.out)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    steps = [s for s in STEPS if s.name in args.steps]
    results = run_steps(steps, args.budget_s, lambda step, left: run_worker(step, left, out),
                        log=lambda s: print(f"concord-gpu-check: {s}", file=sys.stderr, flush=True))
    print(write_report(out, results, machine_info(), args.budget_s, when), end="")
    return 0 if all(r.status in ("ok", "skipped", "stub") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
