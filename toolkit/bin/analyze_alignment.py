r"""Per-layer consistency study of a trained model: best vs uniform, random and mismatched alignments.

Usage:
    python -m toolkit.bin.analyze_alignment --exp exp/mini_joint --data dump/test --out exp/mini_joint/analysis_test
    python -m toolkit.bin.analyze_alignment --exp exp/t --model exp/t/checkpoints/ckpt-1000.pt \
        --data dump/dev --seq dump/dev/seq --out exp/t/analysis_dev --max-utts 200 --batch-size 8

Reads ``<data>/feats.scp`` (raw fbank; the experiment's CMVN is applied) and the phone
sequences of ``--seq`` (default ``<data>/seq``), in feats.scp order, up to --max-utts
utterances that have a sequence. Runs ``model.consistency_representations`` (eval mode)
and writes consistency.tsv, consistency.md and consistency.png in --out
(toolkit.analysis.consistency explains the four measures).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from toolkit.analysis.consistency import write_report
from toolkit.utils.cli import cli
from toolkit.utils.cpu import setup_cpu

log = logging.getLogger("analyze_alignment")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment dir holding config.yaml")
    p.add_argument("--model", default=None, help="state dict or checkpoint (default: <exp>/model_avg.pt)")
    p.add_argument("--data", required=True, help="dump dir with feats.scp (and seq/ unless --seq)")
    p.add_argument("--seq", default=None, help="token sequence store (default: <data>/seq)")
    p.add_argument("--out", required=True, help="output dir")
    p.add_argument("--max-utts", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--normalize", default="frames", choices=["frames", "tokens", "dim", "none"])
    p.add_argument("--n-random", type=int, default=4, help="random alignments averaged per utterance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    return p


@cli
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    setup_cpu(args.num_threads)
    from toolkit.analysis.measure import measure_consistency
    from toolkit.models.experiment import load_experiment
    exp = load_experiment(args.exp, args.model, device=args.device)
    rows, total = measure_consistency(exp, args.data, args.seq, args.max_utts, args.batch_size, args.normalize,
                                      args.n_random, args.seed, progress=not args.no_progress)
    paths = write_report(rows, args.out, title=f"{Path(args.exp).name} on {Path(args.data).name}")
    for r in rows:
        if r.utterances < total:
            log.warning("layer %s: %d of %d utterances have fewer frames than phonemes (left out)",
                        r.layer, total - r.utterances, total)
    print(Path(paths["md"]).read_text(encoding="utf-8"))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
