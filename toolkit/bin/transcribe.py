r"""Transcribe your own audio files with a trained experiment or a packed model.

Usage:
    concord-transcribe egs/mini/exp/train my.flac other.wav          # prints utt<TAB>text
    python -m toolkit.bin.transcribe model.concord --wav-scp data/test_clean/wav.scp --mode streaming
    concord-transcribe exp/big *.ogg --method beam --beam 8 --json > out.jsonl   # + word/token times
    concord-transcribe exp/big talk.mp3 --ctm talk.ctm                            # NIST CTM of the words
    concord-transcribe mini.concord a.wav --expect-sha256 "$(cut -d' ' -f1 mini.concord.sha256)"

Audio: anything libsndfile reads (wav, flac, ogg; mp3 with libsndfile >= 1.1), at any
sample rate (resampled to 16 kHz with soxr), stereo mixed down; or a Kaldi ``wav.scp``
(paths or ``cmd |``). A file argument is only ever a file: a name ending in ``|`` is read
as a file, never run (only wav.scp values run commands), and a FIFO, device or directory
is refused. Utterance ids are the file names without extension (the keys of a
wav.scp). A file that cannot be read is reported on stderr by name and the others are
transcribed; the exit status is then 1. ``--mode full`` (default) decodes with the
full-context second pass, ``--mode streaming`` with the streaming first pass, as it would
run live. Recordings longer than ``--max-segment-s`` (20 s) are cut at pauses into
speech segments (any length works, memory stays that of one segment). ``--json`` writes
one JSON object per line: utt, text, duration, words and tokens with start/end seconds
(the encoder frame each token was emitted in).
Search settings (method, beam, blank penalty, ILM weight) default to those the recipe
decoded with (``decode_defaults.yaml`` in the experiment dir or the pack); flags override.

A packed model is checked before it is used (members listed and bounded by its manifest,
sha256 of each, config sizes against the weights): that detects corruption, not
tampering. For a model from someone else, compare with the digest its publisher gives:
``--expect-sha256 HEX`` refuses any other file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toolkit.utils.fileio import InputError, atomic_write
from toolkit.utils.cli import cli

PROG = "concord-transcribe"  # the one prefix of every message, whether run as the script or python -m


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="experiment dir (exp/<tag>) or packed model (*.concord file or dir)")
    p.add_argument("audio", nargs="*", help="audio files")
    p.add_argument("--wav-scp", default=None, help="Kaldi wav.scp: uttid -> path or 'cmd |'")
    p.add_argument("--mode", choices=("full", "streaming"), default="full")
    p.add_argument("--method", choices=("greedy", "beam"), default=None,
                   help="default: the model's decode_defaults.yaml (the recipe's choice), else greedy")
    p.add_argument("--beam", type=int, default=None, help="default: decode_defaults.yaml, else 4")
    p.add_argument("--blank-penalty", type=float, default=None,
                   help="subtracted from the blank logit before normalisation; > 0 means fewer deletions "
                        "(default: decode_defaults.yaml, else 0)")
    p.add_argument("--ilm-weight", type=float, default=None,
                   help="HAT internal LM subtraction (beam; default: decode_defaults.yaml, else 0)")
    p.add_argument("--batch-size", type=int, default=8, help="full mode: files (or segments) decoded together")
    p.add_argument("--max-segment-s", type=float, default=20.0,
                   help="longer recordings are cut at pauses (voice activity) into segments of at most "
                        "this many seconds, decoded separately, times kept; 0: decode every file whole")
    p.add_argument("--json", action="store_true", help="JSON lines with word and token times instead of text")
    p.add_argument("--ctm", default=None, help="also write the words as a CTM file")
    p.add_argument("--expect-sha256", default=None, metavar="HEX",
                   help="refuse a packed model whose sha256 (of the .concord file; of manifest.json for a "
                        "packed dir) is not HEX: the published digest gives authenticity, which the "
                        "package's own manifest (corruption only) cannot")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn off a terminal)")
    return p


def list_inputs(args) -> list[tuple[str, str, bool]]:
    """(uttid, audio, from_wav_scp) for every file and wav.scp entry, in the order given.

    A file argument is a file name as given (spaces kept, a final ``|`` is part of the
    name); only a wav.scp value may be Kaldi's ``cmd |``.
    """
    from toolkit.utils.kaldi_map import iter_kaldi_map
    items = [(Path(a).stem, a, False) for a in args.audio]
    if args.wav_scp:
        items += [(u, spec, True) for _, u, spec in iter_kaldi_map(args.wav_scp)]
    if not items:
        raise InputError(PROG, "no audio: give files or --wav-scp")
    seen: dict[str, int] = {}
    unique = []
    for u, spec, scp in items:  # two files named a.wav in different dirs: a, a#2
        seen[u] = seen.get(u, 0) + 1
        unique.append((u if seen[u] == 1 else f"{u}#{seen[u]}", spec, scp))
    return unique


def readable(items, failures: list[str]):
    """16 kHz samples of each item; an unreadable one is reported, counted and skipped."""
    from toolkit.decode.transcriber import read_audio, read_wav_scp_value
    for uttid, spec, from_wav_scp in items:
        try:
            yield uttid, (read_wav_scp_value(spec, uttid) if from_wav_scp else read_audio(spec, uttid))
        except InputError as e:
            failures.append(uttid)
            print(f"{PROG}: skipped: {e}", file=sys.stderr, flush=True)


def ctm_lines(r) -> list[str]:
    return [f"{r.uttid} 1 {w.start:.3f} {w.end - w.start:.3f} {w.text}\n" for w in r.words]


@cli(prog=PROG)
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from toolkit.decode.transcriber import Transcriber
    from toolkit.utils.cpu import setup_cpu
    from toolkit.utils.progress import progress_bar
    setup_cpu(args.num_threads)
    items = list_inputs(args)
    asr = Transcriber.from_pretrained(args.model, device=args.device, expect_sha256=args.expect_sha256,
                                      mode=args.mode, method=args.method,
                                      beam=args.beam, blank_penalty=args.blank_penalty,
                                      ilm_weight=args.ilm_weight, max_segment_s=args.max_segment_s)
    failures: list[str] = []
    bar = progress_bar(total=len(items), desc=f"transcribe ({args.mode})", enabled=not args.no_progress)
    ctm, counted_failures = [], 0
    for batch in batched(readable(items, failures), args.batch_size):
        for r in asr.transcribe_named(batch, batch_size=args.batch_size):
            line = json.dumps(r.to_json(), ensure_ascii=False) if args.json else f"{r.uttid}\t{r.text}"
            bar.clear()
            print(line, flush=True)
            ctm += ctm_lines(r)
        bar.update(len(batch) + len(failures) - counted_failures)
        counted_failures = len(failures)
    bar.close()
    if args.ctm:
        with atomic_write(args.ctm) as f:
            f.writelines(ctm)
    if failures:
        print(f"{PROG}: {len(failures)} of {len(items)} file(s) could not be read: "
              f"{', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def batched(iterable, n: int):
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    sys.exit(main())
