"""sclite-style reports of a ScoreResult: the ``.sys`` table, ``.pra`` alignments, ``.dtl`` details.

Layouts follow sclite 2.10's output closely enough for its readers (and people) to
parse them the same way; column widths grow with long speaker names and big counts.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter

from toolkit.scoring.align import CORRECT, DEL, INS, SUB, fold_case, upper_ascii
from toolkit.scoring.wer import Counts, ScoreResult

SCREEN_WIDTH = 80
PCT_COLS = ("corr", "sub", "dele", "ins", "err")


def _center(text: str, width: int) -> str:
    pad = max(width - len(text), 0)
    return " " * (pad // 2) + text + " " * (pad - pad // 2)


def _pct_block(values: list[str], marks: list[str]) -> str:
    # each field: number right-justified in 5 + a one-char mark ('*', '+' or ' ')
    return " ".join(f"{v:>5}{m}" for v, m in zip(values, marks))


def _speaker_cells(c: Counts) -> tuple[list[str], list[str]]:
    if c.wrd == 0:  # sclite prints counts marked '*' when there is nothing to divide by
        vals = [str(getattr(c, k)) for k in PCT_COLS]
        marks = ["*"] * 5
    else:
        vals = [f"{c.percent(k):.1f}" for k in PCT_COLS]
        marks = [" "] * 5
    return vals + [f"{c.percent('snt_err'):.1f}"], marks + [" "]


def _stat_rows(result: ScoreResult) -> list[tuple[str, list[str], list[str], list[str]]]:
    """Mean / S.D. / Median over speakers; word percentages skip speakers with no words."""
    spk = list(result.speakers.values())
    with_words = [c for c in spk if c.wrd > 0]
    mark = "+" if len(with_words) < len(spk) else " "
    cols = {
        "snt": [c.snt for c in spk], "wrd": [c.wrd for c in spk],
        **{k: [c.percent(k) for c in with_words] for k in PCT_COLS},
        "snt_err": [c.percent("snt_err") for c in spk],
    }
    funcs = (("Mean", statistics.fmean),
             ("S.D.", lambda v: statistics.stdev(v) if len(v) > 1 else 0.0),
             ("Median", statistics.median))
    rows = []
    for name, fn in funcs:
        val = {k: (f"{fn(v):.1f}" if v else "0.0") for k, v in cols.items()}
        rows.append((name, [val["snt"], val["wrd"]],
                     [val[k] for k in PCT_COLS] + [val["snt_err"]], [mark] * 5 + [" "]))
    return rows


def format_sys(result: ScoreResult) -> str:
    """The ``SYSTEM SUMMARY PERCENTAGES by SPEAKER`` table, as sclite's ``-o sum`` writes it."""
    t = result.total
    spk_rows = [(name, [str(c.snt), str(c.wrd)], *_speaker_cells(c)) for name, c in result.speakers.items()]
    sum_row = ("Sum/Avg", [str(t.snt), str(t.wrd)], *_speaker_cells(t)) if t.snt else None
    stat_rows = _stat_rows(result) if result.speakers else []
    all_rows = spk_rows + ([sum_row] if sum_row else []) + stat_rows
    w1 = max([8] + [len(n) + 2 for n, *_ in spk_rows])
    w_snt = max([5] + [len(r[1][0]) for r in all_rows])
    w_wrd = max([5] + [len(r[1][1]) for r in all_rows])
    w2 = w_snt + 1 + w_wrd + 2
    w3 = 41
    inner = w1 + 1 + w2 + 1 + w3

    def line(c1: str, c2: str, c3: str) -> str:
        return f"|{c1}|{c2}|{c3}|"

    def counts(vals: list[str]) -> str:
        return f"{vals[0]:>{w_snt}} {vals[1]:>{w_wrd + 1}} "

    sep = line("-" * w1, "-" * w2, "-" * w3).replace("|", "+")
    sep = "|" + sep[1:-1] + "|"
    rows = [",{}.".format("-" * inner), "|" + _center(result.title, inner) + "|", "|" + "-" * inner + "|",
            line(" SPKR".ljust(w1), " # Snt " + f"{'# Wrd':>{w2 - 8}} ", _pct_block(
                ["Corr", "Sub", "Del", "Ins", "Err", "S.Err"], [" "] * 6)),
            sep]
    for k, (name, cnt, vals, marks) in enumerate(spk_rows):
        if k:
            rows.append(sep)
        rows.append(line(f" {name}".ljust(w1), counts(cnt), _pct_block(vals, marks)))
    rows.append("|" + "=" * inner + "|")
    if sum_row:
        name, cnt, vals, marks = sum_row
        rows.append(line(f" {name}".ljust(w1), counts(cnt), _pct_block(vals, marks)))
        rows.append("|" + "=" * inner + "|")
    for name, cnt, vals, marks in stat_rows:
        rows.append(line(_center(name, w1), counts(cnt), _pct_block(vals, marks)))
    rows.append("`{}'".format("-" * inner))
    indent = " " * max((SCREEN_WIDTH - inner - 2) // 2, 0)
    out = ["", "", "", _center("SYSTEM SUMMARY PERCENTAGES by SPEAKER", SCREEN_WIDTH), ""]
    out += [indent + r for r in rows]
    if any(c.wrd == 0 for c in result.speakers.values()):
        out += ["", "* No Reference words for this/these speaker(s).  Word counts supplied",
                "  rather than percents.",
                "# No Reference words for this/these speaker(s).  NCE not computable.", "+ Speaker(s) with no reference data is ignored"]
    return "\n".join(out) + "\n"


def _display(word: str | None, error: bool) -> str:
    if word is None:
        return ""
    return upper_ascii(word) if error else fold_case(word)


def format_pra(result: ScoreResult) -> str:
    """Per-utterance alignments: errors upper-case, gaps as ``***``, C/S/D/I counts."""
    out = ["", "", "\t\tDUMP OF SYSTEM ALIGNMENT STRUCTURE", "", f"System name:   {result.title}", "",
           "Speakers: "]
    out += [f"{i:5d}:  {s}" for i, s in enumerate(result.speakers)]
    out.append("")
    by_spk: dict[str, list] = {s: [] for s in result.speakers}
    for u in result.utts.values():
        by_spk[u.speaker].append(u)
    for i, (spk, utts) in enumerate(by_spk.items()):
        out.append(f"Speaker sentences {i:3d}:  {spk}   #utts: {len(utts)}")
        for u in utts:
            c = u.counts
            ref, hyp, ev = ["REF: "], ["HYP: "], ["Eval:"]
            for p in u.alignment:
                err = p.op != CORRECT
                r, h = _display(p.ref, err), _display(p.hyp, err)
                w = max(len(r), len(h), 1)
                ref.append((r or "*" * w).ljust(w))
                hyp.append((h or "*" * w).ljust(w))
                ev.append(("" if p.op == CORRECT else p.op).ljust(w))
            out += [f"id: ({u.uttid})", f"Scores: (#C #S #D #I) {c.corr} {c.sub} {c.dele} {c.ins}"]
            if u.alignment:  # sclite prints nothing for an empty ref with an empty hyp
                out += [" ".join(ref) + " ", " ".join(hyp) + " ", " ".join(ev) + " "]
            out.append("")
    return "\n".join(out) + "\n\n"


def _ranked(counter: Counter, title: str) -> list[str]:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0].encode("utf-8")))
    out = [f"{title:<33}Total                 ({len(items)})",
           f"{'':33}With >=  1 occurrences ({len(items)})", ""]
    out += [f"{i:4d}: {n:4d}  ->  {what}" for i, (what, n) in enumerate(items, 1)]
    out += ["     -------", f"{sum(counter.values()):10d}", "", ""]
    return out


