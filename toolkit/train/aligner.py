"""Train the explicit alignment model (toolkit.models.aligner), align paired sets, measure it.

The Maestro baseline's durations come from here: a phoneme CTC model trained on the paired
training data alone, frozen, whose Viterbi path (``toolkit.losses.alignment_kinds.
ctc_forced_path``, checked against brute force) gives each phone its frames. An utterance
CTC cannot align (fewer frames than its phones plus repeats) gets the proportional split
of its frames instead and is counted as unaligned. Its own quality is reported as the
phone error rate of greedy CTC decoding on a held-out set.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.data.collate import collate_paired
from toolkit.data.sampler import bucket_batches
from toolkit.losses.alignment_kinds import ctc_forced_path, durations_from_path
from toolkit.models.aligner import CtcAligner
from toolkit.scoring.align import align
from toolkit.scoring.wer import counts_of

log = logging.getLogger("toolkit.aligner")


def batches_of(ds, max_frames: int, rng: np.random.Generator | None = None):
    """Length-bucketed batches of a PairedDataset, shuffled when ``rng`` is given."""
    batches = bucket_batches(ds.num_frames, max_frames)
    if rng is not None:
        rng.shuffle(batches)
    for idx in batches:
        yield collate_paired([ds[int(i)] for i in idx])[0]


def train_aligner(train_ds, num_phones: int, conf: dict, epochs: int = 20, lr: float = 2.0e-3,
                  max_frames: int = 6000, seed: int = 0) -> tuple[CtcAligner, list[float]]:
    """CTC on the paired phones; AdamW with a linear warm-up then cosine decay.
    -> (the model in eval mode, mean CTC loss per phone of each epoch)."""
    torch.manual_seed(seed)
    model = CtcAligner(num_phones, **conf)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=1.0e-3)
    steps = epochs * len(bucket_batches(train_ds.num_frames, max_frames))
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps)))))
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        t0, total, n = time.time(), 0.0, 0
        for b in batches_of(train_ds, max_frames, rng):
            lp, lens = model(b["feats"], b["feat_lens"])
            ok = lens >= b["phone_lens"]  # infeasible utterances have no CTC path
            nll = F.ctc_loss(lp.transpose(0, 1), b["phones"], lens, b["phone_lens"], blank=0, reduction="none",
                             zero_infinity=True)
            loss = (nll * ok).sum() / (b["phone_lens"] * ok).sum().clamp(min=1)  # per phone
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()), n + 1
        losses.append(total / max(n, 1))
        log.info("aligner epoch %d: CTC %.3f per phone (%.0f s)", epoch + 1, losses[-1], time.time() - t0)
    return model.eval(), losses


@torch.no_grad()
def align_dataset(model: CtcAligner, ds, max_frames: int = 20000) -> tuple[dict, list[str]]:
    """Viterbi durations of every utterance of ``ds`` -> ({uttid: [frames per phone]}, unaligned ids)."""
    durations, unaligned = {}, []
    for idx in bucket_batches(ds.num_frames, max_frames):
        items = [ds[int(i)] for i in idx]
        b = collate_paired(items)[0]
        lp, lens = model(b["feats"], b["feat_lens"])
        path, fallbacks = ctc_forced_path(lp, lens, b["phones"], b["phone_lens"])
        for it, d in zip(items, durations_from_path(path, b["phone_lens"])):
            durations[it["uttid"]] = d
        unaligned += [items[k]["uttid"] for k in fallbacks]
    return durations, unaligned


@torch.no_grad()
def phone_error_rate(model: CtcAligner, ds, max_frames: int = 20000) -> dict:
    """Greedy CTC decoding vs the reference phones: {"per": %, "phones", "errors", "utts"}."""
    errors = total = utts = 0
    for b in batches_of(ds, max_frames):
        lp, lens = model(b["feats"], b["feat_lens"])
        best = lp.argmax(-1)
        for k in range(best.shape[0]):
            seq = best[k, : int(lens[k])].tolist()
            hyp = [str(p) for i, p in enumerate(seq) if p != 0 and (i == 0 or p != seq[i - 1])]
            ref = [str(p) for p in b["phones"][k, : int(b["phone_lens"][k])].tolist()]
            c = counts_of(align(ref, hyp))
            errors, total, utts = errors + c.err, total + c.wrd, utts + 1
    return {"per": 100.0 * errors / max(total, 1), "phones": total, "errors": errors, "utts": utts}
