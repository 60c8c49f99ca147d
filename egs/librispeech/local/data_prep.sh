#!/usr/bin/env bash
# Kaldi-style data prep for one LibriSpeech subset in its standard layout.
#
# Usage: local/data_prep.sh <LibriSpeech-root>/<subset> data/<set>
#   e.g. local/data_prep.sh /data/librispeech/LibriSpeech/dev-clean data/dev_clean
# Writes data/<set>/{wav.scp,text,utt2spk,spk2utt} (flac paths, speaker-prefixed ids).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "Usage: $0 <LibriSpeech-root>/<subset> <data-dir>" >&2; exit 1
fi
src=$1; dst=$2
[ -d "$src" ] || { echo "$0: no such directory: $src" >&2; exit 1; }
python -m toolkit.bin.prepare_data --layout librispeech --corpus "$(dirname "$src")" --subset "$(basename "$src")" --out "$dst"
validate_data_dir.sh "$dst"
echo "$0: prepared $dst from $src ($(wc -l < "$dst/text") utterances)"
