"""Registration worker process: ``python -m DIRVNetLib.registration.worker [--idle-timeout S]``.

The Slicer module (through :mod:`DIRVNetLib.mrml.background`) runs registrations here, outside
Slicer's process. The protocol is JSON, one object per line (UTF-8):

- requests on stdin: ``{"id": N, "fixed": PATH, "moving": PATH, "output_dir": DIR, "weights": NAME|DIR|null,
  "device": "auto"|"cpu"|"gpu", "keep_intermediate": BOOL, "options": {...}}`` (``options``: further keyword
  arguments of :func:`DIRVNetLib.register`, e.g. ``refinement_rounds``, ``working_spacing``);
- events on stdout: ``{"event": "ready", "pid", "python", "tensorflow", "gpus"}`` once TensorFlow is loaded;
  per request one ``{"event": "progress", "id", "done", "total", "level", "unit", "round", "stage"}`` per
  variational unit, then either
  ``{"event": "done", "id", "report", "outputs": {...}}`` (file names in ``output_dir``) or ``{"event":
  "error", "id", "error": NAME, "message": SENTENCE}``; the traceback goes to stderr.

Outputs in ``output_dir``: ``displacement.nrrd`` (vector image on the fixed grid, LPS mm), ``warped.nrrd``,
and with ``keep_intermediate`` one ``intermediate-K.nrrd`` per unit. The worker ends when stdin closes, or
after ``--idle-timeout`` seconds without a request. Cancel = end the process. Anything a library prints
goes to stderr, so stdout carries only the protocol.
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

DEFAULT_IDLE_TIMEOUT_S = 900.0

ERROR_NAMES = ("InputImageError", "WeightSetError", "InsufficientMemoryError", "RegistrationCancelled")
"""Exceptions of :mod:`DIRVNetLib.errors` reported under their own name; out of memory (TensorFlow's or
Python's) as "InsufficientMemoryError"; anything else as "RegistrationError"."""


class _Channel:
    """Writes protocol events to the original stdout; fd 1 then points at stderr."""

    def __init__(self):
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, event: str, **fields):
        with self._lock:
            self._out.write(json.dumps({"event": event, **fields}, default=float) + "\n")
            self._out.flush()


def _set_memory_growth(tf):
    """Take GPU memory as needed, not all of it at start-up (other applications keep theirs)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: nothing to change
            pass


def describe_error(error: BaseException) -> tuple:
    """(name, one-sentence message) of an exception raised by a registration."""
    name = type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else name
    if name in ERROR_NAMES:
        return name, message
    if name == "ResourceExhaustedError" or isinstance(error, MemoryError):
        return "InsufficientMemoryError", (
            "The registration ran out of memory: use a coarser working spacing, or the CPU when the GPU is small."
        )
    if isinstance(error, ValueError):  # DIRVNetLib's checks of options and images: the message says it all
        return "RegistrationError", message
    return "RegistrationError", f"{name}: {message}"


def _register(request, channel):
    import SimpleITK as sitk

    import DIRVNetLib

    ident = request.get("id")
    output = Path(request["output_dir"])

    def progress(info):
        channel.send(
            "progress",
            id=ident,
            done=info.done,
            total=info.total,
            level=info.level,
            unit=info.unit,
            round=info.round,
            stage=info.stage,
        )

    result = DIRVNetLib.register(
        request["fixed"],
        request["moving"],
        weights=request.get("weights"),
        device=request.get("device", "auto"),
        progress=progress,
        keep_intermediate=bool(request.get("keep_intermediate")),
        **request.get("options", {}),
    )
    output.mkdir(parents=True, exist_ok=True)
    outputs = {"displacement": "displacement.nrrd", "warped": "warped.nrrd", "intermediate": []}
    sitk.WriteImage(result.displacement, str(output / outputs["displacement"]))
    sitk.WriteImage(result.warped, str(output / outputs["warped"]))
    for k, (round_index, level, unit, displacement) in enumerate(result.intermediate):
        name = f"intermediate-{k}.nrrd"
        sitk.WriteImage(displacement, str(output / name))
        outputs["intermediate"].append({"file": name, "round": round_index, "level": level, "unit": unit})
    channel.send("done", id=ident, report=result.report, outputs=outputs)


class _IdleWatch:
    """Ends the process after ``timeout`` seconds without a request (not while one runs)."""

    def __init__(self, timeout):
        self.timeout, self.busy, self.last = timeout, False, time.monotonic()
        threading.Thread(target=self._watch, daemon=True, name="idle watch").start()

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.timeout))
            if not self.busy and time.monotonic() - self.last > self.timeout:
                os._exit(0)

    def mark(self, busy):
        self.busy, self.last = busy, time.monotonic()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m DIRVNetLib.registration.worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        help="seconds without a request after which the worker ends (default %(default)s)",
    )
    args = parser.parse_args(argv)
    channel = _Channel()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf

        _set_memory_growth(tf)
        import DIRVNetLib.registration.api  # noqa: F401  (load everything before saying ready)
    except ImportError as e:
        traceback.print_exc(file=sys.stderr)
        channel.send(
            "error",
            id=None,
            error="DependencyError",
            message=f"{sys.executable} cannot import what the registration needs ({e}).",
        )
        return 1

    watch = _IdleWatch(args.idle_timeout)
    channel.send(
        "ready",
        pid=os.getpid(),
        python=sys.version.split()[0],
        tensorflow=tf.__version__,
        gpus=[gpu.name for gpu in tf.config.list_physical_devices("GPU")],
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        watch.mark(busy=True)
        request = {}
        try:
            request = json.loads(line)
            _register(request, channel)
        except Exception as e:  # reported to the module as a named error; the traceback goes to stderr
            traceback.print_exc(file=sys.stderr)
            name, message = describe_error(e)
            channel.send(
                "error", id=request.get("id") if isinstance(request, dict) else None, error=name, message=message
            )
        watch.mark(busy=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
