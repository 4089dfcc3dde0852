"""The geometry of an image grid, in one place: size, spacing, origin and direction as SimpleITK holds
them (x, y, z order, LPS mm), the index <-> physical matrices, whether two images share a grid, and
empty reference images for resampling. Plain numpy and SimpleITK: every layer may import it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

SPACING_RTOL = 1e-5
DIRECTION_ATOL = 1e-5
ORIGIN_ATOL_FRACTION = 1e-3
"""Tolerances of :meth:`Grid.same_as`: they absorb the float32 rounding of NIfTI/NRRD headers (origin:
a fraction of the smallest spacing)."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """An image grid: ``size`` (voxels), ``spacing`` (mm), ``origin`` (LPS mm), in SimpleITK's x, y, z
    order, and ``direction`` (row-major ``ndim x ndim``, columns = the index axes in LPS)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        """The grid of a SimpleITK image."""
        return cls(
            tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection())
        )

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array-order shape ([z, y, x] in 3D)."""
        return tuple(reversed(self.size))

    @property
    def index_to_physical(self) -> np.ndarray:
        """``direction @ diag(spacing)``: maps an index-space vector (x, y, z order) to a physical LPS
        vector (mm), float64."""
        direction = np.array(self.direction, dtype=np.float64).reshape(self.ndim, self.ndim)
        return direction @ np.diag(np.array(self.spacing, dtype=np.float64))

    @property
    def physical_to_index(self) -> np.ndarray:
        """The inverse of :attr:`index_to_physical`: a physical LPS vector (mm) as an index-space vector."""
        return np.linalg.inv(self.index_to_physical)

    def same_as(self, other: Grid) -> bool:
        """Whether two grids are the same within header rounding (:data:`SPACING_RTOL`, ...); ``==``
        compares exactly."""
        if self.ndim != other.ndim or self.size != other.size:
            return False
        spacing, other_spacing = np.array(self.spacing), np.array(other.spacing)
        if not np.allclose(spacing, other_spacing, rtol=SPACING_RTOL, atol=0.0):
            return False
        if not np.allclose(self.direction, other.direction, rtol=0.0, atol=DIRECTION_ATOL):
            return False
        atol = ORIGIN_ATOL_FRACTION * float(min(spacing.min(), other_spacing.min()))
        return bool(np.allclose(self.origin, other.origin, rtol=0.0, atol=atol))

    def describe(self) -> str:
        """One line for error messages."""

        def numbers(values: tuple[float, ...]) -> str:
            return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"

        return (
            f"size {self.size}, spacing {numbers(self.spacing)}, origin {numbers(self.origin)}, "
            f"direction {numbers(self.direction)}"
        )

    def image(self, pixel: int = sitk.sitkFloat32, components: int = 1) -> sitk.Image:
        """An image of zeros on this grid (a resampling reference, or an identity field with
        ``components = ndim`` and a vector pixel type)."""
        image = sitk.Image(list(self.size), pixel, components) if components > 1 else sitk.Image(list(self.size), pixel)
        return self.place(image)

    def place(self, image: sitk.Image) -> sitk.Image:
        """``image`` (of this grid's size, e.g. made from an array) given this grid's spacing, origin and
        direction; returns it."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"an image of size {image.GetSize()} cannot be placed on a grid of size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image
