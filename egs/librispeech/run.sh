#!/usr/bin/env bash
# LibriSpeech 960 h paired + librispeech-lm-norm unpaired text, paper-scale model on GPUs.
#
# Usage: ./run.sh [--stage N] [--stop-stage M] [--ngpu G] [--nj J] [--train-config conf/train.yaml]
#   ./run.sh --help lists every option (they are those of ../TEMPLATE/asr.sh).
# Set the corpus roots in db.sh first. Multi-node: see the README (torchrun + SLURM).
set -euo pipefail
cd "$(dirname "$0")"
exec ../TEMPLATE/asr.sh \
  --lang en-us --bpe-size 1024 --nj 16 --ngpu 8 \
  --train-set train --valid-set dev_clean --test-sets "dev_clean dev_other test_clean test_other" \
  --train-config conf/train.yaml --decode-method beam --beam 8 --num-avg 10 \
  "$@"
