#!/bin/sh
# reproduces this experiment
cd /work/mgrid/egs/multilingual && python -m toolkit.bin.train --config conf/train_study.yaml --train-data dump/train --valid-data dump/dev --lang-dir data/lang --bpe-model data/lang/wp1000.model --cmvn dump/train/cmvn.ark --exp exp/study/B/seed1 --text-data dump/text_only --num-threads 2 --ngpu 0 --set seed=1 --set keep_last=100 --set max_epochs=14 --set objective.consistency.weight=0 "$@"
