#!/usr/bin/env bash
# The explicit alignment model of the Maestro baseline (issue 20): a small phoneme CTC
# network trained on the paired training data alone, frozen, Viterbi-aligns the training
# and dev sets; durations in exp/aligner/durations_<set>.txt, its phone error rate and the
# utterances it could not align in exp/aligner/report.md. Training reads them with
# --set durations_dir=exp/aligner. Run after stage 4; a finished run is skipped.
#
# Usage: local/train_aligner.sh [--epochs 10] [--valid-set dev_clean] [--align-sets "train dev_clean"] [--num-threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
epochs=10
valid_set=dev_clean
align_sets="train dev_clean"
num_threads=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
help_message="Usage: $0 [--epochs N] [--valid-set SET] [--align-sets \"SET ...\"] [--num-threads N]"
. parse_options.sh

opts=""
for x in $align_sets; do opts="$opts --align-data dump/$x"; done
python -m toolkit.bin.train_aligner --train-data dump/train --valid-data dump/$valid_set \
  --cmvn dump/train/cmvn.ark --lang-dir data/lang --out exp/aligner --epochs $epochs \
  --num-threads $num_threads $opts
