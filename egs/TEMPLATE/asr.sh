#!/usr/bin/env bash
# Shared stages 1-8 of every Concord recipe (ESPnet-style: one stage script, thin run.sh).
# A recipe's run.sh sets its defaults and calls this with its own options; the recipe's
# local/data.sh does corpus-specific data preparation (stage 1).
#
# Usage: ../TEMPLATE/asr.sh [options]
#   e.g. ../TEMPLATE/asr.sh --stage 4 --stop-stage 7 --nj 4 --train-config conf/train.yaml
# A stage whose inputs are missing stops with one line naming the file and the stage that
# makes it; what a kill or a bad input leaves behind, and the rerun: docs/failure_behaviour.md.
set -euo pipefail
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }

# Defaults (one "name=value  # comment" line each: --help prints them). train_threads counts the
# usable CPUs without nproc's OMP_NUM_THREADS, which path.sh sets to 1 for the data tools: a
# caller that had sourced path.sh (local/study.sh) trained every cell on one thread of two.
stage=1               # first stage to run (0: local/prepare_corpus.sh, where a recipe has one)
stop_stage=8          # last stage to run
nj=2                  # parallel jobs for feature dumping and decoding
ngpu=0                # GPUs for training: 0 = CPU, N > 1 launches torchrun with N processes
train_threads=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # CPU training (ngpu 0): intra-op threads of the training process (the usable CPUs)
train_set=train       # data/<train_set>: paired training data
valid_set=dev         # validation set used during training
test_sets="dev test"  # sets to decode and score
text_only_set=text_only   # unpaired text (data/<set>/text); "" disables text-only training
lang=en-us            # espeak-ng language of the lexicon (monolingual recipes)
langs=""              # multilingual: espeak languages; utterance languages come from utt2lang
bpe_size=256          # wordpiece vocabulary size
bpe_train_text_only=true  # also train wordpieces on the unpaired text
speed_perturb=false   # 0.9/1.0/1.1 speed perturbation of the training set
train_config=conf/train.yaml   # training config (model, optimiser, batches)
train_args=""         # extra arguments for toolkit.bin.train, e.g. "--set max_steps=100"
tag=""                # experiment name: exp/<tag> (default: the train config's base name)
decode_modes="streaming full"  # streaming: shared encoder + 1st-pass decoder; full: cascaded encoder + 2nd pass
decode_method=greedy  # greedy | beam
beam=4
decode_args=""        # extra arguments for toolkit.bin.decode
num_avg=3             # checkpoints averaged into model_avg.pt
cer=false             # also score characters (languages without spaces)
heldout_words=data/heldout_words.txt  # words in no paired training utterance (stage 1 copies a corpus's list): RESULTS.md adds their recall
local_data_opts=""    # passed to local/data.sh
prepare_corpus_opts="" # passed to local/prepare_corpus.sh (stage 0)
verbose=false         # tracebacks from the Python tools on failure (otherwise one line each)
analysis_sets=""      # stage 8: sets for the per-layer consistency analysis (default: the first test set)
analysis_max_utts=200 # stage 8: utterances analysed per set

# --help prints the values in force after the options before it, i.e. the calling recipe's
# own defaults (its run.sh passes them ahead of the user's options), not this file's.
print_help() {
  echo "Usage: $0 [options]
Stages: 0 corpus preparation (recipes with local/prepare_corpus.sh), 1 data prep, 2 lexicon, 3 wordpieces + token dumps, 4 fbank features + CMVN,
        5 training, 6 decoding (streaming / full), 7 scoring + RESULTS.md,
        8 per-layer consistency analysis (best vs uniform, random, mismatched alignments; table + plot)
Options (this recipe's defaults in place):"
  sed -n '/^stage=/,/^analysis_max_utts=/p' "${BASH_SOURCE[0]}" | while IFS= read -r line; do
    name=${line%%=*} comment=""
    [[ "$line" == *"#"* ]] && comment="# ${line#*# }"
    value=${!name}
    [[ -z "$value" || "$value" == *" "* ]] && value="\"$value\""
    printf '  --%s %s   %s\n' "${name//_/-}" "$value" "$comment"
  done
}
want_help=false
options=()
while [ $# -gt 0 ]; do  # take out a --help that stands where an option name stands
  case "$1" in
    --help|-h) want_help=true; shift ;;
    --*=*|--) options+=("$1"); shift ;;
    --*) options+=("$1" "${2-}"); shift $(( $# >= 2 ? 2 : 1 )) ;;
    *) options+=("$1"); shift ;;
  esac
done
set -- ${options[@]+"${options[@]}"}

. ./path.sh
. ./cmd.sh
. parse_options.sh
if $want_help; then print_help; exit 0; fi

fail() { echo "$(basename "$0"): error: $*" >&2; exit 1; }
for v in stage stop_stage; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -le 8 ] || fail "--${v//_/-} must be a stage number 0..8, got '${!v}'"
done
[ "$stage" -le "$stop_stage" ] || fail "--stage $stage is after --stop-stage $stop_stage: nothing to do"
$verbose && export CONCORD_VERBOSE=1
STAGE_NAMES=(corpus "data preparation" lexicon "wordpieces + token dumps" "features + CMVN" training decoding scoring)
# require N PATH MAKER: stage N cannot start without PATH, which stage MAKER writes. When
# stages before MAKER have not run either (a fresh copy), name the first of them, so that
# one rerun gets everything instead of one stage back per try.
require() {
  [ -e "$2" ] && return 0
  local first=$3 k
  for ((k = 1; k < $3; k++)); do stage_done $k || { first=$k; break; }; done
  local what="stage $1 needs $2, which stage $3 (${STAGE_NAMES[$3]}) makes"
  [ "$first" -eq "$3" ] && fail "$what: run ./run.sh --stage $3 first"
  if [ "$first" -eq 1 ] && [ -x local/prepare_corpus.sh ]; then
    fail "$what, and no stage has run here yet: run from stage 0 (./run.sh --stage 0)"
  fi
  fail "$what, and stage $first (${STAGE_NAMES[$first]}) has not run either: run ./run.sh --stage $first first"
}
# stage_done K: the outputs later stages read from stage K exist
stage_done() {
  case $1 in
    1) [ -e data/$train_set/text ] ;;
    2) [ -e $lang_dir/phones.txt ] ;;
    3) [ -e $bpe_model ] && [ -e dump/$train_set/seq ] ;;
    4) [ -e dump/$train_set/feats.scp ] && [ -e dump/$train_set/cmvn.ark ] ;;
    5) [ -e $expdir/model_avg.pt ] ;;
    *) true ;;
  esac
}

