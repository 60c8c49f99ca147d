#!/usr/bin/env bash
# Stage 0 of egs/mini: synthesize the embedded English corpus with espeak-ng into ./corpus
# (LibriSpeech layout: train-clean-100 / dev-clean / test-clean with unseen voices in
# dev/test, and a librispeech-lm-norm-like unpaired text file 10x+ larger than the paired set).
#
# Usage: local/prepare_corpus.sh [--num-train N] [--num-dev N] [--num-test N] [--num-text-only N]
#                                [--num-train-speakers N] [--heldout-words N] [--seed S]
# --heldout-words N: N nouns/places/names spoken in no paired training utterance, only in
# dev/test and the unpaired text (toolkit/synth/corpus.py; stage 1 copies the list to
# data/heldout_words.txt and stage 7 reports their recall).
set -euo pipefail
. ./path.sh
num_train=1500
num_dev=100
num_test=100
num_text_only=20000
num_train_speakers=96   # many voices (pitch, rate, range over the training variants): dev/test voices are unseen
heldout_words=0
seed=1
help_message="Usage: $0 [--num-train N] [--num-dev N] [--num-test N] [--num-text-only N] [--num-train-speakers N] [--heldout-words N] [--seed S]"
. parse_options.sh

synth=$(python -c 'from toolkit.synth.corpus import SYNTH_VERSION; print(SYNTH_VERSION)')  # new synthesizer, new corpus
want="synth=$synth layout=librispeech seed=$seed train=$num_train dev=$num_dev test=$num_test text=$num_text_only speakers=$num_train_speakers"
[ "$heldout_words" -gt 0 ] && want="$want heldout=$heldout_words"
if [ -f corpus/.done ] && [ "$(cat corpus/.done)" = "$want" ]; then
  echo "$0: corpus/ already synthesized ($want)"; exit 0
fi
rm -rf corpus
python -m toolkit.bin.synthesize_corpus --layout librispeech --lang en --out corpus --seed $seed \
  --num-train $num_train --num-dev $num_dev --num-test $num_test --num-text-only $num_text_only \
  --num-train-speakers $num_train_speakers --heldout-words $heldout_words
echo "$want" > corpus/.done
