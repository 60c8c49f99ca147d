"""Validation: mean loss per component and greedy WER of the full-context pass.

Each rank validates its own share of the batches; sums are all-reduced, so every
rank returns the same numbers. Global RNG state is saved and restored around it, so
how much is validated never changes the training run's randomness.
"""
from __future__ import annotations

import logging

import torch

from toolkit.decode.search import greedy_search
from toolkit.scoring import score
from toolkit.train.amp import amp_context
from toolkit.train.checkpoint import rng_state, set_rng_state
from toolkit.train.distributed import gather_objects

log = logging.getLogger(__name__)


def count_errors(refs: dict[str, str], hyps: dict[str, str]) -> tuple[int, int]:
    """-> (word errors, reference words), sclite-style alignment."""
    if not refs:
        return 0, 0
    total = score(refs, hyps).total
    return total.err, total.wrd


def _greedy_hyps(model, batch) -> list[list[int]]:
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"], mode="full")
    return greedy_search(model.decoder("full"), enc, enc_lens, max_sym_per_frame=3)


@torch.no_grad()
def validate(model, loader, device, amp_dtype=None, detokenize=None, greedy_wer: bool = True,
             max_batches: int = 0, objective=None) -> dict[str, float]:
    """-> {"loss": .., "<component>": .., "wer": ..} (wer only when decoding worked).

    ``objective(model, batch, step)`` gives the loss terms (at full consistency weight:
    step None); without it ``model(batch)`` does.

    ``detokenize(ids) -> str`` turns token ids into words (sentencepiece); without it the
    WER is over token ids.
    """
    saved = rng_state()
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n_utts, refs, hyps = 0, {}, {}
    can_decode = greedy_wer and hasattr(model, "encode")
    for i, (batch, meta) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        bsz = len(meta["uttids"])
        with amp_context(device, amp_dtype):
            out = objective(model, batch, None) if objective is not None else model(batch)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * bsz
        n_utts += bsz
        if can_decode:
            ids = _greedy_hyps(model, batch)
            for b, utt in enumerate(meta["uttids"]):
                ref = batch["tokens"][b, :int(batch["token_lens"][b])].tolist()
                to_text = detokenize or (lambda x: " ".join(map(str, x)))
                refs[utt], hyps[utt] = to_text(ref), to_text(list(ids[b]))
    errs, words = count_errors(refs, hyps) if can_decode else (0, 0)
    # objects, not tensors: a rank with no validation batch has no loss keys at all
    parts = gather_objects((sums, n_utts, errs, words, can_decode or n_utts == 0))
    total: dict[str, float] = {}
    for part_sums, *_ in parts:
        for k, v in part_sums.items():
            total[k] = total.get(k, 0.0) + v
    n = max(sum(p[1] for p in parts), 1)
    result = {k: v / n for k, v in sorted(total.items())}
    words = sum(p[3] for p in parts)
    if greedy_wer and all(p[4] for p in parts) and words > 0:
        result["wer"] = 100.0 * sum(p[2] for p in parts) / words
    model.train(was_training)
    set_rng_state(saved)
    return result
