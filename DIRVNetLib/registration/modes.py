"""Named presets of :func:`~DIRVNetLib.registration.api.register` (``mode=`` / ``--mode``): one choice for
the trade-off between time and accuracy. Figures: docs/performance.md."""

from __future__ import annotations

from DIRVNetLib.registration.refinement import RefinementSettings

MODES: dict[str, dict[int, RefinementSettings]] = {  # mode -> image dimension -> settings
    "fast": {2: RefinementSettings(steps=0), 3: RefinementSettings(steps=0)},  # the network alone
    # the network, then test-time refinement on the working grid (3D steps cost about 40x 2D ones)
    "accurate": {2: RefinementSettings(steps=50), 3: RefinementSettings(steps=20)},
}
DEFAULT_MODE = "accurate"


def settings_for(
    mode: str, dimension: int, refine_steps: int | None = None, refinement: RefinementSettings | None = None
) -> RefinementSettings:
    """The refinement settings of ``mode`` for ``dimension``-D images; ``refinement`` (a
    :class:`RefinementSettings`) replaces them and ``refine_steps`` replaces their number of steps.
    Raises ValueError naming an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    settings = MODES[mode][dimension] if refinement is None else refinement
    if not isinstance(settings, RefinementSettings):
        raise ValueError(f"refinement must be a RefinementSettings, got {type(settings).__name__}")
    if refine_steps is not None:
        settings = RefinementSettings(**{**settings.__dict__, "steps": refine_steps})
    return settings
