#!/usr/bin/env bash
# The consistency-loss study on egs/mini (issue 12): prepares the study's corpus (the mini
# corpus with a 1000-utterance test set from unseen voices: one seed's WER interval on 100
# utterances is wider than the effect), then runs every unfinished cell of conf/study.yaml
# (stages 5-8 per cell, one at a time, resumable) and writes STUDY.md from the finished cells.
#
# Usage: local/study.sh [--grid conf/study.yaml] [--out STUDY.md] [--only B,C] [--report-only true]
#                       [--corpus-opts "..."] [--aligner true] [--lock FILE]
#   e.g. nohup local/study.sh > study.log 2>&1 &     # then: tail -f study.log
# The held-out-word study (issue 20: the paper against JOIST and Maestro; the grid file names
# its corpus options, the aligner step and its report, STUDY_heldout.md):
#   nohup local/study.sh --grid conf/study_heldout.yaml > study.log 2>&1 &
# Options given here win over the grid's corpus_opts / aligner / report keys.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
grid=conf/study.yaml
out=""            # the report (plots beside it): default the grid's report key, else STUDY.md
only=""
report_only=false
corpus_opts=""    # stage 0 options of the study's corpus: default the grid's corpus_opts, else --num-test 1000
aligner=""        # true: train the explicit aligner (local/train_aligner.sh) before the cells (default: the grid's)
lock=""           # a file each cell holds a flock on (other heavy jobs take it between cells)
help_message="Usage: $0 [--grid conf/study.yaml] [--out STUDY.md] [--only B,C] [--report-only true] [--corpus-opts \"...\"] [--aligner true] [--lock FILE]"
. parse_options.sh

grid_key() {  # grid_key KEY DEFAULT: a top-level key of the grid file
  python -c 'import sys; from toolkit.analysis.study_grid import load_grid
v = load_grid(sys.argv[1]).get(sys.argv[2], sys.argv[3]); print(str(v).lower() if isinstance(v, bool) else v)' "$grid" "$1" "$2"
}
[ -n "$out" ] || out=$(grid_key report STUDY.md)
[ -n "$corpus_opts" ] || corpus_opts=$(grid_key corpus_opts "--num-test 1000")
[ -n "$aligner" ] || aligner=$(grid_key aligner false)

if ! $report_only; then
  ./run.sh --stage 0 --stop-stage 4 --prepare-corpus-opts "$corpus_opts"
  if $aligner; then local/train_aligner.sh; fi
  python -m toolkit.bin.study run --grid "$grid" ${only:+--only $only} ${lock:+--lock $lock}
fi
python -m toolkit.bin.study report --grid "$grid" --out "$out" --command "local/study.sh --grid $grid --out $out${only:+ --only $only}"
