"""Time-synchronous search for HAT transducers: batched greedy, modified beam search
(optionally subtracting the HAT internal LM), and :class:`StreamingSearch`, either of them
fed frames piece by piece (the streaming session around it is :mod:`toolkit.decode.session`).

``blank_penalty`` (all searches) is subtracted from the joint's blank logit before
normalisation (:func:`toolkit.models.hat.lower_blank`), as icefall's ``blank_penalty``: a
positive value makes blank less likely at every step, so greedy and beam emit more labels
(fewer deletions) in a model that emits blank too readily. (Subtracting it from a
hypothesis's score after normalisation would not: every complete path closes every frame
once, so it would be a constant in the final ranking.)

Greedy and beam search advance one encoder frame at a time through the same frame functions, so a
:class:`StreamingSearch` fed the frames in pieces returns exactly what the whole-sequence
search returns. Within a frame at most ``max_sym_per_frame`` labels are emitted; after the
last one the search moves on without scoring a blank (as greedy search does).
The ``decoder`` is a :class:`toolkit.models.hat.HatDecoder` (``init_state``, ``step``,
``log_probs``, ``ilm_log_probs``, ``select_state``, ``merge_state``).
"""
from __future__ import annotations

import torch

from toolkit.models.hat import lower_blank


class _Greedy:
    """Batched greedy state: one hypothesis per utterance."""

    def __init__(self, decoder, batch: int, device, max_sym_per_frame: int, blank_penalty: float = 0.0):
        self.decoder, self.max_sym, self.blank_penalty = decoder, max_sym_per_frame, blank_penalty
        self.hyps = [[] for _ in range(batch)]
        self.frames = [[] for _ in range(batch)]  # encoder frame index of each emitted token
        self.t = 0
        blank = torch.full((batch,), decoder.blank_id, dtype=torch.long, device=device)
        self.pred, self.state = decoder.step(blank, decoder.init_state(batch, device))  # (B, P)

    def advance(self, frame, active):
        """frame (B, D) encoder outputs; active (B,) bool: utterances that have this frame."""
        emitting = active.clone()
        for _ in range(self.max_sym):
            if not emitting.any():
                break
            lp = lower_blank(self.decoder.log_probs(frame, self.pred), self.blank_penalty)  # (B, V)
            best = lp.argmax(-1)  # (B,)
            emitting = emitting & (best != self.decoder.blank_id)
            if not emitting.any():
                break
            for b in emitting.nonzero()[:, 0].tolist():
                self.hyps[b].append(int(best[b]))
                self.frames[b].append(self.t)
            pred, state = self.decoder.step(best, self.state)
            self.pred = torch.where(emitting[:, None], pred, self.pred)
            self.state = self.decoder.merge_state(emitting, state, self.state)
        self.t += 1


@torch.no_grad()
def greedy_search(decoder, enc, enc_lens, max_sym_per_frame: int = 3,
                  blank_penalty: float = 0.0, with_frames: bool = False):
    """enc (B, T, D), enc_lens (B,) -> best token ids per utterance (blank removed);
    with_frames: also the encoder frame index at which each token was emitted."""
    g = _Greedy(decoder, enc.shape[0], enc.device, max_sym_per_frame, blank_penalty)
    for t in range(enc.shape[1]):
        g.advance(enc[:, t], enc_lens > t)
    return (g.hyps, g.frames) if with_frames else g.hyps


def _cat_states(states):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states))
    return torch.cat(states)


