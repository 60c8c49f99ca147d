r"""Decode a data set with a trained model, streaming (first pass) or full-context (second pass).

Usage:
    python -m toolkit.bin.decode --exp exp/mini_joint --model exp/mini_joint/model_avg.pt \
        --data data/test --feats dump/test/feats.scp --mode full --method greedy \
        --out exp/mini_joint/decode_full_test
    python -m toolkit.bin.decode --exp exp/mini_joint --data data/test --mode streaming \
        --method beam --beam 4 --chunk-ms 320 --out exp/mini_joint/decode_streaming_test
    python -m toolkit.bin.decode --exp exp/t --method beam --beam 4 --blank-penalty 1.0 --save-defaults
    # parallel, then merge:
    utils/run.pl JOB=1:4 exp/t/decode_full_test/log/decode.JOB.log \
        python -m toolkit.bin.decode --exp exp/t --data data/test --feats dump/test/feats.scp \
        --mode full --out exp/t/decode_full_test --nj 4 --job JOB
    python -m toolkit.bin.decode --merge --out exp/t/decode_full_test --nj 4

Streaming reads the waveforms (wav.scp) and feeds them through a StreamingSession
``--chunk-ms`` at a time; full mode reads ``--feats`` and decodes in batches. Writes
hyp.trn, ref.trn, timing.tsv and rtf.txt (RTF; for streaming also the algorithmic
latency and per-chunk compute time) in ``--out``. Without ``--job`` or ``--merge`` all
jobs run here, one after another, then merge. Jobs record the data dir and settings in
``<out>/jobs/info.json``, so ``--merge`` needs only ``--out`` and ``--nj``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from toolkit.decode import jobs, runner
from toolkit.models.experiment import Experiment, load_experiment
from toolkit.utils.cli import cli
from toolkit.utils.cpu import setup_cpu
from toolkit.utils.fileio import atomic_write
from toolkit.utils.jobs import job_slice
from toolkit.utils.kaldi_map import c_sort_key


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", help="experiment dir holding config.yaml (not needed with --merge)")
    p.add_argument("--model", default=None, help="state dict (default: <exp>/model_avg.pt)")
    p.add_argument("--data", help="data dir: text (references), wav.scp (streaming); not needed with --merge")
    p.add_argument("--feats", default=None, help="feats.scp (raw fbank) for --mode full")
    p.add_argument("--mode", choices=("streaming", "full"), help="required unless --merge")
    p.add_argument("--method", choices=("greedy", "beam"), default="greedy")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--ilm-weight", type=float, default=0.0, help="HAT internal LM subtraction (beam)")
    p.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtracted from the blank logit before normalisation (greedy and beam); "
                        "> 0 means fewer deletions")
    p.add_argument("--save-defaults", action="store_true",
                   help="record these search settings in <exp>/decode_defaults.yaml, the defaults of "
                        "concord-transcribe, Transcriber and packed models; alone (no --data) it only records")
    p.add_argument("--chunk-ms", type=float, default=None,
                   help="streaming: audio fed per call (default: the model's chunk)")
    p.add_argument("--batch-size", type=int, default=16, help="full mode: utterances per batch")
    p.add_argument("--out", help="decode dir, e.g. exp/<tag>/decode_<mode>_<set>")
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--job", type=int, default=None, help="decode only this job (1..nj)")
    p.add_argument("--merge", action="store_true", help="only merge finished jobs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    return p


def decode_job(args, exp: Experiment, refs: dict, job: int) -> None:
    ids = job_slice(sorted(refs, key=c_sort_key), args.nj, job)
    if args.mode == "full":
        feats = runner.load_features(args.feats, ids)
        results = runner.decode_full(exp, feats, args.method, args.beam, args.batch_size, args.ilm_weight,
                                     args.blank_penalty, progress=not args.no_progress)
    else:
        results = runner.decode_streaming(exp, runner.load_audio(args.data, ids), args.method, args.beam,
                                          args.chunk_ms, args.ilm_weight, args.blank_penalty,
                                          progress=not args.no_progress, total=len(ids))
    jobs.write_job(args.out, job, results)
    logging.info("job %d/%d: decoded %d utterances", job, args.nj, len(results))


def decode_settings(args, model) -> dict:
    """The method and, streaming, the latencies: shown in rtf.txt and RESULTS.md."""
    settings = {"method": args.method if args.method == "greedy" else f"beam{args.beam}"}
    if args.ilm_weight:
        settings["method"] += f" ilm{args.ilm_weight:g}"
    if args.blank_penalty:
        settings["method"] += f" bp{args.blank_penalty:g}"
    if args.mode == "streaming":
        chunk_ms = args.chunk_ms or 10.0 * model.chunk_size_frames
        settings["algorithmic_latency_ms"] = f"{10.0 * (model.chunk_size_frames + model.lookahead_frames):.0f}"
        settings["model_chunk_ms"] = f"{10.0 * model.chunk_size_frames:.0f}"
        settings["fed_chunk_ms"] = f"{chunk_ms:g}"
    return settings


def job_options(args, settings: dict) -> dict:
    """Everything a job's hypotheses depend on (what --merge needs later, and checks jobs agree on)."""
    model = args.model or str(Path(args.exp) / "model_avg.pt")
    return {"data": str(args.data), "mode": args.mode, "nj": args.nj, "settings": settings, "exp": str(args.exp),
            "model": str(model), "feats": args.feats if args.mode == "full" else None,
            "batch_size": args.batch_size if args.mode == "full" else None}


