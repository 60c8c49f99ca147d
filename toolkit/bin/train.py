"""Train the joint speech-text model (paired speech + text-only batches, consistency loss).

Usage:
    # one process (CPU, or one GPU with --ngpu 1)
    python -m toolkit.bin.train --config conf/train.yaml --train-data dump/train \
        --valid-data dump/dev --text-data dump/text_only --lang-dir data/lang \
        --cmvn dump/train/cmvn.ark --exp exp/tiny
    # continue after a crash or kill, exactly where the last checkpoint left off
    python -m toolkit.bin.train ...same arguments... --resume
    # the fully resolved config (defaults filled), then exit
    python -m toolkit.bin.train --config conf/train.yaml --lang-dir data/lang --print-config
    # override any key (dotted for nested sections; values are YAML)
    python -m toolkit.bin.train ... --set optim_conf.lr=2.0e-3 --set batching.num_workers=0

    # G GPUs on one machine (DDP over NCCL; gloo when --ngpu 0)
    torchrun --nproc_per_node 4 -m toolkit.bin.train --ngpu 4 ...same arguments...
    # several machines: run this on every node
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint host0:29500 \
        -m toolkit.bin.train --ngpu 1 ...same arguments...

    # SLURM (sbatch): one task per node, torchrun starts the per-GPU ranks
    #   #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=4 --cpus-per-task=32
    #   head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    #   srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 4 \
    #       --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$head:29500" \
    #       -m toolkit.bin.train --ngpu 1 --config conf/train.yaml ... --exp exp/big --resume

``--ngpu`` > 0 trains on GPUs, one per process (cuda:LOCAL_RANK); the number of processes
comes from torchrun (``--ngpu N`` alone, without torchrun, is refused).
A train config holds the training keys (see toolkit/train/config.py) and the model,
inline (``model:``, ``model_conf:``) or by reference (``model_config: model_tiny.yaml``,
looked up beside the config, then in the working dir, then toolkit/resources/conf/).
``--resume`` is safe on a fresh experiment (it starts from scratch); without it an
experiment dir that already has checkpoints is refused. When checkpoints exist but none
is readable, ``--resume`` stops with an error and changes nothing (no fresh start over the
old run's files): restore them, or start again with a new ``--exp``.
Writes exp/<tag>/{config.yaml, run.sh, train.log, losses.tsv, tensorboard/, checkpoints/}.
"""
from __future__ import annotations

import argparse
import os
import sys

from toolkit.train.config import fill_data_paths, fill_model_defaults, resolve_config
from toolkit.utils.config import ConfigError, dump_yaml
from toolkit.utils.cli import cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="training YAML (e.g. toolkit/resources/conf/train_tiny.yaml)")
    p.add_argument("--train-data", help="dump dir with feats.scp, utt2num_frames, seq/")
    p.add_argument("--valid-data", help="dump dir of the validation set (loss + greedy WER per epoch)")
    p.add_argument("--text-data", help="dump dir whose seq/ holds text-only data")
    p.add_argument("--lang-dir", help="data/lang: tokens.txt, phones.txt, wp<N>.model")
    p.add_argument("--bpe-model", help="sentencepiece model (default: the lang dir's wp<N>.model)")
    p.add_argument("--cmvn", help="global CMVN stats (Kaldi matrix), e.g. dump/train/cmvn.ark")
    p.add_argument("--durations-dir", help="an aligner's dir with durations_<set>.txt (toolkit.bin.train_aligner): "
                                           "for text_upsampling durations or the forced consistency alignment")
    p.add_argument("--exp", help="experiment dir (exp/<tag>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest readable checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--ngpu", type=int, default=0,
                   help="0: CPU; N >= 1: GPUs (one per process: start N processes with torchrun)")
    p.add_argument("--num-threads", type=int, default=0,
                   help="intra-op CPU threads of this process (0: torch's default, i.e. OMP_NUM_THREADS)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. optim_conf.lr=1.0e-3 (repeatable)")
    return p


@cli
def main(argv: list[str] | None = None, build_model=None) -> int:
    """``build_model(model_config_dict) -> nn.Module`` replaces toolkit.models.build_model (tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_parser().parse_args(argv)
    conf = fill_model_defaults(resolve_config(args.config, args.set))
    conf = fill_data_paths(conf, args.train_data, args.valid_data, args.text_data, args.lang_dir, args.cmvn,
                           args.bpe_model, args.durations_dir)
    if args.print_config:
        print(dump_yaml(conf), end="")
        return 0
    if not args.exp:
        raise ConfigError("--exp is required")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.ngpu > 1 and world == 1:
        raise ConfigError(f"--ngpu {args.ngpu} in a single process; launch with "
                          f"torchrun --nproc_per_node {args.ngpu} -m toolkit.bin.train ...")
    if args.num_threads < 0:
        raise ConfigError(f"--num-threads must be >= 0, got {args.num_threads}")
    from toolkit.utils.cpu import setup_cpu
    setup_cpu(args.num_threads)
    from toolkit.train.distributed import cleanup, init_distributed
    from toolkit.train.launch import run_training
    info = init_distributed(args.ngpu)
    try:
        run_training(conf, args.exp, info, argv, resume=args.resume, build_model=build_model)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
