"""Progress reports and cancellation between variational units and refinement steps."""

import dataclasses

from DIRVNetLib.errors import RegistrationCancelled


@dataclasses.dataclass(frozen=True)
class Progress:
    """done/total: variational units and refinement steps run / to run (all rounds; refinement that stops
    early jumps to the total); level (0 = finest), unit (the step during refinement), round (0 = first
    pass, then recurrent rounds); stage: a short description."""

    done: int
    total: int
    level: int
    unit: int
    round: int
    stage: str


def is_cancelled(cancel):
    """``cancel`` may be None, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class UnitMonitor:
    """The network's ``on_unit`` hook and the refinement's ``on_step``: counts units and steps, reports
    progress, raises when cancelled, and optionally keeps every unit's control displacement."""

    def __init__(self, total, progress=None, cancel=None, keep=False):
        self.total, self.progress, self.cancel, self.keep = total, progress, cancel, keep
        self.done = 0
        self.round = 0
        self.stage = ""  # prefix of the stage text, e.g. "coarse pass, "
        self.kept = []

    def check_cancel(self):
        if is_cancelled(self.cancel):
            raise RegistrationCancelled("registration cancelled")

    def __call__(self, level, unit, control):
        self.done += 1
        if self.keep:
            self.kept.append((self.round, level, unit, control))
        if self.progress is not None:
            where = f"round {self.round}, level {level}, unit {unit}" if self.round else f"level {level}, unit {unit}"
            self.progress(Progress(self.done, self.total, level, unit, self.round, self.stage + where))
        self.check_cancel()

    def step(self, step, energy):
        """After refinement step ``step`` (1-based) with ``energy`` before it."""
        self.done += 1
        if self.progress is not None:
            self.progress(Progress(self.done, self.total, 0, step, self.round, f"{self.stage}refinement step {step}"))
        self.check_cancel()

    def finish(self):
        """Report the total as done (refinement stopped before its last step)."""
        if self.done < self.total and self.progress is not None:
            self.done = self.total
            self.progress(Progress(self.done, self.total, 0, 0, self.round, f"{self.stage}done"))
