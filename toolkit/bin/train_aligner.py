r"""Train the explicit alignment model (the Maestro baseline's aligner) and dump durations.

Usage:
    python -m toolkit.bin.train_aligner --train-data dump/train --valid-data dump/dev_clean \
        --cmvn dump/train/cmvn.ark --lang-dir data/lang --out exp/aligner \
        --align-data dump/train --align-data dump/dev_clean [--epochs 20] [--num-threads 2]

A small phoneme CTC model (toolkit.models.aligner) is trained on the paired training data
alone, frozen, and Viterbi-aligns every utterance of each --align-data dump dir; writes
``<out>/aligner.pt``, ``<out>/durations_<set>.txt`` (toolkit.data.durations: frames per
phone, in the joint model's 4x-subsampled frames) and ``<out>/report.json`` / ``report.md``
(its phone error rate on --valid-data, how many utterances could not be aligned).
Training then reads them with ``python -m toolkit.bin.train ... --durations-dir <out>``.
A finished run with the same settings is skipped (``report.json`` is written last).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from toolkit.utils.cli import cli
from toolkit.utils.cpu import setup_cpu
from toolkit.utils.fileio import atomic_write

log = logging.getLogger("toolkit.aligner")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-data", required=True, help="paired training dump dir (feats.scp, seq/)")
    p.add_argument("--valid-data", required=True, help="dump dir for the aligner's phone error rate")
    p.add_argument("--align-data", action="append", required=True, help="dump dir to align (repeatable)")
    p.add_argument("--cmvn", required=True, help="global CMVN of the training features")
    p.add_argument("--lang-dir", required=True, help="data/lang with phones.txt")
    p.add_argument("--out", required=True, help="output dir, e.g. exp/aligner")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=2.0e-3)
    p.add_argument("--max-frames", type=int, default=6000, help="padded feature frames per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=0, help="0: every usable CPU")
    return p


@cli
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from toolkit.data.durations import durations_file, write_durations
    from toolkit.features.cmvn import GlobalCMVN
    from toolkit.models.aligner import ALIGNER_DEFAULTS
    from toolkit.train.aligner import align_dataset, phone_error_rate, train_aligner
    from toolkit.train.config import symbol_table_size
    from toolkit.train.dataset import PairedDataset
    import torch

    setup_cpu(args.num_threads)
    out = Path(args.out)
    settings = {k: v for k, v in vars(args).items() if k != "num_threads"}
    settings["align_data"] = sorted(str(Path(d).resolve()) for d in args.align_data)
    for k in ("train_data", "valid_data", "cmvn", "lang_dir"):
        settings[k] = str(Path(settings[k]).resolve())
    report_path = out / "report.json"
    if report_path.exists() and json.loads(report_path.read_text())["settings"] == settings:
        print(f"train_aligner: {out} is complete for these settings; skipped")
        return 0
    report_path.unlink(missing_ok=True)
    cmvn = GlobalCMVN.load(args.cmvn)
    num_phones = symbol_table_size(Path(args.lang_dir) / "phones.txt")
    t0 = time.time()
    model, losses = train_aligner(PairedDataset(args.train_data, cmvn), num_phones, ALIGNER_DEFAULTS, args.epochs,
                          args.lr, args.max_frames, args.seed)
    with atomic_write(out / "aligner.pt", "wb", encoding=None) as f:
        torch.save({"conf": {**ALIGNER_DEFAULTS, "num_phones": num_phones}, "state_dict": model.state_dict()}, f)
    train_s = time.time() - t0
    per = phone_error_rate(model, PairedDataset(args.valid_data, cmvn))
    sets = {}
    for d in args.align_data:
        durations, unaligned = align_dataset(model, PairedDataset(d, cmvn))
        write_durations(durations_file(out, d), durations)
        sets[Path(d).resolve().name] = {"utts": len(durations), "unaligned": len(unaligned),
                                        "unaligned_examples": unaligned[:10]}
    report = {"settings": settings, "phone_error_rate": per, "sets": sets, "train_seconds": train_s,
              "epoch_ctc_per_phone": losses,
              "wall_seconds": time.time() - t0, "epochs": args.epochs}
    lines = ["# The explicit alignment model (phoneme CTC, Viterbi durations)", "",
             f"Trained {args.epochs} epochs on {args.train_data} in {train_s / 60:.1f} min; phone error rate "
             f"(greedy CTC) on {args.valid_data}: {per['per']:.1f}% ({per['errors']} / {per['phones']} phones, "
             f"{per['utts']} utterances).", "", "|set|utterances|could not be aligned (proportional split)|",
             "|---|---|---|"] + [f"|{k}|{v['utts']}|{v['unaligned']}|" for k, v in sets.items()]
    with atomic_write(out / "report.md") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_write(report_path) as f:  # last: marks the run complete
        json.dump(report, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
