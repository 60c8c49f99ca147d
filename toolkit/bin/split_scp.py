"""Split a Kaldi scp/map file into contiguous parts (Kaldi's split_scp.pl).

Usage:
    python -m toolkit.bin.split_scp data/x/wav.scp wav.1.scp wav.2.scp wav.3.scp
    python -m toolkit.bin.split_scp --utt2spk data/x/utt2spk data/x/text t.1 t.2   # speakers whole
    python -m toolkit.bin.split_scp -j 3 0 data/x/wav.scp wav.1.scp   # only part 0 of 3

Lines are copied verbatim; parts differ in size by at most one line (or, with
--utt2spk, are balanced without cutting a speaker, whose lines must be contiguous).
"""
from __future__ import annotations

import argparse
import sys

from toolkit.utils.kaldi_map import read_kaldi_map
from toolkit.data.split import NotContiguousError, split_contiguous, split_keep_groups
from toolkit.utils.fileio import InputError, atomic_write, read_lines
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="split_scp", description=__doc__.split("\n")[0])
    p.add_argument("--utt2spk", help="keep each speaker's lines in one part")
    p.add_argument("-j", nargs=2, type=int, metavar=("NUM_JOBS", "JOB_ID"),
                   help="write only part JOB_ID (0-based) of NUM_JOBS to the one output")
    p.add_argument("input")
    p.add_argument("outputs", nargs="+")
    args = p.parse_args(argv)
    lines = [line for _, line in read_lines(args.input)]
    n_parts = args.j[0] if args.j else len(args.outputs)
    if args.j and (len(args.outputs) != 1 or not 0 <= args.j[1] < n_parts):
        raise ValueError(f"-j {args.j[0]} {args.j[1]} needs one output and 0 <= JOB_ID < NUM_JOBS")
    if args.utt2spk:
        utt2spk = read_kaldi_map(args.utt2spk)
        keys = [line.split(maxsplit=1)[0] if line.strip() else "" for line in lines]
        for lineno, key in enumerate(keys, 1):
            if key not in utt2spk:
                raise InputError(args.input, f"'{key}' is not in {args.utt2spk}", lineno)
        try:
            parts = split_keep_groups([utt2spk[k] for k in keys], n_parts)
        except NotContiguousError as e:
            raise InputError(args.input, f"speaker '{e.group}' of '{keys[e.index]}' was already seen "
                                         f"earlier: a speaker's lines must be contiguous", e.index + 1) from None
    else:
        parts = split_contiguous(len(lines), n_parts)
    todo = [(args.outputs[0], parts[args.j[1]])] if args.j else list(zip(args.outputs, parts))
    for out, part in todo:
        with atomic_write(out) as f:
            f.writelines(lines[i] + "\n" for i in part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
