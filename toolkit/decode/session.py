"""Streaming recognition of one utterance: waveform pieces in, partial hypotheses out.

Pipeline per piece: online Kaldi fbank -> global CMVN -> ``model.encode_chunk`` (the
causal audio + shared encoders with their caches) -> ``StreamingSearch.accept`` (first
pass HAT decoder). The result equals decoding the whole utterance with
``model.encode(mode="streaming")`` and the same search, whatever the piece sizes.

Usage::

    session = StreamingSession(model, GlobalCMVN.load("dump/train/cmvn.ark"), "data/lang/wp500.model")
    for piece in pieces:                    # float32 samples in [-1, 1] at 16 kHz
        print(session.accept_waveform(piece))
    text = session.finalize()
    session.chunk_compute_s                 # seconds of compute per accepted piece
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from toolkit.features.fbank import SAMPLE_RATE, OnlineFbank
from toolkit.text.wordpiece import load_wordpiece


def make_search(decoder, method: str, beam: int, ilm_weight: float = 0.0, blank_penalty: float = 0.0,
                max_sym_per_frame: int = 3):
    from toolkit.decode.search import StreamingSearch
    if method not in ("greedy", "beam"):
        raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
    return StreamingSearch(decoder, method=method, beam=beam, ilm_weight=ilm_weight, blank_penalty=blank_penalty,
                           max_sym_per_frame=max_sym_per_frame)


class StreamingSession:
    """Decode one utterance at a time in streaming mode; :meth:`reset` starts the next one.

    ``cmvn`` is a callable on ``(T, F)`` float32 arrays (``GlobalCMVN``) or None.
    """

    def __init__(self, model, cmvn, bpe_model_or_sp, method: str = "greedy", beam: int = 4,
                 ilm_weight: float = 0.0, num_mel_bins: int = 80, blank_penalty: float = 0.0,
                 max_sym_per_frame: int = 3):
        self.model = model.eval()
        self.cmvn = cmvn
        self.sp = (load_wordpiece(bpe_model_or_sp) if isinstance(bpe_model_or_sp, (str, os.PathLike))
                   else bpe_model_or_sp)
        self.method, self.beam, self.ilm_weight, self.num_mel_bins = method, beam, ilm_weight, num_mel_bins
        self.blank_penalty, self.max_sym_per_frame = blank_penalty, max_sym_per_frame
        self.device = next(model.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.fbank = OnlineFbank(self.num_mel_bins, SAMPLE_RATE)
        self.state = self.model.init_stream(batch_size=1)
        self.search = make_search(self.model.decoder("streaming"), self.method, self.beam, self.ilm_weight,
                                  self.blank_penalty, self.max_sym_per_frame)
        self.chunk_compute_s: list[float] = []   # one entry per accept_waveform / finalize call
        self.num_samples = 0
        self.num_enc_frames = 0
        self.num_feat_frames = 0  # fbank frames fed to the encoder
        self.finished = False

    @property
    def algorithmic_latency_ms(self) -> float:
        """Audio the model waits for before a frame is final: one chunk plus the lookahead."""
        return 10.0 * (self.model.chunk_size_frames + self.model.lookahead_frames)

    @torch.inference_mode()  # no autograd bookkeeping at all: ~6% of a chunk on 1 CPU thread
    def accept_waveform(self, samples: np.ndarray) -> str:
        """Feed float32 samples (16 kHz, [-1, 1]); returns the partial hypothesis so far."""
        if self.finished:
            raise RuntimeError("session finalized; call reset() before the next utterance")
        start = time.perf_counter()
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)  # (N,)
        self.num_samples += len(samples)
        self.fbank.accept_waveform(samples)
        self._feed(self.fbank.read_frames())
        self.chunk_compute_s.append(time.perf_counter() - start)
        return self.partial()

    @torch.inference_mode()
    def finalize(self) -> str:
        """Flush the features and the encoder's last partial chunk; returns the final text."""
        if self.finished:
            return self.partial()
        start = time.perf_counter()
        self.fbank.input_finished()
        self._feed(self.fbank.read_frames())
        tail, self.state = self.model.encode_chunk_final(self.state)  # (1, t', D)
        self._search(tail)
        self.finished = True
        self.chunk_compute_s.append(time.perf_counter() - start)
        return self.partial()

    def token_ids(self) -> list[int]:
        return list(self.search.hyp())

    def token_frames(self) -> list[int]:
        """Encoder frame (from the utterance start) at which each of :meth:`token_ids` was emitted."""
        return self.search.hyp_frames()

    def partial(self) -> str:
        return self.sp.decode(self.token_ids())

    def _feed(self, feats: np.ndarray) -> None:
        if len(feats) == 0:
            return
        self.num_feat_frames += len(feats)
        if self.cmvn is not None:
            feats = self.cmvn(feats)
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)[None]  # (1, t, F)
        enc, self.state = self.model.encode_chunk(x, self.state)  # (1, t', D)
        self._search(enc)

    def _search(self, enc: torch.Tensor) -> None:
        if enc.shape[1] > 0:
            self.num_enc_frames += enc.shape[1]
            self.search.accept(enc[0])  # (t', D)
