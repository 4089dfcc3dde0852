"""Shared helpers of the metrics package: array conversion, grid checks, masks.

Grids are compared with :meth:`DIRVNetLib.grid.Grid.same_as`: in physical terms, within tolerances that
absorb the float32 rounding of NIfTI/NRRD headers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from DIRVNetLib.grid import Grid

ImageOrArray = sitk.Image | npt.ArrayLike
"""A scalar SimpleITK image, or an array in numpy order ([z, y, x])."""
Mask = sitk.Image | npt.ArrayLike | None
"""A mask (nonzero = inside) as a label image or an array; None = every voxel."""


def check_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str) -> None:
    """Raise ValueError naming both images when their grids differ."""
    grid_a, grid_b = Grid.of(a), Grid.of(b)
    if not grid_a.same_as(grid_b):
        raise ValueError(
            f"grid mismatch: {name_a} and {name_b} must share one grid; "
            f"{name_a}: {grid_a.describe()}; {name_b}: {grid_b.describe()}"
        )


def check_displacement(displacement: object, name: str = "displacement") -> None:
    """Raise ValueError unless ``displacement`` is a SimpleITK vector image with dim components."""
    if not isinstance(displacement, sitk.Image):
        raise TypeError(f"{name} must be a SimpleITK vector image, got {type(displacement).__name__}")
    dim = displacement.GetDimension()
    ncomp = displacement.GetNumberOfComponentsPerPixel()
    if dim not in (2, 3):
        raise ValueError(f"dimension mismatch: {name} is {dim}D; only 2D and 3D fields are supported")
    if ncomp != dim:
        raise ValueError(
            f"dimension mismatch: {name} is a {dim}D image with {ncomp} components per pixel; "
            f"a displacement field needs {dim} (x, y{', z' if dim == 3 else ''} in mm)"
        )


def displacement_array(displacement: sitk.Image) -> np.ndarray:
    """Float64 copy of a displacement field, shape (*numpy_spatial_shape, dim), components x, y, z."""
    return sitk.GetArrayFromImage(displacement).astype(np.float64, copy=False)


def scalar_view(image: ImageOrArray, name: str) -> np.ndarray:
    """Array of a scalar SimpleITK image (a read-only view, its own pixel type) or array-like."""
    if isinstance(image, sitk.Image):
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"{name} must be a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per pixel"
            )
        return sitk.GetArrayViewFromImage(image)
    return np.asarray(image)


def label_array(image: ImageOrArray, name: str) -> np.ndarray:
    """Integer label array of a scalar SimpleITK image or array-like."""
    if isinstance(image, sitk.Image):
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"{name} must be a scalar label image, got {image.GetNumberOfComponentsPerPixel()} components per pixel"
            )
        arr = sitk.GetArrayFromImage(image)
    else:
        arr = np.asarray(image)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise ValueError(f"{name} must hold integer labels; found non-integer values")
        arr = rounded
    return arr.astype(np.int64)


def check_pair(a: ImageOrArray, b: ImageOrArray, name_a: str, name_b: str) -> None:
    """Grid check when both are SimpleITK images; shape check happens on the arrays."""
    if isinstance(a, sitk.Image) and isinstance(b, sitk.Image):
        check_same_grid(a, b, name_a, name_b)


def check_shapes(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"grid mismatch: {name_a} has shape {a.shape} and {name_b} has shape "
            f"{b.shape} (numpy order); they must be on the same grid"
        )


def mask_array(
    mask: Mask, shape: tuple[int, ...], reference: sitk.Image | None = None, name: str = "mask"
) -> np.ndarray:
    """Boolean mask (nonzero = inside) of numpy shape ``shape``.

    ``mask`` is a SimpleITK label image (checked against ``reference``'s grid when given) or an
    array. None means every voxel. Raises ValueError for a wrong grid/shape or an empty mask.
    """
    if mask is None:
        return np.ones(shape, dtype=bool)
    if isinstance(mask, sitk.Image):
        if mask.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{name} must be a scalar label image")
        if reference is not None:
            check_same_grid(reference, mask, "image", name)
        arr = sitk.GetArrayViewFromImage(mask) != 0
    else:
        arr = np.asarray(mask) != 0
    if arr.shape != tuple(shape):
        raise ValueError(f"grid mismatch: {name} has shape {arr.shape}, expected {tuple(shape)} (numpy order)")
    if not arr.any():
        raise ValueError(f"{name} is empty: it selects no voxel")
    return np.array(arr, dtype=bool)
