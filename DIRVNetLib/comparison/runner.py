"""Timing and measuring: every method on every case, each method in its own worker process.

Protocol per (method, case): a warm-up call for methods with one-off costs (graph tracing, model
loading), then up to ``repeats`` timed calls (stopping early once ``time_budget`` seconds are spent,
after at least one); the time is the median wall time of ``register(fixed, moving)`` with both images
in memory, split by stage where the method reports stages; peak memory is the worker's peak resident
set size during the timed calls (Linux ``VmHWM``, reset before each call), also given as the increase
over the resident size before the call (libraries already loaded). Accuracy is measured on the last
call's displacement (:func:`DIRVNetLib.comparison.evaluation.evaluate_displacement`).

A method that is not installed, has no model for the case's dimension, or fails gives a row with
``status`` "skipped" or "failed" and the reason; a worker that dies fails its remaining rows.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from DIRVNetLib.comparison.evaluation import json_safe


def _proc_status(key):
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024.0 if match else None


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(method, case, repeats=3, time_budget=60.0):
    """One result row (dict) for ``method`` on a prepared ``case``."""
    from DIRVNetLib.comparison.evaluation import evaluate_displacement

    row = {
        "case": case.name,
        "method": method.name,
        "label": method.label,
        "dimension": case.dimension,
        "seen_in_training": case.seen_in_training,
        "settings": method.settings,
    }
    ok, reason = method.available(case.dimension)
    if not ok:
        return {**row, "status": "skipped", "reason": reason}
    try:
        if method.needs_warmup:
            started = time.perf_counter()
            method.register(case.fixed, case.moving)
            row["warmup_seconds"] = time.perf_counter() - started
        times, stages, peaks, increases = [], [], [], []
        displacement = None
        for _ in range(max(1, int(repeats))):
            base = _proc_status("VmRSS")
            reset = _reset_peak()
            started = time.perf_counter()
            displacement = method.register(case.fixed, case.moving)
            times.append(time.perf_counter() - started)
            stages.append(dict(method.stages))
            peak = _proc_status("VmHWM") if reset else None
            if peak is not None:
                peaks.append(peak)
                increases.append(peak - base)
            if sum(times) >= time_budget:
                break
        row.update(
            status="ok",
            seconds=statistics.median(times),
            seconds_runs=times,
            runs=len(times),
            stages={k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[-1]},
        )
        if peaks:
            row.update(peak_rss_mib=max(peaks), rss_increase_mib=max(increases))
        reported = {
            "weights_used": "weights",
            "device_used": "device",
            "refinement_rounds_used": "refinement_rounds_used",
            "working_grid": "working_grid",
            "refinement_grid": "refinement_grid",
        }
        for attribute, key in reported.items():
            if getattr(method, attribute, None) is not None:
                row[key] = getattr(method, attribute)
        row.update(
            evaluate_displacement(
                case.fixed,
                case.moving,
                displacement,
                true_field=case.true_field,
                mask=case.mask,
                fixed_labels=case.fixed_labels,
                moving_labels=case.moving_labels,
                fixed_points=case.fixed_points,
                moving_points=case.moving_points,
            )
        )
        return row
    except Exception as e:  # a baseline's failure is a row, never a crash of the benchmark
        return {
            **row,
            "status": "failed",
            "reason": f"{type(e).__name__}: {e}".strip(),
            "traceback": traceback.format_exc(),
        }


def _worker(spec_path):
    """Worker process: ``spec`` = {method, options, cases: [folders], repeats, time_budget, fd}; writes
    one JSON line per case on file descriptor ``fd``. Everything else the tools print goes to the log."""
    from DIRVNetLib.comparison import baselines
    from DIRVNetLib.comparison.cases import load_prepared

    spec = json.loads(Path(spec_path).read_text())
    channel = os.fdopen(spec["fd"], "w", buffering=1)
    options = dict(spec.get("options", {}))
    if options.get("weights"):
        options["weights"] = {int(k): v for k, v in options["weights"].items()}
    method = baselines.make(spec["method"], **options)
    for folder in spec["cases"]:
        case = load_prepared(folder)
        row = measure(method, case, spec["repeats"], spec["time_budget"])
        if row.get("traceback"):
            print(row["traceback"], file=sys.stderr, flush=True)
        channel.write(json.dumps(json_safe(row)) + "\n")
    channel.close()


def run_method(method, case_folders, log_path, repeats=3, time_budget=60.0, options=None, on_row=None):
    """Run ``method`` on the prepared cases in ``case_folders`` in a worker process; returns the rows.

    ``on_row(row)`` is called as each row arrives. The worker's own output goes to ``log_path``.
    """
    read_fd, write_fd = os.pipe()
    spec_path = Path(log_path).with_suffix(".spec.json")
    spec = {
        "method": method,
        "options": options or {},
        "cases": [str(f) for f in case_folders],
        "repeats": repeats,
        "time_budget": time_budget,
        "fd": write_fd,
    }
    spec_path.write_text(json.dumps(spec))
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "DIRVNetLib.comparison.runner", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            env=env,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as channel:
            for line in channel:
                row = json.loads(line)
                rows.append(row)
                if on_row:
                    on_row(row)
        code = process.wait()
    spec_path.unlink()
    for folder in case_folders[len(rows) :]:
        row = {
            "case": Path(folder).name,
            "method": method,
            "status": "failed",
            "reason": f"worker process exited with code {code} (see {log_path})",
        }
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


if __name__ == "__main__":
    _worker(sys.argv[1])
