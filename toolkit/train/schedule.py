"""Learning-rate schedules as a factor of the peak ``optim_conf.lr``, per optimizer step.

``noam``: linear warmup then ``sqrt(warmup / step)`` decay (peak-normalised, as in
ESPnet's WarmupLR); ``warmup_cosine`` / ``warmup_linear``: warmup then cosine / linear
decay to ``min_lr_ratio`` at ``total_steps``; ``constant``: warmup then flat.
"""
from __future__ import annotations

import math

import torch

from toolkit.utils.config import ConfigError

SCHEDULES = ("noam", "warmup_cosine", "warmup_linear", "constant")


class LRSchedule:
    """``factor(step)`` for step = 0, 1, ... (the number of optimizer steps already taken)."""

    def __init__(self, name: str, warmup_steps: int, total_steps: int, min_lr_ratio: float):
        if name not in SCHEDULES:
            raise ConfigError(f"scheduler: unknown '{name}'; choose from {', '.join(SCHEDULES)}")
        self.name, self.warmup, self.total, self.min_ratio = name, max(0, warmup_steps), total_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        s = step + 1
        if self.warmup and s <= self.warmup:
            return s / self.warmup
        if self.name == "noam":
            return math.sqrt(self.warmup / s) if self.warmup else 1.0
        if self.name == "constant":
            return 1.0
        p = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * p)) if self.name == "warmup_cosine" else 1.0 - p
        return self.min_ratio + (1 - self.min_ratio) * shape


def delayed_ramp(step: int, start_step: int, ramp_steps: int) -> float:
    """0 for the first ``start_step`` optimizer steps, then a linear rise to 1 over
    ``ramp_steps`` steps (1 at once when ramp_steps is 0); ``step`` = steps already taken."""
    if step < start_step:
        return 0.0
    return min(1.0, (step - start_step + 1) / ramp_steps) if ramp_steps > 0 else 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, conf: dict, total_steps: int):
    sched = LRSchedule(name, int(conf["warmup_steps"]), int(conf["total_steps"]) or total_steps,
                       float(conf["min_lr_ratio"]))
    # a plain function, not the LRSchedule object: LambdaLR would store the object's fields in
    # checkpoints and restore them, pinning the old schedule when a run is resumed with new settings
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: sched(step))
