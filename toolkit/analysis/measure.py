"""Measure a trained experiment's per-layer consistency on a dump dir (the stage-8 analysis).

Reads the dump dir through :class:`toolkit.train.dataset.PairedDataset` (features with the
experiment's CMVN, phone sequences), the first ``max_utts`` utterances in feats.scp order,
runs ``model.consistency_representations`` (eval mode, no gradient) on batches of them and
accumulates :func:`toolkit.analysis.consistency.layer_distances` per layer.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch

from toolkit.analysis.consistency import ConsistencyTable, LayerSummary, layer_distances
from toolkit.data.collate import pad_feats, pad_int
from toolkit.models.experiment import Experiment
from toolkit.train.dataset import PairedDataset
from toolkit.train.objective import consistency_features
from toolkit.utils.progress import progress_bar


def consistency_batches(dataset: PairedDataset, max_utts: int, batch_size: int) -> Iterator[tuple]:
    """Yield (uttids, feats (B, T, F), feat_lens (B,), phones (B, M), phone_lens (B,))."""
    n = min(len(dataset), max_utts)
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        feats, feat_lens = pad_feats([np.asarray(x["feats"], dtype=np.float32) for x in items])
        phones, phone_lens = pad_int([x["phones"] for x in items])
        yield [x["uttid"] for x in items], feats, feat_lens, phones, phone_lens


@torch.no_grad()
def measure_consistency(exp: Experiment, dump_dir: str | os.PathLike, seq_dir: str | os.PathLike | None = None,
                        max_utts: int = 200, batch_size: int = 8, normalize: str = "frames", n_random: int = 4,
                        seed: int = 0, progress: bool = True) -> tuple[list[LayerSummary], int]:
    """-> (one row per layer, number of utterances measured); a progress bar on a terminal."""
    dataset = PairedDataset(dump_dir, exp.cmvn, seq_dir)
    norm = exp.config["objective"]["consistency"]["feature_norm"]
    device = next(exp.model.parameters()).device
    table, gen, total = ConsistencyTable(), torch.Generator().manual_seed(seed), 0
    bar = progress_bar(total=min(len(dataset), max_utts), desc="consistency analysis", enabled=progress)
    for uttids, feats, feat_lens, phones, phone_lens in consistency_batches(dataset, max_utts, batch_size):
        reps = exp.model.consistency_representations(feats.to(device), feat_lens.to(device),
                                                     phones.to(device), phone_lens.to(device))
        # what the consistency term compares (per-frame normalised when the objective says so)
        reps = [(n, consistency_features(a, norm), al, consistency_features(t, norm), tl) for n, a, al, t, tl in reps]
        table.add(layer_distances(reps, normalize, n_random, gen))
        total += len(uttids)
        bar.update(len(uttids))
    bar.close()
    return table.rows(), total
