"""Named presets of :func:`~DIRVNetLib.registration.api.register` (``mode=`` / ``--mode``): one choice for
the trade-off between time and accuracy. Figures: docs/performance.md."""

from __future__ import annotations

import dataclasses

from DIRVNetLib.registration.refinement import RefinementSettings


@dataclasses.dataclass(frozen=True)
class Mode:
    """refinement: the test-time refinement settings; coarse_pass: the factor of a first network pass on a
    coarser grid (None: none); finest_level: the finest pyramid level of the network's pass on the working
    grid when the refinement follows (``DIRVNet.__call__``; 0: every level; 1: the finest level's units
    are left to the refinement)."""

    refinement: RefinementSettings
    coarse_pass: float | None = None
    finest_level: int = 0


MODES: dict[str, dict[int, Mode]] = {  # mode -> image dimension -> Mode
    "fast": {2: Mode(RefinementSettings(steps=0)), 3: Mode(RefinementSettings(steps=0))},  # the network alone
    # the network, then test-time refinement on the working grid: in 2D Adam (steady where the network left
    # large residual displacements); in 3D a first pass on a 2x coarser grid, the network's coarser levels on
    # the working grid, then L-BFGS (a 3D step costs about 100x a 2D one; from a close start L-BFGS needs
    # fewer steps, and its steps on the working grid cost less than the network's finest level)
    "accurate": {
        2: Mode(RefinementSettings(steps=50, control_spacing=2)),
        3: Mode(
            RefinementSettings(steps=22, optimizer="lbfgs", learning_rate=0.5, control_spacing=4),
            coarse_pass=2.0,
            finest_level=1,
        ),
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


def finest_level_for(mode: str, dimension: int, steps: int) -> int:
    """The finest pyramid level of the network's pass on the working grid: ``mode``'s when ``steps`` (the
    refinement's) > 0, else 0 (every level: nothing follows the network)."""
    return _mode(mode, dimension).finest_level if steps else 0


def coarse_pass_for(mode: str, dimension: int, coarse_pass: float | None = None) -> float | None:
    """The coarse-pass factor to use: ``coarse_pass`` when given (1: none), else ``mode``'s; None: none."""
    factor = _mode(mode, dimension).coarse_pass if coarse_pass is None else coarse_pass
    return None if factor is None or factor == 1 else factor