# Signals. Bash runs a trap only between commands, so a stage's commands run in the
# background and the script waits for them (`run CMD...`): a SIGTERM, SIGINT or SIGHUP
# to run.sh then reaches on_signal at once, which sends SIGTERM to the running command and
# everything under it (run.pl also stops its jobs; torchrun its workers) and exits 128+N.
# Nothing is left running, and a rerun is the recovery (docs/failure_behaviour.md).
child=""
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; echo "$c"; done; }
on_signal() {
  trap - TERM INT HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    local tree
    tree="$(descendants "$child") $child"
    echo "$(basename "$0"): got SIG$1: stopping the running command and its children (pids $(echo $tree))" >&2
    kill -TERM $tree 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit "$2"
}
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT
trap 'on_signal HUP 129' HUP
run() { "$@" & child=$!; wait "$child"; local rc=$?; child=""; return $rc; }

[ -n "$tag" ] || tag=$(basename "${train_config%.*}")
expdir=exp/$tag
lang_dir=data/lang
bpe_model=$lang_dir/wp${bpe_size}.model
train_feats=$train_set
$speed_perturb && train_feats=${train_set}_sp
seq_sets="$train_set $valid_set $test_sets"
[ -n "$text_only_set" ] && seq_sets="$seq_sets $text_only_set"
seq_sets=$(echo $seq_sets | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')
feat_sets=$(echo "$train_set $valid_set $test_sets" | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ] && [ -x local/prepare_corpus.sh ]; then
  log "stage 0: corpus preparation (local/prepare_corpus.sh $prepare_corpus_opts)"
  run local/prepare_corpus.sh $prepare_corpus_opts
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: data preparation (local/data.sh $local_data_opts)"
  run local/data.sh $local_data_opts
  for x in $feat_sets; do
    run validate_data_dir.sh data/$x
  done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  require 2 data/$train_set/text 1
  log "stage 2: phoneme lexicon -> $lang_dir"
  texts="--text data/$train_set/text"
  [ -n "$text_only_set" ] && texts="$texts --text data/$text_only_set/text"
  if [ -n "$langs" ]; then
    # one utt2lang for every text the lexicon reads (paired and unpaired)
    mkdir -p data/local
    cat data/$train_set/utt2lang ${text_only_set:+data/$text_only_set/utt2lang} | sort -u > data/local/utt2lang.lexicon
    run python -m toolkit.bin.make_lexicon $texts --utt2lang data/local/utt2lang.lexicon \
      --langs $langs --out $lang_dir --nj $nj
  else
    run python -m toolkit.bin.make_lexicon $texts --lang $lang --out $lang_dir --nj $nj
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  require 3 $lang_dir/phones.txt 2
  log "stage 3: sentencepiece wordpieces ($bpe_size) and token-sequence dumps"
  texts="--text data/$train_set/text"
  $bpe_train_text_only && [ -n "$text_only_set" ] && texts="$texts --text data/$text_only_set/text"
  run python -m toolkit.bin.train_wordpiece $texts --vocab-size $bpe_size --out $lang_dir
  for x in $seq_sets; do
    extra=""
    [ -f data/$x/utt2lang ] && extra="--utt2lang data/$x/utt2lang"
    run python -m toolkit.bin.dump_text --lang-dir $lang_dir --bpe-model $bpe_model \
      --text data/$x/text --out dump/$x/seq $extra
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  for x in $feat_sets; do require 4 data/$x/wav.scp 1; done
  log "stage 4: 80-dim fbank features ($nj jobs) and global CMVN"
  for x in $feat_sets; do
    opts=""
    if [ "$x" = "$train_set" ] && $speed_perturb; then opts="--speed-perturb 0.9,1.0,1.1"; fi
    out=dump/$x
    run $train_cmd JOB=1:$nj $out/log/dump_feats.JOB.log \
      python -m toolkit.bin.dump_feats --data data/$x --out $out --nj $nj --job JOB $opts
    run python -m toolkit.bin.dump_feats --data data/$x --out $out --nj $nj --merge
  done
  run python -m toolkit.bin.compute_cmvn --feats dump/$train_set/feats.scp --out dump/$train_set/cmvn.ark
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  require 5 $bpe_model 3
  require 5 dump/$train_set/seq 3
  require 5 dump/$train_set/feats.scp 4
  require 5 dump/$train_set/cmvn.ark 4
  require 5 dump/$valid_set/feats.scp 4
  log "stage 5: training -> $expdir (log: $expdir/train.log)"
  args="--config $train_config --train-data dump/$train_set --valid-data dump/$valid_set
        --lang-dir $lang_dir --bpe-model $bpe_model --cmvn dump/$train_set/cmvn.ark --exp $expdir"
  [ -n "$text_only_set" ] && args="$args --text-data dump/$text_only_set"
  if [ "$ngpu" -gt 1 ]; then
    run $cuda_cmd --gpu $ngpu $expdir/log/train.log \
      torchrun --standalone --nproc_per_node $ngpu -m toolkit.bin.train $args --ngpu $ngpu --resume $train_args
  else
    if [ "$ngpu" -eq 0 ]; then args="$args --num-threads $train_threads"; fi
    run python -m toolkit.bin.train $args --ngpu $ngpu --resume $train_args
  fi
  run python -m toolkit.bin.average_checkpoints --exp $expdir --num $num_avg --out $expdir/model_avg.pt
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  require 6 $expdir/model_avg.pt 5
  for x in $test_sets; do require 6 dump/$x/feats.scp 4; done
  # the search settings become the model's defaults (concord-transcribe, Transcriber, packs)
  python -m toolkit.bin.decode --exp $expdir --method $decode_method --beam $beam $decode_args --save-defaults
  for mode in $decode_modes; do
    for x in $test_sets; do
      dir=$expdir/decode_${mode}_$x
      log "stage 6: decoding $x in $mode mode ($decode_method) -> $dir"
      run $decode_cmd JOB=1:$nj $dir/log/decode.JOB.log \
        python -m toolkit.bin.decode --exp $expdir --model $expdir/model_avg.pt --data data/$x \
          --feats dump/$x/feats.scp --mode $mode --method $decode_method --beam $beam \
          --out $dir --nj $nj --job JOB $decode_args
      run python -m toolkit.bin.decode --merge --out $dir --nj $nj
    done
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  for mode in $decode_modes; do
    for x in $test_sets; do require 7 $expdir/decode_${mode}_$x/hyp.trn 6; done
  done
  for mode in $decode_modes; do
    for x in $test_sets; do
      dir=$expdir/decode_${mode}_$x
      log "stage 7: scoring $dir"
      run python -m toolkit.bin.score --ref $dir/ref.trn --hyp $dir/hyp.trn --out $dir/score_wer
      if $cer; then
        run python -m toolkit.bin.score --ref $dir/ref.trn --hyp $dir/hyp.trn --out $dir/score_cer --cer
      fi
    done
  done
  results_opts=""
  [ -n "$heldout_words" ] && [ -f "$heldout_words" ] && results_opts="--heldout-words $heldout_words"
  run python -m toolkit.bin.make_results --exp $expdir $results_opts
  cat $expdir/RESULTS.md
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  [ -n "$analysis_sets" ] || analysis_sets=$(echo $test_sets | awk '{print $1}')
  require 8 $expdir/model_avg.pt 5
  for x in $analysis_sets; do require 8 dump/$x/feats.scp 4; require 8 dump/$x/seq 3; done
  for x in $analysis_sets; do
    log "stage 8: consistency analysis of $expdir on $x -> $expdir/analysis_$x (log: $expdir/analysis_$x.log)"
    run python -m toolkit.bin.analyze_alignment --exp $expdir --data dump/$x --out $expdir/analysis_$x \
      --max-utts $analysis_max_utts --num-threads $train_threads > $expdir/analysis_$x.log 2>&1 \
      || fail "stage 8: $(tail -n 1 $expdir/analysis_$x.log) (log: $expdir/analysis_$x.log)"
    cat $expdir/analysis_$x/consistency.md
  done
fi
log "done: stages $stage..$stop_stage"
