#!/usr/bin/env bash
# Stage 1 for LibriSpeech: every subset -> data/<subset with _>, the training subsets
# combined into data/train, and librispeech-lm-norm -> data/text_only.
#
# Usage: local/data.sh [--train-subsets "train-clean-100 ..."] [--dev-subsets ...]
#                      [--test-subsets ...] [--lm-max-lines N]
set -euo pipefail
. ./path.sh
. ./db.sh
train_subsets="train-clean-100 train-clean-360 train-other-500"
dev_subsets="dev-clean dev-other"
test_subsets="test-clean test-other"
lm_max_lines=0        # 0 = the whole LM text (streamed; never loaded at once)
help_message="Usage: $0 [--train-subsets LIST] [--dev-subsets LIST] [--test-subsets LIST] [--lm-max-lines N]"
. parse_options.sh

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -d "$LIBRISPEECH/LibriSpeech" ] || { echo "$0: LibriSpeech not found under LIBRISPEECH=$LIBRISPEECH (see db.sh)" >&2; exit 1; }
train_dirs=""
for subset in $train_subsets $dev_subsets $test_subsets; do
  name=$(echo $subset | tr - _)
  "$here/data_prep.sh" "$LIBRISPEECH/LibriSpeech/$subset" data/$name
  case " $train_subsets " in *" $subset "*) train_dirs="$train_dirs data/$name";; esac
done
combine_data.sh data/train $train_dirs
# a synthesized corpus (egs/mini --heldout-words N) names the words its paired speech lacks
rm -f data/heldout_words.txt
if [ -f "$LIBRISPEECH/LibriSpeech/HELDOUT_WORDS.TXT" ]; then
  cp "$LIBRISPEECH/LibriSpeech/HELDOUT_WORDS.TXT" data/heldout_words.txt
fi

[ -f "$LIBRISPEECH_LM_TEXT" ] || { echo "$0: LM text not found: $LIBRISPEECH_LM_TEXT (see db.sh)" >&2; exit 1; }
opts=""; [ "$lm_max_lines" -gt 0 ] && opts="--max-lines $lm_max_lines"
python -m toolkit.bin.prepare_data --layout librispeech --text-only "$LIBRISPEECH_LM_TEXT" --out data/text_only $opts
echo "$0: data prepared: train ($(wc -l < data/train/text) utts), text_only ($(wc -l < data/text_only/text) sentences)"
