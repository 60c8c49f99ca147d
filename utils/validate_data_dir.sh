#!/usr/bin/env bash
# Check a Kaldi data dir; print every problem as file:line: message; exit 2 on errors.
# Usage: utils/validate_data_dir.sh [--no-check-audio] [--allow-empty-text] [--strict] <data-dir>
# Kaldi's --no-feats is accepted and ignored (features are not part of data dirs here).
root=$(cd -P "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
args=()
for a in "$@"; do [ "$a" = --no-feats ] || args+=("$a"); done
exec "${PYTHON:-python3}" -m toolkit.bin.validate_data_dir "${args[@]}"
