"""Check an export against a real runtime: sherpa-onnx's greedy streaming decode of the
exported transducer vs Concord's own (same audio, one token per frame at most, whole chunks).

    from toolkit.export.sherpa_check import compare_with_sherpa
    report = compare_with_sherpa(experiment, "exp/train/onnx", [("utt1", samples), ...])
    report.identical, report.total, report.examples

sherpa-onnx computes its own fbank; the options below make it Concord's (snip_edges, no
upper mel cut-off, samples not scaled to [-1, 1]); CMVN is folded into the exported encoder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from toolkit.features.fbank import SAMPLE_RATE


@dataclass
class SherpaComparison:
    identical: int = 0
    total: int = 0
    words: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)   # (uttid, sherpa, concord)
    differing: list[str] = field(default_factory=list)


def sherpa_recognizer(onnx_dir: str | os.PathLike):
    import sherpa_onnx
    d = os.fspath(onnx_dir)
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=f"{d}/tokens.txt", encoder=f"{d}/encoder.onnx", decoder=f"{d}/decoder.onnx",
        joiner=f"{d}/joiner.onnx", num_threads=1, snip_edges=True, high_freq=0.0, normalize_samples=False,
        decoding_method="greedy_search")


def compare_with_sherpa(experiment, onnx_dir: str | os.PathLike, audio: Iterable[tuple[str, np.ndarray]],
                        keep_examples: int = 3) -> SherpaComparison:
    """``audio``: (uttid, float32 samples at SAMPLE_RATE). Word sequences must be equal."""
    from toolkit.decode.session import StreamingSession
    from toolkit.export.runtime import OnnxTransducer, pad_to_whole_chunks

    chunking = OnnxTransducer(onnx_dir)
    recognizer = sherpa_recognizer(onnx_dir)
    session = StreamingSession(experiment.model, experiment.cmvn, experiment.sp, max_sym_per_frame=1)
    out = SherpaComparison()
    for uttid, samples in audio:
        wav = pad_to_whole_chunks(samples, chunking.T, chunking.shift)
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, wav)
        stream.input_finished()
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
        session.reset()
        session.accept_waveform(wav)
        concord, sherpa = session.finalize(), recognizer.get_result(stream)
        out.total += 1
        out.words += len(concord.split())
        if concord.split() == sherpa.split():
            out.identical += 1
        else:
            out.differing.append(uttid)
        if len(out.examples) < keep_examples:
            out.examples.append((uttid, sherpa, concord))
    return out
