"""Score hypotheses against references: per-utterance, per-speaker and total counts.

Speakers follow sclite's ``-i rm`` convention: the speaker is the utterance id up to
its first ``-`` (the whole id when it has none). Unlike sclite, a reference without a
hypothesis, or a hypothesis without a reference, is an error naming the utterance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from toolkit.scoring.align import CORRECT, DEL, INS, SUB, AlignedPair, align


def speaker_of(uttid: str) -> str:
    """sclite ``-i rm`` speaker: the id up to the first ``-``."""
    return uttid.split("-", 1)[0]


def tokenize(text: str, cer: bool = False) -> list[str]:
    """Words, or for CER every character with spaces dropped (sclite ``-c``)."""
    if cer:
        return [c for c in text if not c.isspace()]
    return text.split()


@dataclass(frozen=True)
class Counts:
    """Sentence and word counts; percentages are relative to reference words."""
    snt: int = 0
    wrd: int = 0       # reference words (C + S + D)
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    snt_err: int = 0   # sentences with at least one error

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.snt, self.wrd, self.corr, self.sub, self.dele, self.ins, self.snt_err)

    def percent(self, name: str) -> float:
        """``corr``/``sub``/``dele``/``ins``/``err`` as % of reference words, ``snt_err`` as %
        of sentences. Raises ZeroDivisionError with no reference words (sclite then
        prints the raw count); use :attr:`wer` for a total that never raises."""
        if name == "snt_err":
            return 100.0 * self.snt_err / self.snt
        return 100.0 * getattr(self, name) / self.wrd

    @property
    def wer(self) -> float:
        """Error rate in percent; with no reference words: 0 if no errors, else inf."""
        if self.wrd == 0:
            return 0.0 if self.err == 0 else float("inf")
        return 100.0 * self.err / self.wrd


@dataclass(frozen=True)
class UttScore:
    uttid: str
    speaker: str
    alignment: tuple[AlignedPair, ...]
    counts: Counts


@dataclass
class ScoreResult:
    """Everything a report needs: utterances in input order, speakers in first-seen order."""
    utts: dict[str, UttScore]
    speakers: dict[str, Counts]
    total: Counts
    cer: bool = False
    title: str = "hyp"
    extra: dict = field(default_factory=dict)   # e.g. where sclite's own reports are

    @property
    def wer(self) -> float:
        return self.total.wer


def counts_of(alignment: Sequence[AlignedPair]) -> Counts:
    c = {CORRECT: 0, SUB: 0, INS: 0, DEL: 0}
    for p in alignment:
        c[p.op] += 1
    errors = c[SUB] + c[INS] + c[DEL]
    return Counts(snt=1, wrd=c[CORRECT] + c[SUB] + c[DEL], corr=c[CORRECT], sub=c[SUB],
                  dele=c[DEL], ins=c[INS], snt_err=int(errors > 0))


def check_same_ids(refs: Mapping[str, str], hyps: Mapping[str, str], ref_name: str = "reference",
                   hyp_name: str = "hypothesis") -> None:
    """Raise ValueError naming the first utterances missing on either side."""
    missing = [u for u in refs if u not in hyps]
    extra = [u for u in hyps if u not in refs]
    problems = []
    if missing:
        problems.append(f"{len(missing)} utterance(s) of {ref_name} have no {hyp_name}: "
                        + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if extra:
        problems.append(f"{len(extra)} utterance(s) of {hyp_name} are not in {ref_name}: "
                        + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
    if problems:
        raise ValueError("; ".join(problems))


def build_result(alignments: Mapping[str, Sequence[AlignedPair]], cer: bool = False,
                 title: str = "hyp") -> ScoreResult:
    """Aggregate per-utterance alignments (in order) into a ScoreResult."""
    utts: dict[str, UttScore] = {}
    speakers: dict[str, Counts] = {}
    total = Counts()
    for uttid, ali in alignments.items():
        spk = speaker_of(uttid)
        c = counts_of(ali)
        utts[uttid] = UttScore(uttid, spk, tuple(ali), c)
        speakers[spk] = speakers.get(spk, Counts()) + c
        total = total + c
    return ScoreResult(utts=utts, speakers=speakers, total=total, cer=cer, title=title)


def score(refs: Mapping[str, str], hyps: Mapping[str, str], cer: bool = False,
          case_sensitive: bool = False, title: str = "hyp") -> ScoreResult:
    """Align every reference with its hypothesis (same ids on both sides, else ValueError).

    ``refs``/``hyps`` map uttid -> text; order of ``refs`` is the report order.
    """
    check_same_ids(refs, hyps)
    if not refs:
        raise ValueError("no utterances to score: an empty test set has no error rate")
    alignments = {u: align(tokenize(refs[u], cer), tokenize(hyps[u], cer), case_sensitive)
                  for u in refs}
    return build_result(alignments, cer=cer, title=title)
