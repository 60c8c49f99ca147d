#!/usr/bin/env bash
# End-to-end recipe checks on synthesized data, as CI runs them (after the unit tests):
#   egs/mini          the README's embedded recipe (MINI_SHORT=1: smaller corpus, one epoch)
#   egs/librispeech   its own run.sh on a tiny tree synthesized in the LibriSpeech layout, tiny model
#   egs/multilingual  its own run.sh on a synthesized 4-language corpus (MLS + Common Voice layouts)
# Each must finish every stage, print a RESULTS table with a WER row per decode mode and
# write the consistency analysis (table + plot) of its first test set.
#
# Usage: test/recipes/run_all.sh [mini|librispeech|multilingual ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
which=${*:-mini librispeech multilingual}
pass=0; fail=0

check_results() {  # $1 = experiment dir, $2 = test sets; every mode scored and in RESULTS.md
  local exp=$1 sets=$2 mode x
  [ -s "$exp/RESULTS.md" ] || { echo "FAIL: $exp/RESULTS.md missing"; return 1; }
  for mode in streaming full; do
    grep -q "### WER: $mode" "$exp/RESULTS.md" || { echo "FAIL: $exp/RESULTS.md has no $mode table"; return 1; }
    for x in $sets; do
      [ -s "$exp/decode_${mode}_$x/score_wer/result.txt" ] || { echo "FAIL: no $exp/decode_${mode}_$x/score_wer/result.txt"; return 1; }
      grep -q "^|$x|" "$exp/RESULTS.md" || { echo "FAIL: $exp/RESULTS.md has no row for $x"; return 1; }
    done
  done
  x=${sets%% *}  # stage 8 analyses the first test set
  for f in consistency.md consistency.png; do
    [ -s "$exp/analysis_$x/$f" ] || { echo "FAIL: no $exp/analysis_$x/$f"; return 1; }
  done
}

run() {  # $1 = name, rest = command
  local name=$1; shift
  echo "=== recipe $name: $*"
  local t0=$SECONDS
  if "$@"; then echo "=== recipe $name: ok ($((SECONDS - t0)) s)"; pass=$((pass + 1))
  else echo "=== recipe $name: FAILED ($((SECONDS - t0)) s)"; fail=$((fail + 1)); fi
}

mini() {
  cd "$root/egs/mini"
  rm -rf data dump exp
  if [ "${MINI_SHORT:-0}" = 1 ]; then   # CI: a smaller corpus and one epoch
    ./run.sh --prepare-corpus-opts "--num-train 200 --num-dev 30 --num-test 30 --num-text-only 2000" \
      --train-args "--set max_epochs=1 --set objective.consistency.warmup.start_step=10"
  else
    ./run.sh
  fi && check_results exp/train "dev_clean test_clean"
}

librispeech() {
  cd "$root/egs/librispeech"
  rm -rf data dump exp corpus
  . ./path.sh
  python -m toolkit.bin.synthesize_corpus --layout librispeech --lang en --out corpus --seed 3 --no-progress \
    --num-train 120 --num-dev 20 --num-test 20 --num-text-only 600 --num-train-speakers 8 --num-dev-speakers 2 --num-test-speakers 2
  LIBRISPEECH=$PWD/corpus LIBRISPEECH_LM_TEXT=$PWD/corpus/librispeech-lm-norm.txt.gz ./run.sh \
    --nj 2 --ngpu 0 --bpe-size 128 --train-config conf/train_tiny.yaml --decode-method beam --beam 2 \
    --test-sets "dev_clean test_clean" --num-avg 1 \
    --local-data-opts "--train-subsets train-clean-100 --dev-subsets dev-clean --test-subsets test-clean" \
    && check_results exp/train_tiny "dev_clean test_clean"
}

multilingual() {
  cd "$root/egs/multilingual"
  rm -rf data dump exp corpus
  MLS=$PWD/corpus CV=$PWD/corpus/cv-corpus ./run.sh --stage 0 --langs-file conf/langs_mini \
    --prepare-corpus-opts "--langs-file conf/langs_mini --num-train 80 --num-dev 12 --num-test 12 --num-text-only 400" \
    --nj 2 --ngpu 0 --bpe-size 1000 --train-config conf/train_mini.yaml --decode-method greedy --num-avg 1 \
    && check_results exp/train_mini test
}

for r in $which; do run "$r" "$r"; done
echo "recipes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
