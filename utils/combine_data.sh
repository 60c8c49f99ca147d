#!/usr/bin/env bash
# Merge Kaldi data dirs; an utterance id in two sources is an error naming both.
# Usage: utils/combine_data.sh <dst-dir> <src-dir1> <src-dir2> ...
root=$(cd -P "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m toolkit.bin.combine_data "$@"
