"""Held-out words: how well a model recognises words it never heard in paired speech.

A corpus may name words that occur in no paired training utterance, only in the unpaired
text and the test sets (``synthesize_corpus --heldout-words N`` writes such a list: one
word a line). For a scored decode, :func:`heldout_scores` gives, from the same minimum-cost
alignment the WER uses (sclite's costs, case folded as sclite ``-i rm`` does):

- ``utts``/``words``/``errors``/``wer``: the WER of the utterances whose reference holds a
  held-out word (the whole utterance's errors, so a held-out word that derails its
  neighbours counts);
- ``occurrences``: held-out word tokens in the references; ``hits``: those aligned as
  correct; ``recall`` = hits / occurrences (%);
- ``false_alarms``: held-out word tokens in the hypotheses not aligned to the same word in
  the reference (inserted, or substituted for another word);
- ``per_utt``: ``{uttid: [occurrences, hits, false_alarms]}`` for resampling statistics.

Usage::

    from toolkit.scoring.heldout import read_heldout_words, heldout_scores
    words = read_heldout_words("data/heldout_words.txt")
    s = heldout_scores(read_trn("ref.trn"), read_trn("hyp.trn"), words)   # dict as above
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from toolkit.scoring.align import CORRECT, align, fold_case
from toolkit.scoring.wer import check_same_ids, counts_of, tokenize
from toolkit.utils.fileio import InputError


def read_heldout_words(path: str | os.PathLike) -> frozenset[str]:
    """One word a line (blank lines ignored), case folded; an empty list is an error."""
    words = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) > 1:
                raise InputError(path, f"one word a line, got {line.strip()!r}", lineno)
            if fields:
                words.add(fold_case(fields[0]))
    if not words:
        raise InputError(path, "no held-out words in the list")
    return frozenset(words)


def heldout_scores(refs: Mapping[str, str], hyps: Mapping[str, str], heldout: Iterable[str]) -> dict:
    """Held-out word statistics of one decode (see the module doc); ids must match."""
    check_same_ids(refs, hyps)
    heldout = frozenset(fold_case(w) for w in heldout)
    utts = words = errors = occ = hits = fas = 0
    per_utt = {}
    for utt in sorted(refs):
        pairs = align(tokenize(refs[utt]), tokenize(hyps[utt]))
        u_occ = sum(p.ref is not None and fold_case(p.ref) in heldout for p in pairs)
        u_hits = sum(p.op == CORRECT and fold_case(p.ref) in heldout for p in pairs)
        u_fas = sum(p.hyp is not None and p.op != CORRECT and fold_case(p.hyp) in heldout for p in pairs)
        per_utt[utt] = [u_occ, u_hits, u_fas]
        occ, hits, fas = occ + u_occ, hits + u_hits, fas + u_fas
        if u_occ:
            c = counts_of(pairs)
            utts, words, errors = utts + 1, words + c.wrd, errors + c.err
    return {"utts": utts, "words": words, "errors": errors, "wer": 100.0 * errors / words if words else 0.0,
            "occurrences": occ, "hits": hits, "false_alarms": fas,
            "recall": 100.0 * hits / occ if occ else 0.0, "per_utt": per_utt}
