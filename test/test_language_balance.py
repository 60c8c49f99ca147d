"""Language-balanced sampling: shares of hours (phones for text), batch composition, determinism.

The rule (toolkit/data/sampler.py): language l gets p_l ∝ (S_l / S) ** alpha of the drawn
size S (feature frames; phones for text); its k_l draws cover its items evenly; the draws
are spread over pools and each pool is bucketed round by round, so no batch holds an item
twice.
"""
import logging
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.data.sampler import (InterleavedBatchSampler, LanguageBalance, bucket_batches, language_shares,
                                  spread_batches)
from toolkit.train.launch import load_languages
from toolkit.utils.config import ConfigError
from toolkit.utils.fileio import InputError


def sw_en(seed=0):
    """10 Swahili + 1000 English utterances of 2-16 s (frames), the case of issue 21."""
    lengths = np.random.default_rng(seed).integers(200, 1600, size=1010)
    return lengths, ["sw"] * 10 + ["en"] * 1000


def three_languages():
    """Languages unlike in both utterance count and utterance length: counts and hours disagree."""
    rng = np.random.default_rng(1)
    lengths = np.concatenate([rng.integers(100, 500, 1200), rng.integers(1000, 2000, 150), rng.integers(400, 1200, 40)])
    return lengths, ["de"] * 1200 + ["fr"] * 150 + ["yo"] * 40


def drawn_share(lengths, langs, batches, name):
    langs = np.asarray(langs)
    idx = np.array([i for b in batches for i in b], dtype=np.int64)
    return lengths[idx][langs[idx] == name].sum() / lengths[idx].sum()


def hours_share_target(lengths, langs, alpha):
    names = sorted(set(langs))
    mass = np.array([lengths[np.asarray(langs) == n].sum() for n in names], dtype=float)
    p = (mass / mass.sum()) ** alpha
    return dict(zip(names, p / p.sum()))


def paired_plan(lengths, langs, alpha, epoch=0, seed=0, **kw):
    s = InterleavedBatchSampler(lengths, 4000, paired_langs=langs, lang_alpha=alpha, seed=seed, **kw)
    return [b.indices for b in s.epoch_plan(epoch)]


def test_language_shares_follow_the_size_share_to_the_power_alpha():
    mass = np.array([900.0, 100.0, 0.0])
    assert language_shares(mass, 1.0) == pytest.approx([0.9, 0.1, 0.0])
    assert language_shares(mass, 0.0) == pytest.approx([0.5, 0.5, 0.0])  # an empty language gets nothing
    assert language_shares(mass, 0.5) == pytest.approx([0.75, 0.25, 0.0])  # sqrt(.9) : sqrt(.1) = 3 : 1
    with pytest.raises(ValueError, match="alpha"):
        language_shares(mass, -0.5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 120), st.integers(1, 12)), min_size=1, max_size=40),
       st.integers(1, 400), st.integers(1, 2000), st.integers(0, 2 ** 31))
def test_spreading_batches_every_draw_once_within_the_size_and_never_an_item_twice(drawn, max_size, pool, seed):
    lengths = np.array([l for l, _ in drawn])
    copies = np.array([c for _, c in drawn])
    batches = spread_batches(lengths, np.arange(len(drawn)), copies, max_size, pool, np.random.default_rng(seed))
    assert Counter(int(i) for b in batches for i in b) == {i: c for i, c in enumerate(copies.tolist())}
    for b in batches:
        assert len(set(b.tolist())) == len(b)
        assert lengths[b].max() * len(b) <= max_size or len(b) == 1  # an oversize item stands alone


def test_no_batch_holds_an_utterance_twice_with_10_sw_and_1000_en_at_alpha_0():
    # Each sw utterance is drawn about 50 times an epoch. The bound is 1 copy per batch: a
    # batch is cut from one round of one pool, and a round holds each utterance once.
    lengths, langs = sw_en()
    plan = paired_plan(lengths, langs, 0.0)
    copies = Counter(i for b in plan for i in b)
    assert min(copies[i] for i in range(10)) >= 45  # the case is real: heavy repetition
    assert max(max(Counter(b).values()) for b in plan) == 1
    # and the cost of the spreading is small: at most 20% more batches than stacking the
    # same draws by length (which puts up to 13 copies of an utterance in a batch)
    stacked = bucket_batches(lengths, 4000, items=np.sort(np.array([i for b in plan for i in b])))
    assert len(plan) <= 1.2 * len(stacked)


def test_spreading_keeps_batches_nearly_as_full_as_sorting_everything():
    rng = np.random.default_rng(2)
    lengths = rng.integers(300, 2000, size=20000)
    langs = rng.choice(["a", "b", "c", "d"], size=20000, p=[0.7, 0.2, 0.08, 0.02])
    plan = paired_plan(lengths, langs, 0.3)
    padded = sum(lengths[list(b)].max() * len(b) for b in plan)
    real = sum(lengths[list(b)].sum() for b in plan)
    stacked = bucket_batches(lengths, 4000, items=np.sort(np.array([i for b in plan for i in b])))
    assert real / padded > 0.95 and len(plan) <= 1.05 * len(stacked)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_share_of_audio_duration_per_language_matches_the_target(alpha):
    lengths, langs = three_languages()
    target = hours_share_target(lengths, langs, alpha)
    for epoch in range(3):
        plan = paired_plan(lengths, langs, alpha, epoch)
        for name, p in target.items():
            assert drawn_share(lengths, langs, plan, name) == pytest.approx(p, abs=0.01), (name, epoch)
        # an epoch draws as many hours as the data holds
        assert sum(lengths[list(b)].sum() for b in plan) == pytest.approx(lengths.sum(), rel=0.02)


