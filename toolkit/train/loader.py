"""DataLoader over :class:`BatchSpec` s: each worker loads, pads and augments a whole batch.

The sampler yields batch specs; the loader runs with ``batch_size=None`` so a worker
receives one spec and returns ``(batch, meta)``. SpecAugment is seeded from the spec,
and the loader gets its own ``torch.Generator`` so creating an iterator does not draw
from the global torch RNG: both keep resumed runs identical to uninterrupted ones.
"""
from __future__ import annotations

import torch

from toolkit.data.collate import collate_paired, collate_text
from toolkit.data.sampler import BatchSpec
from toolkit.features.specaug import SpecAugment


class BatchFetcher:
    """Map-style dataset indexed by BatchSpec: ``fetch[spec] -> (batch, meta)``."""

    def __init__(self, paired, text=None, specaug: SpecAugment | None = None):
        self.paired, self.text, self.specaug = paired, text, specaug

    def __getitem__(self, spec: BatchSpec):
        if spec.kind == "paired":
            batch, meta = collate_paired([self.paired[i] for i in spec.indices])
            if self.specaug is not None:
                batch["feats"] = self.specaug(batch["feats"], batch["feat_lens"], spec.seed)
        else:
            batch, meta = collate_text([self.text[i] for i in spec.indices])
        meta.update(kind=spec.kind, epoch=spec.epoch, position=spec.position)
        return batch, meta


def _identity(x):
    return x


def make_loader(fetcher: BatchFetcher, sampler, num_workers: int, pin_memory: bool = False):
    """-> torch DataLoader yielding ``(batch, meta)``; pin_memory for GPU training."""
    return torch.utils.data.DataLoader(
        fetcher, sampler=sampler, batch_size=None, collate_fn=_identity, pin_memory=pin_memory,
        num_workers=num_workers, generator=torch.Generator().manual_seed(0),
        prefetch_factor=2 if num_workers > 0 else None)
