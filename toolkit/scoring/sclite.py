"""Run NIST's real ``sclite`` and read its reports back into a ScoreResult.

sclite is called once on all utterances (``-i rm -o sum pra dtl -e utf-8``, plus ``-c``
for CER); per-utterance alignments come from its ``.pra`` and are checked against its
``.sys`` totals, so both scorers return the same kind of object.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Mapping

from toolkit.scoring.align import CORRECT, DEL, INS, SUB, AlignedPair, fold_case
from toolkit.scoring.wer import ScoreResult, build_result, check_same_ids
from toolkit.scoring.trn import write_trn
from toolkit.utils.fileio import atomic_write

FALLBACK_PATHS = ("/usr/lib/sctk/bin/sclite", "/usr/local/bin/sclite")


def find_sclite() -> str | None:
    """Path of a real sclite: on PATH, else the Debian sctk location; None if absent."""
    for cand in (shutil.which("sclite"), *FALLBACK_PATHS):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _is_gap(token: str) -> bool:
    return bool(token) and set(token) == {"*"}


def parse_pra(text: str) -> dict[str, list[AlignedPair]]:
    """Alignments per utterance from sclite's ``.pra``; each is checked against its Scores line."""
    out: dict[str, list[AlignedPair]] = {}
    uttid, scores, ref = None, None, None
    for line in text.splitlines():
        if line.startswith("id: ("):
            uttid = line[len("id: ("):line.rindex(")")]
        elif line.startswith("Scores: (#C #S #D #I)"):
            scores = tuple(int(x) for x in line.split(")")[1].split())
            if scores == (0, 0, 0, 0):  # empty ref and hyp: sclite prints no REF/HYP lines
                out[uttid] = []
        elif line.startswith("REF:"):
            ref = line[4:].split()
        elif line.startswith("HYP:"):
            hyp = line[4:].split()
            if uttid is None or ref is None or len(ref) != len(hyp):
                raise ValueError(f"sclite .pra: cannot read alignment of {uttid!r}")
            pairs = []
            for r, h in zip(ref, hyp):
                if _is_gap(r):
                    pairs.append(AlignedPair(INS, None, h))
                elif _is_gap(h):
                    pairs.append(AlignedPair(DEL, r, None))
                else:
                    pairs.append(AlignedPair(CORRECT if fold_case(r) == fold_case(h) else SUB, r, h))
            got = tuple(sum(p.op == op for p in pairs) for op in (CORRECT, SUB, DEL, INS))
            if scores is not None and got != scores:
                raise ValueError(f"sclite .pra: alignment of {uttid} reads as C/S/D/I {got}, "
                                 f"Scores line says {scores}")
            out[uttid] = pairs
            uttid, scores, ref = None, None, None
    return out


_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_sys(text: str) -> dict[str, tuple[float, ...]]:
    """Rows of sclite's ``.sys`` table: name -> (snt, wrd, corr, sub, del, ins, err, s.err).

    Speakers with no reference words carry counts (marked ``*``) instead of percentages.
    """
    rows: dict[str, tuple[float, ...]] = {}
    for line in text.splitlines():
        cells = line.strip().split("|")
        if len(cells) != 5 or not cells[1].strip() or set(cells[1].strip()) <= {"-", "=", "+"}:
            continue
        name = cells[1].strip()
        nums = _NUM.findall(cells[2]) + _NUM.findall(cells[3])
        if name == "SPKR" or len(nums) != 8:
            continue
        rows[name] = tuple(float(x) for x in nums)
    return rows


def run_sclite(refs: Mapping[str, str], hyps: Mapping[str, str], cer: bool = False,
               out_dir: str | os.PathLike | None = None, title: str = "hyp",
               sclite: str | None = None) -> ScoreResult:
    """Score with the real sclite; its ``result.{sys,pra,dtl}`` land in ``out_dir`` if given."""
    check_same_ids(refs, hyps)
    sclite = sclite or find_sclite()
    if sclite is None:
        raise FileNotFoundError("sclite not found on PATH nor in " + ", ".join(FALLBACK_PATHS))
    with tempfile.TemporaryDirectory(prefix="sclite.") as tmp:
        # Both files in the same order, so sclite's speaker/utterance order is ours.
        write_trn(os.path.join(tmp, "ref.trn"), ((u, refs[u]) for u in refs))
        write_trn(os.path.join(tmp, title), ((u, hyps[u]) for u in refs))
        cmd = [sclite, "-r", "ref.trn", "trn", "-h", title, "trn", "-i", "rm", "-e", "utf-8",
               "-o", "sum", "pra", "dtl", "-O", ".", "-n", "result", "-f", "0"] + (["-c"] if cer else [])
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        paths = {ext: os.path.join(tmp, f"result.{ext}") for ext in ("sys", "pra", "dtl")}
        if proc.returncode != 0 or not all(os.path.exists(p) for p in paths.values()):
            raise RuntimeError(f"sclite failed ({' '.join(cmd)}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        texts = {ext: open(p, encoding="utf-8", errors="replace").read() for ext, p in paths.items()}
    alignments = parse_pra(texts["pra"])
    check_same_ids(refs, alignments, "reference", "sclite .pra")
    result = build_result({u: alignments[u] for u in refs}, cer=cer, title=title)
    _check_totals(result, parse_sys(texts["sys"]))
    result.extra["sclite_reports"] = texts
    if out_dir is not None:
        for ext, name in (("pra", "result.pra"), ("dtl", "result.dtl"), ("sys", "result.txt")):
            with atomic_write(os.path.join(out_dir, name)) as f:
                f.write(texts[ext])
    return result


def _check_totals(result: ScoreResult, rows: dict[str, tuple[float, ...]]) -> None:
    """The .pra-derived counts must reproduce sclite's own Sum/Avg row."""
    t = result.total
    if "Sum/Avg" not in rows:
        raise ValueError("sclite .sys: no Sum/Avg row")
    snt, wrd, *pct = rows["Sum/Avg"]
    if (int(snt), int(wrd)) != (t.snt, t.wrd):
        raise ValueError(f"sclite .sys Sum/Avg has {int(snt)} sentences / {int(wrd)} words, "
                         f".pra gives {t.snt} / {t.wrd}")
    if t.wrd:
        mine = [t.percent(k) for k in ("corr", "sub", "dele", "ins", "err")] + [t.percent("snt_err")]
        if any(abs(a - b) > 0.051 for a, b in zip(mine, pct)):
            raise ValueError(f"sclite .sys Sum/Avg {pct} disagrees with its .pra counts {mine}")