def format_dtl(result: ScoreResult) -> str:
    """Sentence/word totals, then confusion pairs, insertions, deletions, substitutions."""
    t = result.total
    unit = "CHARACTER" if result.cer else "WORD"
    pairs, ins, dels, subs, false_rec = Counter(), Counter(), Counter(), Counter(), Counter()
    n_sub_snt = n_del_snt = n_ins_snt = 0
    hyp_words = aligned = 0
    for u in result.utts.values():
        n_sub_snt += u.counts.sub > 0
        n_del_snt += u.counts.dele > 0
        n_ins_snt += u.counts.ins > 0
        hyp_words += u.counts.corr + u.counts.sub + u.counts.ins
        aligned += len(u.alignment)
        for p in u.alignment:
            if p.op == SUB:
                r, h = fold_case(p.ref), fold_case(p.hyp)
                pairs[f"{r} ==> {h}"] += 1
                subs[r] += 1
                false_rec[h] += 1
            elif p.op == INS:
                ins[fold_case(p.hyp)] += 1
            elif p.op == DEL:
                dels[fold_case(p.ref)] += 1

    def pct(n: int, d: int) -> str:
        return f"{100.0 * n / d:5.1f}%" if d else "  n/a "

    out = [f"DETAILED OVERALL REPORT FOR THE SYSTEM: {result.title}", "",
           "SENTENCE RECOGNITION PERFORMANCE", "",
           f" sentences{t.snt:44d}",
           f"{' with errors':<40}{pct(t.snt_err, t.snt):>6}   ({t.snt_err:4d})", "",
           f"{'   with substitions':<40}{pct(n_sub_snt, t.snt):>6}   ({n_sub_snt:4d})",
           f"{'   with deletions':<40}{pct(n_del_snt, t.snt):>6}   ({n_del_snt:4d})",
           f"{'   with insertions':<40}{pct(n_ins_snt, t.snt):>6}   ({n_ins_snt:4d})", "", "",
           f"{unit} RECOGNITION PERFORMANCE", ""]
    acc = f"{100.0 - t.percent('err'):6.1f}%" if t.wrd else "  n/a "
    out += [f"Percent Total Error       = {pct(t.err, t.wrd):>7}   ({t.err:4d})", "",
            f"Percent Correct           = {pct(t.corr, t.wrd):>7}   ({t.corr:4d})", "",
            f"Percent Substitution      = {pct(t.sub, t.wrd):>7}   ({t.sub:4d})",
            f"Percent Deletions         = {pct(t.dele, t.wrd):>7}   ({t.dele:4d})",
            f"Percent Insertions        = {pct(t.ins, t.wrd):>7}   ({t.ins:4d})",
            f"Percent Word Accuracy     = {acc:>7}", "", "",
            f"Ref. words                =           ({t.wrd:4d})",
            f"Hyp. words                =           ({hyp_words:4d})",
            f"Aligned words             =           ({aligned:4d})", ""]
    out += _ranked(pairs, "CONFUSION PAIRS") + [""]
    out += _ranked(ins, "INSERTIONS") + [""]
    out += _ranked(dels, "DELETIONS") + [""]
    out += _ranked(subs, "SUBSTITUTIONS")
    out += ["* NOTE: The 'Substitution' words are those reference words",
            "        for which the recognizer supplied an incorrect word.", "", ""]
    out += _ranked(false_rec, "FALSELY RECOGNIZED")
    out += ["* NOTE: The 'Falsely Recognized' words are those hypothesis words",
            "        which the recognizer incorrectly substituted for a reference word.", ""]
    return "\n".join(out) + "\n"


def summary_line(result: ScoreResult) -> str:
    """One line for logs: ``%WER 12.34 [ 10 / 81, 2 ins, 3 del, 5 sub ]`` (Kaldi style)."""
    t = result.total
    name = "%CER" if result.cer else "%WER"
    wer = t.wer
    shown = "inf" if math.isinf(wer) else f"{wer:.2f}"
    return f"{name} {shown} [ {t.err} / {t.wrd}, {t.ins} ins, {t.dele} del, {t.sub} sub ]"
