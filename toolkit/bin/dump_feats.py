"""Dump 80-dim Kaldi fbank features of a data dir as kaldiio ark/scp, in parallel jobs.

Usage:
    # one job of a run.pl array (recipes), then the merge once all jobs succeeded
    utils/run.pl JOB=1:4 dump/train/log/dump.JOB.log \
        python -m toolkit.bin.dump_feats --data data/train --out dump/train --nj 4 --job JOB
    python -m toolkit.bin.dump_feats --data data/train --out dump/train --nj 4 --merge

    # everything in this process (jobs in a pool of --nj processes, then the merge)
    python -m toolkit.bin.dump_feats --data data/train --out dump/train --nj 2 \
        [--compress] [--speed-perturb 0.9,1.0,1.1]

Writes feats.<JOB>.{ark,scp} and utt2num_frames.<JOB>; the merge writes utt2num_frames
and feats.scp (only if every job covered its utterances). Speed-perturbed copies get ids
sp<factor>-<uttid>. Each job records its options in dump_conf.<JOB>; the merge checks
that all jobs agree (a job from another --nj split or with other options is an error).
"""
from __future__ import annotations

import argparse
import logging
import sys

from toolkit.features.dump import dump_job, merge_jobs
from toolkit.features.fbank import FbankExtractor
from toolkit.utils.cli import cli
from toolkit.utils.parallel import imap_processes

log = logging.getLogger("dump_feats")


def parse_speeds(text: str) -> tuple[float, ...]:
    speeds = tuple(float(x) for x in text.split(","))
    if any(s <= 0 for s in speeds) or len(set(speeds)) != len(speeds):
        raise argparse.ArgumentTypeError(f"speed factors must be distinct and > 0: {text}")
    return speeds


def _run_job(kwargs: dict) -> int:
    return dump_job(**kwargs)


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp [segments] [text])")
    p.add_argument("--out", required=True, help="dump dir")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--job", type=int, help="run only this job (1..nj); default: all, then merge")
    p.add_argument("--merge", action="store_true", help="only merge finished jobs into feats.scp")
    p.add_argument("--compress", action="store_true", help="Kaldi-compressed matrices (kAutomaticMethod)")
    p.add_argument("--speed-perturb", type=parse_speeds, metavar="F1,F2,...",
                   help="speed factors (default 1.0); the merge defaults to what the jobs used")
    p.add_argument("--num-mel-bins", type=int, default=80)
    p.add_argument("--dither", type=float, default=0.0, help="Kaldi dither (int16 scale); 0 = deterministic")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.nj < 1:
        p.error("--nj must be >= 1")
    common = dict(data_dir=args.data, out=args.out, nj=args.nj, compress=args.compress,
                  speeds=args.speed_perturb or (1.0,),
                  extractor=FbankExtractor(args.num_mel_bins, dither=args.dither))
    if args.merge:
        log.info("wrote %s", merge_jobs(args.data, args.out, args.nj, args.speed_perturb))
    elif args.job is not None:
        dump_job(job=args.job, **common)
    else:  # a failing job ends the run with its message (the other jobs are stopped)
        jobs = [dict(common, job=j) for j in range(1, args.nj + 1)]
        for _ in imap_processes(_run_job, jobs, args.nj):
            pass
        log.info("wrote %s", merge_jobs(args.data, args.out, args.nj, args.speed_perturb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
