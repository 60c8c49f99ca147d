"""The built-in scorer against the real NIST sclite on random ref/hyp pairs (one sclite call)."""
import random

import pytest

from toolkit.scoring import score
from toolkit.scoring.report import format_dtl, format_sys
from toolkit.scoring.sclite import find_sclite, parse_sys, run_sclite

SCLITE = find_sclite()
pytestmark = pytest.mark.skipif(SCLITE is None, reason="sclite (sctk) not installed")

VOCAB = ["a", "b", "c", "the", "The", "CAT", "cat", "sat", "ü", "Über", "über", "straße", "日本", "語",
         "naïve", "x-ray", "don't", "ok"]


def random_corpus(n: int, seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    refs, hyps = {}, {}
    for i in range(n):
        uttid = f"spk{rng.randrange(12)}-{i:05d}"
        ref = [rng.choice(VOCAB) for _ in range(rng.choice([0, 1, 2, 5, 9, 20]) if i % 50 == 0 else rng.randint(1, 15))]
        kind = rng.random()
        if kind < 0.05:
            hyp = []
        elif kind < 0.15:
            hyp = [rng.choice(VOCAB) for _ in range(rng.randint(0, 12))]
        else:  # an edited copy: a realistic mix of correct words and errors, many ties
            hyp = []
            for w in ref:
                r = rng.random()
                if r < 0.12:
                    continue
                hyp.append(rng.choice(VOCAB) if r < 0.3 else w)
                if rng.random() < 0.08:
                    hyp.append(rng.choice(VOCAB))
        refs[uttid], hyps[uttid] = " ".join(ref), " ".join(hyp)
    return refs, hyps


@pytest.fixture(scope="module")
def corpus():
    refs, hyps = random_corpus(1200, seed=7)
    return refs, hyps, score(refs, hyps, title="hyp.trn"), run_sclite(refs, hyps, title="hyp.trn", sclite=SCLITE)


def test_every_utterance_has_the_same_alignment_as_sclite(corpus):
    _, _, mine, real = corpus
    assert list(real.utts) == list(mine.utts)
    diffs = [u for u in mine.utts
             if [p.op for p in mine.utts[u].alignment] != [p.op for p in real.utts[u].alignment]]
    assert diffs == []


def test_per_utterance_counts_match_sclite(corpus):
    _, _, mine, real = corpus
    assert {u: s.counts for u, s in mine.utts.items()} == {u: s.counts for u, s in real.utts.items()}


def test_sys_table_rows_match_sclite(corpus):
    _, _, mine, real = corpus
    ours, theirs = parse_sys(format_sys(mine)), parse_sys(real.extra["sclite_reports"]["sys"])
    assert set(ours) == set(theirs)
    for name in theirs:
        assert ours[name] == pytest.approx(theirs[name], abs=0.051), name
    assert ours["Sum/Avg"][:2] == (1200, mine.total.wrd)


def test_cer_matches_sclite_on_unicode_text():
    refs, hyps = random_corpus(150, seed=3)
    mine = score(refs, hyps, cer=True)
    real = run_sclite(refs, hyps, cer=True, sclite=SCLITE)
    assert {u: s.counts for u, s in mine.utts.items()} == {u: s.counts for u, s in real.utts.items()}


def test_sys_and_dtl_reports_are_byte_identical_to_sclite(corpus):

    _, _, mine, real = corpus
    assert format_sys(mine) == real.extra["sclite_reports"]["sys"]
    assert format_dtl(mine) == real.extra["sclite_reports"]["dtl"]
