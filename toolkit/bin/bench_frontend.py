"""Front-end throughput: the real feature dump vs bare kaldi-native-fbank, one core.

Usage:
    OMP_NUM_THREADS=1 python -m toolkit.bin.bench_frontend [--seconds 300] [--file-seconds 10] [--rate 22050] [--repeat 3]

Synthesises --seconds of noisy tones as --rate Hz flac files in a temp dir, then times
(a) dump_job on them (read flac, soxr-resample to 16 kHz, fbank, write ark/scp) and
(b) kaldi-native-fbank alone on the same audio already in memory at 16 kHz.
Prints seconds of audio per second per core for both and their ratio (target >= 0.5).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import soundfile as sf
import soxr

from toolkit.features.dump import dump_job
from toolkit.features.fbank import INT16_SCALE, fbank_options
from toolkit.utils.cli import cli


def synthesize(folder: Path, seconds: float, file_seconds: float, rate: int) -> list[np.ndarray]:
    """Write flac files + wav.scp; returns the audio as written (decoded back)."""
    rng = np.random.default_rng(0)
    data = folder / "data"
    data.mkdir()
    lines, audio = [], []
    for i in range(max(1, int(seconds // file_seconds))):
        t = np.arange(int(file_seconds * rate)) / rate
        x = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * np.sin(3 * t) ** 2
        path = folder / f"utt{i:04d}.flac"
        sf.write(path, x.astype(np.float32), rate)
        lines.append(f"bench-{i:04d} {path}\n")
        audio.append(sf.read(path, dtype="float32")[0])
    (data / "wav.scp").write_text("".join(lines))
    return audio


def bare_fbank(samples16k: list[np.ndarray]) -> None:
    opts = fbank_options()
    for x in samples16k:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(16000, x * np.float32(INT16_SCALE))
        fb.input_finished()
        np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0, help="total audio")
    p.add_argument("--file-seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=22050, help="sample rate of the synthetic flac files")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each; the fastest counts")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio = synthesize(folder, args.seconds, args.file_seconds, args.rate)
        total = sum(len(x) for x in audio) / args.rate
        samples16k = [soxr.resample(x, args.rate, 16000, quality="HQ").astype(np.float32) for x in audio]
        e2e = bare = float("inf")
        for _ in range(args.repeat):  # alternate and keep the best: the machine may be shared
            t0 = time.perf_counter()
            dump_job(folder / "data", folder / "dump", progress=False)
            e2e = min(e2e, time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_fbank(samples16k)
            bare = min(bare, time.perf_counter() - t0)
    print(f"audio: {total:.0f} s at {args.rate} Hz flac, one process, best of {args.repeat}")
    print(f"dump (flac read + resample + fbank + ark write): {total / e2e:8.1f} s audio/s/core  ({e2e:.2f} s)")
    print(f"bare kaldi-native-fbank (16 kHz, in memory):     {total / bare:8.1f} s audio/s/core  ({bare:.2f} s)")
    print(f"ratio dump / bare: {bare / e2e:.2f} (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
