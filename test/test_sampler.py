"""Length bucketing, paired/text interleaving, distributed sharding, determinism."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.data.sampler import InterleavedBatchSampler, bucket_batches, interleave_pattern

lengths_st = st.lists(st.integers(0, 120), min_size=1, max_size=80)


def reference_buckets(lengths, max_size):
    """Obvious version: sort (length, index), add items one by one while the padded size fits."""
    order = sorted((l, i) for i, l in enumerate(lengths) if l > 0)
    batches, cur = [], []
    for l, i in order:
        if cur and l * (len(cur) + 1) > max_size:
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + ([cur] if cur else [])


@settings(max_examples=150, deadline=None)
@given(lengths_st, st.integers(1, 400))
def test_bucketing_matches_the_obvious_greedy_reference(lengths, max_size):
    got = [b.tolist() for b in bucket_batches(np.array(lengths), max_size)]
    assert got == reference_buckets(lengths, max_size)


@settings(max_examples=150, deadline=None)
@given(lengths_st, st.integers(1, 400))
def test_bucketing_respects_max_frames_and_covers_every_item_once(lengths, max_size):
    lengths = np.array(lengths)
    batches = bucket_batches(lengths, max_size)
    for b in batches:
        assert lengths[b].max() * len(b) <= max_size or len(b) == 1  # an oversize item stands alone
    flat = np.concatenate(batches) if batches else np.array([], dtype=int)
    assert sorted(flat.tolist()) == [i for i, l in enumerate(lengths) if l > 0]


@pytest.mark.parametrize("n, ratio, n_text", [(10, 0.0, 0), (10, 0.5, 5), (10, 1.0, 10), (10, 2.0, 20),
                                              (10, 1.3, 13), (1, 0.5, 1), (3, 0.5, 2)])
def test_interleave_pattern_has_ratio_text_batches_per_paired_batch(n, ratio, n_text):
    pat = interleave_pattern(n, ratio)
    assert pat.count("paired") == n and pat.count("text") == n_text
    assert pat[0] == "paired"


def make(rank=0, world=1, seed=0, **kw):
    rng = np.random.default_rng(5)
    paired = rng.integers(30, 300, size=60)
    text = rng.integers(5, 100, size=200)
    return InterleavedBatchSampler(paired, 900, text_lengths=text, max_tokens=400, text_ratio=kw.pop("ratio", 1.0),
                                   seed=seed, rank=rank, world_size=world, **kw)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shards_are_disjoint_equal_and_complete_up_to_the_remainder(world):
    full = make().epoch_plan(2)
    shards = [make(r, world).epoch_plan(2) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal number of batches per rank
    for pos in range(len(shards[0])):  # same kind at the same step on every rank
        assert len({s[pos].kind for s in shards}) == 1
    for kind in ("paired", "text"):
        per_rank = [[b.indices for b in s if b.kind == kind] for s in shards]
        got = [b for r in per_rank for b in r]
        assert len(got) == len(set(got))  # disjoint
        everything = {b.indices for b in full if b.kind == kind}
        assert set(got) <= everything
    paired_all = [b.indices for b in full if b.kind == "paired"]
    paired_got = {b.indices for s in shards for b in s if b.kind == "paired"}
    assert len(paired_all) - len(paired_got) == len(paired_all) % world  # only the remainder is left out


def test_paired_utterances_are_covered_exactly_once_per_epoch_without_weights():
    s = make(ratio=0.0)
    items = [i for b in s.epoch_plan(0) for i in b.indices]
    assert sorted(items) == list(range(60))


def test_plan_is_a_function_of_seed_and_epoch():
    assert make(seed=1).epoch_plan(3) == make(seed=1).epoch_plan(3)
    assert make(seed=1).epoch_plan(3) != make(seed=1).epoch_plan(4)
    assert make(seed=1).epoch_plan(3) != make(seed=2).epoch_plan(3)


def test_set_epoch_with_start_resumes_mid_epoch():
    s = make()
    s.set_epoch(1, 5)
    assert list(s) == make().epoch_plan(1)[5:] and len(s) == len(make().epoch_plan(1)) - 5


def test_batch_seeds_differ_between_batches():
    seeds = [b.seed for b in make().epoch_plan(0)]
    assert len(set(seeds)) == len(seeds)


def test_text_ratio_without_text_data_is_an_error():
    with pytest.raises(ValueError, match="text_ratio"):
        InterleavedBatchSampler([10, 20], 100, text_ratio=1.0)
