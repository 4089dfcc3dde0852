"""Whole-file writes: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffixes, so writers pick the same format);
    on success rename it to ``path``, on error remove it. ``path``'s folder must exist. The file is
    created with mode 0666 less the umask, as any new file."""
    path = Path(path)
    suffix = "".join(path.suffixes) or ".tmp"
    while True:
        tmp = path.parent / f".{path.stem.split('.')[0]}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
