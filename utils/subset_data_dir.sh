#!/usr/bin/env bash
# Copy part of a Kaldi data dir (Kaldi's interface):
# Usage: utils/subset_data_dir.sh --first <src-dir> <num-utt> <dst-dir>
#        utils/subset_data_dir.sh --utt-list <file> <src-dir> <dst-dir>
#        utils/subset_data_dir.sh --spk-list <file> <src-dir> <dst-dir>
root=$(cd -P "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
usage="Usage: $0 --first <src> <N> <dst> | --utt-list <file> <src> <dst> | --spk-list <file> <src> <dst>"
case "${1:-}" in
  --first) [ $# -eq 4 ] || { echo "$usage" >&2; exit 1; }
           set -- --first "$3" "$2" "$4" ;;
  --utt-list|--spk-list) [ $# -eq 4 ] || { echo "$usage" >&2; exit 1; } ;;
  -h|--help) echo "$usage"; exit 0 ;;
  *) echo "$usage" >&2; exit 1 ;;
esac
exec "${PYTHON:-python3}" -m toolkit.bin.subset_data_dir "$@"
