"""The training loop: interleaved paired/text batches, accumulation, AMP, DDP, exact resume.

Resume is exact on CPU: a checkpoint stores the model, optimizer, scheduler, scaler,
the position in the epoch's batch list and every rank's RNG states, and everything
random in the data pipeline is a function of (seed, epoch, position). The per-step
loss log ``losses.tsv`` is cut back to the checkpoint's step on resume, so after a
crash it matches an uninterrupted run line for line.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toolkit.data.sampler import InterleavedBatchSampler
from toolkit.train import checkpoint as ckpt
from toolkit.train.amp import amp_context, amp_dtype
from toolkit.train.distributed import DistInfo, all_reduce_sum, barrier, gather_objects, in_process_group
from toolkit.train.loader import BatchFetcher, make_loader
from toolkit.train.schedule import build_scheduler
from toolkit.train.validate import validate
from toolkit.utils.config import ConfigError
from toolkit.utils.fileio import atomic_write

log = logging.getLogger("toolkit.train")


class NonFiniteLossError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


@dataclass
class Progress:
    """Where training stands; ``position`` = batches of ``epoch`` already consumed."""
    step: int = 0
    epoch: int = 0
    position: int = 0
    nonfinite_run: int = 0


@dataclass
class Meter:
    """Per-component loss sums over the logging interval, per batch kind."""
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    audio_seconds: float = 0.0
    steps: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, kind: str, out: dict) -> None:
        bucket = self.sums.setdefault(kind, {})
        for k, v in out.items():
            bucket[k] = bucket.get(k, 0.0) + v
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def means(self) -> dict[str, float]:
        return {f"{kind}/{k}": v / self.counts[kind] for kind, b in self.sums.items() for k, v in b.items()}


def build_optimizer(model: torch.nn.Module, name: str, conf: dict) -> torch.optim.Optimizer:
    """AdamW/Adam from optim_conf, always with the fused kernel (not a config key: optim_conf
    accepts lr, betas, eps, weight_decay): on the tiny model's CPU steps it takes 3.5 ms
    instead of 14."""
    kwargs = dict(conf, betas=tuple(conf["betas"]), fused=True)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), **kwargs)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), **kwargs)
    raise ValueError(f"optim: unknown '{name}'; choose adamw or adam")


def truncate_loss_log(path: Path, max_step: int) -> None:
    """Keep complete lines with step <= max_step (drops what a killed run wrote after it)."""
    if not path.exists():
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split("\t")
            if line.endswith("\n") and (fields[0] == "step" or (fields[0].isdigit() and int(fields[0]) <= max_step)):
                keep.append(line)
    with atomic_write(path) as f:
        f.writelines(keep)


class Trainer:
    """Owns the model, optimizer, data and experiment dir of one training run (one rank)."""

    def __init__(self, conf: dict, exp_dir: str | Path, info: DistInfo, model: torch.nn.Module,
                 paired, text=None, valid=None, langs=None, detokenize=None, objective=None):
        """``objective(model, batch, step) -> {"loss", terms}``; None: the model's own output
        is the loss (``model(batch)["loss"]``, test stand-ins). ``langs``: a
        :class:`toolkit.train.dataset.Languages` to balance the streams by
        ``batching.lang_balance_alpha``, or None."""
        self.conf, self.info, self.exp = conf, info, Path(exp_dir)
        self.objective = objective or (lambda model, batch, step: model(batch))
        # step-scheduled losses (the pruned transducer's warm-up), found once, told the step per batch
        self.step_scheduled = [m for m in model.modules() if hasattr(m, "set_step")]
        self.ckpt_dir = self.exp / "checkpoints"
        batching = conf["batching"]
        paired_langs, text_langs = (langs.paired, langs.text) if langs is not None else (None, None)
        self.sampler = InterleavedBatchSampler(
            paired.num_frames, batching["max_frames"], text_lengths=None if text is None else text.lengths(),
            max_tokens=batching["max_tokens"], text_ratio=batching["text_ratio"] if text is not None else 0.0,
            seed=conf["seed"], rank=info.rank, world_size=info.world_size, shuffle=batching["shuffle"],
            paired_langs=paired_langs, text_langs=text_langs if text is not None else None,
            lang_alpha=1.0 if batching["lang_balance_alpha"] is None else batching["lang_balance_alpha"])
        if not self.sampler.epoch_plan(0):
            raise ConfigError(f"{len(paired)} paired utterances make fewer batches than the {info.world_size} "
                              f"rank(s): lower batching.max_frames or use fewer processes")
        specaug = None
        if conf["specaug"]:
            from toolkit.features.specaug import SpecAugment
            specaug = SpecAugment(**conf["specaug_conf"])
        self.fetcher = BatchFetcher(paired, text, specaug)
        self.valid = valid
        self.detokenize = detokenize
        self.model = model.to(info.device)
        self.ddp = self.model
        if info.world_size > 1 or in_process_group():  # torchrun with one rank: DDP too
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                find_unused_parameters=True)  # text batches skip the audio encoder
            log.info("DistributedDataParallel over %d rank(s), backend %s", info.world_size,
                     torch.distributed.get_backend())
        self.optimizer = build_optimizer(self.model, conf["optim"], conf["optim_conf"])
        per_epoch = math.ceil(len(self.sampler.epoch_plan(0)) / conf["accum_grad"])
        total = conf["max_steps"] or per_epoch * conf["max_epochs"]
        self.scheduler = build_scheduler(self.optimizer, conf["scheduler"], conf["scheduler_conf"], total)
        self.total_steps = min(total, per_epoch * conf["max_epochs"])  # for the run's ETA
        self.amp_dtype = amp_dtype(conf["amp"], info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self.writer = None
        if info.is_main and conf["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.exp / "tensorboard"))

    # ---- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        progress = self.progress
        return {"step": progress.step, "epoch": progress.epoch, "position": progress.position,
                "nonfinite_run": progress.nonfinite_run,
                "world_size": self.info.world_size, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": gather_objects(ckpt.rng_state()),
                "config": self.conf}

    def save(self) -> None:
        state = self.state_dict()  # collective (RNG gather): every rank takes part
        if self.info.is_main:
            try:
                path = ckpt.save_checkpoint(self.ckpt_dir, self.progress.step, state, self.conf["keep_last"])
            except OSError as e:  # in train.log too, not only on the terminal that may be gone
                log.error("checkpoint of step %d not saved: %s", self.progress.step, e.strerror or e)
                raise
            log.info("saved %s (epoch %d, batch %d)", path, self.progress.epoch, self.progress.position)
        barrier()

    def resume(self) -> bool:
        """Load the newest readable checkpoint; False when there is none at all.

        Checkpoints that all fail to load raise InputError (see ``checkpoint.load_latest``):
        starting from scratch would rewrite losses.tsv and rotate the old files away.
        """
        state, path = ckpt.load_latest(self.ckpt_dir)
        if state is None:
            log.info("no usable checkpoint in %s: starting from scratch", self.ckpt_dir)
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(state["step"], state["epoch"], state["position"], state["nonfinite_run"])
        if state["world_size"] == self.info.world_size:
            ckpt.set_rng_state(state["rng"][self.info.rank])
        else:
            log.warning("checkpoint was written by %d ranks, now %d: RNG streams restart, resume is not exact",
                        state["world_size"], self.info.world_size)
        if self.info.is_main:
            truncate_loss_log(self.exp / "losses.tsv", self.progress.step)
        barrier()
        log.info("resumed from %s: step %d, epoch %d, batch %d", path, self.progress.step,
                 self.progress.epoch, self.progress.position)
        return True

    # ---- one optimizer step --------------------------------------------------------
    def forward_backward(self, batch: dict, scale: float, sync: bool = True) -> dict[str, float]:
        """Forward + backward of one micro-batch at the current step; returns the loss
        components as floats."""
        batch = {k: v.to(self.info.device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        ctx = self.ddp.no_sync() if (not sync and self.ddp is not self.model) else contextlib.nullcontext()
        with ctx:
            with amp_context(self.info.device, self.amp_dtype):
                out = self.objective(self.ddp, batch, self.progress.step)
            # a non-finite loss still goes through backward so DDP ranks stay in step;
            # its gradients are thrown away by optimizer_step
            self.scaler.scale(out["loss"] * scale).backward()
        return {k: float(v.detach()) for k, v in out.items()}

    def optimizer_step(self, loss_finite: bool) -> bool:
        """Clip, step (unless anything was non-finite on any rank), advance the schedule."""
        self.scaler.unscale_(self.optimizer)
        clip = self.conf["grad_clip"] if self.conf["grad_clip"] > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        bad = all_reduce_sum([0.0 if loss_finite else 1.0], self.info.device)[0] > 0
        ok = not bad and bool(torch.isfinite(norm))
        if ok:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.progress.step += 1
        if ok:
            self.progress.nonfinite_run = 0
        else:
            self.progress.nonfinite_run += 1
            log.warning("step %d skipped: non-finite %s (%d in a row)", self.progress.step,
                        "loss" if bad else f"gradient norm {float(norm)}", self.progress.nonfinite_run)
            if self.progress.nonfinite_run >= self.conf["nonfinite_patience"]:
                raise NonFiniteLossError(f"{self.progress.nonfinite_run} non-finite steps in a row "
                                         f"(nonfinite_patience={self.conf['nonfinite_patience']}); stopping")
        return ok

    # ---- the loop ------------------------------------------------------------------
    def run(self) -> Progress:
        conf, progress = self.conf, self.progress
        loss_log = open(self.exp / "losses.tsv", "a", encoding="utf-8") if self.info.is_main else None
        try:
            while progress.epoch < conf["max_epochs"] and not self._done():
                self.train_epoch(loss_log)
                if self._done() and progress.position < len(self.sampler.epoch_plan(progress.epoch)):
                    break  # max_steps reached mid-epoch: no epoch-end validation
                self.end_epoch()
        finally:
            if loss_log:
                loss_log.close()
            if self.writer:
                self.writer.close()
        return progress

    def _done(self) -> bool:
        return bool(self.conf["max_steps"]) and self.progress.step >= self.conf["max_steps"]

    def train_epoch(self, loss_log) -> None:
        conf, progress = self.conf, self.progress
        accum = conf["accum_grad"]
        self.sampler.set_epoch(progress.epoch, progress.position)
        n_batches = len(self.sampler.epoch_plan(progress.epoch))
        bar = _progress_bar(self, n_batches)
        meter, micro, finite = Meter(), 0, True
        self.model.train()
        pin = self.info.device.type == "cuda"
        for batch, meta in make_loader(self.fetcher, self.sampler, conf["batching"]["num_workers"], pin):
            progress.position += 1
            micro += 1
            last = micro == accum or progress.position == n_batches
            for module in self.step_scheduled:
                module.set_step(progress.step)
            out = self.forward_backward(batch, 1.0 / accum, sync=last)
            finite &= math.isfinite(out["loss"])
            meter.add(meta["kind"], out)
            meter.audio_seconds += meta["audio_seconds"]
            if loss_log:
                loss_log.write(f"{progress.step + 1}\t{progress.epoch}\t{progress.position}\t{meta['kind']}\t"
                               f"{out['loss']!r}\n")
                loss_log.flush()
            if not last:
                continue
            self.optimizer_step(finite)
            micro, finite = 0, True
            meter.steps += 1
            if bar is not None:
                bar.update(progress.position - bar.n)
                bar.set_postfix(loss=f"{out['loss']:.3f}", step=progress.step)
            if progress.step % conf["log_every_steps"] == 0:
                self._log_train(meter)
                meter = Meter()
            if progress.step % conf["save_every_steps"] == 0 and progress.position < n_batches:
                self.save()
            if self._done():
                if progress.position < n_batches:
                    self.save()
                break
        if bar is not None:
            bar.close()

    def end_epoch(self) -> None:
        progress = self.progress
        if self.valid is not None:
            self._validate()
        progress.epoch, progress.position = progress.epoch + 1, 0
        self.save()

    def _validate(self) -> None:
        batching = self.conf["batching"]
        sampler = InterleavedBatchSampler(self.valid.num_frames, batching["max_frames"], shuffle=False,
                                          rank=self.info.rank, world_size=self.info.world_size,
                                          drop_remainder=False)
        loader = make_loader(BatchFetcher(self.valid), sampler, batching["num_workers"])
        res = validate(self.model, loader, self.info.device, self.amp_dtype, self.detokenize,
                       self.conf["valid_greedy_wer"], self.conf["valid_max_batches"], self.objective)
        log.info("epoch %d validation: %s", self.progress.epoch,
                 " ".join(f"{k} {v:.4f}" for k, v in res.items()))
        if self.writer:
            for k, v in res.items():
                self.writer.add_scalar(f"valid/{k}", v, self.progress.step)

    def _log_train(self, meter: Meter) -> None:
        elapsed = time.perf_counter() - meter.start
        audio = all_reduce_sum([meter.audio_seconds], self.info.device)[0]
        lr = self.scheduler.get_last_lr()[0]
        means = meter.means()
        steps_per_s = meter.steps / max(elapsed, 1e-9)
        eta_h = max(0, self.total_steps - self.progress.step) / max(steps_per_s, 1e-9) / 3600
        log.info("step %d/%d epoch %d lr %.3e | %s | %.1f s audio/s, %.2f steps/s, ETA %.2f h",
                 self.progress.step, self.total_steps, self.progress.epoch, lr,
                 " ".join(f"{k} {v:.4f}" for k, v in sorted(means.items())), audio / max(elapsed, 1e-9),
                 steps_per_s, eta_h)
        if self.writer:
            for k, v in means.items():
                self.writer.add_scalar(f"train/{k}", v, self.progress.step)
            self.writer.add_scalar("train/lr", lr, self.progress.step)
            self.writer.add_scalar("train/audio_seconds_per_second", audio / max(elapsed, 1e-9), self.progress.step)
            self.writer.add_scalar("train/steps_per_second", steps_per_s, self.progress.step)


def _progress_bar(trainer: Trainer, n_batches: int):
    if not (trainer.info.is_main and trainer.conf["progress_bar"]):
        return None
    from tqdm import tqdm
    return tqdm(total=n_batches, initial=trainer.progress.position, desc=f"epoch {trainer.progress.epoch}",
                unit="batch", dynamic_ncols=True, mininterval=1.0)
