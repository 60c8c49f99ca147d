#!/usr/bin/env bash
# Stage 1 for egs/multilingual: every language of the langs file (MLS or Common Voice
# layout) -> data/<lang>_{train,dev,test} with utt2lang, pooled into data/{train,dev,test};
# unpaired text per language -> data/text_only (ids <lang>-<n>, with utt2lang).
#
# Usage: local/data.sh [--langs-file conf/langs] [--lm-max-lines N]
set -euo pipefail
. ./path.sh
. ./db.sh
langs_file=conf/langs
lm_max_lines=0        # 0 = all unpaired text (streamed, never loaded at once)
help_message="Usage: $0 [--langs-file conf/langs] [--lm-max-lines N]"
. parse_options.sh

opts=""; [ "$lm_max_lines" -gt 0 ] && opts="--max-lines $lm_max_lines"
declare -A parts=([train]="" [dev]="" [test]="")
text_dirs=""
while read -r code layout dir unit; do
  case "$code" in ""|\#*) continue;; esac
  for split in train dev test; do
    out=data/${code}_$split
    case $layout in
      mls) python -m toolkit.bin.prepare_data --layout mls --corpus "$MLS/$dir" --subset $split --lang $code --out $out ;;
      cv)  python -m toolkit.bin.prepare_data --layout commonvoice --corpus "$CV/$dir" --subset $split --lang $code --out $out ;;
      *) echo "$0: $langs_file: unknown layout '$layout' for $code (mls or cv)" >&2; exit 1 ;;
    esac
    parts[$split]="${parts[$split]} $out"
  done
  case $layout in mls) text="$MLS/$dir/lm_text.txt.gz"; full=mls ;;
                  cv)  text="$CV/$dir/text_only.txt.gz"; full=commonvoice ;; esac
  if [ -f "$text" ]; then
    python -m toolkit.bin.prepare_data --layout $full --text-only "$text" --prefix $code --out data/text_only_$code $opts
    awk -v l=$code '{print $1, l}' data/text_only_$code/text > data/text_only_$code/utt2lang
    text_dirs="$text_dirs data/text_only_$code"
  else
    echo "$0: no unpaired text for $code ($text); continuing without"
  fi
done < "$langs_file"

for split in train dev test; do
  combine_data.sh data/$split ${parts[$split]}
  # the scoring unit of each language (conf/langs' last column): results show WER for
  # languages written with spaces and CER for the others
  grep -v '^#' "$langs_file" | awk 'NF >= 4 {print $1, $4}' | sort > data/$split/lang2unit
done
if [ -n "$text_dirs" ]; then
  mkdir -p data/text_only
  for f in text utt2lang; do
    for d in $text_dirs; do cat $d/$f; done | sort > data/text_only/$f.tmp && mv data/text_only/$f.tmp data/text_only/$f
  done
fi
echo "$0: $(wc -l < data/train/text) training utterances in $(cut -d' ' -f2 data/train/utt2lang | sort -u | wc -l) languages"
