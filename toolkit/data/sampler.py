"""Length-bucketed batches, language balancing, paired/text interleaving and sharding.

Batches are formed by *padded* size: ``max_len * batch_size <= max_frames`` for speech
(feature frames) and ``<= max_tokens`` for text (phones, the text encoder's input).
Every epoch's batch list is a pure function of (seed, epoch, rank, world_size), so a
run resumed at (epoch, position) sees exactly the batches it would have seen.

Language balancing (a stream given per-item languages): language l gets the share
p_l ∝ (S_l / S) ** alpha of the drawn *size* (S_l: its feature frames, i.e. hours of
speech; for text its phones), so alpha 1 keeps the natural shares and alpha 0 makes them
equal. An epoch draws as much size as the data holds (paired) or as the text batches need:
language l gets k_l = round(p_l * size / mean item size of l) draws, every one of its items
floor(k_l / n_l) times and a random k_l mod n_l of them once more. The draws are spread
(:func:`spread_batches`) so that no batch holds one item twice.
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


def language_shares(mass: np.ndarray, alpha: float) -> np.ndarray:
    """Target share of each language in the drawn size, from its size ``mass`` (L,): p_l ∝ (S_l / S) ** alpha.

    Sizes are frames (duration) or phones, so shares are of hours, not of utterance counts.
    A language with no size gets 0. (L,) float64 summing to 1.
    """
    if alpha < 0:
        raise ValueError(f"lang_balance_alpha must be >= 0, got {alpha}")
    mass = np.asarray(mass, dtype=np.float64)
    if mass.sum() <= 0:
        raise ValueError("no language has any non-empty item")
    p = np.zeros_like(mass)
    p[mass > 0] = (mass[mass > 0] / mass.sum()) ** alpha
    return p / p.sum()


class LanguageBalance:
    """Draws a language-balanced multiset of items (see the module doc for the rule).

    ``langs``: (N,) language of each item (any labels); ``sizes``: (N,) item sizes, items of
    size 0 are never drawn.
    """

    def __init__(self, langs, sizes, alpha: float):
        sizes = np.asarray(sizes, dtype=np.int64)
        if len(langs) != len(sizes):
            raise ValueError(f"{len(langs)} languages for {len(sizes)} items")
        self.names, ids = np.unique(np.asarray(langs), return_inverse=True)
        ids = ids.astype(np.int64)
        keep = sizes > 0
        self.members = [np.flatnonzero(keep & (ids == l)) for l in range(len(self.names))]
        self.mass = np.bincount(ids[keep], weights=sizes[keep].astype(np.float64), minlength=len(self.names))
        self.shares = language_shares(self.mass, alpha)
        self.total = float(self.mass.sum())
        counts = np.array([len(m) for m in self.members], dtype=np.float64)
        self.mean_size = np.divide(self.mass, counts, out=np.ones_like(self.mass), where=counts > 0)

    def counts(self, size: float) -> np.ndarray:
        """Draws per language for ``size`` drawn in all: round(p_l * size / mean size of l)."""
        return np.rint(self.shares * size / self.mean_size).astype(np.int64)

    def draw(self, rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
        """-> (items, copies): distinct items and how often each is drawn (both (M,) int64)."""
        items, copies = [], []
        for members, k in zip(self.members, self.counts(size)):
            n = len(members)
            if k <= 0 or n == 0:
                continue
            full, extra = divmod(int(k), n)
            if full == 0:  # text far larger than one epoch needs: no (N,) arrays
                items.append(np.sort(members[rng.choice(n, extra, replace=False)]))
                copies.append(np.ones(extra, dtype=np.int64))
                continue
            c = np.full(n, full, dtype=np.int64)
            c[rng.choice(n, extra, replace=False)] += 1
            items.append(members)
            copies.append(c)
        if not items:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(items), np.concatenate(copies)


def spread_batches(lengths: np.ndarray, items: np.ndarray, copies: np.ndarray, max_size: int,
                   pool_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of a drawn multiset (``copies[j]`` draws of ``items[j]``) with no item twice in a batch.

    Copy k of an item drawn c times is placed at (k + u) / c on [0, 1), u uniform per item,
    so its copies lie exactly 1/c apart; [0, 1) is cut into J equal pools, J = ceil(drawn
    size / ``pool_size``), so a pool holds at most ceil(c / J) copies of an item and every
    pool is a random mix of the languages. Each pool is bucketed by length
    (:func:`bucket_batches`) round by round: first copies, then second copies, ...
    Without repeats (every c = 1) this is: shuffle, cut into pools, sort each pool.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(items) == 0:
        return []
    draws = np.repeat(items, copies)  # (D,) grouped by item, copies in order k = 0, 1, ...
    starts = np.repeat(np.cumsum(copies) - copies, copies)
    k = np.arange(len(draws)) - starts
    pos = (k + np.repeat(rng.random(len(items)), copies)) / np.repeat(copies, copies)
    n_pools = max(1, math.ceil(float(lengths[draws].sum()) / max(1, pool_size)))
    pool = np.minimum((pos * n_pools).astype(np.int64), n_pools - 1)
    # an item's copies in one pool are consecutive k: its round there counts the ones before it
    new_run = np.ones(len(draws), dtype=bool)
    new_run[1:] = (draws[1:] != draws[:-1]) | (pool[1:] != pool[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(draws)), 0))
    rnd = np.arange(len(draws)) - run_start
    order = np.lexsort((rnd, pool))
    cell = pool[order] * (int(rnd.max()) + 1) + rnd[order]
    cuts = np.flatnonzero(np.diff(cell)) + 1
    batches = []
    for group in np.split(draws[order], cuts):
        batches.extend(bucket_batches(lengths, max_size, items=group))
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

    ``paired_langs`` / ``text_langs`` (one language per item) balance that stream by
    ``lang_alpha`` (module doc): each epoch draws a fresh balanced multiset and spreads it
    over pools of about ``pool_batches`` batches (:func:`spread_batches`). Without them,
    the paired data is bucketed once (every utterance once per epoch, batches shuffled),
    and the text stream takes its batches from a fresh shuffle of fixed buckets. The
    text stream is consumed ``text_ratio`` batches per paired batch, so text far larger
    than the paired data is visited at random rather than exhausted.
    """

    def __init__(self, paired_lengths, max_frames: int, *, text_lengths=None, max_tokens: int = 0,
                 text_ratio: float = 0.0, seed: int = 0, rank: int = 0, world_size: int = 1,
                 paired_langs=None, text_langs=None, lang_alpha: float = 1.0, pool_batches: int = 64,
                 shuffle: bool = True, drop_remainder: bool = True):
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
        self.pool_batches = int(pool_batches)
        self.shuffle, self.drop_remainder = shuffle, drop_remainder
        self.paired_balance = None if paired_langs is None else \
            LanguageBalance(paired_langs, self.paired_lengths, lang_alpha)
        self._paired_fixed = None if paired_langs is not None else bucket_batches(self.paired_lengths, max_frames)
        self._text, self.text_balance = None, None
        if self.text_ratio > 0:
            self.text_lengths = np.asarray(text_lengths, dtype=np.int64)
            if not (self.text_lengths > 0).any():
                raise ValueError("text data has no non-empty sequences")
            if text_langs is not None:
                self.text_balance = LanguageBalance(text_langs, self.text_lengths, lang_alpha)
            else:
                self._text = bucket_batches(self.text_lengths, max_tokens)
        self.epoch, self.start = 0, 0
        self._plan_cache: tuple[int, list[BatchSpec]] | None = None

    def _rng(self, epoch: int, stream: int, sub: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, stream, sub])

    def _shard(self, batches: list) -> list:
        n = len(batches)
        if self.drop_remainder:
            n -= n % self.world_size
        return batches[self.rank:n:self.world_size]

    def _shuffled(self, batches: list, rng: np.random.Generator) -> list:
        return [batches[i] for i in rng.permutation(len(batches))] if self.shuffle else batches

    def _paired_batches(self, epoch: int) -> list[np.ndarray]:
        if self.paired_balance is None:
            batches = self._paired_fixed
        else:  # an epoch draws as many frames as the data holds
            rng = self._rng(epoch, 1)
            items, copies = self.paired_balance.draw(rng, self.paired_balance.total)
            batches = spread_batches(self.paired_lengths, items, copies, self.max_frames,
                                     self.pool_batches * self.max_frames, rng)
        return self._shard(self._shuffled(batches, self._rng(epoch, 0)))

    def _text_batches(self, epoch: int, n_per_rank: int) -> list[np.ndarray]:
        need, out, sub = n_per_rank * self.world_size, [], 0
        while len(out) < need:  # successive shuffles (balanced: draws) until there are enough
            rng = self._rng(epoch, 2, sub)
            if self.text_balance is None:
                out.extend(self._shuffled(self._text, rng))
            else:  # draw about the phones the missing batches hold (padding makes it a few more),
                # and enough for one draw of the largest share's language even when its items are long
                bal = self.text_balance
                size = max((need - len(out)) * self.max_tokens, len(bal.names) * float(bal.mean_size.max()))
                items, copies = bal.draw(rng, size)
                batches = spread_batches(self.text_lengths, items, copies, self.max_tokens,
                                         self.pool_batches * self.max_tokens, rng)
                out.extend(self._shuffled(batches, rng))
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
