"""Named presets of :func:`~DIRVNetLib.registration.api.register` (``mode=`` / ``--mode``): one choice for
the trade-off between time and accuracy. Figures: docs/performance.md."""

from __future__ import annotations

import dataclasses

from DIRVNetLib.registration.refinement import RefinementSettings


@dataclasses.dataclass(frozen=True)
class Mode:
    """refinement: the test-time refinement settings; coarse_pass: the factor of a first network pass on a
    coarser grid (None: none)."""

    refinement: RefinementSettings
    coarse_pass: float | None = None


MODES: dict[str, dict[int, Mode]] = {  # mode -> image dimension -> Mode
    "fast": {2: Mode(RefinementSettings(steps=0)), 3: Mode(RefinementSettings(steps=0))},  # the network alone
    # the network (in 3D after a first pass on a 2x coarser grid), then test-time refinement on the working grid:
    # in 2D Adam (steady where the network left large residual displacements), in 3D L-BFGS (a 3D step costs
    # about 100x a 2D one; after the coarse pass the start is close, where L-BFGS needs fewer steps)
    "accurate": {
        2: Mode(RefinementSettings(steps=50, control_spacing=2)),
        3: Mode(RefinementSettings(steps=15, optimizer="lbfgs", learning_rate=0.5, control_spacing=4), coarse_pass=2.0),
    },
}
DEFAULT_MODE = "accurate"


def _mode(mode: str, dimension: int) -> Mode:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODES[mode][dimension]


def settings_for(
    mode: str, dimension: int, refine_steps: int | None = None, refinement: RefinementSettings | None = None
) -> RefinementSettings:
    """The refinement settings of ``mode`` for ``dimension``-D images; ``refinement`` (a
    :class:`RefinementSettings`) replaces them and ``refine_steps`` replaces their number of steps.
    Raises ValueError naming an unknown mode."""
    settings = _mode(mode, dimension).refinement if refinement is None else refinement
    if not isinstance(settings, RefinementSettings):
        raise ValueError(f"refinement must be a RefinementSettings, got {type(settings).__name__}")
    if refine_steps is not None:
        settings = RefinementSettings(**{**settings.__dict__, "steps": refine_steps})
    return settings


def coarse_pass_for(mode: str, dimension: int, coarse_pass: float | None = None) -> float | None:
    """The coarse-pass factor to use: ``coarse_pass`` when given (1: none), else ``mode``'s; None: none."""
    factor = _mode(mode, dimension).coarse_pass if coarse_pass is None else coarse_pass
    return None if factor is None or factor == 1 else factor
