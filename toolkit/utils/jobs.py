"""Splitting a list of utterances between ``JOB=1:nj`` jobs (run.pl, slurm.pl)."""
from __future__ import annotations


def job_slice(items: list, nj: int, job: int) -> list:
    """The ``job``-th (1-based) of ``nj`` contiguous, near-equal slices.

    Feature dumping and decoding both use it, so job ``j`` of either reads the same
    utterances; :func:`toolkit.data.split.split_contiguous` (Kaldi's split_data.sh, the
    first parts one item longer) cuts elsewhere and is kept for data dirs only.
    """
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} not in 1..{nj}")
    n = len(items)
    return items[(job - 1) * n // nj: job * n // nj]
