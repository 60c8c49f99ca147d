r"""Long-audio transcription: time and peak memory at 1, 10 and 60 minutes; words lost in long files.

Usage:
    OMP_NUM_THREADS=1 python -m toolkit.bin.bench_transcribe egs/mini/exp/train [--minutes 1 10 60] \
        [--modes full streaming] [--work /tmp/bench_transcribe]
    # item 10: a long file made of a test set's sentences vs the sentences one at a time
    python -m toolkit.bin.bench_transcribe egs/mini/exp/train --sentences egs/mini/data/test_clean --minutes

Length: synthesizes English speech with espeak-ng (``toolkit.synth``: grammar sentences,
several voices, recording noise, 0.3-1.2 s pauses) into one file per ``--minutes``, then
transcribes each in every mode in a child process of its own (``concord-transcribe``'s
code path, the model's saved decode settings), and prints per run the RTF (wall seconds /
audio seconds, and CPU seconds / audio seconds, which a loaded machine inflates less),
the peak resident set of the child (``ru_maxrss``: model, audio and decoding) and both
as ratios to the shortest file's run. Linear time means RTF ratios near 1.

Sentences (``--sentences DATA``): every utterance of the data dir (wav.scp + text)
decoded alone, then all of them concatenated into one recording decoded (a) cut into
segments at pauses (the default) and (b) whole (``max_segment_s`` 0); WER of each, both modes.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from toolkit.utils.cli import cli

SAMPLE_RATE = 16000


def synthesize_speech(minutes: float, seed: int = 0, pool: int = 120) -> np.ndarray:
    """float32 16 kHz speech of about ``minutes``: ``pool`` synthesized sentences, repeated
    in a shuffled order with random pauses until long enough."""
    from toolkit.synth.espeak import Espeak, add_recording_conditions
    from toolkit.synth.grammar import Grammar, generate_sentences
    from toolkit.synth.voices import make_voices, VARIANTS
    rng = random.Random(seed)
    grammar, engine = Grammar.load("en"), Espeak.get()
    voices = make_voices("en-us", sorted(VARIANTS)[:6], 6, rng)
    said = [add_recording_conditions(engine.synthesize(s, voices[k % len(voices)], k), k, (0.3, 1.2))
            for k, s in enumerate(generate_sentences(grammar, pool, rng))]
    parts, total, want = [], 0, int(minutes * 60 * SAMPLE_RATE)
    while total < want:
        for k in rng.sample(range(len(said)), len(said)):
            parts.append(said[k])
            total += len(said[k])
            if total >= want:
                break
    return (np.concatenate(parts)[:want] / 32768.0).astype(np.float32)


def settings_text(asr) -> str:
    beam = f" {asr.beam}" if asr.method == "beam" else ""
    return f"{asr.method}{beam}, blank penalty {asr.blank_penalty:g}"


def child(model: str, wav: str, mode: str, max_segment_s: float) -> dict:
    """Transcribe one file here; what the parent prints (run in a fresh process)."""
    import soundfile as sf
    from toolkit.decode.transcriber import Transcriber
    from toolkit.utils.cpu import setup_cpu
    setup_cpu(1)
    asr = Transcriber.from_pretrained(model, mode=mode, max_segment_s=max_segment_s)
    samples = sf.read(wav, dtype="float32")[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = asr.transcribe_named([(Path(wav).stem, samples)])[0]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"audio_s": len(samples) / SAMPLE_RATE, "wall_s": wall, "cpu_s": cpu, "words": len(result.words),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "settings": settings_text(asr)}


def run_child(model: str, wav: Path, mode: str, max_segment_s: float) -> dict:
    cmd = [sys.executable, "-m", "toolkit.bin.bench_transcribe", model, "--child", str(wav), "--modes", mode,
           "--max-segment-s", str(max_segment_s)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def length_table(args) -> None:
    import soundfile as sf
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    wavs = {}
    for m in args.minutes:
        wavs[m] = work / f"speech_{m:g}min.wav"
        if not wavs[m].exists():
            t = time.perf_counter()
            sf.write(wavs[m], synthesize_speech(m), SAMPLE_RATE)
            print(f"# synthesized {wavs[m]} in {time.perf_counter() - t:.0f} s", flush=True)
    print("| mode | minutes | RTF (wall) | RTF (CPU) | peak RSS GB | RTF ratio | RSS ratio | words |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes:
        first = None
        for m in args.minutes:
            r = run_child(args.model, wavs[m], mode, args.max_segment_s)
            rtf, cpu_rtf = r["wall_s"] / r["audio_s"], r["cpu_s"] / r["audio_s"]
            first = first or (cpu_rtf, r["peak_rss_gb"])
            print(f"| {mode} | {m:g} | {rtf:.3f} | {cpu_rtf:.3f} | {r['peak_rss_gb']:.2f} | "
                  f"{cpu_rtf / first[0]:.2f} | {r['peak_rss_gb'] / first[1]:.2f} | {r['words']} |", flush=True)
    print(f"# decode settings: {r['settings']}; ratios against the {args.minutes[0]:g}-minute run "
          "(RTF ratio from CPU time)")


def sentences_table(args) -> None:
    from toolkit.decode.runner import load_audio, read_references
    from toolkit.decode.transcriber import Transcriber
    from toolkit.scoring.wer import score
    refs = read_references(args.sentences)
    ids = sorted(refs)[: args.max_sentences or None]
    audio = dict(load_audio(args.sentences, ids))
    long = np.concatenate([audio[u] for u in ids])
    ref = {"long": " ".join(refs[u] for u in ids)}
    print(f"# {len(ids)} sentences, {len(long) / SAMPLE_RATE / 60:.1f} min, {len(ref['long'].split())} words")
    print("| mode | sentences alone | one file, segmented | one file, whole |")
    print("|---|---|---|---|")
    for mode in args.modes:
        asr = Transcriber.from_pretrained(args.model, mode=mode, max_segment_s=args.max_segment_s)
        alone = {r.uttid: r.text for r in asr.transcribe_named([(u, audio[u]) for u in ids])}
        cut = asr.transcribe_named([("long", long)])[0].text
        asr.max_segment_s = 0
        whole = asr.transcribe_named([("long", long)])[0].text
        wers = [score({u: refs[u] for u in ids}, alone).wer, score(ref, {"long": cut}).wer,
                score(ref, {"long": whole}).wer]
        print(f"| {mode} | " + " | ".join(f"{w:.2f}" for w in wers) + " |", flush=True)
    print(f"# WER %; decode settings: {settings_text(asr)}, "
          f"segments of at most {args.max_segment_s:g} s")


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="experiment dir or packed model")
    p.add_argument("--minutes", type=float, nargs="*", default=[1, 10, 60], help="file lengths (none: skip)")
    p.add_argument("--modes", nargs="+", choices=("full", "streaming"), default=["full", "streaming"])
    p.add_argument("--max-segment-s", type=float, default=20.0)
    p.add_argument("--work", default="/tmp/bench_transcribe", help="where the synthesized files are kept")
    p.add_argument("--sentences", default=None, help="data dir: long file of its sentences vs one at a time")
    p.add_argument("--max-sentences", type=int, default=0, help="use the first N (0: all)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.child, args.modes[0], args.max_segment_s)))
        return 0
    if args.minutes:
        length_table(args)
    if args.sentences:
        sentences_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