def test_alpha_one_draws_every_utterance_once_per_epoch():
    lengths, langs = three_languages()
    plan = paired_plan(lengths, langs, 1.0)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))


def test_text_stream_shares_follow_the_target_in_phones():
    rng = np.random.default_rng(3)
    text = np.concatenate([rng.integers(5, 40, 30000), rng.integers(30, 120, 3000), rng.integers(10, 60, 500)])
    text_langs = ["en"] * 30000 + ["sw"] * 3000 + ["yo"] * 500
    text[7] = 0  # empty sequences are never drawn
    paired, paired_langs = sw_en()
    for alpha in (0.0, 0.5):
        s = InterleavedBatchSampler(paired, 4000, paired_langs=paired_langs, text_lengths=text, max_tokens=600,
                                    text_ratio=2.0, text_langs=text_langs, lang_alpha=alpha)
        target = hours_share_target(text, text_langs, alpha)
        batches = [b.indices for e in range(2) for b in s.epoch_plan(e) if b.kind == "text"]
        assert all(7 not in b for b in batches)
        assert max(max(Counter(b).values()) for b in batches) == 1
        for name, p in target.items():
            assert drawn_share(text, text_langs, batches, name) == pytest.approx(p, abs=0.015), (alpha, name)


def test_text_stream_without_languages_keeps_its_natural_mix():
    rng = np.random.default_rng(3)
    text = np.concatenate([rng.integers(5, 40, 3000), rng.integers(5, 40, 300)])
    text_langs = ["en"] * 3000 + ["sw"] * 300
    paired, paired_langs = sw_en()
    s = InterleavedBatchSampler(paired, 4000, paired_langs=paired_langs, text_lengths=text, max_tokens=600,
                                text_ratio=1.0, lang_alpha=0.0)
    batches = [b.indices for e in range(3) for b in s.epoch_plan(e) if b.kind == "text"]
    assert drawn_share(text, text_langs, batches, "sw") == pytest.approx(text[3000:].sum() / text.sum(), abs=0.03)


def test_same_seed_and_epoch_give_the_same_batches_and_another_epoch_another_order():
    lengths, langs = sw_en()
    text = np.random.default_rng(4).integers(5, 50, 2000)
    text_langs = ["en"] * 1800 + ["sw"] * 200

    def make(seed, start=0, epoch=1):
        s = InterleavedBatchSampler(lengths, 4000, paired_langs=langs, text_lengths=text, max_tokens=500,
                                    text_ratio=0.5, text_langs=text_langs, lang_alpha=0.3, seed=seed)
        s.set_epoch(epoch, start)
        return s
    assert make(1).epoch_plan(1) == make(1).epoch_plan(1)
    assert list(make(1, start=7)) == make(1).epoch_plan(1)[7:]  # resume mid-epoch
    e1, e2 = make(1).epoch_plan(1), make(1).epoch_plan(2)
    assert [b.indices for b in e1] != [b.indices for b in e2]
    assert {b.indices for b in e1} != {b.indices for b in e2}  # new draws, not only a new order
    assert [b.indices for b in make(2).epoch_plan(1)] != [b.indices for b in e1]


@pytest.mark.parametrize("world", [2, 3])
def test_balanced_shards_are_disjoint_and_equal(world):
    lengths, langs = sw_en()
    full = paired_plan(lengths, langs, 0.0, epoch=1)
    shards = [paired_plan(lengths, langs, 0.0, epoch=1, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert [b for r in range(world) for b in full[r:len(full) - len(full) % world:world]] == \
        [b for s in shards for b in s]


def test_language_balance_counts_hours_not_utterances():
    # 100 long fr utterances hold as many frames as 1000 short de ones: alpha 1 keeps that
    # (half the drawn frames each), and alpha 0 gives them the same frames too
    lengths = np.array([100] * 1000 + [1000] * 100)
    bal = LanguageBalance(["de"] * 1000 + ["fr"] * 100, lengths, 0.0)
    assert bal.shares == pytest.approx([0.5, 0.5])
    assert bal.counts(lengths.sum()).tolist() == [1000, 100]


def write_map(path, pairs):
    path.write_text("".join(f"{k} {v}\n" for k, v in pairs))
    return str(path)


def test_config_text_utt2lang_gives_the_text_stream_its_languages(tmp_path, caplog):
    paired = SimpleNamespace(uttids=["p1", "p2"], num_frames=np.array([100, 200]))
    text = SimpleNamespace(uttids=["sw-1", "en-1", "en-2"])
    batching = {"utt2lang": write_map(tmp_path / "utt2lang", [("p1", "en"), ("p2", "sw")]),
                "text_utt2lang": write_map(tmp_path / "text_utt2lang", [("sw-1", "sw"), ("en-1", "en"), ("en-2", "en")]),
                "lang_balance_alpha": 0.3}
    langs = load_languages(batching, paired, text)
    assert langs.paired == ["en", "sw"] and langs.text == ["sw", "en", "en"]
    with caplog.at_level(logging.WARNING):
        assert load_languages(dict(batching, text_utt2lang=None), paired, text).text is None
    assert "not language-balanced" in caplog.text
    with pytest.raises(ConfigError, match="text_utt2lang needs"):
        load_languages(dict(batching, lang_balance_alpha=None), paired, text)
    with pytest.raises(InputError, match="1 of 3 utterances have no language, e.g. 'en-2'"):
        load_languages(dict(batching, text_utt2lang=write_map(tmp_path / "t2", [("sw-1", "sw"), ("en-1", "en")])),
                       paired, text)
