"""Capture of what native libraries (ITK, TensorFlow) write to the process's stderr (file descriptor 2),
so it can be reported, filtered or passed on."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator


class Captured:
    """What was written to stderr inside :func:`captured_stderr` (``text``, filled when the block ends)."""

    text = ""


_LOCK = threading.RLock()  # descriptor 2 is the process's: one capture at a time (nested ones are fine)


@contextlib.contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 (where native code writes, whatever ``sys.stderr`` is) to a temporary
    file for the block; yields a :class:`Captured`. Without a descriptor 2 nothing is captured. Captures
    in other threads wait for this one to end."""
    with _LOCK:
        yield from _capture()


def _capture() -> Iterator[Captured]:
    captured = Captured()
    fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield captured
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield captured
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            captured.text = capture.read().decode("utf-8", "replace")
