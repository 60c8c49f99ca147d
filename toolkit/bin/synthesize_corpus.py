"""Synthesize a small speech corpus (espeak-ng voices, grammar sentences) in a real layout.

Usage:
    python -m toolkit.bin.synthesize_corpus --layout librispeech --lang en --out corpus \
        --seed 1 --num-train 1500 --num-dev 200 --num-test 200 --num-text-only 15000 --nj 2
    python -m toolkit.bin.synthesize_corpus --layout mls --lang de --out corpus --num-train 300
    python -m toolkit.bin.synthesize_corpus --layout commonvoice --lang fr --out corpus --num-train 300

Writes (LibriSpeech) corpus/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/
+ corpus/librispeech-lm-norm.txt.gz; (MLS) corpus/mls_<language>/{train,dev,test}/ +
lm_text.txt.gz; (Common Voice) corpus/cv-corpus/<lang>/{clips/,train,dev,test,validated}.tsv +
text_only.txt.gz. Dev/test speakers use espeak variants never heard in train. Same seed,
same bytes. A finished identical run is skipped (marker corpus/.synthesize_<layout>_<lang>.done).
"""
from __future__ import annotations

import argparse
import sys

from toolkit.synth.corpus import LAYOUTS, plan_corpus, write_corpus
from toolkit.synth.grammar import available_languages
from toolkit.utils.cli import cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m toolkit.bin.synthesize_corpus", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--layout", choices=LAYOUTS, required=True, help="corpus layout to write")
    p.add_argument("--out", required=True, help="directory the corpus root is created in")
    p.add_argument("--lang", default="en", help=f"grammar language, one of {available_languages()}")
    p.add_argument("--seed", type=int, default=1, help="same seed, same bytes")
    p.add_argument("--num-train", type=int, default=1500, help="paired training utterances")
    p.add_argument("--num-dev", type=int, default=200, help="dev utterances (unseen voices)")
    p.add_argument("--num-test", type=int, default=200, help="test utterances (unseen voices)")
    p.add_argument("--num-text-only", type=int, default=15000, help="unpaired sentences (LM text)")
    p.add_argument("--num-train-speakers", type=int, default=24, help="voices in train")
    p.add_argument("--num-dev-speakers", type=int, default=4, help="voices in dev")
    p.add_argument("--num-test-speakers", type=int, default=4, help="voices in test")
    p.add_argument("--utts-per-chapter", type=int, default=25, help="utterances per chapter (MLS: book)")
    p.add_argument("--heldout-words", type=int, default=0,
                   help="N nouns/places/names spoken in no paired training utterance, only in dev/test and "
                        "the unpaired text (list: <root>/HELDOUT_WORDS.TXT)")
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing different corpus")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


@cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    counts = {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}
    speakers = {"train": args.num_train_speakers, "dev": args.num_dev_speakers, "test": args.num_test_speakers}
    for name, n in [*counts.items(), ("text-only", args.num_text_only), *speakers.items()]:
        if n < 0:
            raise ValueError(f"--num-{name} must be >= 0")
    if any(counts[s] > 0 and speakers[s] < 1 for s in counts):
        raise ValueError("every non-empty split needs at least one speaker")
    plan = plan_corpus(args.layout, args.lang, args.seed, counts, args.num_text_only, speakers,
                       args.utts_per_chapter, args.heldout_words)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "nj", "overwrite", "no_progress")}
    if not args.heldout_words:  # the settings of every corpus made before the option existed
        del settings["heldout_words"]
    stats = write_corpus(plan, args.out, settings, nj=args.nj, overwrite=args.overwrite,
                         progress=not args.no_progress)
    if stats["skipped"]:
        print(f"synthesize_corpus: {args.out}/{plan.root} is already complete for these settings; skipped")
        return 0
    print(f"synthesize_corpus: wrote {stats['utterances']} utterances ({stats['audio_seconds'] / 3600:.2f} h) "
          f"and {stats['text_only']} text-only sentences to {args.out}/{plan.root} in "
          f"{stats['wall_seconds']:.1f} s: {stats['speed']:.0f} s of audio per second (nj={args.nj})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
