#!/usr/bin/env bash
# Stage 0 (synthesized multilingual mini corpus, used by CI): each language of the langs
# file is synthesized with espeak-ng in its layout (MLS or Common Voice) under ./corpus.
# Run with --stage 0 only when db.sh points at ./corpus (MLS=$PWD/corpus CV=$PWD/corpus/cv-corpus).
#
# Usage: local/prepare_corpus.sh [--langs-file conf/langs_mini] [--num-train N] [--num-dev N] [--num-test N] [--num-text-only N]
set -euo pipefail
. ./path.sh
langs_file=conf/langs_mini
num_train=200
num_dev=30
num_test=30
num_text_only=2000
seed=1
help_message="Usage: $0 [--langs-file F] [--num-train N] [--num-dev N] [--num-test N] [--num-text-only N] [--seed S]"
. parse_options.sh

while read -r code layout dir unit; do
  case "$code" in ""|\#*) continue;; esac
  case $layout in mls) l=mls ;; cv) l=commonvoice ;; esac
  # the grammar is named by the bare language (fr), the lexicon by espeak's code (fr-fr)
  python -m toolkit.bin.synthesize_corpus --layout $l --lang ${code%%-*} --out corpus --seed $seed --no-progress \
    --num-train $num_train --num-dev $num_dev --num-test $num_test --num-text-only $num_text_only \
    --num-train-speakers 8 --num-dev-speakers 2 --num-test-speakers 2
done < "$langs_file"
