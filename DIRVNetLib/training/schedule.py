"""Learning-rate schedules of a run (:class:`~DIRVNetLib.training.config.ScheduleConfig`): an optional
linear warm-up, then Keras's cosine, piecewise-constant or exponential decay, or a constant rate."""

import keras

from DIRVNetLib.training.config import ScheduleConfig


class WarmupSchedule:
    """The rate of (0-based) step ``s`` for peak rate ``base`` over ``total_steps`` steps: during the
    warm-up ``base * (s + 1) / (warmup_steps + 1)``, then the kind's decay (cosine and exponential
    count their steps from the end of the warm-up; step milestones are absolute steps)."""

    def __init__(self, base, total_steps, schedule):
        self.base, self.total_steps, self.schedule = float(base), int(total_steps), schedule
        warmup = schedule.warmup_steps
        schedules = keras.optimizers.schedules
        if schedule.kind == "cosine":
            span = max(self.total_steps - warmup - 1, 1)
            self.decay = schedules.CosineDecay(self.base, span, alpha=schedule.final_fraction)
            self.offset = warmup
        elif schedule.kind == "exponential":
            self.decay = schedules.ExponentialDecay(self.base, schedule.decay_steps, schedule.decay_rate)
            self.offset = warmup
        elif schedule.kind == "step" and schedule.milestones:
            milestones = sorted(schedule.milestones)  # a step at a milestone already has the lower rate
            values = [self.base * schedule.factor**i for i in range(len(milestones) + 1)]
            self.decay = schedules.PiecewiseConstantDecay([m - 1 for m in milestones], values)
            self.offset = 0
        else:
            self.decay, self.offset = None, 0

    def __call__(self, step):
        step = int(step)
        warmup = self.schedule.warmup_steps
        if warmup and step < warmup:
            return self.base * (step + 1) / (warmup + 1)
        if self.decay is None:
            return self.base
        return float(self.decay(step - self.offset))


def learning_rate(step, base, total_steps, schedule):
    """The learning rate of (0-based) ``step`` (see :class:`WarmupSchedule`); schedule: a
    :class:`ScheduleConfig`, a kind name or None."""
    if not isinstance(schedule, ScheduleConfig):
        schedule = ScheduleConfig.from_value(schedule)
    return WarmupSchedule(base, total_steps, schedule)(step)
