"""Decoding speed of one model in several runtimes, on the same audio fed in the same pieces.

Every streaming method gets each utterance as pieces of one encoder chunk of audio, in order,
and is timed per piece (the per-chunk latency: fbank + encoder chunk + search for that
piece) and in total (RTF = compute seconds / audio seconds):

- Concord's PyTorch :class:`~toolkit.decode.session.StreamingSession`, greedy or beam; with
  ``breakdown`` the time is split into fbank, encoder chunk, predictor, joiner and the rest
  (Python: search bookkeeping, tensor glue), by timing the calls on the model's own objects;
- Concord's ONNX export in onnxruntime (:class:`toolkit.export.runtime.OnnxTransducer`'s
  graphs, driven chunk by chunk here with the same online fbank);
- sherpa-onnx's ``OnlineRecognizer`` on the same export (:func:`toolkit.export.sherpa_check.sherpa_recognizer`).

Full context: :func:`toolkit.decode.runner.decode_full` with a given batch size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from toolkit.features.fbank import SAMPLE_RATE, OnlineFbank


@dataclass
class Timing:
    """One method's run: per-utterance text, audio and compute seconds, per-piece compute."""
    name: str
    texts: dict = field(default_factory=dict)        # uttid -> words
    audio_s: float = 0.0
    compute_s: float = 0.0
    chunk_s: list = field(default_factory=list)      # every piece of every utterance
    parts: dict = field(default_factory=dict)        # breakdown: part -> seconds

    @property
    def rtf(self) -> float:
        return self.compute_s / max(self.audio_s, 1e-12)

    def chunk_ms(self, q: float) -> float:
        """The q-quantile (0.5 median, 0.95 p95) of the per-piece compute, milliseconds."""
        if not self.chunk_s:
            return float("nan")
        return 1e3 * float(np.quantile(np.asarray(self.chunk_s), q))


def pieces_of(samples: np.ndarray, piece: int) -> list[np.ndarray]:
    return [samples[s:s + piece] for s in range(0, len(samples), piece)]


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class _PartTimer:
    """Times calls of bound methods by part name (instance attributes shadow the methods and
    are removed by :meth:`restore`); synchronises CUDA so a part holds its own kernels."""

    def __init__(self, device):
        self.device, self.seconds, self._patched = device, {}, []

    def wrap(self, obj, attr: str, part: str) -> None:
        inner = getattr(obj, attr)

        def timed(*a, **k):
            _sync(self.device)
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                _sync(self.device)
                self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
        setattr(obj, attr, timed)  # an instance attribute (nn.Module keeps plain callables in __dict__ too)
        self._patched.append((obj, attr))

    def restore(self) -> None:
        for obj, attr in self._patched:
            obj.__dict__.pop(attr, None)
        self._patched = []


def time_concord_streaming(exp, audio: Sequence[tuple[str, np.ndarray]], piece: int, method: str = "greedy",
                           beam: int = 4, max_sym_per_frame: int = 3, breakdown: bool = False,
                           name: str | None = None) -> Timing:
    """Concord's StreamingSession over ``audio`` fed ``piece`` samples at a time."""
    from toolkit.decode.session import StreamingSession
    model = exp.model
    device = next(model.parameters()).device
    session = StreamingSession(model, exp.cmvn, exp.sp, method=method, beam=beam,
                               max_sym_per_frame=max_sym_per_frame)
    out = Timing(name or ("concord greedy" if method == "greedy" else f"concord beam{beam}"))
    timer = _PartTimer(device) if breakdown else None
    if timer:
        decoder = model.decoder("streaming")
        timer.wrap(model, "encode_chunk", "encoder chunk")
        timer.wrap(model, "encode_chunk_final", "encoder chunk")
        timer.wrap(decoder, "step", "predictor")
        timer.wrap(decoder, "log_probs", "joiner")
    try:
        for uttid, samples in audio:
            session.reset()
            if timer:
                for attr in ("accept_waveform", "read_frames", "input_finished"):
                    timer.wrap(session.fbank, attr, "fbank")
            for p in pieces_of(samples, piece):
                session.accept_waveform(p)
            out.texts[uttid] = session.finalize()
            out.chunk_s += session.chunk_compute_s
            out.compute_s += sum(session.chunk_compute_s)
            out.audio_s += len(samples) / SAMPLE_RATE
    finally:
        if timer:
            timer.restore()
    if timer:
        out.parts = dict(timer.seconds)
        out.parts["python and glue"] = out.compute_s - sum(out.parts.values())
    return out


