"""Capture of what native libraries (ITK, TensorFlow) write to the process's stderr (file descriptor 2),
so it can be reported, filtered or passed on."""

import contextlib
import os
import sys
import tempfile


class Captured:
    """What was written to stderr inside :func:`captured_stderr` (``text``, filled when the block ends)."""

    text = ""


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 to a temporary file for the block; yields a :class:`Captured`.
    Without a real stderr (embedded interpreters) nothing is captured."""
    captured = Captured()
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            captured.text = capture.read().decode("utf-8", "replace")
