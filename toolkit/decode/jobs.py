"""Job files of a decode split into ``JOB=1:nj`` jobs, and their merge.

Jobs take contiguous slices of the C-sorted utterance ids (:func:`toolkit.utils.jobs.job_slice`);
job ``j`` first removes its old outputs and records the options it runs with in
``<out>/jobs/options.<j>.json`` (:func:`start_job`), then writes ``timing.<j>.tsv`` and,
last, ``hyp.<j>.trn``; :func:`merge_jobs` then writes ``hyp.trn``, ``ref.trn``,
``timing.tsv`` and, last, ``rtf.txt``, only when every job finished with the same options
(a job left from an earlier decode with other options is refused, never mixed in) and
every reference utterance has a hypothesis. RTF = compute time / audio duration.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.decode.runner import UttDecode
from toolkit.scoring.trn import read_trn, write_trn
from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.kaldi_map import c_sort_key


def job_files(out_dir: Path, job: int) -> tuple[Path, Path, Path]:
    """hyp.<job>.trn, timing.<job>.tsv and options.<job>.json of one job."""
    jobs = out_dir / "jobs"
    return jobs / f"hyp.{job}.trn", jobs / f"timing.{job}.tsv", jobs / f"options.{job}.json"


def start_job(out_dir: str | os.PathLike, job: int, options: dict) -> None:
    """Before decoding: drop this job's old outputs and the merged ones, record its options."""
    out_dir = Path(out_dir)
    clear_merged(out_dir)
    for path in job_files(out_dir, job):
        path.unlink(missing_ok=True)
    with atomic_write(job_files(out_dir, job)[2]) as f:
        json.dump(options, f, indent=1, sort_keys=True)


def read_job_options(out_dir: str | os.PathLike, nj: int) -> dict:
    """The options all ``nj`` jobs ran with; InputError for another --nj, a missing or mixed job."""
    out_dir = Path(out_dir)
    found = {j: job_files(out_dir, j)[2] for j in range(1, nj + 1) if job_files(out_dir, j)[2].exists()}
    options = {j: json.loads(p.read_text(encoding="utf-8")) for j, p in found.items()}
    for j, opts in options.items():
        if opts.get("nj") != nj:
            raise InputError(found[j], f"jobs ran with --nj {opts.get('nj')}, merge asked for --nj {nj}")
    missing = [str(path) for j in range(1, nj + 1) for path in job_files(out_dir, j)[::2] if not path.exists()]
    if missing:
        raise InputError(out_dir, f"decode jobs did not finish (missing {', '.join(missing)}); see {out_dir}/log")
    for j, opts in options.items():
        if opts != options[1]:
            diff = sorted(k for k in set(opts) | set(options[1]) if opts.get(k) != options[1].get(k))
            raise InputError(found[j], f"job {j} ran with other options than job 1 ({', '.join(diff)}: "
                                       f"{[opts.get(k) for k in diff]} vs {[options[1].get(k) for k in diff]}); "
                                       "a mix of two decodes: rerun all jobs")
    return options[1]


def write_job(out_dir: str | os.PathLike, job: int, results: Sequence[UttDecode]) -> None:
    """Timing first, hypotheses last: hyp.<job>.trn existing means the job finished."""
    hyp, timing, _ = job_files(Path(out_dir), job)
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
               settings: dict | None = None) -> dict:
    """Write hyp.trn/ref.trn/timing.tsv/rtf.txt if every job finished, with the same options
    (see :func:`read_job_options`), and the jobs cover every reference."""
    out_dir = Path(out_dir)
    read_job_options(out_dir, nj)
    hyps: dict[str, str] = {}
    timing = []
    for j in range(1, nj + 1):
        hyp_path, timing_path, _ = job_files(out_dir, j)
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
    summary = summarize(mode, timing, settings or {})
    with atomic_write(out_dir / "rtf.txt") as f:
        f.writelines(f"{k} {v}\n" for k, v in summary.items())
    return summary


def summarize(mode: str, timing: list, settings: dict) -> dict:
    audio = sum(t[1] for t in timing)
    compute = sum(t[2] for t in timing)
    summary = {"mode": mode, **settings, "utterances": len(timing), "audio_s": f"{audio:.2f}",
               "compute_s": f"{compute:.2f}", "rtf": f"{compute / audio:.4f}" if audio else "nan"}
    chunks = np.array([c for t in timing for c in t[3]])  # ms
    if len(chunks):
        summary["chunk_compute_ms_median"] = f"{np.median(chunks):.2f}"
        summary["chunk_compute_ms_p95"] = f"{np.percentile(chunks, 95):.2f}"
        summary["chunk_compute_ms_max"] = f"{chunks.max():.2f}"
    return summary
