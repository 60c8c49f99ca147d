#!/usr/bin/env bash
# egs/multilingual: 11 languages (conf/langs: the 8 of Multilingual LibriSpeech + 3 from
# Common Voice), per-language espeak-ng lexicons pooled into one phone inventory, one
# multilingual wordpiece model, language-balanced sampling, per-language and pooled
# WER (CER for languages written without spaces) in RESULTS.md.
#
# Usage: ./run.sh [--stage N] [--stop-stage M] [--ngpu G] [--nj J]   (--help: every option)
# Synthesized mini corpus (as CI runs it):
#   MLS=$PWD/corpus CV=$PWD/corpus/cv-corpus ./run.sh --stage 0 --langs-file conf/langs_mini \
#     --train-config conf/train_mini.yaml
set -euo pipefail
cd "$(dirname "$0")"
langs_file=conf/langs
for ((i = 1; i <= $#; i++)); do   # --langs-file picks the languages for every stage
  if [ "${!i}" = "--langs-file" ]; then j=$((i + 1)); langs_file=${!j}; fi
done
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--langs-file" ]; then shift 2; else args+=("$1"); shift; fi
done
langs=$(grep -v '^#' "$langs_file" | awk 'NF {print $1}' | tr '\n' ' ')
exec ../TEMPLATE/asr.sh \
  --stage 1 --langs "$langs" --bpe-size 2048 --nj 16 --ngpu 8 \
  --train-set train --valid-set dev --test-sets "test" \
  --local-data-opts "--langs-file $langs_file" --prepare-corpus-opts "--langs-file $langs_file" \
  --train-config conf/train.yaml --decode-method beam --beam 8 --num-avg 10 --cer true \
  "${args[@]}"