def time_full(exp, feats: Sequence[tuple[str, np.ndarray]], batch_size: int, method: str = "greedy",
              beam: int = 4) -> Timing:
    """Full-context decoding of raw fbank ``(uttid, (T, F))`` in batches of ``batch_size``."""
    from toolkit.decode.runner import decode_full
    res = decode_full(exp, feats, method=method, beam=beam, batch_size=batch_size)
    out = Timing(f"full-context {method}, batch {batch_size}")
    for r in res:
        out.texts[r.uttid] = r.text
        out.audio_s += r.audio_s
        out.compute_s += r.compute_s
    return out


class _OnnxGreedy:
    """Greedy search over the exported predictor/joiner, fed encoder frames as they come
    (the loop of OnnxTransducer.greedy, kept across chunks)."""

    def __init__(self, ort, mode: str = "streaming", max_sym_per_frame: int = 3):
        self.predictor, self.joiner = ort.predictor[mode], ort.joiner[mode]
        self.max_sym = max_sym_per_frame
        self.history = [0] * max(self.predictor.context_size, 1)
        self.start = len(self.history)
        self.dec, self.state = self.predictor.initial()

    def accept(self, enc: np.ndarray) -> None:
        for frame in enc:
            for _ in range(self.max_sym):
                logp = self.joiner.run(None, {"encoder_out": frame[None], "decoder_out": self.dec})[0][0]
                y = int(logp.argmax())
                if y == 0:
                    break
                self.history.append(y)
                self.dec, self.state = self.predictor.step(self.history, self.state)

    def tokens(self) -> list[int]:
        return self.history[self.start:]


def time_onnxruntime_streaming(ort, sp, audio: Sequence[tuple[str, np.ndarray]], piece: int,
                               max_sym_per_frame: int = 3) -> Timing:
    """The exported streaming encoder in onnxruntime, window by window as encode_streaming
    cuts them (whole windows while audio arrives, the shorter rest at the end)."""
    out = Timing("onnxruntime greedy")
    for uttid, samples in audio:
        fbank, search = OnlineFbank(), _OnnxGreedy(ort, "streaming", max_sym_per_frame)
        state = {"buf": np.zeros((0, 80), np.float32), "start": 0, "attn": ort.attn0, "conv": ort.conv0}

        def run_windows(min_len):
            while len(state["buf"]) >= min_len:
                window = state["buf"][:ort.T]
                enc, state["attn"], state["conv"] = ort.encoder.run(None, {
                    "x": window[None], "cached_attn": state["attn"], "cached_conv": state["conv"],
                    "processed_frames": np.array([state["start"]], np.int64)})
                search.accept(enc[0])
                state["buf"], state["start"] = state["buf"][ort.shift:], state["start"] + ort.shift
        for k, p in enumerate(pieces_of(samples, piece) + [None]):
            t0 = time.perf_counter()
            if p is None:
                fbank.input_finished()
            else:
                fbank.accept_waveform(p)
            state["buf"] = np.concatenate([state["buf"], fbank.read_frames()])
            run_windows(ort.T if p is not None else ort.min_window)
            out.chunk_s.append(time.perf_counter() - t0)
            out.compute_s += out.chunk_s[-1]
        out.texts[uttid] = sp.decode(search.tokens())
        out.audio_s += len(samples) / SAMPLE_RATE
    return out


def time_sherpa_streaming(recognizer, audio: Sequence[tuple[str, np.ndarray]], piece: int) -> Timing:
    """sherpa-onnx's OnlineRecognizer, fed the same pieces; decodes whenever a chunk is ready."""
    out = Timing("sherpa-onnx greedy")
    for uttid, samples in audio:
        stream = recognizer.create_stream()
        for p in pieces_of(samples, piece) + [None]:
            t0 = time.perf_counter()
            if p is None:
                stream.input_finished()
            else:
                stream.accept_waveform(SAMPLE_RATE, p)
            while recognizer.is_ready(stream):
                recognizer.decode_stream(stream)
            out.chunk_s.append(time.perf_counter() - t0)
            out.compute_s += out.chunk_s[-1]
        out.texts[uttid] = recognizer.get_result(stream)
        out.audio_s += len(samples) / SAMPLE_RATE
    return out


def same_words(a: Timing, b: Timing) -> int:
    """How many utterances ``a`` and ``b`` transcribe to the same word sequence."""
    return sum(a.texts[u].split() == b.texts.get(u, "").split() for u in a.texts)


def speech_like(seed: int, seconds: float) -> np.ndarray:
    """A speech-like test signal (gliding harmonics, syllable-rate envelope, noise), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    f0 = 120 + 60 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SAMPLE_RATE) / k for k in range(1, 6))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)
