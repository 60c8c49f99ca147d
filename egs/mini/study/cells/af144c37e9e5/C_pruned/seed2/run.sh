#!/bin/sh
# reproduces this experiment
cd /work/wt/pq/egs/mini && python -m toolkit.bin.train --config conf/train.yaml --train-data dump/train --valid-data dump/dev_clean --lang-dir data/lang --bpe-model data/lang/wp256.model --cmvn dump/train/cmvn.ark --exp exp/study/C_pruned/seed2 --text-data dump/text_only --num-threads 1 --ngpu 0 --set seed=2 --set keep_last=100 --set objective.transducer=pruned --set objective.transducer_conf.warmup_steps=150 "$@"
