#!/bin/sh
# reproduces this experiment
cd /work/grid/egs/mini && python -m toolkit.bin.train --config conf/train.yaml --train-data dump/train --valid-data dump/dev_clean --lang-dir data/lang --bpe-model data/lang/wp256.model --cmvn dump/train/cmvn.ark --exp exp/study/B/seed4 --text-data dump/text_only --num-threads 2 --ngpu 0 --set seed=4 --set max_epochs=13 --set objective.consistency.weight=0 "$@"
