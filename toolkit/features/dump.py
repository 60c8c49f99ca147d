"""Feature dumping for a Kaldi data dir, split into jobs, then merged.

Job ``j`` of ``nj`` takes the j-th contiguous slice of the utterances (as
``split_scp.pl``) and writes ``feats.<j>.ark``, ``feats.<j>.scp``, ``utt2num_frames.<j>``
and ``dump_conf.<j>`` (its options).
:func:`merge_jobs` writes ``utt2num_frames`` and, last, ``feats.scp`` only when every job's
outputs exist and cover exactly the expected utterances; a job that starts deletes the
merged files, so a stale ``feats.scp`` never points into a rewritten ark, and the temp
files a killed run of the same job left behind.

Each job also writes ``dump_stats.<j>`` (what it did beyond reading 16 kHz mono audio:
utterances resampled from each rate, recordings mixed down to mono, utterances implausibly
short for their transcript, i.e. fewer than MIN_FRAMES_PER_CHAR frames per transcript
character); the job logs it and the merge logs the total. Truncated and multi-channel
audio: see :mod:`toolkit.features.audio`.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from toolkit.features.ark import ArkScpWriter
from toolkit.features.audio import cut_segment, read_recording, speed_perturb
from toolkit.features.fbank import SAMPLE_RATE, FbankExtractor
from toolkit.utils.fileio import InputError
from toolkit.utils.jobs import job_slice
from toolkit.utils.kaldi_map import c_sort_key, iter_kaldi_map, parse_segment, read_kaldi_map, write_kaldi_map

log = logging.getLogger(__name__)
MIN_FRAMES_PER_CHAR = 2.0  # ~50 characters a second: no speech is that fast, audio is missing
NAMED_WARNINGS = 5  # per job, the rest are counted


@dataclass(frozen=True)
class Utterance:
    uttid: str
    audio: str  # wav.scp value: path or "cmd |"
    start: float = 0.0  # seconds, from segments
    end: float = -1.0  # -1: to the end of the recording
    recording: str = ""


def list_utterances(data_dir: str | os.PathLike) -> list[Utterance]:
    """Utterances with their audio; every transcript in ``text`` must have audio."""
    data_dir = Path(data_dir)
    wav = read_kaldi_map(data_dir / "wav.scp")
    if (data_dir / "segments").exists():
        utts = []
        for lineno, uttid, value in iter_kaldi_map(data_dir / "segments"):
            seg = parse_segment(data_dir / "segments", lineno, value)
            rec, start, end = seg.recording, seg.start, seg.end
            if rec not in wav:
                raise InputError(data_dir / "segments", f"utterance '{uttid}': recording '{rec}' "
                                 "is not in wav.scp", lineno)
            if end >= 0 and end <= start:
                raise InputError(data_dir / "segments", f"utterance '{uttid}': end {end} <= start {start}", lineno)
            utts.append(Utterance(uttid, wav[rec], start, end, rec))
    else:
        utts = [Utterance(uttid, spec, recording=uttid) for uttid, spec in wav.items()]
    have = {u.uttid for u in utts}
    if len(have) != len(utts):
        raise InputError(data_dir / "segments", "duplicate utterance ids")
    if (data_dir / "text").exists():
        source = "segments" if (data_dir / "segments").exists() else "wav.scp"
        for lineno, uttid, _ in iter_kaldi_map(data_dir / "text", allow_empty_value=True):
            if uttid not in have:
                raise InputError(data_dir / "text", f"utterance '{uttid}' has a transcript but no audio "
                                 f"(not in {source})", lineno)
    return sorted(utts, key=lambda u: c_sort_key(u.uttid))


def perturbed_id(uttid: str, factor: float) -> str:
    return uttid if factor == 1.0 else f"sp{factor:g}-{uttid}"


def expected_ids(utts: list[Utterance], speeds: list[float]) -> list[str]:
    return sorted((perturbed_id(u.uttid, f) for u in utts for f in speeds), key=c_sort_key)


def job_paths(out: Path, job: int) -> tuple[Path, Path, Path, Path]:
    """ark, scp, utt2num_frames and dump_conf (the job's options, checked by the merge)."""
    return (out / f"feats.{job}.ark", out / f"feats.{job}.scp", out / f"utt2num_frames.{job}",
            out / f"dump_conf.{job}")


def stats_path(out: Path, job: int) -> Path:
    return out / f"dump_stats.{job}"


def remove_stale_temp_files(out: Path, names: list[str]) -> None:
    """Temp files (``.<name>.*.tmp``) that a killed run writing ``names`` left behind."""
    for name in names:
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def check_duration(stats: dict, key: str, frames: int, transcript: str | None, where: str) -> None:
    """Count (and name the first few) utterances too short for their transcript."""
    chars = len("".join((transcript or "").split()))
    if chars and frames < MIN_FRAMES_PER_CHAR * chars:
        stats["implausibly_short"] = stats.get("implausibly_short", 0) + 1
        if stats["implausibly_short"] <= NAMED_WARNINGS:
            log.warning("%s: utterance '%s': %d frames for a %d-character transcript (< %g per character): "
                        "truncated audio or a wrong transcript?", where, key, frames, chars, MIN_FRAMES_PER_CHAR)


def format_stats(stats: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "nothing to report"


def format_speeds(speeds) -> str:
    return ",".join(f"{f:g}" for f in speeds)


def dump_job(data_dir: str | os.PathLike, out: str | os.PathLike, nj: int = 1, job: int = 1,
             compress: bool = False, speeds: tuple[float, ...] = (1.0,),
             extractor: FbankExtractor | None = None, progress: bool = True) -> int:
    """Compute and write one job's features; returns the number of feature matrices."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ark, scp, u2nf, conf = job_paths(out, job)
    for stale in (out / "feats.scp", out / "utt2num_frames", scp, u2nf, conf, stats_path(out, job)):
        stale.unlink(missing_ok=True)
    remove_stale_temp_files(out, [p.name for p in (ark, scp, u2nf, conf, stats_path(out, job))])
    extractor = extractor or FbankExtractor()
    utts = job_slice(list_utterances(data_dir), nj, job)
    text_path = Path(data_dir) / "text"
    texts = read_kaldi_map(text_path, allow_empty_value=True) if text_path.exists() else {}
    stats: dict[str, int] = {}
    frames: dict[str, str] = {}
    cached: tuple[str, np.ndarray, int] | None = None  # consecutive segments share a recording
    bar = tqdm(utts, desc=f"fbank job {job}/{nj}", unit="utt", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    with ArkScpWriter(ark, scp, compress=compress) as writer:
        for u in bar:
            if cached is None or cached[0] != u.audio:
                samples, rate = read_recording(u.audio, u.uttid, stats)
                cached = (u.audio, samples, rate)
            _, samples, rate = cached
            if rate != SAMPLE_RATE:
                key = f"resampled_from_{rate}_hz"
                stats[key] = stats.get(key, 0) + 1
                if stats[key] == 1:
                    log.warning("%s: utterance '%s': %d Hz audio is resampled to %d Hz (counted in the summary)",
                                u.audio, u.uttid, rate, SAMPLE_RATE)
            if u.end >= 0 or u.start > 0:
                samples = cut_segment(samples, rate, u.start, u.end, u.uttid, u.audio)
            for factor in speeds:
                key = perturbed_id(u.uttid, factor)
                x = speed_perturb(samples, rate, factor, SAMPLE_RATE, key, u.audio)
                feats = extractor.compute(x, SAMPLE_RATE)  # (T, 80)
                if len(feats) == 0:
                    raise InputError(u.audio, f"utterance '{key}': {len(x)} samples at {SAMPLE_RATE} Hz "
                                     "is shorter than one 25 ms frame (empty or truncated audio?)")
                if factor == 1.0:
                    check_duration(stats, key, len(feats), texts.get(u.uttid), u.audio)
                writer.write(key, feats)
                frames[key] = str(len(feats))
    write_kaldi_map(u2nf, frames, sort=False)
    write_kaldi_map(stats_path(out, job), {k: str(v) for k, v in stats.items()})
    write_kaldi_map(conf, {"nj": str(nj), "speed_perturb": format_speeds(speeds), "compress": str(compress),
                           "num_mel_bins": str(extractor.num_mel_bins)}, sort=False)
    log.info("job %d/%d: %d utterances, %d feature matrices -> %s; %s", job, nj, len(utts), len(frames), ark,
             format_stats(stats))
    return len(frames)


def merged_stats(out: str | os.PathLike, nj: int) -> dict[str, int]:
    """The jobs' ``dump_stats.<j>`` summed (a job without one counts nothing)."""
    total: dict[str, int] = {}
    for j in range(1, nj + 1):
        path = stats_path(Path(out), j)
        if path.exists():
            for key, value in read_kaldi_map(path).items():
                total[key] = total.get(key, 0) + int(value)
    return total


def merge_jobs(data_dir: str | os.PathLike, out: str | os.PathLike, nj: int,
               speeds: tuple[float, ...] | None = None) -> Path:
    """Concatenate job outputs into ``feats.scp`` + ``utt2num_frames`` if they are complete.

    ``speeds`` defaults to what the jobs recorded in ``dump_conf.<job>``; all jobs must
    agree with each other (same nj, speeds, options) and with ``speeds`` if given.
    """
    out = Path(out)
    missing = [str(p) for j in range(1, nj + 1) for p in job_paths(out, j)[1:] if not p.exists()]
    if missing:
        raise InputError(out, f"jobs did not finish (missing {', '.join(missing)}); see the job logs")
    confs = [read_kaldi_map(job_paths(out, j)[3]) for j in range(1, nj + 1)]
    for j, conf in enumerate(confs, 1):
        if conf != confs[0] or conf.get("nj") != str(nj):
            raise InputError(job_paths(out, j)[3], f"job options {conf} differ from job 1's {confs[0]} "
                                                   f"or from --nj {nj}: rerun all jobs the same way")
    recorded = tuple(float(x) for x in confs[0]["speed_perturb"].split(","))
    if speeds is not None and tuple(speeds) != recorded:
        raise InputError(job_paths(out, 1)[3], f"jobs ran with --speed-perturb {format_speeds(recorded)}, "
                                               f"merge asked for {format_speeds(speeds)}")
    speeds = recorded
    feats: dict[str, str] = {}
    nframes: dict[str, str] = {}
    for j in range(1, nj + 1):
        _, scp, u2nf, _ = job_paths(out, j)
        for target, path in ((feats, scp), (nframes, u2nf)):
            for lineno, key, value in iter_kaldi_map(path):
                if key in target:
                    raise InputError(path, f"utterance '{key}' also written by another job", lineno)
                target[key] = value
    expect = expected_ids(list_utterances(data_dir), list(speeds))
    for name, got in (("feats", feats), ("utt2num_frames", nframes)):
        if sorted(got, key=c_sort_key) != expect:
            lost = [u for u in expect if u not in got][:5]
            extra = [u for u in got if u not in set(expect)][:5]
            raise InputError(out, f"job {name} files do not match {data_dir} (missing e.g. {lost}, "
                                  f"unexpected e.g. {extra}): rerun all jobs with the same --nj/--speed-perturb")
    write_kaldi_map(out / "utt2num_frames", nframes)
    write_kaldi_map(out / "feats.scp", feats)  # last: its presence means complete
    log.info("%s: %d feature matrices; %s", out, len(feats), format_stats(merged_stats(out, nj)))
    return out / "feats.scp"
