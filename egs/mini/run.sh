#!/usr/bin/env bash
# egs/mini: the embedded default recipe. Synthesizes a small English corpus with espeak-ng
# (stage 0), then runs LibriSpeech's data prep unchanged and every stage through scoring:
# lexicon, wordpieces, fbank, training of the tiny joint model with the consistency loss on
# 2 CPU cores, streaming and full-context decoding of dev and test, sclite-style scoring.
# Decoding: beam 4 with a blank penalty of 1.5 (subtracted from the blank logit before
# normalisation), chosen on dev_clean with the model of the run at ee8bcec (beam 4, WER
# full / streaming: penalty 0 18.32 / 27.55, 0.5 15.56 / 23.14, 1.0 14.19 / 21.35,
# 1.5 14.05 / 21.07, 2.0 16.25 / 25.62, 3.0 36.09 / 48.62; 1.0 and 1.5 differ by a word or
# two of 726). Stage 6 saves the settings in exp/train/decode_defaults.yaml, which
# concord-transcribe and packed models use; the README's Status gives the figures of the
# current recipe.
#
# Usage: ./run.sh [--stage N] [--stop-stage M] [--nj J] [--train-config conf/train.yaml]
#   ./run.sh --help lists every option (those of ../TEMPLATE/asr.sh).
# A shorter setting (CI):
#   ./run.sh --prepare-corpus-opts "--num-train 300 --num-dev 40 --num-test 40 --num-text-only 3000" \
#            --train-args "--set max_steps=40"
set -euo pipefail
cd "$(dirname "$0")"
exec ../TEMPLATE/asr.sh \
  --stage 0 --lang en-us --bpe-size 256 --nj 2 --ngpu 0 \
  --train-set train --valid-set dev_clean --test-sets "dev_clean test_clean" \
  --local-data-opts "--train-subsets train-clean-100 --dev-subsets dev-clean --test-subsets test-clean" \
  --train-config conf/train.yaml --decode-method beam --beam 4 --num-avg 3 \
  --decode-args "--blank-penalty 1.5" \
  "$@"
