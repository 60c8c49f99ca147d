"""Decode a data set with a trained experiment: full-context batches or streaming sessions.

A decode is split into jobs (contiguous slices of the C-sorted utterance ids, as
``split_scp.pl``); job ``j`` writes ``<out>/jobs/hyp.<j>.trn`` and ``timing.<j>.tsv``;
:func:`merge_jobs` then writes ``hyp.trn``, ``ref.trn``, ``timing.tsv`` and, last,
``rtf.txt``, only when every reference utterance has a hypothesis.
RTF = compute time / audio duration (features: ``(T - 1) * 10 ms + 25 ms`` of audio).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from toolkit.utils.kaldi_map import c_sort_key, iter_kaldi_map, read_kaldi_map
from toolkit.decode.session import StreamingSession
from toolkit.models.experiment import Experiment
from toolkit.scoring.trn import read_trn, write_trn
from toolkit.utils.fileio import InputError, atomic_write

FRAME_SHIFT_S, FRAME_LENGTH_S = 0.010, 0.025


@dataclass(frozen=True)
class UttDecode:
    uttid: str
    text: str
    audio_s: float
    compute_s: float
    chunk_s: tuple[float, ...] = ()   # streaming: compute per fed piece


def run_search(decoder, enc, enc_lens, method: str, beam: int, ilm_weight: float = 0.0,
               blank_penalty: float = 0.0) -> list[list[int]]:
    from toolkit.decode.search import beam_search, greedy_search
    if method == "greedy":
        return greedy_search(decoder, enc, enc_lens, blank_penalty=blank_penalty)
    if method == "beam":
        return beam_search(decoder, enc, enc_lens, beam=beam, ilm_weight=ilm_weight, blank_penalty=blank_penalty)
    raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")


def features_duration_s(num_frames: int) -> float:
    return (num_frames - 1) * FRAME_SHIFT_S + FRAME_LENGTH_S if num_frames else 0.0


@torch.no_grad()
def decode_full(exp: Experiment, feats: Sequence[tuple[str, np.ndarray]], method: str = "greedy",
                beam: int = 4, batch_size: int = 16, ilm_weight: float = 0.0,
                blank_penalty: float = 0.0) -> list[UttDecode]:
    """Full-context (second pass) decoding of ``(uttid, (T, F) raw fbank)`` in length-sorted batches."""
    model = exp.model
    device = next(model.parameters()).device
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i][1]))
    out: dict[int, UttDecode] = {}
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        mats = [exp.cmvn(feats[i][1]) if exp.cmvn is not None else feats[i][1] for i in idx]
        lens = torch.tensor([len(m) for m in mats], dtype=torch.long)  # (B,)
        x = torch.zeros(len(mats), int(lens.max()), mats[0].shape[1])  # (B, T, F)
        for k, m in enumerate(mats):
            x[k, :len(m)] = torch.from_numpy(np.asarray(m, dtype=np.float32))
        start = time.perf_counter()
        enc, enc_lens = model.encode(x.to(device), lens.to(device), mode="full")  # (B, T', D)
        hyps = run_search(model.decoder("full"), enc, enc_lens, method, beam, ilm_weight, blank_penalty)
        elapsed = time.perf_counter() - start
        for k, i in enumerate(idx):  # share the batch's time by length
            share = elapsed * float(lens[k]) / float(lens.sum())
            out[i] = UttDecode(feats[i][0], exp.sp.decode(hyps[k]), features_duration_s(int(lens[k])), share)
    return [out[i] for i in range(len(feats))]


def decode_streaming(exp: Experiment, audio: Iterable[tuple[str, np.ndarray]], method: str = "greedy",
                     beam: int = 4, chunk_ms: float | None = None, ilm_weight: float = 0.0,
                     blank_penalty: float = 0.0) -> list[UttDecode]:
    """First-pass streaming decoding of ``(uttid, 16 kHz float32 samples)``, fed ``chunk_ms`` at a time."""
    session = StreamingSession(exp.model, exp.cmvn, exp.sp, method=method, beam=beam, ilm_weight=ilm_weight,
                               blank_penalty=blank_penalty)
    chunk_ms = chunk_ms or 10.0 * exp.model.chunk_size_frames
    step = max(1, int(round(chunk_ms * 16)))  # samples per piece at 16 kHz
    results = []
    for uttid, samples in audio:
        session.reset()
        for s in range(0, len(samples), step):
            session.accept_waveform(samples[s:s + step])
        text = session.finalize()
        chunks = tuple(session.chunk_compute_s)
        results.append(UttDecode(uttid, text, len(samples) / 16000.0, sum(chunks), chunks))
    return results


# --- job files -------------------------------------------------------------------------------

def job_files(out_dir: Path, job: int) -> tuple[Path, Path]:
    return out_dir / "jobs" / f"hyp.{job}.trn", out_dir / "jobs" / f"timing.{job}.tsv"


def write_job(out_dir: str | os.PathLike, job: int, results: Sequence[UttDecode]) -> None:
    """Timing first, hypotheses last: hyp.<job>.trn existing means the job finished."""
    hyp, timing = job_files(Path(out_dir), job)
    with atomic_write(timing) as f:
        f.write("#uttid\taudio_s\tcompute_s\trtf\tchunk_compute_ms\n")
        for r in results:
            rtf = r.compute_s / r.audio_s if r.audio_s else 0.0
            chunks = ",".join(f"{1000 * c:.3f}" for c in r.chunk_s) or "-"
            f.write(f"{r.uttid}\t{r.audio_s:.3f}\t{r.compute_s:.4f}\t{rtf:.4f}\t{chunks}\n")
    write_trn(hyp, [(r.uttid, r.text) for r in results])


def clear_merged(out_dir: str | os.PathLike) -> None:
    """A job that starts invalidates earlier merged outputs."""
    for name in ("hyp.trn", "ref.trn", "timing.tsv", "rtf.txt"):
        (Path(out_dir) / name).unlink(missing_ok=True)


def read_timing(path: Path) -> list[tuple[str, float, float, list[float]]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        try:
            uttid, audio_s, compute_s, _, chunks = line.split("\t")
            rows.append((uttid, float(audio_s), float(compute_s),
                         [] if chunks == "-" else [float(c) for c in chunks.split(",")]))
        except ValueError:
            raise InputError(path, "expected uttid, audio_s, compute_s, rtf, chunk_compute_ms", lineno) from None
    return rows


def merge_jobs(out_dir: str | os.PathLike, nj: int, refs: dict[str, str], mode: str,
               info: dict | None = None) -> dict:
    """Write hyp.trn/ref.trn/timing.tsv/rtf.txt if every job finished and covers every reference."""
    out_dir = Path(out_dir)
    missing = [str(job_files(out_dir, j)[0]) for j in range(1, nj + 1) if not job_files(out_dir, j)[0].exists()]
    if missing:
        raise InputError(out_dir, f"decode jobs did not finish (missing {', '.join(missing)}); see {out_dir}/log")
    hyps: dict[str, str] = {}
    timing = []
    for j in range(1, nj + 1):
        hyp_path, timing_path = job_files(out_dir, j)
        for uttid, text in read_trn(hyp_path).items():
            if uttid in hyps:
                raise InputError(hyp_path, f"utterance '{uttid}' also decoded by another job")
            if uttid not in refs:
                raise InputError(hyp_path, f"utterance '{uttid}' is not in the reference text")
            hyps[uttid] = text
        timing += read_timing(timing_path)
    lost = [u for u in refs if u not in hyps]
    if lost:
        raise InputError(out_dir, f"no hypothesis for {len(lost)} utterance(s), e.g. '{lost[0]}': "
                                  "rerun all jobs with the same --nj")
    ids = sorted(refs, key=c_sort_key)
    write_trn(out_dir / "ref.trn", [(u, refs[u]) for u in ids])
    write_trn(out_dir / "hyp.trn", [(u, hyps[u]) for u in ids])
    with atomic_write(out_dir / "timing.tsv") as f:
        f.write("#uttid\taudio_s\tcompute_s\n")
        f.writelines(f"{u}\t{a:.3f}\t{c:.4f}\n" for u, a, c, _ in timing)
    summary = summarize(mode, timing, info or {})
    with atomic_write(out_dir / "rtf.txt") as f:
        f.writelines(f"{k} {v}\n" for k, v in summary.items())
    return summary


def summarize(mode: str, timing: list, info: dict) -> dict:
    audio = sum(t[1] for t in timing)
    compute = sum(t[2] for t in timing)
    summary = {"mode": mode, **info, "utterances": len(timing), "audio_s": f"{audio:.2f}",
               "compute_s": f"{compute:.2f}", "rtf": f"{compute / audio:.4f}" if audio else "nan"}
    chunks = np.array([c for t in timing for c in t[3]])  # ms
    if len(chunks):
        summary["chunk_compute_ms_median"] = f"{np.median(chunks):.2f}"
        summary["chunk_compute_ms_p95"] = f"{np.percentile(chunks, 95):.2f}"
        summary["chunk_compute_ms_max"] = f"{chunks.max():.2f}"
    return summary


def read_references(data_dir: str | os.PathLike) -> dict[str, str]:
    """``data/<set>/text`` as ``{uttid: words}``; empty transcripts are allowed (scored as such)."""
    return {u: " ".join(v.split()) for _, u, v in iter_kaldi_map(Path(data_dir) / "text", allow_empty_value=True)}


def load_features(feats_scp: str | os.PathLike, uttids: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    import kaldiio
    scp = read_kaldi_map(feats_scp)
    out = []
    for u in uttids:
        if u not in scp:
            raise InputError(feats_scp, f"utterance '{u}' of the data dir has no features")
        try:
            out.append((u, np.asarray(kaldiio.load_mat(scp[u]), dtype=np.float32)))
        except Exception as e:
            raise InputError(feats_scp, f"utterance '{u}': cannot read {scp[u]}: {e}") from None
    return out


def load_audio(data_dir: str | os.PathLike, uttids: Sequence[str]) -> Iterable[tuple[str, np.ndarray]]:
    """16 kHz samples of each utterance (wav.scp + optional segments), one at a time."""
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
        yield uttid, resample(samples, rate, 16000, uttid, u.audio)