@cli
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.nj < 1 or (args.job is not None and not 1 <= args.job <= args.nj):
        raise SystemExit(f"--job must be in 1..--nj ({args.nj})")
    if args.save_defaults:
        if not args.exp:
            raise SystemExit("--save-defaults needs --exp")
        from toolkit.decode.defaults import save_defaults
        path = save_defaults(args.exp, {"method": args.method, "beam": args.beam, "blank_penalty": args.blank_penalty,
                                        "ilm_weight": args.ilm_weight})
        logging.info("decode defaults -> %s", path)
        if not (args.data or args.mode or args.merge):
            return 0
    if not args.out:
        raise SystemExit("--out is required")
    if not args.merge:
        missing = [o for o, v in (("--exp", args.exp), ("--data", args.data), ("--mode", args.mode)) if not v]
        if missing:
            raise SystemExit(f"decoding needs {', '.join(missing)}")
        if args.mode == "full" and args.feats is None:
            raise SystemExit("--mode full needs --feats dump/<set>/feats.scp")
    setup_cpu(args.num_threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.merge:
        meta = jobs.read_job_options(args.out, args.nj)
        data, mode, settings = args.data or meta["data"], meta["mode"], meta["settings"]
        refs = runner.read_references(data)
    else:
        data, mode = args.data, args.mode
        refs = runner.read_references(data)
        exp = load_experiment(args.exp, args.model, args.device)
        settings = decode_settings(args, exp.model)
        for job in ([args.job] if args.job is not None else range(1, args.nj + 1)):
            jobs.start_job(args.out, job, job_options(args, settings))
            decode_job(args, exp, refs, job)
        if args.job is not None:
            return 0
    summary = jobs.merge_jobs(args.out, args.nj, refs, mode, settings)
    for name in ("utt2lang", "lang2unit"):  # per-language tables (each language in its unit) in make_results
        if (Path(data) / name).exists():
            with atomic_write(Path(args.out) / name) as f:
                f.write((Path(data) / name).read_text(encoding="utf-8"))
    extra = (f", algorithmic latency {summary['algorithmic_latency_ms']} ms, chunk compute median "
             f"{summary.get('chunk_compute_ms_median', '-')} ms / p95 {summary.get('chunk_compute_ms_p95', '-')} ms"
             if mode == "streaming" else "")
    print(f"{mode} ({summary['method']}): RTF {summary['rtf']} = {summary['compute_s']} s compute / "
          f"{summary['audio_s']} s audio, {summary['utterances']} utterances{extra} -> {args.out}/hyp.trn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
