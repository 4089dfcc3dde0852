"""The working grid, conversions between network voxels and physical LPS displacements, and the check
that the two images overlap at all.

The working grid shares the fixed image's origin, direction and physical extent; its spacing is the
fixed spacing, or isotropic (the finest fixed spacing, or ``working_spacing`` mm) when asked.
"""

import dataclasses

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError
from DIRVNetLib.grid import Grid
from DIRVNetLib.io.resample import isotropic_reference, isotropic_size


@dataclasses.dataclass
class WorkingGrid:
    """reference: an empty SimpleITK image carrying the grid (origin, spacing, direction, size)."""

    reference: sitk.Image

    @staticmethod
    def spacing_for(fixed, working_spacing=None, isotropic=True):
        """The isotropic working spacing (mm) for ``fixed``: ``working_spacing`` if given; else the
        finest fixed spacing when ``isotropic`` and the fixed spacing is anisotropic (> 1% apart);
        else None (the fixed grid itself)."""
        spacing = np.array(fixed.GetSpacing())
        if working_spacing is None and isotropic and spacing.max() > 1.01 * spacing.min():
            working_spacing = float(spacing.min())
        return working_spacing

    @classmethod
    def shape_for(cls, fixed, working_spacing=None, isotropic=True):
        """The array-order shape of :meth:`for_fixed`'s grid, computed without allocating it."""
        spacing = cls.spacing_for(fixed, working_spacing, isotropic)
        size = fixed.GetSize() if spacing is None else isotropic_size(fixed, spacing)
        return tuple(reversed(size))

    @classmethod
    def for_fixed(cls, fixed, working_spacing=None, isotropic=True):
        """The grid for ``fixed`` (spacing from :meth:`spacing_for`)."""
        working_spacing = cls.spacing_for(fixed, working_spacing, isotropic)
        if working_spacing is None:
            return cls(Grid.of(fixed).image())
        if working_spacing <= 0:
            raise ValueError(f"working_spacing must be > 0 mm, got {working_spacing}")
        return cls(isotropic_reference(fixed, working_spacing))

    def matches(self, image):
        """Whether ``image`` lies on exactly this grid (size, spacing, origin, direction)."""
        return Grid.of(image) == Grid.of(self.reference)

    @property
    def shape(self):
        """Array-order shape ([z, y, x] in 3D)."""
        return Grid.of(self.reference).shape

    @property
    def voxel_to_physical(self):
        """Maps an index-space vector (x, y, z order) to a physical LPS vector (mm)
        (:attr:`DIRVNetLib.grid.Grid.index_to_physical`)."""
        return Grid.of(self.reference).index_to_physical

    def flow_to_displacement(self, flow):
        """A voxel flow ``[*shape, N]`` (array component order) as a SimpleITK vector image on this grid
        in physical LPS mm (x, y, z components), float64; same pull convention."""
        # The matrix's rows reordered to the flow's array component order, so the flow is read as it
        # is, not through a reversed view. float64, as the matrix.
        physical = np.matmul(np.asarray(flow), np.ascontiguousarray(self.voxel_to_physical.T[::-1]))
        image = sitk.GetImageFromArray(physical, isVector=True)
        image.CopyInformation(self.reference)
        return image

    def displacement_to_flow(self, displacement):
        """Inverse of :meth:`flow_to_displacement` for a displacement image on this grid."""
        physical = sitk.GetArrayFromImage(displacement).astype(np.float64)
        index_vectors = physical @ Grid.of(self.reference).physical_to_index.T
        return index_vectors[..., ::-1].astype(np.float32)


def resample_displacement(displacement, reference):
    """Linear resampling of a displacement field (values unchanged: physical mm) onto ``reference``'s
    grid as float64. A float64 field already on exactly that grid is returned as it is (not copied). Onto a
    grid with the field's origin and direction (the fixed grid of a field made on the working grid), one
    axis at a time in an XLA cluster (:func:`~DIRVNetLib.ops.resize.resample_axes`; beyond the field's
    last voxel along an axis, that voxel's vectors along that axis); otherwise by SimpleITK (beyond the
    field's extent, the nearest vector)."""
    source, target = Grid.of(displacement), Grid.of(reference)
    if displacement.GetPixelID() == sitk.sitkVectorFloat64 and source == target:
        return displacement
    if source.origin == target.origin and source.direction == target.direction:
        from DIRVNetLib.ops import resample_axes  # TensorFlow: only where a field is made

        values = np.asarray(sitk.GetArrayViewFromImage(displacement), np.float64)  # copied only if not float64
        ratios = tuple(np.divide(target.spacing, source.spacing)[::-1].tolist())
        image = sitk.GetImageFromArray(
            resample_axes(values[np.newaxis], ratios, target.shape)[0].numpy(), isVector=True
        )
        image.CopyInformation(reference)
        return image
    return sitk.Resample(displacement, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64, True)


MIN_OVERLAP = 0.01
"""Least fraction of the fixed image's extent the moving image must cover to be registered."""


def overlap_fraction(fixed, moving, samples=32):
    """Fraction of the fixed image's extent (voxel edges included) lying inside the moving image's,
    from the centres of a lattice of at most ``samples`` equal cells per axis across the fixed extent."""
    size = np.array(fixed.GetSize())
    axes = [(np.arange(min(n, samples)) + 0.5) * n / min(n, samples) - 0.5 for n in size]
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(size))
    fixed_grid, moving_grid = Grid.of(fixed), Grid.of(moving)
    points = np.asarray(index, float) @ fixed_grid.index_to_physical.T + np.array(fixed_grid.origin)
    moving_index = (points - np.array(moving_grid.origin)) @ moving_grid.physical_to_index.T
    inside = np.all((moving_index >= -0.5) & (moving_index <= np.array(moving.GetSize()) - 0.5), axis=1)
    return float(inside.mean())


def check_overlap(fixed, moving):
    """Raise :class:`InputImageError` when ``moving`` covers less than :data:`MIN_OVERLAP` of the fixed
    image's extent in physical space (images that miss each other, or only touch at an edge)."""
    fraction = overlap_fraction(fixed, moving)
    if fraction == 0:
        raise InputImageError(
            f"the moving image does not overlap the fixed image in physical space (fixed: {_span(fixed)}; "
            f"moving: {_span(moving)}, LPS mm): check the images' origins and directions"
        )
    if fraction < MIN_OVERLAP:
        raise InputImageError(
            f"the moving image covers only {100 * fraction:.2g}% of the fixed image in physical space (fixed: "
            f"{_span(fixed)}; moving: {_span(moving)}, LPS mm), less than the {100 * MIN_OVERLAP:g}% needed: "
            "check the images' origins and directions"
        )
    return fraction


def _span(image):
    """The physical points of an image's first and last voxel centres, for messages."""
    last = image.TransformIndexToPhysicalPoint([n - 1 for n in image.GetSize()])
    first = image.GetOrigin()
    return "(" + ", ".join(f"{v:.1f}" for v in first) + ") to (" + ", ".join(f"{v:.1f}" for v in last) + ")"
