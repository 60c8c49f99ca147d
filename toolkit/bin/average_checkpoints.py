"""Average the model weights of the newest N checkpoints into one plain state_dict.

Usage:
    python -m toolkit.bin.average_checkpoints --exp exp/tiny --num 5 --out exp/tiny/model_avg.pt
    python -m toolkit.bin.average_checkpoints --exp exp/tiny --num 5 --up-to 12000 --out exp/tiny/avg_12k.pt

Reads exp/<tag>/checkpoints/ckpt-<step>.pt; an unreadable one is an error naming it,
fewer than N checkpoints a warning (all of them are averaged). The output loads with ``torch.load(path, weights_only=True)`` and
goes straight into ``model.load_state_dict``; it is written atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from toolkit.train.checkpoint import average_state_dicts, list_checkpoints
from toolkit.utils.fileio import atomic_write
from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment dir holding checkpoints/")
    p.add_argument("--num", type=int, required=True, help="how many of the newest checkpoints to average")
    p.add_argument("--up-to", type=int, default=None, help="only checkpoints with step <= this")
    p.add_argument("--out", required=True, help="output .pt (plain state_dict)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    found = [(s, p) for s, p in list_checkpoints(Path(args.exp) / "checkpoints")
             if args.up_to is None or s <= args.up_to]
    if args.num < 1 or not found:
        print(f"error: asked for {args.num} checkpoints, {Path(args.exp) / 'checkpoints'} has {len(found)}",
              file=sys.stderr)
        return 2
    if len(found) < args.num:  # a short run (e.g. the mini recipe) keeps fewer: use them all
        print(f"warning: asked for {args.num} checkpoints, only {len(found)} exist; averaging those",
              file=sys.stderr)
    chosen = [p for _, p in found[-args.num:]]
    avg = average_state_dicts(chosen)
    with atomic_write(args.out, "wb") as f:
        torch.save(avg, f)
    print(f"averaged {', '.join(p.name for p in chosen)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
