"""Block-wise work spread over threads (DIRVNetLib/blocks.py)."""

import threading

import pytest

from DIRVNetLib import blocks


def test_results_come_in_the_order_of_the_blocks_from_several_threads(monkeypatch):
    monkeypatch.setattr(blocks, "threads", lambda: 4)
    seen = set()
    barrier = threading.Barrier(2, timeout=10)  # two blocks must run at once, or this times out

    def work(start):
        seen.add(threading.get_ident())
        if start < 2:
            barrier.wait()
        return start * start

    assert blocks.map_blocks(work, range(10)) == [i * i for i in range(10)]
    assert len(seen) > 1 and threading.get_ident() not in seen


def test_one_block_or_one_thread_runs_in_the_callers_thread(monkeypatch):
    caller = threading.get_ident()
    assert blocks.map_blocks(lambda start: threading.get_ident(), [0]) == [caller]
    monkeypatch.setattr(blocks, "threads", lambda: 1)
    assert blocks.map_blocks(lambda start: threading.get_ident(), range(3)) == [caller] * 3
    assert blocks.map_blocks(lambda start: start, []) == []


def test_an_error_in_a_block_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(blocks, "threads", lambda: 3)

    def work(start):
        if start == 5:
            raise ValueError("block 5")
        return start

    with pytest.raises(ValueError, match="block 5"):
        blocks.map_blocks(work, range(8))


def test_threads_are_the_cores_this_process_may_use_within_bounds():
    assert 1 <= blocks.threads() <= blocks.MAX_THREADS
