"""The working-grid policy: the grid the network runs on and the grid the refinement runs on.

A network sees images in voxels, so it handles the anatomy at about the spacing it was trained at. A
weight set's training spacing is ``network_spacing_mm`` in its metadata, or else the spacing its training
volumes were resampled to (``training.run.data.volume_spacing``); it handles isotropic spacings within a
factor :data:`HANDLED_FACTOR` of it. Unknown (e.g. weights trained on pairs of any spacing): any spacing.

- Network grid: an explicit ``working_spacing`` (isotropic, mm) always wins; one outside the handled range
  is used as asked, with a warning. Otherwise the image's own grid (:class:`WorkingGrid`: the fixed grid,
  made isotropic at its finest spacing when anisotropic) when its spacings lie in the handled range, else
  an isotropic grid at the training spacing (a 1 mm image for weights trained at 2 mm: 2 mm).
- Refinement grid: ``refinement_spacing`` (isotropic, mm) when given, else the network grid.

The field is resampled onto the fixed grid at the end either way. Figures: docs/performance.md.
"""

import dataclasses

import numpy as np

HANDLED_FACTOR = 1.5
"""A weight set handles spacings from its training spacing / this to its training spacing x this."""


def training_spacing(metadata):
    """The spacing (mm) a weight set's network was trained at, from its ``metadata`` (module docstring), or None."""
    value = metadata.get("network_spacing_mm")
    if value is None:
        run = (metadata.get("training") or {}).get("run") or {}
        data = run.get("data") or {}
        value = data.get("volume_spacing") if data.get("volumes") else None
    return float(value) if value else None


def handled_spacings(metadata):
    """``(lowest, highest)`` spacing (mm) the weight set handles, or None when its training spacing is unknown."""
    trained = training_spacing(metadata)
    return None if trained is None else (trained / HANDLED_FACTOR, trained * HANDLED_FACTOR)


@dataclasses.dataclass(frozen=True)
class GridChoice:
    """network_spacing: isotropic spacing (mm) of the network's grid, or None for the image's own grid
    (``WorkingGrid.for_fixed(fixed, None, isotropic)``); refinement_spacing: isotropic spacing (mm) of the
    refinement's grid, or None for the network's grid; handled_mm: the weight set's ``(lowest, highest)``
    spacing or None; warnings: one-line messages for report.json."""

    network_spacing: float | None
    refinement_spacing: float | None
    handled_mm: tuple | None
    warnings: tuple = ()


def choose_grids(fixed, metadata, working_spacing=None, isotropic=True, refinement_spacing=None):
    """The :class:`GridChoice` for registering onto ``fixed`` (SimpleITK image) with a weight set whose
    metadata is ``metadata``, given register's ``working_spacing``, ``isotropic`` and ``refinement_spacing``."""
    handled = handled_spacings(metadata)
    warnings = []
    network = working_spacing
    if working_spacing is not None:
        if handled is not None and not handled[0] <= working_spacing <= handled[1]:
            warnings.append(
                f"working_spacing {working_spacing:g} mm lies outside the {handled[0]:.2g}-{handled[1]:.2g} mm the "
                f"weights handle (trained at {training_spacing(metadata):g} mm): the network may register poorly "
                "on this grid; leave working_spacing unset to let the weights' grid be chosen"
            )
    elif handled is not None:
        spacing = np.array(fixed.GetSpacing(), float)
        if isotropic and spacing.max() > 1.01 * spacing.min():
            spacing = np.array([spacing.min()])  # the isotropic grid of the finest spacing
        if not np.all((spacing >= handled[0]) & (spacing <= handled[1])):
            network = training_spacing(metadata)
    return GridChoice(network, refinement_spacing, handled, tuple(warnings))
