#!/usr/bin/env bash
# Split a Kaldi data dir into <data>/split<N>/{1..N} (speakers kept whole), or with
# --per-utt into <data>/split<N>utt/{1..N}.
# Usage: utils/split_data.sh [--per-utt] <data-dir> <num-to-split>
root=$(cd -P "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m toolkit.bin.split_data "$@"
