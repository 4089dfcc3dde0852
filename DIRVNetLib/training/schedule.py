"""Learning-rate schedules: a pure function of the step, so a resumed run follows the same curve.

Run-configuration key ``"schedule"`` (optional; default constant)::

    {"kind": "constant" | "cosine" | "step" | "exponential",
     "warmup_steps": 0,          # linear ramp up to the peak over the first steps
     "final_fraction": 0.05,     # cosine: the rate reached at the last step, as a fraction of the peak
     "milestones": [1000, 2000], "factor": 0.3,  # step: multiply by factor at each milestone
     "decay_steps": 1000, "decay_rate": 0.5}      # exponential: rate * decay_rate ** (step / decay_steps)
"""

import math

KINDS = ("constant", "cosine", "step", "exponential")
DEFAULTS = {"kind": "constant", "warmup_steps": 0, "final_fraction": 0.05, "milestones": [], "factor": 0.3,
            "decay_steps": 1000, "decay_rate": 0.5}


def schedule_config(value):
    """The schedule dict with defaults filled (a kind name is accepted for ``value``); raises ValueError
    on unknown kinds or keys."""
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ValueError(f"schedule must be a kind name {KINDS} or an object, got {value!r}")
    unknown = sorted(set(value) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown schedule keys: {', '.join(unknown)} (known: {', '.join(sorted(DEFAULTS))})")
    merged = {**DEFAULTS, **value}
    if merged["kind"] not in KINDS:
        raise ValueError(f"unknown schedule kind '{merged['kind']}'; choose from {', '.join(KINDS)}")
    if merged["warmup_steps"] < 0 or merged["decay_steps"] <= 0:
        raise ValueError("schedule warmup_steps must be >= 0 and decay_steps > 0")
    return merged


def learning_rate(step, base, total_steps, schedule):
    """The learning rate of (0-based) ``step`` for peak rate ``base`` over ``total_steps`` steps."""
    s = schedule
    warmup = s["warmup_steps"]
    if warmup and step < warmup:
        return base * (step + 1) / (warmup + 1)
    if s["kind"] == "cosine":
        span = max(total_steps - warmup - 1, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        return base * (s["final_fraction"] + (1 - s["final_fraction"]) * 0.5 * (1 + math.cos(math.pi * progress)))
    if s["kind"] == "step":
        return base * s["factor"] ** sum(step >= m for m in s["milestones"])
    if s["kind"] == "exponential":
        return base * s["decay_rate"] ** (max(step - warmup, 0) / s["decay_steps"])
    return base
