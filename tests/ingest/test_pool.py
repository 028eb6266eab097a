"""The crash-isolating process pool: ordered results, a task that kills its worker isolated, typed worker state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from medvit.ingest.pixels import letterbox
from medvit.ingest.pool import parallel_map, worker_count, worker_state


@dataclass(frozen=True)
class _Offset:
    add: int


def _crashy(task: int) -> int:
    """Kills its worker process on task 3, like a decoder segfault would."""
    if task == 3:
        os._exit(1)
    return task * 2 + worker_state(_Offset).add


def test_a_task_that_kills_its_worker_is_isolated_not_fatal() -> None:
    results = list(parallel_map(_crashy, list(range(40)), 2, _Offset(1), "test", isolate=lambda task, err: -1))
    assert results == [-1 if t == 3 else t * 2 + 1 for t in range(40)]


def _state_kind(task: int) -> str:
    return type(worker_state(_Offset)).__name__


def test_worker_state_is_installed_in_the_calling_process_with_one_worker() -> None:
    assert list(parallel_map(_state_kind, [0, 1], 1, _Offset(0), "test", isolate=lambda t, e: "")) == ["_Offset"] * 2
    with pytest.raises(RuntimeError, match="no int installed"):
        list(parallel_map(lambda t: worker_state(int), [0], 1, _Offset(0), "test", isolate=lambda t, e: 0))


def test_worker_count_never_exceeds_the_tasks() -> None:
    assert worker_count(4, 2) == 2 and worker_count(1, 10) == 1 and worker_count(3, 0) == 1
    assert 1 <= worker_count(0, 1000) <= (os.cpu_count() or 1)


def _double(task: int) -> int:
    return task * 2


@pytest.mark.timeout(120)
def test_workers_start_after_opencv_ran_multithreaded_in_this_process() -> None:
    # OpenCV's thread pool, once used here, used to deadlock every forked worker in cv2.setNumThreads.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        letterbox(np.random.default_rng(0).random((1, 300, 517), dtype=np.float32), 224)
        assert list(parallel_map(_double, list(range(20)), 2, _Offset(0), "test", isolate=lambda t, e: -1)) == \
            [t * 2 for t in range(20)]
        assert cv2.getNumThreads() == 2  # the caller's OpenCV setting is restored
    finally:
        cv2.setNumThreads(threads)


@dataclass(frozen=True)
class _Marks:
    folder: str


def _mark(task: int) -> int:
    """Leaves a file per task run, so the caller can count how many ran ahead of its reads."""
    open(os.path.join(worker_state(_Marks).folder, str(task)), "w").close()
    return task


@pytest.mark.parametrize("ahead, expected", [(0, 8), (20, 20)])
@pytest.mark.timeout(120)
def test_ahead_sets_how_many_tasks_run_before_the_first_result_is_taken(tmp_path, ahead: int, expected: int) -> None:
    # 2 workers keep 2 x 4 one-task chunks in flight; `ahead` widens that (predict: a batch decodes while one scores).
    results = parallel_map(_mark, list(range(40)), 2, _Marks(str(tmp_path)), "test", isolate=lambda t, e: -1,
                           max_chunk=1, ahead=ahead)
    assert next(results) == 0  # the generator has now submitted its window and read one result, nothing more
    deadline = time.monotonic() + 60
    while len(os.listdir(tmp_path)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # anything beyond the window would have run by now
    assert len(os.listdir(tmp_path)) == expected
    assert [0, *results] == list(range(40))
