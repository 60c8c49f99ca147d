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

import numpy as np
import torch

from toolkit.analysis.consistency import ConsistencyTable, layer_distances, write_report
from toolkit.data.collate import pad_feats, pad_int
from toolkit.utils.kaldi_map import read_kaldi_map
from toolkit.text.seqstore import SeqStore
from toolkit.utils.cpu import setup_cpu
from toolkit.utils.fileio import InputError

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
    return p


def iter_batches(data_dir: Path, seq_dir: Path, cmvn, max_utts: int, batch_size: int):
    """Yield (uttids, feats (B, T, F), feat_lens, phones (B, M), phone_lens), CMVN applied."""
    import kaldiio
    scp = data_dir / "feats.scp"
    if not scp.exists():
        raise InputError(scp, "missing (run the feature stage first)")
    store = SeqStore(seq_dir)
    items, missing = [], 0
    for utt, rxfile in read_kaldi_map(scp).items():
        if len(items) >= max_utts:
            break
        try:
            _, phones, _ = store[store.index_of(utt)]
        except KeyError:
            missing += 1
            continue
        if len(phones) == 0:
            missing += 1
            continue
        try:
            feats = np.asarray(kaldiio.load_mat(rxfile), dtype=np.float32)  # (T, F)
        except Exception as e:  # kaldiio raises many types for a damaged ark
            raise InputError(scp, f"utterance '{utt}': cannot read features: {e}") from None
        items.append((utt, cmvn(feats) if cmvn is not None else feats, phones))
        if len(items) % batch_size == 0:
            yield _collate(items[-batch_size:])
    if missing:
        log.warning("%s: %d utterance(s) without a (non-empty) phone sequence in %s were skipped", scp, missing, seq_dir)
    if not items:
        raise InputError(scp, f"no utterance has a phone sequence in {seq_dir}")
    if len(items) % batch_size:
        yield _collate(items[-(len(items) % batch_size):])


def _collate(items):
    feats, feat_lens = pad_feats([np.asarray(f, dtype=np.float32) for _, f, _ in items])
    phones, phone_lens = pad_int([p for _, _, p in items])
    return [u for u, _, _ in items], feats, feat_lens, phones, phone_lens


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    setup_cpu(args.num_threads)
    from toolkit.models.experiment import load_experiment
    from toolkit.train.objective import consistency_features
    try:
        exp = load_experiment(args.exp, args.model, device=args.device)
        norm = exp.config["objective"]["consistency"]["feature_norm"]
        data = Path(args.data)
        batches = iter_batches(data, Path(args.seq) if args.seq else data / "seq", exp.cmvn,
                               args.max_utts, args.batch_size)
        table, gen, total = ConsistencyTable(), torch.Generator().manual_seed(args.seed), 0
        with torch.no_grad():
            for uttids, feats, feat_lens, phones, phone_lens in batches:
                reps = exp.model.consistency_representations(feats.to(args.device), feat_lens.to(args.device),
                                                             phones.to(args.device), phone_lens.to(args.device))
                # what the consistency term compares (per-frame normalised when the objective says so)
                reps = [(n, consistency_features(a, norm), al, consistency_features(t, norm), tl)
                        for n, a, al, t, tl in reps]
                table.add(layer_distances(reps, args.normalize, args.n_random, gen))
                total += len(uttids)
    except InputError as e:
        log.error("%s", e)
        return 1
    rows = table.rows()
    paths = write_report(rows, args.out, title=f"{Path(args.exp).name} on {data.name}")
    for r in rows:
        if r.utterances < total:
            log.warning("layer %s: %d of %d utterances have fewer frames than phonemes (left out)",
                        r.layer, total - r.utterances, total)
    print(Path(paths["md"]).read_text(encoding="utf-8"))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
