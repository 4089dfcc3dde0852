"""The run folder of a training run: what identifies the run (recorded once, compared on every resume),
its CSV logs (one row per step, also after an interrupted or killed invocation) and ``segments.csv``
(one row per invocation).

Identity: the configuration fields that change the trained weights (network, data, loss, schedule,
steps, batch size, learning rate, seed, strategy, validation), the initial weight set (absolute path
and content checksum) and the data files (absolute paths and content checksums). ``description``,
``checkpoint_every`` and ``tensorboard`` may change between invocations.
"""

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from DIRVNetLib.io.atomic import atomic_path

RECORD = "recorded-run.json"
"""The run's identity, written by its first invocation."""

RUN_ENTRIES = ("checkpoints", "tensorboard", "weights", "losses.csv", "validation.csv", "segments.csv", RECORD)
"""What a run writes into its folder (``--fresh`` moves these aside)."""

MUTABLE = ("description", "checkpoint_every", "tensorboard")
"""Run fields that may differ when a run is resumed."""

SEGMENT_COLUMNS = ("command", "from_step", "to_step", "steps", "seconds", "ended")
"""``segments.csv``: one row per invocation: its command, the steps it trained (from, to), the run's
step count (the schedule's length), its wall time in seconds and how it ended (completed, stopped at
``--stop-at``, interrupted by a signal, or failed with an error)."""


def content_digest(path):
    """sha256 (hex) of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_files(paths):
    """``[{"path": absolute path, "sha256": content digest}]`` of data files and folders; entries that
    are no paths (``nilearn:NAME``) are kept as ``{"path": NAME}``."""
    files = []
    for entry in paths:
        path = Path(str(entry))
        if path.exists():
            files.append({"path": str(path.resolve()), "sha256": content_digest(path)})
        else:
            files.append({"path": str(entry)})
    return files


def identity(run, network, init_set, files):
    """The JSON-able identity of a run: ``run`` (a RunConfig) with its resolved ``network`` (a
    NetworkConfig), the init weight set (or None) and the data ``files`` (:func:`data_files`)."""
    values = run.to_dict()
    values["network"] = network.to_dict()
    data = dict(values["data"])
    data["pairs"] = None if data.get("pairs") is None else str(Path(data["pairs"]).resolve())
    data.pop("volumes", None)  # their files are compared instead
    values["data"] = data
    values["init"] = (
        None
        if init_set is None
        else {"path": str(Path(init_set.path).resolve()), "sha256": init_set_digest(init_set.path)}
    )
    for key in MUTABLE:
        values.pop(key, None)
    return {"run": values, "data_files": files}


def init_set_digest(folder):
    """Content checksum of a weight set's files that change what it computes (config and weights)."""
    digest = hashlib.sha256()
    for name in ("config.json", "weights.npz"):
        digest.update(content_digest(Path(folder) / name).encode())
    return digest.hexdigest()


def differences(old, new, prefix=""):
    """Dotted names of the values that differ between two JSON-able values, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return found
    if old != new:
        return [f"{prefix or 'value'} ({_short(old)} -> {_short(new)})"]
    return []


def _short(value, limit=60):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prepare(folder, record, fresh=False):
    """Make ``folder`` ready for the run ``record`` (:func:`identity`): with ``fresh``, move a previous
    run's entries into ``folder/previous-TIMESTAMP``; refuse (ValueError naming what differs) a folder
    holding another run; write the record for a new run. Returns True when the folder holds this run
    already (a resume)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    present = [name for name in RUN_ENTRIES if (folder / name).exists()]
    if fresh and present:
        aside = folder / time.strftime("previous-%Y%m%d-%H%M%S")
        aside.mkdir()
        for name in present:
            os.replace(folder / name, aside / name)
        print(f"the previous run in {folder} was moved to {aside}")
        present = []
    hint = "use another --output-dir, or --fresh to move the old run aside and start again"
    path = folder / RECORD
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = differences(old, record)
        if changed:
            raise ValueError(f"run folder {folder} holds a different run: " + "; ".join(changed) + f"; {hint}")
        return True
    if present:
        raise ValueError(
            f"run folder {folder} holds training output ({', '.join(present)}) but no {RECORD} "
            f"saying which run it is; {hint}"
        )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return False


class CsvLog:
    """Appends rows to a CSV file; an existing file keeps its own columns. ``columns`` None: taken from
    the first row written. ``from_step``: rows after this step (left by an invocation killed after its
    last checkpoint) are dropped first, so that every step appears once."""

    def __init__(self, path, columns, enabled=True, from_step=None):
        self.path, self.columns, self.enabled = Path(path), columns, enabled
        self.handle = self.writer = None
        if enabled and self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as handle:
                rows = list(csv.reader(handle))
            self.columns = rows[0]
            if from_step is not None and "step" in self.columns:
                index = self.columns.index("step")
                kept = [rows[0]] + [r for r in rows[1:] if r and int(r[index]) <= from_step]
                if len(kept) < len(rows):
                    with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
                        csv.writer(handle).writerows(kept)

    def write(self, row):
        if not self.enabled:
            return
        if self.writer is None:
            self.columns = self.columns or list(row)
            new = not (self.path.exists() and self.path.stat().st_size)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.handle, self.columns, extrasaction="ignore")
            if new:
                self.writer.writeheader()
        self.writer.writerow(row)

    def flush(self):
        if self.handle:
            self.handle.flush()

    def close(self):
        if self.handle:
            self.handle.close()
            self.handle = self.writer = None


def read_segments(path):
    """The rows of ``segments.csv`` (:data:`SEGMENT_COLUMNS`) with numbers as numbers; [] without it."""
    if not Path(path).exists():
        return []
    numbers = {"from_step": int, "to_step": int, "steps": int, "seconds": float}
    with open(path, newline="") as handle:
        return [{k: numbers[k](v) if k in numbers else v for k, v in row.items()} for row in csv.DictReader(handle)]


def recent_mean(log_path, last=50):
    """Mean loss of the last ``last`` logged steps (None without any)."""
    if not Path(log_path).exists():
        return None
    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows[-last:] if r.get("loss")]
    return float(np.mean(losses)) if losses else None