class _Beam:
    """Modified beam search state for one utterance.

    Hypotheses: token tuples with a score (log-prob, minus ilm_weight x internal-LM
    log-prob for labels), predictor output and state. Per frame, up to max_sym_per_frame
    expansion rounds; each round keeps the ``beam`` best of {hyps already closed by a blank,
    new blank closures, new one-label extensions}. Equal label sequences are merged
    (log-sum-exp) at the end of each frame.
    """

    def __init__(self, decoder, beam: int, max_sym_per_frame: int, ilm_weight: float, device,
                 blank_penalty: float = 0.0):
        self.decoder, self.beam, self.max_sym, self.ilm_weight = decoder, beam, max_sym_per_frame, ilm_weight
        self.blank_penalty = blank_penalty
        blank = torch.full((1,), decoder.blank_id, dtype=torch.long, device=device)
        pred, state = decoder.step(blank, decoder.init_state(1, device))
        self.tokens = [()]
        self.frames = [()]  # per hypothesis: the frame index of each of its tokens
        self.t = 0
        self.scores = torch.zeros(1, device=device)  # (K,)
        self.pred, self.state = pred, state  # (K, P), predictor state with K rows

    def advance(self, frame):
        """frame (D,) one encoder frame."""
        dec, blank = self.decoder, self.decoder.blank_id
        act_tok, act_score, act_pred, act_state = self.tokens, self.scores, self.pred, self.state
        done_tok, done_score, done_pred, done_state = [], act_score[:0], act_pred[:0], None
        act_frm, done_frm = self.frames, []
        for _ in range(self.max_sym):
            if not act_tok:
                break
            K = len(act_tok)
            lp = lower_blank(dec.log_probs(frame.expand(K, -1), act_pred), self.blank_penalty)  # (K, V)
            if self.ilm_weight:
                lp = lp - self.ilm_weight * dec.ilm_log_probs(act_pred)  # blank column of ILM is 0
            closed = act_score + lp[:, blank]  # (K,)
            ext = act_score[:, None] + lp  # (K, V); blank column excluded below
            ext[:, blank] = float("-inf")
            pool = torch.cat([done_score, closed, ext.reshape(-1)])
            n_keep = min(self.beam, int(torch.isfinite(pool).sum()))
            top = pool.topk(n_keep).indices.tolist()
            n_done, V = len(done_tok), lp.shape[1]
            keep_done = [i for i in top if i < n_done]
            keep_closed = [i - n_done for i in top if n_done <= i < n_done + K]
            keep_ext = [i - n_done - K for i in top if i >= n_done + K]
            # closed hyps: predictor unchanged
            new_done_tok = [done_tok[i] for i in keep_done] + [act_tok[k] for k in keep_closed]
            done_frm = [done_frm[i] for i in keep_done] + [act_frm[k] for k in keep_closed]
            parts_pred, parts_state = [], []
            if keep_done:
                idx = torch.tensor(keep_done)
                parts_pred.append(done_pred[idx])
                parts_state.append(dec.select_state(done_state, idx))
            if keep_closed:
                idx = torch.tensor(keep_closed)
                parts_pred.append(act_pred[idx])
                parts_state.append(dec.select_state(act_state, idx))
            done_score = torch.cat([done_score[keep_done], closed[keep_closed]])
            done_tok = new_done_tok
            if parts_pred:
                done_pred, done_state = torch.cat(parts_pred), _cat_states(parts_state)
            if keep_ext:
                src = torch.tensor([i // V for i in keep_ext])
                lab = torch.tensor([i % V for i in keep_ext], device=act_pred.device)
                act_score = ext.reshape(-1)[torch.tensor(keep_ext)]
                act_tok = [act_tok[s] + (int(y),) for s, y in zip(src.tolist(), lab.tolist())]
                act_frm = [act_frm[s] + (self.t,) for s in src.tolist()]
                act_pred, act_state = dec.step(lab, dec.select_state(act_state, src))
            else:
                act_tok, act_frm = [], []
        # hyps still emitting after max_sym rounds move on without a blank
        tok = done_tok + act_tok
        self.t += 1
        frm = done_frm + act_frm
        scores = torch.cat([done_score, act_score[: len(act_tok)]])
        preds = [p for p in (done_pred if done_tok else None, act_pred if act_tok else None) if p is not None]
        states = [s for s, ok in ((done_state, done_tok), (act_state, act_tok)) if ok]
        self._merge(tok, frm, scores, torch.cat(preds), _cat_states(states))

    def _merge(self, tok, frm, scores, pred, state):
        first = {}
        for i, t in enumerate(tok):
            first.setdefault(t, []).append(i)
        rows = [group[int(scores[group].argmax())] for group in first.values()]
        merged = torch.stack([torch.logsumexp(scores[group], 0) for group in first.values()])
        order = merged.argsort(descending=True)[: self.beam].tolist()
        rows = [rows[i] for i in order]
        idx = torch.tensor(rows)
        self.tokens = [tok[r] for r in rows]
        self.frames = [frm[r] for r in rows]  # of the best-scoring path of each merged group
        self.scores = merged[order]
        self.pred, self.state = pred[idx], self.decoder.select_state(state, idx)

    def best(self) -> list[int]:
        return list(self.tokens[int(self.scores.argmax())])

    def best_frames(self) -> list[int]:
        return list(self.frames[int(self.scores.argmax())])


@torch.no_grad()
def beam_search(decoder, enc, enc_lens, beam: int = 4, max_sym_per_frame: int = 3,
                ilm_weight: float = 0.0, blank_penalty: float = 0.0, with_frames: bool = False):
    """Modified beam search per utterance of enc (B, T, D) -> best token ids each
    (with_frames: and the frame index of each token, as greedy_search)."""
    if beam < 1 or max_sym_per_frame < 1:
        raise ValueError(f"need beam >= 1 and max_sym_per_frame >= 1, got {beam}, {max_sym_per_frame}")
    hyps, frames = [], []
    for b in range(enc.shape[0]):
        s = _Beam(decoder, beam, max_sym_per_frame, ilm_weight, enc.device, blank_penalty)
        for t in range(int(enc_lens[b])):
            s.advance(enc[b, t])
        hyps.append(s.best())
        frames.append(s.best_frames())
    return (hyps, frames) if with_frames else hyps


class StreamingSearch:
    """Search over one utterance whose encoder frames arrive in pieces.

    ``accept(frames (T', D))`` any number of times, ``hyp()`` for the best tokens so far;
    the result equals greedy_search / beam_search over all frames at once.
    """

    def __init__(self, decoder, method: str = "greedy", beam: int = 4, max_sym_per_frame: int = 3,
                 ilm_weight: float = 0.0, device=None, blank_penalty: float = 0.0):
        device = device if device is not None else next(decoder.parameters()).device
        if method == "greedy":
            self._search = _Greedy(decoder, 1, device, max_sym_per_frame, blank_penalty)
        elif method == "beam":
            self._search = _Beam(decoder, beam, max_sym_per_frame, ilm_weight, device, blank_penalty)
        else:
            raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
        self.method = method
        self.num_frames = 0

    @torch.no_grad()
    def accept(self, frames: torch.Tensor) -> None:
        if frames.dim() == 3 and frames.shape[0] == 1:
            frames = frames[0]
        for t in range(frames.shape[0]):
            if self.method == "greedy":
                self._search.advance(frames[t: t + 1], torch.ones(1, dtype=torch.bool, device=frames.device))
            else:
                self._search.advance(frames[t])
        self.num_frames += frames.shape[0]

    def hyp(self) -> list[int]:
        return list(self._search.hyps[0]) if self.method == "greedy" else self._search.best()

    def hyp_frames(self) -> list[int]:
        """Encoder frame index (from the utterance start) at which each token of hyp() was emitted."""
        return list(self._search.frames[0]) if self.method == "greedy" else self._search.best_frames()
