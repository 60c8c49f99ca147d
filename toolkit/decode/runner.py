"""Decode utterances with a trained experiment: full-context batches or streaming sessions.

Each decode gives an :class:`UttDecode` per utterance (text, audio and compute seconds);
:mod:`toolkit.decode.jobs` writes and merges them. Audio duration of features:
``(T - 1) * 10 ms + 25 ms``.

Too-short audio (fewer fbank frames than the subsampling needs for one encoder frame,
``audio_encoder.min_frames``, about 85 ms) gets an empty hypothesis and a warning naming
the utterance, here, in the streaming session and in the transcriber alike
(:func:`skip_if_too_short`); the rest of its batch decodes.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from toolkit.decode.session import StreamingSession
from toolkit.features.fbank import SAMPLE_RATE
from toolkit.features.reader import FeatureReader
from toolkit.models.experiment import Experiment
from toolkit.utils.fileio import InputError
from toolkit.utils.kaldi_map import iter_kaldi_map
from toolkit.utils.progress import progress_bar

FRAME_SHIFT_S, FRAME_LENGTH_S = 0.010, 0.025
log = logging.getLogger(__name__)


def skip_if_too_short(model, uttid: str, num_frames: int) -> bool:
    """True (and a warning naming ``uttid``) when ``num_frames`` fbank frames give no encoder frame."""
    need = model.audio_encoder.min_frames
    if num_frames >= need:
        return False
    log.warning("%s: too short to decode (%d feature frames = %.3f s, the model needs %d): empty hypothesis",
                uttid, num_frames, features_duration_s(num_frames), need)
    return True


@dataclass(frozen=True)
class UttDecode:
    uttid: str
    text: str
    audio_s: float
    compute_s: float
    chunk_s: tuple[float, ...] = ()   # streaming: compute per fed piece


def run_search(decoder, enc, enc_lens, method: str, beam: int, ilm_weight: float = 0.0,
               blank_penalty: float = 0.0, with_frames: bool = False, max_sym_per_frame: int = 3):
    """Token ids per utterance (with_frames: and the encoder frame of each token)."""
    from toolkit.decode.search import beam_search, greedy_search
    common = {"blank_penalty": blank_penalty, "with_frames": with_frames, "max_sym_per_frame": max_sym_per_frame}
    if method == "greedy":
        return greedy_search(decoder, enc, enc_lens, **common)
    if method == "beam":
        return beam_search(decoder, enc, enc_lens, beam=beam, ilm_weight=ilm_weight, **common)
    raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")


def search_full_batch(model, mats: Sequence[np.ndarray], cmvn, method: str, beam: int, ilm_weight: float = 0.0,
                      blank_penalty: float = 0.0, with_frames: bool = False, max_sym_per_frame: int = 3):
    """One batch of raw fbank matrices through CMVN, padding, the full-context encoder and the
    second-pass search (the one place both the decode stage and the Transcriber do it); returns
    ``(run_search's result, the frame counts (B,))``."""
    x, lens = pad_features(mats, cmvn)
    device = next(model.parameters()).device
    enc, enc_lens = model.encode(x.to(device), lens.to(device), mode="full")  # (B, T', D)
    return run_search(model.decoder("full"), enc, enc_lens, method, beam, ilm_weight, blank_penalty,
                      with_frames=with_frames, max_sym_per_frame=max_sym_per_frame), lens


def pad_features(mats: Sequence[np.ndarray], cmvn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw fbank matrices (T_i, F) -> CMVN-normalised zero-padded batch (B, T, F) and lengths (B,)."""
    mats = [cmvn(m) if cmvn is not None else m for m in mats]
    lens = torch.tensor([len(m) for m in mats], dtype=torch.long)  # (B,)
    x = torch.zeros(len(mats), int(lens.max()), mats[0].shape[1])  # (B, T, F)
    for k, m in enumerate(mats):
        x[k, :len(m)] = torch.from_numpy(np.asarray(m, dtype=np.float32))
    return x, lens


def features_duration_s(num_frames: int) -> float:
    return (num_frames - 1) * FRAME_SHIFT_S + FRAME_LENGTH_S if num_frames else 0.0


@torch.no_grad()
def decode_full(exp: Experiment, feats: Sequence[tuple[str, np.ndarray]], method: str = "greedy",
                beam: int = 4, batch_size: int = 16, ilm_weight: float = 0.0,
                blank_penalty: float = 0.0, progress: bool = False) -> list[UttDecode]:
    """Full-context (second pass) decoding of ``(uttid, (T, F) raw fbank)`` in length-sorted batches."""
    model = exp.model
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i][1]))
    out: dict[int, UttDecode] = {}
    bar = progress_bar(total=len(order), desc="decode full", enabled=progress)
    for i in order:
        if skip_if_too_short(model, feats[i][0], len(feats[i][1])):
            out[i] = UttDecode(feats[i][0], "", features_duration_s(len(feats[i][1])), 0.0)
    order = [i for i in order if i not in out]
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        start = time.perf_counter()
        hyps, lens = search_full_batch(model, [feats[i][1] for i in idx], exp.cmvn, method, beam, ilm_weight,
                                       blank_penalty)
        elapsed = time.perf_counter() - start
        for k, i in enumerate(idx):  # share the batch's time by length
            share = elapsed * float(lens[k]) / float(lens.sum())
            out[i] = UttDecode(feats[i][0], exp.sp.decode(hyps[k]), features_duration_s(int(lens[k])), share)
        bar.update(len(idx))
    bar.close()
    return [out[i] for i in range(len(feats))]


def decode_streaming(exp: Experiment, audio: Iterable[tuple[str, np.ndarray]], method: str = "greedy",
                     beam: int = 4, chunk_ms: float | None = None, ilm_weight: float = 0.0,
                     blank_penalty: float = 0.0, progress: bool = False,
                     total: int | None = None) -> list[UttDecode]:
    """First-pass streaming decoding of ``(uttid, float32 samples at SAMPLE_RATE)``, fed ``chunk_ms`` at a time."""
    session = StreamingSession(exp.model, exp.cmvn, exp.sp, method=method, beam=beam, ilm_weight=ilm_weight,
                               blank_penalty=blank_penalty)
    chunk_ms = chunk_ms or 10.0 * exp.model.chunk_size_frames
    step = max(1, int(round(chunk_ms * SAMPLE_RATE / 1000)))  # samples per piece
    results = []
    for uttid, samples in progress_bar(audio, total=total, desc="decode streaming", enabled=progress):
        session.reset()
        for s in range(0, len(samples), step):
            session.accept_waveform(samples[s:s + step])
        text = session.finalize()
        skip_if_too_short(exp.model, uttid, session.num_feat_frames)
        chunks = tuple(session.chunk_compute_s)
        results.append(UttDecode(uttid, text, len(samples) / SAMPLE_RATE, sum(chunks), chunks))
    return results


def read_references(data_dir: str | os.PathLike) -> dict[str, str]:
    """``data/<set>/text`` as ``{uttid: words}``; empty transcripts are allowed (scored as such)."""
    return {u: " ".join(v.split()) for _, u, v in iter_kaldi_map(Path(data_dir) / "text", allow_empty_value=True)}


def load_features(feats_scp: str | os.PathLike, uttids: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """Raw fbank ``(uttid, (T, F))`` of ``uttids`` (decode_full applies the experiment's CMVN)."""
    reader = FeatureReader(feats_scp)
    return [(u, reader[u]) for u in uttids]


def load_audio(data_dir: str | os.PathLike, uttids: Sequence[str]) -> Iterable[tuple[str, np.ndarray]]:
    """Samples of each utterance at SAMPLE_RATE (wav.scp + optional segments), one at a time."""
    from toolkit.features.audio import cut_segment, read_recording, resample
    from toolkit.features.dump import list_utterances
    utts = {u.uttid: u for u in list_utterances(data_dir)}
    for uttid in uttids:
        if uttid not in utts:
            raise InputError(Path(data_dir) / "wav.scp", f"utterance '{uttid}' has no audio")
        u = utts[uttid]
        samples, rate = read_recording(u.audio, uttid)
        if u.end >= 0 or u.start > 0:
            samples = cut_segment(samples, rate, u.start, u.end, uttid, u.audio)
        yield uttid, resample(samples, rate, SAMPLE_RATE, uttid, u.audio)
