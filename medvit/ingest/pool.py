"""The crash-isolating, ordered process pool the ingest decodes with.

Each worker process gets one typed state object (a source's frozen dataclass:
key, options, output folder) from the pool's initializer; decode functions read
it back with :func:`worker_state`. One process runs the tasks in order in the
calling process instead when there is a single worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

import cv2
from tqdm import tqdm

IN_FLIGHT_PER_WORKER = 4  # chunks queued per worker: keeps every core busy, memory bounded

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_state: object = None  # this process's worker state, set by init_worker


def tune_malloc() -> None:
    """Let glibc reuse freed image-sized buffers instead of a fresh mmap per array.

    Every decoded frame and its float copies are a few MiB, above glibc's default
    mmap threshold, so each one was mapped, page-faulted in 4 KiB at a time and
    unmapped again: that was ~40% of ingest CPU time. Raising the thresholds
    (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD) keeps them in the heap; peak
    memory is unchanged. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: heap-allocate blocks up to 32 MiB
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep up to 64 MiB of free heap top
    except (OSError, AttributeError):
        pass


def init_worker(state: object) -> None:
    """Per-process settings, once per worker: malloc tuning, one OpenCV thread, the worker state."""
    global _state
    tune_malloc()
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only compete
    _state = state


def worker_state(kind: type[S]) -> S:
    """The state :func:`init_worker` installed in this process, checked to be a ``kind``.

    Raises:
        RuntimeError: called outside a pool task, or with another source's state installed.
    """
    if not isinstance(_state, kind):
        raise RuntimeError(f"no {kind.__name__} installed in this process: run the task through parallel_map")
    return _state


def worker_count(requested: int, n_tasks: int) -> int:
    """``requested`` processes (0: one per usable core), at least 1 and at most ``n_tasks``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, n_tasks))


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [fn(task) for task in chunk]


def parallel_map(fn: Callable[[T], R], tasks: Sequence[T], workers: int, state: object, desc: str,
                 isolate: Callable[[T, BaseException], R], max_chunk: int = 8,
                 split: Callable[[T], list[T]] | None = None,
                 files: Callable[[T], int] | None = None, ahead: int = 0) -> Iterator[R]:
    """Ordered map over worker processes with a bounded number of chunks in flight.

    Ordered results make the cache byte-identical between runs; the bounded window
    keeps memory flat however many files there are; small chunks amortise the
    inter-process round trip. A chunk that kills its worker (a decoder segfault) is
    re-run one task at a time in a fresh pool (each task first cut into
    ``split(task)`` when given, so a block of files is re-run file by file); a task
    that kills that one too gets ``isolate(task, error)`` as its result.

    Args:
        fn: a module-level (picklable) function run on each task in a worker.
        tasks: the tasks, in output order.
        workers: processes; <= 1 runs in this process.
        state: the worker state handed to :func:`init_worker` in each process.
        desc: the progress bar's label.
        isolate: the result standing in for a task that killed its worker.
        max_chunk: most tasks sent to a worker at once.
        split: cuts a task into smaller ones for the one-at-a-time re-run.
        files: the number of input files a task stands for (the progress bar).
        ahead: at least this many tasks in flight (a consumer that takes results in batches,
            like ``medvit predict``'s forward passes, wants a batch or more decoded ahead).
    """
    count = files or (lambda task: 1)
    bar = tqdm(total=sum(count(t) for t in tasks), desc=desc, unit="file", mininterval=0.5, dynamic_ncols=True)
    # One OpenCV thread here too, before any fork: a child forked while OpenCV's thread pool has
    # threads blocked on its condition variable hangs forever in its own cv2.setNumThreads(1).
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        if workers <= 1:
            init_worker(state)
            for task in tasks:
                yield fn(task)
                bar.update(count(task))
            return
        yield from _pooled(fn, tasks, workers, state, isolate, max_chunk, split, count, bar, ahead)
    finally:
        cv2.setNumThreads(threads)  # this is the caller's process: leave OpenCV as it was
        bar.close()


def _pooled(fn: Callable[[T], R], tasks: Sequence[T], workers: int, state: object,
            isolate: Callable[[T, BaseException], R], max_chunk: int, split: Callable[[T], list[T]] | None,
            count: Callable[[T], int], bar: Any, ahead: int = 0) -> Iterator[R]:
    """:func:`parallel_map` with more than one worker process."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    size = max(1, min(max_chunk, len(tasks) // (workers * 16)))
    chunks = [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]
    run = partial(_run_chunk, fn)
    pending: deque[tuple[list[T], Future]] = deque()
    window = max(workers * IN_FLIGHT_PER_WORKER, -(-ahead // size))  # chunks in flight
    it = iter(chunks)

    def new_pool(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(n, mp_context=ctx, initializer=init_worker, initargs=(state,))

    pool = new_pool(workers)
    try:
        while True:
            while len(pending) < window:
                chunk = next(it, None)
                if chunk is None:
                    break
                pending.append((chunk, pool.submit(run, chunk)))
            if not pending:
                break
            chunk, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                retry = [t for c in (chunk, *(c for c, _ in pending)) for t in c]
                retry = [piece for t in retry for piece in split(t)] if split else retry
                pending.clear()
                for task in retry:  # one at a time in a fresh process, so the culprit is known
                    single = new_pool(1)
                    try:
                        yield single.submit(fn, task).result()
                    except BrokenProcessPool as err:
                        yield isolate(task, err)
                    finally:
                        single.shutdown(wait=True)
                    bar.update(count(task))
                pool = new_pool(workers)
                continue
            yield from results
            bar.update(sum(count(t) for t in chunk))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
