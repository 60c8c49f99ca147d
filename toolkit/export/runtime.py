"""Decode with the exported ONNX graphs in onnxruntime (no torch): greedy search, streaming or
full context, giving the same tokens as Concord's own greedy search.

Usage::

    ort = OnnxTransducer("exported/")                 # the dir concord-export-onnx wrote
    ids, frames = ort.greedy_streaming(fbank)         # fbank (T, 80): toolkit.features.fbank
    ids, frames = ort.greedy_full(fbank)
    enc = ort.encode_streaming(fbank)                 # (t, J) projected encoder frames

Streaming feeds the encoder windows of T = decode_chunk_len + pad_length fbank frames,
advancing decode_chunk_len each, and at the end the remaining frames (a shorter last
chunk), exactly as :class:`toolkit.decode.session.StreamingSession` flushes it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _meta(session) -> dict:
    return dict(session.get_modelmeta().custom_metadata_map)


class _Predictor:
    """Stateless (last context_size labels) or LSTM (state in, state out) decoder session."""

    def __init__(self, session):
        self.session, meta = session, _meta(session)
        self.lstm = meta.get("predictor") == "lstm"
        self.context_size = int(meta["context_size"])
        if self.lstm:
            self.zero = np.zeros((int(meta["num_layers"]), 1, int(meta["hidden_dim"])), np.float32)

    def initial(self):
        """(decoder_out, state) after the blank start symbol."""
        if self.lstm:
            return self.step([0], (self.zero, self.zero))
        return self.step([0] * self.context_size, None)

    def step(self, history, state):
        if self.lstm:
            out, h, c = self.session.run(None, {"y": np.array([[history[-1]]], np.int64), "h": state[0],
                                                "c": state[1]})
            return out, (h, c)
        y = np.array([history[-self.context_size:]], dtype=np.int64)
        return self.session.run(None, {"y": y})[0], None


class OnnxTransducer:
    def __init__(self, model_dir: str | os.PathLike, num_threads: int = 1):
        d = Path(model_dir)
        self.encoder = _session(d / "encoder.onnx", num_threads)
        self.encoder_full = _session(d / "encoder_full.onnx", num_threads)
        self.predictor = {"streaming": _Predictor(_session(d / "decoder.onnx", num_threads)),
                          "full": _Predictor(_session(d / "decoder_full.onnx", num_threads))}
        self.joiner = {"streaming": _session(d / "joiner.onnx", num_threads),
                       "full": _session(d / "joiner_full.onnx", num_threads)}
        meta = _meta(self.encoder)
        self.T, self.shift = int(meta["T"]), int(meta["decode_chunk_len"])
        self.min_window = int(meta["frames_per_output"]) + int(meta["pad_length"])
        layers, dim = int(meta["num_encoder_layers"]), int(meta["encoder_dim"])
        self.attn0 = np.zeros((layers, int(meta["left_context"]), 1, dim), np.float32)
        self.conv0 = np.zeros((layers, int(meta["cnn_module_kernel"]) - 1, 1, dim), np.float32)

    def encode_streaming(self, fbank: np.ndarray) -> np.ndarray:
        """(T, F) raw fbank -> (t, J) encoder frames, chunk by chunk with explicit caches."""
        attn, conv, outs, start = self.attn0, self.conv0, [], 0
        while start < len(fbank):
            window = fbank[start:start + self.T]
            if len(window) < self.min_window:  # too short for one more encoder frame
                break
            enc, attn, conv = self.encoder.run(None, {"x": window[None].astype(np.float32), "cached_attn": attn,
                                                      "cached_conv": conv,
                                                      "processed_frames": np.array([start], np.int64)})
            outs.append(enc[0])
            start += self.shift
        width = self.joiner["streaming"].get_inputs()[0].shape[-1]
        return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)

    def encode_full(self, fbank: np.ndarray) -> np.ndarray:
        enc, lens = self.encoder_full.run(None, {"x": fbank[None].astype(np.float32),
                                                 "x_lens": np.array([len(fbank)], np.int64)})
        return enc[0, : int(lens[0])]

    def greedy(self, enc: np.ndarray, mode: str, max_sym_per_frame: int = 3, blank_penalty: float = 0.0):
        """Greedy search over (t, J) frames -> (token ids, emission frame of each)."""
        predictor, joiner = self.predictor[mode], self.joiner[mode]
        history, frames = [0] * max(predictor.context_size, 1), []
        dec, state = predictor.initial()
        for t, frame in enumerate(enc):
            for _ in range(max_sym_per_frame):
                logp = joiner.run(None, {"encoder_out": frame[None], "decoder_out": dec})[0][0]
                logp = lower_blank(logp, blank_penalty)
                y = int(logp.argmax())
                if y == 0:
                    break
                history.append(y)
                frames.append(t)
                dec, state = predictor.step(history, state)
        return history[len(history) - len(frames):], frames

    def greedy_streaming(self, fbank, **kw):
        return self.greedy(self.encode_streaming(fbank), "streaming", **kw)

    def greedy_full(self, fbank, **kw):
        return self.greedy(self.encode_full(fbank), "full", **kw)


def lower_blank(log_probs: np.ndarray, penalty: float) -> np.ndarray:
    """numpy twin of :func:`toolkit.models.hat.lower_blank` (the runtime imports no torch):
    HAT log-probs (..., V) with ``penalty`` subtracted from the blank logit before normalisation."""
    if not penalty:
        return log_probs
    blank, labels = log_probs[..., :1], log_probs[..., 1:]
    top = labels.max(-1, keepdims=True)
    not_blank = top + np.log(np.exp(labels - top).sum(-1, keepdims=True))  # logsigmoid(-b)
    b = blank - not_blank
    logsigmoid = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
    return np.concatenate([logsigmoid(b - penalty), labels - not_blank + logsigmoid(penalty - b)], axis=-1)


def pad_to_whole_chunks(samples: np.ndarray, T: int, shift: int) -> np.ndarray:
    """Samples cut or zero-padded (< one chunk) so that their fbank frames form whole chunks.

    Then a runtime that decodes only complete windows of T frames advancing ``shift``
    (sherpa-onnx, which also wants one frame more than T) and Concord's stream, which
    flushes a shorter last chunk, see the same chunks. Assumes 16 kHz, 25 ms / 10 ms frames.
    """
    frames = max(1, 1 + (len(samples) - 400) // 160)
    k = max(0, -(-(frames - (T + 1)) // shift))
    n = 400 + 160 * (shift * k + T)  # shift*k + T + 1 frames
    return np.concatenate([samples, np.zeros(max(0, n - len(samples)), np.float32)])[:n]
