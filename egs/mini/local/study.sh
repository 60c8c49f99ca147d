#!/usr/bin/env bash
# The consistency-loss study on egs/mini (issue 12): prepares the study's corpus (the mini
# corpus with a 1000-utterance test set from unseen voices: one seed's WER interval on 100
# utterances is wider than the effect), then runs every unfinished cell of conf/study.yaml
# (stages 5-8 per cell, one at a time, resumable) and writes STUDY.md from the finished cells.
#
# Usage: local/study.sh [--grid conf/study.yaml] [--out STUDY.md] [--only B,C] [--report-only true]
#   e.g. nohup local/study.sh > study.log 2>&1 &     # then: tail -f study.log
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
grid=conf/study.yaml
out=STUDY.md      # the report (plots beside it); another grid, another name
only=""
report_only=false
corpus_opts="--num-test 1000"   # stage 0 options of the study's corpus
help_message="Usage: $0 [--grid conf/study.yaml] [--out STUDY.md] [--only B,C] [--report-only true]"
. parse_options.sh

if ! $report_only; then
  ./run.sh --stage 0 --stop-stage 4 --prepare-corpus-opts "$corpus_opts"
  python -m toolkit.bin.study run --grid "$grid" ${only:+--only $only}
fi
python -m toolkit.bin.study report --grid "$grid" --out "$out" --command "local/study.sh --grid $grid --out $out${only:+ --only $only}"
