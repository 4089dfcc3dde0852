"""Work on blocks of a large array spread over the CPU's cores. numpy releases the GIL inside its
array loops, so threads that each take blocks of a few hundred thousand values run in parallel. Plain
Python: every layer may import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

MAX_THREADS = 8
"""Most threads :func:`map_blocks` uses (more gain little on memory-bound block work)."""

T = TypeVar("T")


def threads() -> int:
    """Threads for block-wise work: the cores this process may run on, at most :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def map_blocks(function: Callable[[int], T], starts: Iterable[int]) -> list[T]:
    """``[function(start) for start in starts]`` with the calls spread over :func:`threads` threads (in
    the caller's thread when there is one block or one thread). Results come in the order of ``starts``,
    so a reduction over them in that order gives the same value whatever the number of threads."""
    starts = list(starts)
    count = min(threads(), len(starts))
    if count <= 1:
        return [function(start) for start in starts]
    with ThreadPoolExecutor(count, thread_name_prefix="dirvnet-blocks") as pool:
        return list(pool.map(function, starts))
