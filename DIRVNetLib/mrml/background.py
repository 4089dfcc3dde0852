"""Registration in a separate worker process (:mod:`DIRVNetLib.registration.worker`), driven without threads.

The main thread writes a job's images to a temporary folder, sends one request line and then polls the
worker's output without blocking (the Slicer panel from a QTimer, the console with :meth:`RegistrationWorker.wait`);
the result is read back from files and written into the scene by ``job.apply`` on the main thread.
TensorFlow loads only in the worker, which stays alive between registrations (warm) until :meth:`close`,
its idle timeout, or the end of the parent process. Cancelling ends the worker process; the scene is
unchanged. Errors arrive as :mod:`DIRVNetLib.errors` exceptions with one sentence.

In Slicer the worker runs on ``PythonSlicer`` (found as ``slicer.util`` finds it for pip); elsewhere on
``sys.executable``.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib import errors
from DIRVNetLib.registration.progress import Progress, is_cancelled

from .register import prepare

WORKER_MODULE = "DIRVNetLib.registration.worker"
IDLE_TIMEOUT_S = 900.0
"""A warm worker with nothing to do ends after this many seconds."""


class RegistrationProcessError(errors.DIRVNetError):
    """The worker process could not start, was ended from outside, or failed unexpectedly."""


class DependencyError(errors.DIRVNetError):
    """The worker's Python cannot import what a registration needs (TensorFlow not installed)."""


_ERRORS = {
    "InputImageError": errors.InputImageError,
    "WeightSetError": errors.WeightSetError,
    "InsufficientMemoryError": errors.InsufficientMemoryError,
    "RegistrationCancelled": errors.RegistrationCancelled,
    "DependencyError": DependencyError,
    "RegistrationError": errors.DIRVNetError,
}


def python_executable() -> str:
    """The Python that runs the worker: ``PythonSlicer`` inside Slicer, else ``sys.executable``.

    Slicer puts PythonSlicer on the PATH of its own process; next to the interpreter is the fallback
    (both as in ``slicer.util._executePythonModule``).
    """
    import slicer

    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        beside = Path(sys.executable).parent / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
        if found or beside.is_file():
            return found or str(beside)
        raise RegistrationProcessError(
            "Slicer's Python (PythonSlicer) was not found on the PATH or next to "
            f"{sys.executable}; the registration cannot start."
        )
    return sys.executable


def library_root() -> Path:
    """The folder holding the DIRVNetLib package (put first on the worker's PYTHONPATH)."""
    return Path(DIRVNetLib.__file__).resolve().parent.parent


def worker_command(python=None, idle_timeout=IDLE_TIMEOUT_S) -> list:
    """The worker's command line."""
    return [python or python_executable(), "-m", WORKER_MODULE, "--idle-timeout", str(idle_timeout)]


def worker_environment() -> dict:
    """This process's environment with DIRVNetLib's folder first on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(library_root())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class WorkerResult:
    """A finished registration read back from the worker's files; the fields ``RegistrationJob.apply`` uses
    (as in :class:`DIRVNetLib.registration.api.RegistrationResult`)."""

    displacement: sitk.Image
    warped: sitk.Image
    report: dict
    intermediate: list


def read_result(folder, outputs: dict, report: dict) -> WorkerResult:
    """The worker's output files in ``folder`` (names from its "done" event) as SimpleITK images."""
    folder = Path(folder)
    intermediate = [
        (item["round"], item["level"], item["unit"], sitk.ReadImage(str(folder / item["file"])))
        for item in outputs.get("intermediate", [])
    ]
    return WorkerResult(
        sitk.ReadImage(str(folder / outputs["displacement"])),
        sitk.ReadImage(str(folder / outputs["warped"])),
        report,
        intermediate,
    )


