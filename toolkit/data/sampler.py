"""Length-bucketed batches, paired/text interleaving and distributed sharding.

Batches are formed by *padded* size: ``max_len * batch_size <= max_frames`` for speech
(feature frames) and ``<= max_tokens`` for text (phones, the text encoder's input).
Every epoch's batch list is a pure function of (seed, epoch, rank, world_size), so a
run resumed at (epoch, position) sees exactly the batches it would have seen.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchSpec:
    """One batch to load: which items, and a seed for its on-the-fly augmentation."""
    kind: str                 # "paired" | "text"
    indices: tuple[int, ...]  # dataset indices
    epoch: int
    position: int             # index in this rank's list for the epoch
    seed: int                 # SpecAugment (or any per-batch randomness) seed


def bucket_batches(lengths: np.ndarray, max_size: int, items: np.ndarray | None = None) -> list[np.ndarray]:
    """Group ``items`` (default: all indices) into batches with ``max_len * n <= max_size``.

    Items are sorted by length (ties by index, so the result is deterministic) and cut
    greedily. Length-0 items are dropped; an item longer than ``max_size`` gets a batch
    of its own rather than being lost.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    items = np.arange(len(lengths)) if items is None else np.asarray(items, dtype=np.int64)
    items = items[lengths[items] > 0]
    order = items[np.lexsort((items, lengths[items]))]
    sorted_lens = lengths[order]  # numpy, not a list: LM-scale text has tens of millions of items
    batches, start, n = [], 0, len(order)
    while start < n:
        # padded size len[e-1] * (e - start) is non-decreasing in e: binary search the cut
        end = bisect.bisect_right(range(start + 1, n + 1), max_size,
                                  key=lambda e: int(sorted_lens[e - 1]) * (e - start)) + start
        end = max(end, start + 1)
        batches.append(order[start:end])
        start = end
    return batches


def batch_seed(seed: int, epoch: int, rank: int, position: int, kind: str) -> int:
    ss = np.random.SeedSequence([seed, epoch, rank, position, 0 if kind == "paired" else 1])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def interleave_pattern(n_paired: int, text_ratio: float) -> list[str]:
    """``text_ratio`` text batches per paired batch, spread evenly: P T P T / P P T ..."""
    out, n_text = [], 0
    for i in range(n_paired):
        out.append("paired")
        while n_text < math.floor((i + 1) * text_ratio + 0.5):  # round half up, not to even
            out.append("text")
            n_text += 1
    return out


class InterleavedBatchSampler:
    """This rank's batches for an epoch: paired speech batches, text batches in between.

    Sharding: each stream's shuffled global batch list is cut to a multiple of
    ``world_size`` (the remainder, fewer than ``world_size`` batches, is skipped this
    epoch) and rank r takes every ``world_size``-th batch from r. Every rank therefore
    gets the same number of batches, of the same kind at the same step (so DDP ranks
    always run the same branch of the model), and the shares are disjoint.

    ``weights`` (per paired utterance, e.g. :func:`language_balanced_weights`) switch
    paired data to sampling with replacement: each epoch draws ``len(weights)`` items.
    The text stream is consumed ``text_ratio`` batches per paired batch; each epoch takes
    its text batches from a fresh shuffle, so text far larger than the paired data is
    visited at random rather than exhausted.
    """

    def __init__(self, paired_lengths, max_frames: int, *, text_lengths=None, max_tokens: int = 0,
                 text_ratio: float = 0.0, seed: int = 0, rank: int = 0, world_size: int = 1,
                 weights=None, shuffle: bool = True, drop_remainder: bool = True):
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if text_ratio > 0 and (text_lengths is None or max_tokens <= 0):
            raise ValueError("text_ratio > 0 needs text data and a positive max_tokens")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.paired_lengths = np.asarray(paired_lengths, dtype=np.int64)
        self.max_frames, self.max_tokens = int(max_frames), int(max_tokens)
        self.text_ratio = float(text_ratio) if text_lengths is not None else 0.0
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and len(self.weights) != len(self.paired_lengths):
            raise ValueError(f"{len(self.weights)} weights for {len(self.paired_lengths)} utterances")
        self.shuffle, self.drop_remainder = shuffle, drop_remainder
        self._paired_fixed = None if self.weights is not None else bucket_batches(self.paired_lengths, max_frames)
        self._text = None
        if self.text_ratio > 0:
            self._text = bucket_batches(np.asarray(text_lengths, dtype=np.int64), max_tokens)
            if not self._text:
                raise ValueError("text data has no non-empty sequences")
        self.epoch, self.start = 0, 0
        self._plan_cache: tuple[int, list[BatchSpec]] | None = None

    def _rng(self, epoch: int, stream: int, sub: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, stream, sub])

    def _shard(self, batches: list) -> list:
        n = len(batches)
        if self.drop_remainder:
            n -= n % self.world_size
        return batches[self.rank:n:self.world_size]

    def _paired_batches(self, epoch: int) -> list[np.ndarray]:
        if self.weights is None:
            batches = self._paired_fixed
        else:
            draw = self._rng(epoch, 1).choice(len(self.weights), size=len(self.weights), p=self.weights)
            batches = bucket_batches(self.paired_lengths, self.max_frames, items=np.sort(draw))
        if self.shuffle:
            batches = [batches[i] for i in self._rng(epoch, 0).permutation(len(batches))]
        return self._shard(batches)

    def _text_batches(self, epoch: int, n_per_rank: int) -> list[np.ndarray]:
        need, out, sub = n_per_rank * self.world_size, [], 0
        while len(out) < need:  # successive shuffles when the text is smaller than needed
            perm = self._rng(epoch, 2, sub).permutation(len(self._text)) if self.shuffle else range(len(self._text))
            out.extend(self._text[i] for i in perm)
            sub += 1
        return out[:need][self.rank::self.world_size]

    def epoch_plan(self, epoch: int) -> list[BatchSpec]:
        """All of this rank's batches for ``epoch``, in order (cached for the last epoch)."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        paired = self._paired_batches(epoch)
        pattern = interleave_pattern(len(paired), self.text_ratio)
        text = self._text_batches(epoch, pattern.count("text")) if self.text_ratio > 0 else []
        streams = {"paired": iter(paired), "text": iter(text)}
        plan = []
        for pos, kind in enumerate(pattern):
            idx = tuple(int(i) for i in next(streams[kind]))
            plan.append(BatchSpec(kind, idx, epoch, pos, batch_seed(self.seed, epoch, self.rank, pos, kind)))
        self._plan_cache = (epoch, plan)
        return plan

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Next iteration yields ``epoch_plan(epoch)[start:]`` (resume mid-epoch)."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return max(0, len(self.epoch_plan(self.epoch)) - self.start)

    def __iter__(self):
        return iter(self.epoch_plan(self.epoch)[self.start:])
