"""Read an utterance's samples from a Kaldi data dir entry, resampled to the target rate.

``wav.scp`` values are a path (anything libsndfile reads: wav, flac, ogg, mp3) or a shell
command ending in ``|`` whose stdout is audio. ``segments`` cut a recording by seconds.
Every failure raises :class:`~toolkit.utils.fileio.InputError` naming the utterance and
the file (or command). Multi-channel audio uses channel 0, as Kaldi does (or, with
``mixdown``, the mean of the channels: what a user handing in a stereo file expects).
"""
from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf
import soxr

from toolkit.utils.fileio import InputError

MIN_SAMPLE_RATE = 8000  # below this fbank up to 8 kHz would be mostly empty bands


def read_recording(spec: str, uttid: str, mixdown: bool = False) -> tuple[np.ndarray, int]:
    """``(samples float32 (N,) in [-1, 1], sample_rate)`` of a wav.scp value."""
    spec = spec.strip()
    if spec.endswith("|"):
        cmd = spec[:-1].strip()
        try:
            proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        except OSError as e:
            raise InputError(cmd, f"utterance '{uttid}': cannot run command: {e}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise InputError(cmd, f"utterance '{uttid}': command exited with {proc.returncode}: {err[0]}")
        source, where = io.BytesIO(proc.stdout), cmd
    else:
        source, where = spec, spec
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)  # (N, C)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise InputError(where, f"utterance '{uttid}': cannot read audio: {e}") from None
    if mixdown and samples.shape[1] > 1:
        return samples.mean(axis=1, dtype=np.float32), rate
    return np.ascontiguousarray(samples[:, 0]), rate


def cut_segment(samples: np.ndarray, rate: int, start: float, end: float, uttid: str, where: str) -> np.ndarray:
    """Samples between ``start`` and ``end`` seconds (``end`` -1 or past the end: to the end)."""
    b = int(round(start * rate))
    e = len(samples) if end < 0 else int(round(end * rate))
    if b >= len(samples):
        raise InputError(where, f"utterance '{uttid}': segment starts at {start}s, "
                                f"past the recording's end ({len(samples) / rate:.2f}s)")
    return samples[b:min(e, len(samples))]


def resample(samples: np.ndarray, rate: float, target: float, uttid: str, where: str) -> np.ndarray:
    """soxr resampling to ``target`` Hz (float rates allowed: speed perturbation)."""
    if rate < MIN_SAMPLE_RATE:
        raise InputError(where, f"utterance '{uttid}': sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def speed_perturb(samples: np.ndarray, rate: int, factor: float, target: int, uttid: str,
                  where: str) -> np.ndarray:
    """Sox ``speed factor`` then resample to ``target``, in one soxr pass.

    Speed f plays the audio f times faster (pitch and tempo): the samples are read as if
    recorded at ``rate * f``, i.e. resampled from ``rate`` to ``target / f``.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, not {factor}")
    if rate < MIN_SAMPLE_RATE:
        raise InputError(where, f"utterance '{uttid}': sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if factor == 1.0:
        return resample(samples, rate, target, uttid, where)
    return soxr.resample(samples, rate, target / factor, quality="HQ").astype(np.float32, copy=False)
