"""RESULTS.md of an experiment (ESPnet style), from every scored decode in it.

:func:`make_results` scans ``exp/<tag>/decode_<mode>_<set>/score_{wer,cer}/result.txt`` (sclite .sys tables,
from either scorer) and writes one Markdown table per metric and decode mode. When a
decode dir holds ``utt2lang`` (or ``--utt2lang`` is given), a per-language + pooled
table is added, computed from the utterance alignments in ``result.pra``.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
from pathlib import Path

from toolkit.scoring.heldout import heldout_scores, read_heldout_words
from toolkit.scoring.sclite import parse_pra, parse_sys
from toolkit.scoring.trn import read_trn
from toolkit.scoring.wer import Counts, build_result
from toolkit.utils.fileio import InputError
from toolkit.utils.kaldi_map import read_kaldi_map
from toolkit.utils.version import code_version

HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|"


def split_decode_dir(name: str) -> tuple[str, str] | None:
    """``decode_streaming_test_clean`` -> ``('streaming', 'test_clean')``; None if not a decode dir."""
    parts = name.split("_", 2)
    if len(parts) != 3 or parts[0] != "decode" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def sum_row(result_txt: Path) -> tuple[float, ...]:
    rows = parse_sys(result_txt.read_text(encoding="utf-8", errors="replace"))
    if "Sum/Avg" not in rows:
        raise InputError(result_txt, "no Sum/Avg row (not a sclite .sys table?)")
    return rows["Sum/Avg"]


def md_row(name: str, row: tuple[float, ...]) -> str:
    snt, wrd, *pct = row
    return f"|{name}|{int(snt)}|{int(wrd)}|" + "|".join(f"{p:.1f}" for p in pct) + "|"


def counts_row(name: str, c: Counts) -> str:
    if c.wrd == 0:
        return f"|{name}|{c.snt}|0|-|-|-|-|-|-|"
    pct = [c.percent(k) for k in ("corr", "sub", "dele", "ins", "err")] + [c.percent("snt_err")]
    return md_row(name, (c.snt, c.wrd, *pct))


def language_table(score_dir: Path, utt2lang: dict[str, str], units: dict[str, str] | None = None,
                   unit: str | None = None) -> list[str]:
    """Per-language and pooled rows from the alignments in ``result.pra``.

    With ``units`` (language -> "word" or "char", a decode dir's ``lang2unit``) only the
    languages scored in ``unit`` get rows (WER for languages with spaces, CER for the
    others), and the pooled row covers those languages alone."""
    pra = score_dir / "result.pra"
    if not pra.exists():
        raise InputError(pra, "needed for the per-language table but missing")
    alignments = parse_pra(pra.read_text(encoding="utf-8", errors="replace"))
    missing = [u for u in alignments if u not in utt2lang]
    if missing:
        raise InputError(pra, f"{len(missing)} utterance(s) have no language in utt2lang, e.g. {missing[0]}")
    if units is not None:
        unknown = sorted({utt2lang[u] for u in alignments} - set(units))
        if unknown:
            raise InputError(score_dir.parent / "lang2unit", f"no scoring unit for language(s) {', '.join(unknown)}")
        alignments = {u: a for u, a in alignments.items() if units[utt2lang[u]] == unit}
        if not alignments:
            return []
    result = build_result(alignments)
    per_lang: dict[str, Counts] = {}
    for u, s in result.utts.items():
        per_lang[utt2lang[u]] = per_lang.get(utt2lang[u], Counts()) + s.counts
    rows = [counts_row(lang, per_lang[lang]) for lang in sorted(per_lang)]
    return rows + [counts_row("pooled", result.total)]


def decode_info_table(mode: str, decodes: list[tuple[str, Path]]) -> list[str]:
    """RTF (and streaming latency) from each decode dir's rtf.txt, when present."""
    rows = []
    for dataset, d in decodes:
        if not (d / "rtf.txt").exists():
            continue
        info = dict(line.split(" ", 1) for line in (d / "rtf.txt").read_text(encoding="utf-8").splitlines()
                    if " " in line)
        rows.append(f"|{dataset}|{info.get('method', '-')}|{info.get('rtf', '-')}|"
                    f"{info.get('algorithmic_latency_ms', '-')}|{info.get('chunk_compute_ms_median', '-')}|"
                    f"{info.get('chunk_compute_ms_p95', '-')}|")
    if not rows:
        return []
    return [f"Decoding speed ({mode}; RTF = compute time / audio duration):", "",
            "|dataset|method|RTF|latency ms|chunk compute median ms|chunk compute p95 ms|",
            "|---|---|---|---|---|---|", *rows, ""]


def heldout_table(mode: str, decodes: list[tuple[str, Path]], heldout: frozenset[str]) -> list[str]:
    """Held-out word recognition per decode set (toolkit.scoring.heldout), from ref/hyp.trn."""
    rows = []
    for dataset, d in decodes:
        if not (d / "hyp.trn").exists():
            continue
        s = heldout_scores(read_trn(d / "ref.trn"), read_trn(d / "hyp.trn"), heldout)
        rows.append(f"|{dataset}|{s['utts']}|{s['words']}|{s['wer']:.1f}|{s['occurrences']}|{s['hits']}|"
                    f"{s['recall']:.1f}|{s['false_alarms']}|")
    if not rows:
        return []
    return [f"### Held-out words: {mode} ({len(heldout)} words spoken in no paired training utterance)", "",
            "|dataset|Snt with one|Wrd there|WER there|occurrences|hits|recall %|false alarms|",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def environment(exp: Path) -> list[str]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    config = exp / "config.yaml"
    code = code_version()
    return ["## Environments",
            f"- date: `{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}`",
            f"- toolkit version: `{code['toolkit']}`",
            f"- git hash: `{code['git']}`",
            f"- python version: `{platform.python_version()}`",
            f"- torch version: `{version('torch')}`",
            f"- platform: `{platform.platform()}`",
            f"- model config: `{config if config.exists() else 'missing: ' + str(config)}`", ""]


def make_results(exp: Path, utt2lang_path: str | None = None, heldout_path: str | None = None) -> str:
    """The RESULTS.md text; ``heldout_path``: a held-out word list (adds their tables)."""
    decodes = sorted((split_decode_dir(d.name), d) for d in exp.iterdir()
                     if d.is_dir() and split_decode_dir(d.name))
    out = ["# RESULTS", ""] + environment(exp) + [f"## {exp.name}", ""]
    found = False
    for metric in ("wer", "cer"):
        modes = sorted({m for (m, _), d in decodes if (d / f"score_{metric}" / "result.txt").exists()})
        for mode in modes:
            out += [f"### {metric.upper()}: {mode}", "", HEADER]
            lang_rows = []
            for (m, dataset), d in decodes:
                res = d / f"score_{metric}" / "result.txt"
                if m != mode or not res.exists():
                    continue
                found = True
                out.append(md_row(dataset, sum_row(res)))
                lang_file = utt2lang_path or (d / "utt2lang" if (d / "utt2lang").exists() else None)
                if lang_file:
                    units = read_kaldi_map(d / "lang2unit") if (d / "lang2unit").exists() else None
                    rows = language_table(res.parent, read_kaldi_map(lang_file), units,
                                          {"wer": "word", "cer": "char"}[metric])
                    if rows:
                        lang_rows.append((dataset, rows))
            out.append("")
            if metric == "wer":  # speed is per decode, not per metric: show it once
                out += decode_info_table(mode, [(ds, d) for (m, ds), d in decodes if m == mode])
                if heldout_path:
                    out += heldout_table(mode, [(ds, d) for (m, ds), d in decodes if m == mode],
                                         read_heldout_words(heldout_path))
            for dataset, rows in lang_rows:
                out += [f"#### {metric.upper()}: {mode}, {dataset}, per language", "",
                        HEADER.replace("|dataset|", "|language|"), *rows, ""]
    if not found:
        raise InputError(exp, "no decode_<mode>_<set>/score_wer/result.txt or score_cer/result.txt found")
    return "\n".join(out)
