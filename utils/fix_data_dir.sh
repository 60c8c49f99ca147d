#!/usr/bin/env bash
# Fix a Kaldi data dir in place: sort, keep the ids every file has, rebuild spk2utt;
# removed lines go to <data-dir>/.backup/.
# Usage: utils/fix_data_dir.sh <data-dir>
root=$(cd -P "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m toolkit.bin.fix_data_dir "$@"
