"""Set up one rank's training run from a resolved config: data, model, experiment dir."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from toolkit.train.distributed import DistInfo, barrier
from toolkit.utils.config import ConfigError, dump_yaml, load_yaml
from toolkit.utils.fileio import atomic_write

log = logging.getLogger("toolkit.train")
MODEL_INPUT_KEYS = ("model", "model_conf", "vocab_size", "num_phones")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_HANDLERS: list[logging.Handler] = []


class _TqdmStderrHandler(logging.StreamHandler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(exp: Path, info: DistInfo) -> None:
    """INFO to stderr and exp/train.log on rank 0, warnings only elsewhere (replaces earlier calls')."""
    logger = logging.getLogger("toolkit")
    logger.setLevel(logging.INFO)
    while _HANDLERS:
        h = _HANDLERS.pop()
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s [rank {info.rank}] %(name)s: %(message)s")
    handlers: list[logging.Handler] = [_TqdmStderrHandler(sys.stderr)]
    if info.is_main:
        exp.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(exp / "train.log", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(logging.INFO if info.is_main else logging.WARNING)
        logger.addHandler(h)
        _HANDLERS.append(h)


def write_exp_files(exp: Path, conf: dict, argv: list[str], resume: bool) -> None:
    """config.yaml (resolved) and run.sh (the command line) for a fresh run; on resume, check."""
    cfg = exp / "config.yaml"
    if resume and cfg.exists():
        if load_yaml(cfg) != conf:
            log.warning("%s differs from the config given now; the new one is used", cfg)
        return
    dump_yaml(conf, cfg)
    launcher = "python"
    if "LOCAL_WORLD_SIZE" in os.environ:
        nodes = int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"])
        launcher = f"torchrun --nnodes {nodes} --nproc_per_node {os.environ['LOCAL_WORLD_SIZE']}"
    cmd = [a for a in argv if a != "--resume"]
    with atomic_write(exp / "run.sh") as f:
        f.write(f"#!/bin/sh\n# reproduces this experiment\ncd {shlex.quote(str(Path.cwd()))} && "
                f"{launcher} -m toolkit.bin.train {shlex.join(cmd)} \"$@\"\n")
    (exp / "run.sh").chmod(0o755)


def load_data(conf: dict):
    """-> (paired train, text train or None, valid or None, Languages or None)."""
    from toolkit.features.cmvn import GlobalCMVN
    from toolkit.train.dataset import PairedDataset, TextDataset
    if not conf["train_data"]:
        raise ConfigError("no training data: give --train-data")
    from toolkit.data.durations import durations_file
    cmvn = GlobalCMVN.load(conf["cmvn"]) if conf["cmvn"] else None
    durations_dir = conf.get("durations_dir")
    if needs_durations(conf) and not durations_dir:
        raise ConfigError("model_conf.text_upsampling durations and objective.consistency.alignment forced read "
                          "an aligner's durations: run python -m toolkit.bin.train_aligner and give --durations-dir")

    def durations_of(data_dir):
        return durations_file(durations_dir, data_dir) if needs_durations(conf) else None
    paired = PairedDataset(conf["train_data"], cmvn, durations=durations_of(conf["train_data"]))
    text = None
    if conf["text_data"] and conf["batching"]["text_ratio"] > 0:
        text = TextDataset(Path(conf["text_data"]) / "seq")
    elif conf["batching"]["text_ratio"] > 0:
        log.warning("text_ratio %s but no --text-data: training on paired data only",
                    conf["batching"]["text_ratio"])
    valid = PairedDataset(conf["valid_data"], cmvn, durations=durations_of(conf["valid_data"])) \
        if conf["valid_data"] else None
    return paired, text, valid, load_languages(conf["batching"], paired, text)


def load_languages(batching: dict, paired, text):
    """The streams' languages for ``batching.lang_balance_alpha`` (None: no balancing)."""
    from toolkit.train.dataset import Languages, read_utt2lang
    alpha = batching["lang_balance_alpha"]
    if alpha is None:
        if batching["text_utt2lang"]:
            raise ConfigError("batching.text_utt2lang needs batching.lang_balance_alpha")
        return None
    if not batching["utt2lang"]:
        raise ConfigError("batching.lang_balance_alpha needs batching.utt2lang")
    langs = Languages(read_utt2lang(batching["utt2lang"], paired.uttids),
                      read_utt2lang(batching["text_utt2lang"], text.uttids)
                      if text is not None and batching["text_utt2lang"] else None)
    if langs.text is None and text is not None:
        log.warning("batching.lang_balance_alpha without batching.text_utt2lang: the text-only batches "
                    "are not language-balanced (set it to the text-only data's utt2lang)")
    return langs


def log_language_balance(sampler, alpha) -> None:
    """Each language's hours (phones for text) and its target share of the drawn ones."""
    from toolkit.data.collate import FRAME_SHIFT_S
    for stream, bal in (("paired", sampler.paired_balance), ("text-only", sampler.text_balance)):
        if bal is None:
            continue
        amounts = [f"{m * FRAME_SHIFT_S / 3600:.2f} h" if stream == "paired" else f"{int(m)} phones"
                   for m in bal.mass]
        log.info("language balance (alpha %g), %s: %s", alpha, stream,
                 ", ".join(f"{n} {a} -> {p:.1%}" for n, a, p in zip(bal.names, amounts, bal.shares)))


def needs_durations(conf: dict) -> bool:
    """Whether paired batches carry aligner durations: the model upsamples text by them, or
    the consistency term pulls along the aligner's path."""
    cons = conf["objective"]["consistency"]
    return ((conf.get("model_conf") or {}).get("text_upsampling") == "durations"
            or (cons["alignment"] == "forced" and cons["weight"] > 0))


def resolve_repeat(conf: dict, paired) -> dict:
    """``text_upsampling: repeat`` with ``repeat: 0``: r = the paired training data's encoder
    frames per phoneme (total over total), rounded, written into the config that is saved."""
    mc = conf.get("model_conf") or {}
    if mc.get("text_upsampling") != "repeat" or int(mc["text_upsampling_conf"]["repeat"]) > 0:
        return conf
    phones = np.asarray(paired.store.phone_lens, dtype=np.int64)[paired.seq_index]
    r = max(1, int(round(float(paired.encoder_frames().sum()) / max(1, int(phones.sum())))))
    log.info("text_upsampling repeat: r = %d (%d encoder frames / %d phones of the paired training data)",
             r, int(paired.encoder_frames().sum()), int(phones.sum()))
    conf = dict(conf, model_conf={**mc, "text_upsampling_conf": {**mc["text_upsampling_conf"], "repeat": r}})
    return conf


def default_build_model(model_conf: dict) -> torch.nn.Module:
    from toolkit.models import build_model
    return build_model(model_conf)


def make_detokenizer(bpe_model: str | None):
    if not bpe_model:
        return None
    from toolkit.text.wordpiece import load_wordpiece
    sp = load_wordpiece(bpe_model)
    return lambda ids: sp.decode([int(i) for i in ids])


def run_training(conf: dict, exp: Path, info: DistInfo, argv: list[str], resume: bool = False,
                 build_model=None):
    """Everything ``python -m toolkit.bin.train`` does after parsing; returns the Progress.

    Rank 0 holds ``<exp>/train.lock`` throughout: a second run into ``exp`` is refused.
    """
    from toolkit.train.guard import ExperimentLock
    exp = Path(exp)
    setup_logging(exp, info)
    with ExperimentLock(exp) if info.is_main else contextlib.nullcontext():
        return _run_training(conf, exp, info, argv, resume, build_model)


def _run_training(conf: dict, exp: Path, info: DistInfo, argv: list[str], resume: bool, build_model):
    from toolkit.train.checkpoint import list_checkpoints
    from toolkit.train.guard import remove_stale_temp_files
    from toolkit.train.trainer import Trainer
    if info.is_main:
        remove_stale_temp_files(exp / "checkpoints")
    if not resume and list_checkpoints(exp / "checkpoints"):
        raise ConfigError(f"{exp} already has checkpoints: pass --resume to continue, or use a new --exp")
    paired, text, valid, langs = load_data(conf)  # draws no random numbers
    conf = resolve_repeat(conf, paired)
    if info.is_main:
        write_exp_files(exp, conf, argv, resume)
    barrier()
    seed_everything(conf["seed"] + info.rank)
    model = (build_model or default_build_model)({k: conf.get(k) for k in MODEL_INPUT_KEYS})
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %.2fM parameters; %d paired utterances, %s text sequences; %d rank(s) on %s",
             n_params / 1e6, len(paired), len(text) if text else 0, info.world_size, info.device)
    objective = None  # a stand-in model (tests) computes its own loss
    if build_model is None:
        from toolkit.train.objective import Objective
        objective = Objective.for_model(conf["objective"], model)
        log.info("objective: consistency %s on %s (weight %g), text weight %g, ctc weight %g",
                 conf["objective"]["consistency"]["alignment"], ", ".join(objective.layers) or "no layers",
                 conf["objective"]["consistency"]["weight"], conf["objective"]["text_weight"],
                 conf["objective"]["ctc_weight"])
    trainer = Trainer(conf, exp, info, model, paired, text, valid, langs, make_detokenizer(conf["bpe_model"]),
                      objective)
    log_language_balance(trainer.sampler, conf["batching"]["lang_balance_alpha"])
    if not (resume and trainer.resume()) and info.is_main:
        # a fresh start: drop losses a run killed before its first checkpoint left behind
        (exp / "losses.tsv").unlink(missing_ok=True)
    return trainer.run()
