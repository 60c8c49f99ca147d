#!/usr/bin/env bash
# The multilingual grid of the consistency study (issue 12): synthesizes the 4-language mini
# corpus with more paired data and a larger test set (stage 0, db.sh must point at ./corpus),
# prepares it (stages 1-4), runs every unfinished cell of conf/study.yaml and writes STUDY.md.
#
# Usage: local/study.sh [--grid conf/study.yaml] [--only B,C] [--report-only true]
#   e.g. nohup local/study.sh > study.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
export MLS=$PWD/corpus CV=$PWD/corpus/cv-corpus   # the synthesized corpus (stage 0), not db.sh's roots
grid=conf/study.yaml
only=""
report_only=false
corpus_opts="--langs-file conf/langs_mini --num-train 375 --num-dev 30 --num-test 300 --num-text-only 4000"
help_message="Usage: $0 [--grid conf/study.yaml] [--only B,C] [--report-only true]"
. parse_options.sh

if ! $report_only; then
  ./run.sh --stage 0 --stop-stage 4 --langs-file conf/langs_mini --ngpu 0 --nj 2 --bpe-size 1000 \
    --prepare-corpus-opts "$corpus_opts"
  python -m toolkit.bin.study run --grid "$grid" ${only:+--only $only}
fi
python -m toolkit.bin.study report --grid "$grid" --out STUDY.md --command "local/study.sh --grid $grid${only:+ --only $only}"
