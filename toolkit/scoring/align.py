"""Word alignment by dynamic programming with sclite's costs and tie-breaking.

Costs are sclite's defaults: correct 0, substitution 4, insertion 3, deletion 3.
Ties are broken as sclite's ``net_dp.c`` does for linear networks: at each cell the
diagonal move (correct or substitution) wins when it is no worse than both gaps,
otherwise deletion wins only when strictly cheaper than insertion. The back-trace
starts at the last cell, so e.g. ref ``a b c`` / hyp ``x y`` aligns as ``D S S``.
Comparison is case-insensitive on ASCII letters only, as sclite's is (``Über`` and
``über`` differ in sclite too).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

COST_SUB = 4
COST_INS = 3
COST_DEL = 3

CORRECT, SUB, INS, DEL = "C", "S", "I", "D"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def fold_case(word: str) -> str:
    """sclite's case folding: ASCII letters only."""
    return word.translate(_ASCII_LOWER)


def upper_ascii(word: str) -> str:
    return word.translate(_ASCII_UPPER)


class AlignedPair(NamedTuple):
    op: str            # one of C, S, I, D
    ref: str | None    # None for an insertion
    hyp: str | None    # None for a deletion


def align(ref: Sequence[str], hyp: Sequence[str], case_sensitive: bool = False) -> list[AlignedPair]:
    """Minimum-cost alignment of two word sequences, in order; words keep their spelling."""
    key = (lambda w: w) if case_sensitive else fold_case
    r = [key(w) for w in ref]
    h = [key(w) for w in hyp]
    n, m = len(r), len(h)
    # cost[i][j]: best cost of ref[:i] vs hyp[:j]; back[i][j]: move that reached it
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        cost[0][j], back[0][j] = cost[0][j - 1] + COST_INS, INS
    for i in range(1, n + 1):
        cost[i][0], back[i][0] = cost[i - 1][0] + COST_DEL, DEL
        row, prev, brow, ri = cost[i], cost[i - 1], back[i], r[i - 1]
        for j in range(1, m + 1):
            same = ri == h[j - 1]
            diag = prev[j - 1] + (0 if same else COST_SUB)
            dele = prev[j] + COST_DEL
            ins = row[j - 1] + COST_INS
            if diag <= dele and diag <= ins:
                row[j], brow[j] = diag, (CORRECT if same else SUB)
            elif dele < ins:
                row[j], brow[j] = dele, DEL
            else:
                row[j], brow[j] = ins, INS
    out: list[AlignedPair] = []
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i][j]
        if op == INS:
            j -= 1
            out.append(AlignedPair(INS, None, hyp[j]))
        elif op == DEL:
            i -= 1
            out.append(AlignedPair(DEL, ref[i], None))
        else:
            i -= 1
            j -= 1
            out.append(AlignedPair(op, ref[i], hyp[j]))
    out.reverse()
    return out


def alignment_cost(pairs: Sequence[AlignedPair]) -> int:
    """Total sclite cost of an alignment (for tests and sanity checks)."""
    return sum({CORRECT: 0, SUB: COST_SUB, INS: COST_INS, DEL: COST_DEL}[p.op] for p in pairs)
