"""Run a function over items in worker processes; the first failure ends the run with its message.

Every process pool in the project goes through :func:`imap_processes`, so none can hang:

- a worker's exception reaches the parent as itself (project exceptions are picklable,
  a test checks it); one that cannot be pickled arrives as :class:`WorkerError` with its
  type and message, never as a pool that waits forever;
- a worker that dies (killed, out of memory, a crash in C code) raises
  ``BrokenProcessPool`` in the parent instead of leaving its task pending;
- on the first failure the remaining tasks are cancelled and the workers terminated.

Workers are forked (they inherit the parent's imports and state), so ``fn`` and the items
must be picklable only for the trip through the task queue.
"""
from __future__ import annotations

import functools
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerError(RuntimeError):
    """A worker failed with an exception that cannot travel back to the parent as itself."""


def _call_in_worker(fn: Callable[[T], R], item: T) -> R:
    try:
        return fn(item)
    except Exception as e:
        try:
            pickle.loads(pickle.dumps(e))
        except Exception:
            raise WorkerError(f"{type(e).__name__}: {e}") from None
        raise


def imap_processes(fn: Callable[[T], R], items: Iterable[T], nj: int) -> Iterator[R]:
    """``fn(item)`` for each item in ``nj`` forked processes, results in order (``nj <= 1``: here)."""
    items = list(items)
    if nj <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = ProcessPoolExecutor(min(nj, len(items)), mp_context=multiprocessing.get_context("fork"))
    try:
        yield from pool.map(functools.partial(_call_in_worker, fn), items)
    except GeneratorExit:  # the caller stopped reading (e.g. zip() after the last item): not a failure
        raise
    except BaseException:
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now: the run has failed, what they are doing is lost anyway."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    for proc in workers:
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
