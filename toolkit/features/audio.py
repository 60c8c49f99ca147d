"""Read an utterance's samples from a Kaldi data dir entry, resampled to the target rate.

Two readers, because a path and a wav.scp value are not the same kind of input:

- :func:`read_audio_file` reads a path given as a file (``concord-transcribe`` arguments,
  ``Transcriber.transcribe("x.wav")``). It is a file name and nothing else: a name ending in
  ``|`` is a file, never a command, and leading or trailing spaces are part of the name.
  Only a regular file is read: a FIFO, device, socket or directory is refused (a FIFO
  would block the reader forever), and ``bytes`` paths are decoded with ``os.fsdecode``.
- :func:`read_recording` reads a ``wav.scp`` value, which is Kaldi's convention: a path
  (surrounding spaces are separators) or a shell command ending in ``|`` whose stdout is
  audio. The command runs because whoever wrote the wav.scp asked for it; a value that
  came from a file name never reaches this function.

``segments`` cut a recording by seconds. Every failure raises
:class:`~toolkit.utils.fileio.InputError` naming the utterance and the file (or command).

Policies (never silent: callers count them, the dump reports them in its log):
- multi-channel audio is mixed down to mono (the mean of the channels), not channel 0
  alone, so speech on any channel is kept;
- a WAV file shorter than its header declares (a copy cut short) is an error, not half
  the features; a damaged FLAC fails to decode, also an error;
- other sample rates are resampled (soxr HQ) to the target rate.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import subprocess

import numpy as np
import soundfile as sf
import soxr

from toolkit.utils.fileio import InputError

MIN_SAMPLE_RATE = 8000  # below this fbank up to 8 kHz would be mostly empty bands


# a streaming writer (sox to a pipe) cannot know the size: these mean "unknown"
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000, 0x7FFFFFFF)


def declared_wav_frames(head: bytes) -> int | None:
    """Sample frames a RIFF/WAVE header's data chunk declares; None if not a WAV or unknown.

    ``head`` is the start of the file (the chunks before ``data``; 64 KiB is plenty).
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack("<H", head[pos + 20:pos + 22])[0]
        if chunk == b"data":
            return size // block_align if block_align and size not in _UNKNOWN_WAV_SIZES else None
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    return None


def audio_path(path: str | bytes | os.PathLike) -> str:
    """A path given as a file, as ``str``: bytes decoded with ``os.fsdecode``, nothing stripped.

    Raises TypeError for anything that is not a path (an int would be read as a file
    descriptor by ``open``, which is never what a caller meant).
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"an audio path must be str, bytes or os.PathLike, not {type(path).__name__}")
    return os.fsdecode(os.fspath(path))


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


def open_regular_file(path: str, uttid: str) -> io.BufferedReader:
    """``path`` opened for reading if it is a regular file; InputError naming it otherwise.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor, so a FIFO is
    refused without waiting for a writer, and a file swapped for a FIFO between a check
    and the open cannot block either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(repr(path) if path != path.strip() else path,
                         f"utterance '{uttid}': no such file") from None
    except IsADirectoryError:
        raise InputError(path, f"utterance '{uttid}': is a directory, not an audio file") from None
    except OSError as e:
        raise InputError(path, f"utterance '{uttid}': cannot open: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
        raise InputError(path, f"utterance '{uttid}': is {kind}, not an audio file: refused")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_audio_file(path: str | bytes | os.PathLike, uttid: str,
                    stats: dict | None = None) -> tuple[np.ndarray, int]:
    """``(samples float32 (N,) in [-1, 1], sample_rate)`` of an audio file, mixed down to mono.

    ``path`` is a file name, never a command (see the module doc); only regular files are
    read. ``stats`` (optional) counts ``mixed_down`` recordings, for the caller's summary.
    """
    path = audio_path(path)
    with open_regular_file(path, uttid) as f:
        head = f.read(65536)
        f.seek(0)
        return decode_audio(f, path, head, uttid, stats)


def read_recording(spec: str, uttid: str, stats: dict | None = None) -> tuple[np.ndarray, int]:
    """``(samples float32 (N,) in [-1, 1], sample_rate)`` of a wav.scp value, mixed down to mono.

    A value ending in ``|`` is a shell command (Kaldi's convention, for wav.scp values
    only); anything else is a path, read by :func:`read_audio_file`.
    ``stats`` (optional) counts ``mixed_down`` recordings, for the caller's summary.
    """
    spec = spec.strip()
    if not spec.endswith("|"):
        return read_audio_file(spec, uttid, stats)
    cmd = spec[:-1].strip()
    try:
        proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as e:
        raise InputError(cmd, f"utterance '{uttid}': cannot run command: {e}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise InputError(cmd, f"utterance '{uttid}': command exited with {proc.returncode}: {err[0]}")
    return decode_audio(io.BytesIO(proc.stdout), cmd, proc.stdout[:65536], uttid, stats)


def decode_audio(source, where: str, head: bytes, uttid: str, stats: dict | None) -> tuple[np.ndarray, int]:
    """Decode an open audio stream (``head``: its first bytes, to check a WAV's declared length)."""
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)  # (N, C)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise InputError(where, f"utterance '{uttid}': cannot read audio: {e}") from None
    declared = declared_wav_frames(head)
    if declared is not None and len(samples) < declared:
        raise InputError(where, f"utterance '{uttid}': truncated audio: the WAV header declares {declared} "
                                f"samples ({declared / rate:.2f} s), the file holds {len(samples)} "
                                f"({len(samples) / rate:.2f} s)")
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0]), rate
    if stats is not None:
        stats["mixed_down"] = stats.get("mixed_down", 0) + 1
    return samples.mean(axis=1, dtype=np.float32), rate


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
