"""Decoding speed of a trained model against sherpa-onnx, the runtime users deploy with.

Usage:
    python -m toolkit.bin.bench_decode --exp egs/mini/exp/train --data egs/mini/data/test_clean
    python -m toolkit.bin.bench_decode --exp exp/train --data data/test --num-utts 30 --onnx-dir exp/train/onnx --json d.json

The same model on the same audio (the first --num-utts utterances of --data, each padded to
whole encoder chunks so that sherpa-onnx, which decodes only whole chunks, sees all of it),
fed to every streaming method in the same pieces of one chunk of audio, one thread each:
  sherpa-onnx greedy         OnlineRecognizer on Concord's ONNX export (--onnx-dir; exported
                             there first when it holds no encoder.onnx, else to a temp dir)
  onnxruntime greedy         the same graphs driven by toolkit.export.runtime in onnxruntime
  concord greedy / beamN     Concord's StreamingSession in PyTorch
Greedy searches emit at most one token per frame, as sherpa-onnx does, so their words are
compared with sherpa-onnx's. For each: RTF, compute per piece (median, p95; a piece's
compute is fbank + encoder chunk + search) and the ratio of compute per piece to sherpa-onnx.
Target: Concord's greedy within 1.5x of sherpa-onnx; the breakdown of its time (fbank,
encoder chunk, predictor, joiner, Python and glue: timed calls on the model's own objects)
says where it goes. Then full-context greedy decoding with utterances batched (--batch) vs
one at a time. Each method is warmed up on one utterance, then --repeat rounds run every
method in turn and each method's best round is reported; on a shared machine run it under
`chrt -i 0` and say so with the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from toolkit.utils.cli import cli
from toolkit.utils.fileio import InputError, atomic_write

TARGET = 1.5


def _per_chunk(t) -> float:
    return t.compute_s / max(len(t.chunk_s), 1)


def _onnx_dir(exp, wanted: str | None) -> Path:
    from toolkit.export.onnx import export_onnx
    if wanted and (Path(wanted) / "encoder.onnx").exists():
        return Path(wanted)
    out = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="bench_decode_onnx_"))
    export_onnx(exp, out)
    return out


def measure(exp, onnx_dir: Path, audio, batch: int, beam: int, repeat: int) -> dict:
    """Every method on ``audio`` [(uttid, samples)], the best of ``repeat`` rounds; returns
    {name: Timing} with the breakdown run and the two full-context runs."""
    from toolkit.bench.decode_speed import (time_concord_streaming, time_full, time_onnxruntime_streaming,
                                            time_sherpa_streaming)
    from toolkit.export.runtime import OnnxTransducer, pad_to_whole_chunks
    from toolkit.export.sherpa_check import sherpa_recognizer
    from toolkit.features.fbank import FbankExtractor
    ort = OnnxTransducer(onnx_dir, num_threads=1)
    padded = [(u, pad_to_whole_chunks(a, ort.T, ort.shift)) for u, a in audio]
    piece = 160 * exp.model.chunk_size_frames
    recognizer = sherpa_recognizer(onnx_dir)
    warm = padded[:1]
    runs = {
        "sherpa": lambda a: time_sherpa_streaming(recognizer, a, piece),
        "onnxruntime": lambda a: time_onnxruntime_streaming(ort, exp.sp, a, piece, max_sym_per_frame=1),
        "greedy": lambda a: time_concord_streaming(exp, a, piece, max_sym_per_frame=1),
        "beam": lambda a: time_concord_streaming(exp, a, piece, method="beam", beam=beam),
        "breakdown": lambda a: time_concord_streaming(exp, a, piece, max_sym_per_frame=1, breakdown=True,
                                                      name="concord greedy, timed by part"),
    }
    out = {}
    for name, run in runs.items():
        run(warm)
    for _ in range(repeat):  # rounds interleave the methods, so load on a shared machine hits all alike
        for name, run in runs.items():
            t = run(padded)
            if name not in out or t.compute_s < out[name].compute_s:
                out[name] = t
    feats = [(u, FbankExtractor().compute(a)) for u, a in audio]
    time_full(exp, feats[:2], 2)
    for _ in range(repeat):
        for name, size in (("full_batched", batch), ("full_single", 1)):
            t = time_full(exp, feats, size)
            if name not in out or t.compute_s < out[name].compute_s:
                out[name] = t
    return out


def report(res: dict, n: int, beam: int, batch: int) -> tuple[str, dict]:
    """The printed table and the figures for --json."""
    from toolkit.bench.decode_speed import same_words
    sherpa = res["sherpa"]
    ref = _per_chunk(sherpa)
    lines = [f"{n} utterances, {sherpa.audio_s:.1f} s of audio, {len(sherpa.chunk_s)} pieces; 1 thread each",
             f"  {'method':<24}{'RTF':>8}{'piece median ms':>17}{'p95 ms':>8}{'per piece / sherpa':>20}"
             f"{'words = sherpa':>16}"]
    figures = {}
    for key in ("sherpa", "onnxruntime", "greedy", "beam"):
        t = res[key]
        same = "-" if key == "sherpa" else f"{same_words(t, sherpa)}/{n}"
        ratio = _per_chunk(t) / ref
        lines.append(f"  {t.name:<24}{t.rtf:8.4f}{t.chunk_ms(0.5):17.2f}{t.chunk_ms(0.95):8.2f}{ratio:19.2f}x"
                     f"{same:>16}")
        figures[key] = {"name": t.name, "rtf": t.rtf, "piece_median_ms": t.chunk_ms(0.5),
                        "piece_p95_ms": t.chunk_ms(0.95), "per_piece_over_sherpa": ratio, "same_words": same}
    greedy_ratio = figures["greedy"]["per_piece_over_sherpa"]
    met = greedy_ratio <= TARGET
    lines.append(f"target: concord greedy within {TARGET}x of sherpa-onnx per piece: "
                 f"{'met' if met else 'NOT met'} ({greedy_ratio:.2f}x)")
    bd = res["breakdown"]
    pieces = max(len(bd.chunk_s), 1)
    parts = {k: 1e3 * v / pieces for k, v in bd.parts.items()}
    lines.append("where concord greedy's time goes, ms per piece (calls timed one by one: "
                 f"{1e3 * bd.compute_s / pieces:.2f} ms in all, sherpa-onnx {1e3 * ref:.2f}): "
                 + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    fb, fs = res["full_batched"], res["full_single"]
    same_full = sum(fb.texts[u] == fs.texts[u] for u in fs.texts)
    lines.append(f"full context, greedy: batch {batch} RTF {fb.rtf:.4f}, one at a time RTF {fs.rtf:.4f}: "
                 f"batching is {fs.rtf / fb.rtf:.2f}x faster; identical hypotheses {same_full}/{n}")
    figures.update(target_met=met, breakdown_ms_per_piece=parts, full_batched_rtf=fb.rtf, full_single_rtf=fs.rtf,
                   full_batch=batch, full_identical=same_full, utterances=n, audio_s=sherpa.audio_s)
    return "\n".join(lines), figures


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="trained experiment dir (config.yaml, model_avg.pt)")
    p.add_argument("--data", required=True, help="Kaldi data dir with wav.scp (the first --num-utts, sorted)")
    p.add_argument("--num-utts", type=int, default=30)
    p.add_argument("--onnx-dir", default=None, help="Concord's ONNX export of --exp (made here when missing)")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--batch", type=int, default=16, help="full-context batch size compared with one at a time")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each method's best round is reported")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from toolkit.decode.runner import load_audio
    from toolkit.features.dump import list_utterances
    from toolkit.models.experiment import load_experiment
    exp = load_experiment(args.exp)
    if not (Path(args.data) / "wav.scp").exists():
        raise InputError(Path(args.data) / "wav.scp", "missing: --data must be a Kaldi data dir with wav.scp")
    uttids = sorted(u.uttid for u in list_utterances(args.data))[: args.num_utts]
    audio = list(load_audio(args.data, uttids))
    onnx_dir = _onnx_dir(exp, args.onnx_dir)
    res = measure(exp, onnx_dir, audio, args.batch, args.beam, args.repeat)
    text, figures = report(res, len(audio), args.beam, args.batch)
    print(f"bench_decode: {args.exp} on {args.data}; ONNX export {onnx_dir}")
    print(text)
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
