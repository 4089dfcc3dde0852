"""An output folder replaced as a whole: every file of a new set is written into a staging folder beside
it, then the staging folder takes the output folder's place in one step.

Guarantee: after any failure or signal (SIGKILL included) the output folder ``OUT`` holds the whole
previous set or the whole new one, never a mix. Where the operating system can exchange two folders
atomically (Linux ``renameat2(RENAME_EXCHANGE)``) this holds at every instant, for readers too.
Elsewhere the commit is two renames (``OUT`` aside, the new set in); a kill between them leaves
``OUT`` absent and the complete new set in ``.OUT.dirvnet-complete-PID`` beside it, which
:func:`recover` (run at the start of every :class:`OutputSet`) moves into place. Staging folders left by
killed runs are removed by the next run into the same folder.

Since the folder is replaced as a whole, it must be new, empty, or hold only a previous output set
(names given by the caller), and no input may lie inside it: both are refused before anything is
computed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from DIRVNetLib.errors import OutputFolderError

_STAGING = re.compile(r"^\.(?P<name>.+)\.dirvnet-(?P<state>partial|complete|old)-(?P<pid>\d+)-[0-9a-f]+$")


def _staging_name(folder: Path, state: str) -> Path:
    return folder.parent / f".{folder.name}.dirvnet-{state}-{os.getpid()}-{secrets.token_hex(4)}"


def _staged(folder: Path) -> list[tuple[str, int, Path]]:
    """``[(state, pid, path)]`` of the staging folders of ``folder`` lying beside it."""
    found: list[tuple[str, int, Path]] = []
    if not folder.parent.is_dir():
        return found
    for entry in folder.parent.iterdir():
        match = _STAGING.match(entry.name)
        if match and match["name"] == folder.name:
            found.append((match["state"], int(match["pid"]), entry))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def recover(folder: str | os.PathLike[str]) -> str | None:
    """Finish or undo a commit into ``folder`` that a killed run left half-done, and remove the staging
    folders of runs that are no longer alive. Returns what was done, as a sentence (or None)."""
    folder = Path(folder)
    staged = [(state, pid, path) for state, pid, path in _staged(folder) if not _alive(pid)]
    done = None
    if not folder.exists():
        for wanted in ("complete", "old"):  # the new set if it was complete, else the old one back
            candidates = [path for state, _, path in staged if state == wanted]
            if candidates:
                os.rename(candidates[0], folder)
                done = f"restored the {'new' if wanted == 'complete' else 'previous'} output set of a killed run"
                break
    for _, _, path in staged:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    return done


def _exchange_function() -> Callable[..., int] | None:
    """libc's ``renameat2`` where it exists (Linux, glibc >= 2.28), else None."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _exchange_function()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync(path: str | os.PathLike[str], directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory and hasattr(os, "O_DIRECTORY") else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends (main thread only), then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    numbers = [n for n in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if n is not None]
    kept = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in numbers}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


class OutputSet:
    """Stage a set of output files for ``folder`` (files named in ``names``), then :meth:`commit` them.

    ``inputs``: paths the run reads; refused when inside ``folder``. Construction checks everything
    (folder usable, writable, no foreign entries) and creates the staging folder, so call it before
    computing. Use as a context manager: leaving it without :meth:`commit` discards the staging folder.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        names: Iterable[str],
        inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
    ) -> None:
        self.folder = Path(os.path.abspath(folder))
        if self.folder.is_symlink():
            self.folder = self.folder.resolve()
        self.names = frozenset(names)
        self.recovered = recover(self.folder)
        self._check(inputs)
        self.staging: Path | None = _staging_name(self.folder, "partial")
        try:
            os.mkdir(self.staging, 0o777)  # the umask applies, as for any new folder
            if self.folder.is_dir():
                os.chmod(self.staging, stat.S_IMODE(self.folder.stat().st_mode))
        except OSError as e:
            self.discard()
            raise OutputFolderError(
                f"cannot write beside output folder {self.folder} ({e.strerror}): the set is staged in a "
                f"folder next to it, so {self.folder.parent} must be writable"
            ) from e
        except BaseException:  # a signal turned into KeyboardInterrupt before the caller's with-block
            self.discard()
            raise

    def _check(self, inputs: Iterable[tuple[str, str | os.PathLike[str] | None]]) -> None:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise OutputFolderError(f"output folder {folder} is a file; give a folder (new, or of an earlier run)")
        if not folder.parent.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
        for role, given in inputs:
            path = Path(os.path.abspath(given)).resolve() if given is not None else None
            if path is not None and (path == folder or folder in path.parents):
                raise OutputFolderError(
                    f"the {role} image {path} lies inside the output folder {folder}, which is replaced as a "
                    "whole: move the image or choose another output folder"
                )
        if not folder.is_dir():
            return
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputFolderError(f"output folder {folder} is not writable")
        foreign = sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.name not in self.names or entry.is_symlink() or not entry.is_file()
        )
        if foreign:
            raise OutputFolderError(
                f"output folder {folder} holds {', '.join(repr(n) for n in foreign[:3])}"
                f"{' and more' if len(foreign) > 3 else ''}, not part of an output set; the folder is replaced "
                "as a whole, so choose a new or empty folder (or one an earlier run wrote)"
            )

    def path(self, name: str) -> Path:
        """Where to write output ``name`` (inside the staging folder)."""
        if name not in self.names:
            raise ValueError(f"{name} is not one of the output set's names {sorted(self.names)}")
        return self._staging() / name

    def _staging(self) -> Path:
        if self.staging is None:
            raise ValueError(f"the output set of {self.folder} was already committed or discarded")
        return self.staging

    def commit(self) -> None:
        """Make the staged files the output folder's content in one step (the previous set is removed)."""
        staging = self._staging()
        for entry in staging.iterdir():
            _fsync(entry)
        _fsync(staging, directory=True)
        with _deferred_interrupts():
            self._swap()

    def _swap(self) -> None:
        complete = _staging_name(self.folder, "complete")
        os.rename(self._staging(), complete)
        self.staging = complete
        if not self.folder.exists():
            os.rename(complete, self.folder)
        elif exchange(complete, self.folder):
            shutil.rmtree(complete, ignore_errors=True)  # now holds the previous set
        else:
            old = _staging_name(self.folder, "old")
            os.rename(self.folder, old)
            os.rename(complete, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        _fsync(self.folder.parent, directory=True)
        self.staging = None

    def discard(self) -> None:
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
        self.staging = None

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.discard()
        return False