@dataclass
class BackgroundRegistration:
    """One registration sent to the worker. ``state``: "running", "done", "failed" or "cancelled";
    ``updates``: one :class:`Progress` per unit run so far (``progress``: the last, None before the first);
    ``result`` (done) or ``error`` (failed); ``details``: the worker's log for a failure."""

    job: object
    ident: int
    folder: Path
    started: float = field(default_factory=time.monotonic)
    state: str = "running"
    updates: list = field(default_factory=list)
    result: WorkerResult = None
    error: Exception = None
    details: str = ""

    @property
    def progress(self):
        return self.updates[-1] if self.updates else None

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def outcome(self):
        """The result; raises the error (or RegistrationCancelled) of a run that did not succeed."""
        if self.state == "done":
            return self.result
        if self.state == "cancelled":
            raise errors.RegistrationCancelled("registration cancelled")
        if self.state == "failed":
            raise self.error
        raise RuntimeError("the registration is still running")


class RegistrationWorker:
    """A worker process and the registration it runs (one at a time).

    ``submit(job)`` starts the worker if needed and sends the job; ``poll()`` reads what the worker wrote
    (never blocks) and returns the current registration; ``cancel()`` ends the worker; ``close()`` lets
    it exit. ``info``: the worker's "ready" event (Python and TensorFlow versions, GPUs), None before.
    ``job``: a :class:`DIRVNetLib.mrml.RegistrationJob` (its ``fixed``/``moving`` images,
    ``weights``, ``device``, ``keepIntermediate`` and ``options`` are sent).
    """

    def __init__(self, python=None, idle_timeout=IDLE_TIMEOUT_S):
        self.python, self.idle_timeout = python, idle_timeout
        self._process = None
        self._log = None
        self._buffer = b""
        self.info = None
        self._count = 0
        self.current = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    def start(self):
        """Start the worker process unless it runs already (it loads TensorFlow, then says "ready")."""
        if self.alive:
            return
        self._discard()
        self._log = tempfile.TemporaryFile()
        options = {}
        if os.name == "nt":  # no console window, as slicer.util.launchConsoleProcess
            options["creationflags"] = subprocess.CREATE_NO_WINDOW
        try:
            self._process = subprocess.Popen(
                worker_command(self.python, self.idle_timeout),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=worker_environment(),
                **options,
            )
        except OSError as e:
            raise RegistrationProcessError(f"The registration process could not start: {e}.") from e
        os.set_blocking(self._process.stdout.fileno(), False)
        self._buffer, self.info = b"", None

    def submit(self, job) -> BackgroundRegistration:
        """Write the job's images to a new temporary folder and send the request; returns the registration."""
        if self.current is not None and not self.current.finished:
            raise RuntimeError("a registration is already running in this worker")
        self.start()
        self._count += 1
        folder = Path(tempfile.mkdtemp(prefix="DIRVNet-"))
        try:
            sitk.WriteImage(job.fixed, str(folder / "fixed.nrrd"))
            sitk.WriteImage(job.moving, str(folder / "moving.nrrd"))
            request = {
                "id": self._count,
                "fixed": str(folder / "fixed.nrrd"),
                "moving": str(folder / "moving.nrrd"),
                "output_dir": str(folder / "out"),
                "weights": None if job.weights is None else str(job.weights),
                "device": job.device,
                "keep_intermediate": bool(job.keepIntermediate),
                "options": dict(job.options),
            }
            self._process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self._process.stdin.flush()
        except OSError:  # the worker ended before reading: poll() reports how
            pass
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.current = BackgroundRegistration(job, self._count, folder)
        return self.current

    def poll(self):
        """Handle the worker's new output (never blocks); returns the current registration, or None."""
        run = self.current
        if self._process is None:
            return run
        ended = self._process.poll() is not None
        for line in self._read_lines():
            self._handle(line)
        if ended and run is not None and not run.finished:
            self._fail(
                run,
                RegistrationProcessError(
                    f"The registration process ended unexpectedly (exit code {self._process.returncode}); "
                    f"nothing was added to the scene."
                ),
            )
        return run

    def wait(self, progress=None, cancel=None, interval_s=0.02):
        """Block until the current registration ends; returns its result or raises its error.

        ``progress``: called with each new :class:`Progress`; ``cancel``: a ``threading.Event`` or a
        callable, checked at every poll (a cancel ends the worker and raises RegistrationCancelled).
        """
        run, reported = self.current, 0
        while True:
            self.poll()
            if progress is not None:
                for update in run.updates[reported:]:
                    progress(update)
            reported = len(run.updates)
            if run.finished:
                break
            if is_cancelled(cancel):
                self.cancel()
            else:
                time.sleep(interval_s)
        return run.outcome()

    def cancel(self):
        """End the worker process now; the current registration becomes "cancelled"."""
        run = self.current
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        if run is not None and not run.finished:
            run.state = "cancelled"
            shutil.rmtree(run.folder, ignore_errors=True)

    def close(self, timeout_s=5.0):
        """Let the worker exit (stdin closed), ending it after ``timeout_s``; a running registration is cancelled."""
        if self.current is not None and not self.current.finished:
            self.cancel()
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.stdin.close()
                self._process.wait(timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._discard()

    def log_tail(self, characters=4000) -> str:
        """The end of the worker's stderr (tracebacks, TensorFlow's messages)."""
        if self._log is None:
            return ""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - characters))
        return self._log.read().decode("utf-8", "replace")

    # internals

    def _discard(self):
        if self._process is not None:
            for stream in (self._process.stdin, self._process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._log is not None:
            self._log.close()
        self._process, self._log = None, None

    def _read_lines(self):
        stream = self._process.stdout
        while True:
            try:
                chunk = os.read(stream.fileno(), 1 << 16)
            except BlockingIOError:
                break
            except (OSError, ValueError):
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line for line in lines if line.strip()]

    def _handle(self, line: bytes):
        try:
            event = json.loads(line)
        except ValueError:
            return  # not the protocol (the worker sends everything else to stderr)
        kind, run = event.get("event"), self.current
        if kind == "ready":
            self.info = event
            return
        if run is None or run.finished or event.get("id") not in (run.ident, None):
            return
        if kind == "progress":
            run.updates.append(
                Progress(event["done"], event["total"], event["level"], event["unit"], event["round"], event["stage"])
            )
        elif kind == "done":
            try:
                run.result = read_result(run.folder / "out", event["outputs"], event["report"])
                run.state = "done"
            except (RuntimeError, OSError, KeyError) as e:
                self._fail(run, RegistrationProcessError(f"The registration's output could not be read: {e}."))
            finally:
                shutil.rmtree(run.folder, ignore_errors=True)
        elif kind == "error":
            error_class = _ERRORS.get(event.get("error"), RegistrationProcessError)
            self._fail(run, error_class(event.get("message", "the registration failed")))

    def _fail(self, run, error):
        run.error, run.state, run.details = error, "failed", self.log_tail()
        shutil.rmtree(run.folder, ignore_errors=True)


_SHARED = []


def shared_worker() -> RegistrationWorker:
    """The process-wide worker that the Slicer panel and console share (so both find it warm)."""
    if not _SHARED:
        _SHARED.append(RegistrationWorker())
    return _SHARED[0]


def register(
    fixedVolumeNode,
    movingVolumeNode,
    outputTransformNode=None,
    weights=None,
    device="auto",
    outputVolumeNode=None,
    progress=None,
    cancel=None,
    worker=None,
    **options,
):
    """:func:`DIRVNetLib.mrml.register` with the registration run in the worker process (blocks).

    Same arguments (``jacobianVolumeNode``, ``keepIntermediate``, ``placeMovingUnderTransform``,
    ``refinement_rounds``...), plus ``worker`` (default: :func:`shared_worker`). On an error or a cancel
    the scene is unchanged.
    """
    job = prepare(
        fixedVolumeNode,
        movingVolumeNode,
        outputTransformNode=outputTransformNode,
        weights=weights,
        device=device,
        outputVolumeNode=outputVolumeNode,
        **options,
    )
    worker = worker or shared_worker()
    worker.submit(job)
    return job.apply(worker.wait(progress=progress, cancel=cancel))
