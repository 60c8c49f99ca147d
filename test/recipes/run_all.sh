#!/usr/bin/env bash
# End-to-end recipe checks on synthesized data, as CI runs them (after the unit tests):
#   egs/mini          the README's embedded recipe (MINI_OPTS may shorten it)
#   egs/librispeech   its own run.sh on a tiny tree synthesized in the LibriSpeech layout, tiny model
#   egs/multilingual  its own run.sh on a synthesized 4-language corpus (MLS + Common Voice layouts)
# Each must finish every stage and print a RESULTS table with a WER row per decode mode.
#
# Usage: test/recipes/run_all.sh [mini|librispeech|multilingual ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
which=${*:-mini librispeech multilingual}
pass=0; fail=0

check_results() {  # $1 = experiment dir, $2.. = decode dirs expected in RESULTS.md
  local exp=$1; shift
  [ -s "$exp/RESULTS.md" ] || { echo "FAIL: $exp/RESULTS.md missing"; return 1; }
  for d in "$@"; do
    grep -q "$d" "$exp/RESULTS.md" || { echo "FAIL: $exp/RESULTS.md has no row for $d"; return 1; }
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
  ./run.sh ${MINI_OPTS:-} && check_results exp/train decode_streaming_test_clean decode_full_test_clean
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
    && check_results exp/train_tiny decode_streaming_test_clean decode_full_test_clean
}

multilingual() {
  cd "$root/egs/multilingual"
  rm -rf data dump exp corpus
  MLS=$PWD/corpus CV=$PWD/corpus/cv-corpus ./run.sh --stage 0 --langs-file conf/langs_mini \
    --prepare-corpus-opts "--langs-file conf/langs_mini --num-train 80 --num-dev 12 --num-test 12 --num-text-only 400" \
    --nj 2 --ngpu 0 --bpe-size 200 --train-config conf/train_mini.yaml --decode-method greedy --num-avg 1 \
    && check_results exp/train_mini decode_streaming_test decode_full_test
}

for r in $which; do run "$r" "$r"; done
echo "recipes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
