"""Voice-activity segmentation of long recordings, for full-context decoding a piece at a time.

Full-context attention over a whole file costs memory quadratic in its length (a
15-minute file needs one 11249^2 score matrix per head) and a transducer run over a long
file drifts and drops words. As whisper-style tools and NeMo do, a long recording is cut
into speech segments of at most ``max_s`` seconds, which are decoded as a batch; their
times are offsets into the file.

The cut: webrtcvad (``webrtcvad-wheels``) marks each 30 ms frame speech or not (runs
shorter than ``min_speech_s`` do not count: the VAD marks its first frames and clicks); the span
from the first to the last speech frame is one segment if it lasts at most ``max_s``,
else it is cut in the middle of its longest pause (non-speech run) and each side is
treated the same way; a stretch without any pause is cut at ``max_s``. Each segment keeps
``pad_s`` of audio on both sides (within the file, within ``max_s``) so that no word edge
is clipped.

Usage::

    from toolkit.features.segment import speech_segments
    for start, end in speech_segments(samples):   # float32 16 kHz, [-1, 1]; sample indices
        decode(samples[start:end])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
FRAME_MS = 30  # webrtcvad takes 10, 20 or 30 ms frames


@dataclass(frozen=True)
class SegmentConfig:
    max_s: float = 20.0        # no segment is longer
    pad_s: float = 0.2         # audio kept either side of the speech
    aggressiveness: int = 2    # webrtcvad 0 (keeps most) .. 3 (drops most as non-speech)
    min_speech_s: float = 0.15  # shorter runs of speech frames are clicks (and the VAD's first frames)


def speech_frames(samples: np.ndarray, aggressiveness: int = 2) -> np.ndarray:
    """float samples (N,) at 16 kHz -> bool (N // 480,): 30 ms frame k is speech."""
    import webrtcvad
    vad = webrtcvad.Vad(aggressiveness)
    step = SAMPLE_RATE * FRAME_MS // 1000
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767).astype("<i2")
    n = len(pcm) // step
    return np.fromiter((vad.is_speech(pcm[k * step:(k + 1) * step].tobytes(), SAMPLE_RATE) for k in range(n)),
                       dtype=bool, count=n)


def drop_short_runs(speech: np.ndarray, min_frames: int) -> np.ndarray:
    """bool frames with every run of True shorter than ``min_frames`` set False."""
    padded = np.concatenate([[False], speech, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # alternating starts/ends of True runs
    out = speech.copy()
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a < min_frames:
            out[a:b] = False
    return out


def split_speech(speech: np.ndarray, max_frames: int) -> list[tuple[int, int]]:
    """bool frames -> [(first, end)) frame spans of speech, none longer than max_frames,
    cut at the longest pause inside an over-long span (see the module doc)."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    voiced = np.flatnonzero(speech)
    if len(voiced) == 0:
        return []
    out, todo = [], [(int(voiced[0]), int(voiced[-1]) + 1)]
    while todo:
        a, b = todo.pop()
        if b - a <= max_frames:
            out.append((a, b))
            continue
        cut = _longest_pause_middle(speech[a:b])
        if cut is None:  # continuous speech: a hard cut
            todo += [(a + max_frames, b), (a, a + max_frames)]
            continue
        left, right = _trimmed(speech, a, a + cut), _trimmed(speech, a + cut, b)
        todo += [s for s in (right, left) if s is not None]
    return sorted(out)


def _longest_pause_middle(speech: np.ndarray) -> int | None:
    """Index of the middle of the longest run of False strictly inside ``speech``, or None."""
    padded = np.concatenate([[True], speech, [True]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # alternating starts/ends of False runs
    starts, ends = edges[::2], edges[1::2]
    inner = (starts > 0) & (ends < len(speech))
    if not inner.any():
        return None
    starts, ends = starts[inner], ends[inner]
    k = int(np.argmax(ends - starts))
    return int((starts[k] + ends[k]) // 2)


def _trimmed(speech: np.ndarray, a: int, b: int) -> tuple[int, int] | None:
    voiced = np.flatnonzero(speech[a:b])
    return None if len(voiced) == 0 else (a + int(voiced[0]), a + int(voiced[-1]) + 1)


def speech_segments(samples: np.ndarray, config: SegmentConfig = SegmentConfig()) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech segments of 16 kHz ``samples``, in order,
    each at most ``config.max_s`` long with its padding; [] when nothing sounds like speech."""
    step = SAMPLE_RATE * FRAME_MS // 1000
    pad = int(config.pad_s * SAMPLE_RATE)
    speech = drop_short_runs(speech_frames(samples, config.aggressiveness), round(config.min_speech_s * 1000 / FRAME_MS))
    spans = split_speech(speech, max(1, int((config.max_s - 2 * config.pad_s) * 1000) // FRAME_MS))
    segments = []
    for k, (a, b) in enumerate(spans):
        start, end = max(0, a * step - pad), min(len(samples), b * step + pad)
        if k + 1 < len(spans):  # padding never reaches into the next segment's speech
            end = min(end, spans[k + 1][0] * step)
        if segments:
            start = max(start, segments[-1][1])
        segments.append((start, end))
    return segments
