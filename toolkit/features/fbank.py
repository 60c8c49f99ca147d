"""Kaldi log-mel filterbank features via kaldi-native-fbank, whole-utterance and online.

Both paths use the same :func:`fbank_options` and the same sample scaling (float audio
in [-1, 1] times 32768, i.e. Kaldi's int16 range, so values match ``compute-fbank-feats``
on a wav file), and produce identical frames: the online one just emits each frame as
soon as its 25 ms window is complete (``snip_edges``, as Kaldi).
"""
from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import soxr

SAMPLE_RATE = 16000
INT16_SCALE = 32768.0


def fbank_options(num_mel_bins: int = 80, sample_rate: int = SAMPLE_RATE, dither: float = 0.0,
                  frame_shift_ms: float = 10.0, frame_length_ms: float = 25.0) -> knf.FbankOptions:
    """Kaldi defaults except ``dither`` 0 (deterministic dumps) and 80 bins."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = sample_rate
    opts.frame_opts.dither = dither
    opts.frame_opts.frame_shift_ms = frame_shift_ms
    opts.frame_opts.frame_length_ms = frame_length_ms
    opts.mel_opts.num_bins = num_mel_bins
    return opts


class OnlineFbank:
    """Incremental fbank for streaming: feed chunks, read the frames complete so far.

    ``accept_waveform(samples)`` takes float samples in [-1, 1] at ``sample_rate``;
    ``read_frames()`` returns the new frames ``(n, num_mel_bins)`` float32 (n may be 0);
    ``input_finished()`` flushes the last frames (none are lost with snip_edges).
    """

    def __init__(self, num_mel_bins: int = 80, sample_rate: int = SAMPLE_RATE, dither: float = 0.0):
        self.num_mel_bins, self.sample_rate = num_mel_bins, sample_rate
        self._fbank = knf.OnlineFbank(fbank_options(num_mel_bins, sample_rate, dither))
        self._next = 0  # absolute index of the first frame not yet returned

    def accept_waveform(self, samples) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1) * np.float32(INT16_SCALE)  # (N,)
        self._fbank.accept_waveform(self.sample_rate, x)

    def input_finished(self) -> None:
        self._fbank.input_finished()

    def read_frames(self) -> np.ndarray:
        ready = self._fbank.num_frames_ready
        out = np.empty((ready - self._next, self.num_mel_bins), dtype=np.float32)  # (n, F)
        for k, i in enumerate(range(self._next, ready)):
            out[k] = self._fbank.get_frame(i)  # a view into knf's buffer: copy it out
        if ready > self._next:
            self._fbank.pop(ready - self._next)  # free them; indices stay absolute
        self._next = ready
        return out


class FbankExtractor:
    """Whole-utterance fbank: ``compute(samples, sample_rate) -> (T, num_mel_bins)`` float32.

    Audio at another rate is resampled to ``sample_rate`` with soxr first. Fewer samples
    than one 25 ms window give ``T == 0`` (callers decide whether that is an error).
    """

    def __init__(self, num_mel_bins: int = 80, sample_rate: int = SAMPLE_RATE, dither: float = 0.0):
        self.num_mel_bins, self.sample_rate, self.dither = num_mel_bins, sample_rate, dither

    def compute(self, samples, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)  # (N,)
        if sample_rate != self.sample_rate:
            x = soxr.resample(x, sample_rate, self.sample_rate, quality="HQ").astype(np.float32, copy=False)
        online = OnlineFbank(self.num_mel_bins, self.sample_rate, self.dither)
        online.accept_waveform(x)
        online.input_finished()
        return online.read_frames()
