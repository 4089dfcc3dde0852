"""Displacement-field metrics: Jacobian determinant, its statistics, end-point error.

Conventions: a displacement field u is a SimpleITK vector image on the fixed grid whose components
are physical millimetres in the LPS frame, ordered (x, y[, z]) like SimpleITK physical points. The
point map is p -> p + u(p) (warped(p) = moving(p + u(p))). Returned arrays are in numpy order
([z, y, x]) on the field's grid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from DIRVNetLib.blocks import map_blocks
from DIRVNetLib.grid import Grid

from ._common import Mask, check_displacement, check_same_grid, displacement_array, mask_array

# Voxels per slab of jacobian_determinant: its temporaries then stay near the CPU caches, and small
# images are one slab.
_SLAB_VOXELS = 1 << 18


def jacobian_determinant(displacement: sitk.Image, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Determinant of the Jacobian of p -> p + u(p), per voxel, numpy order, same grid.

    du/dp is computed in physical units: central differences in index space (as ``np.gradient``,
    one-sided at the borders) followed by the chain rule with inverse(direction @ diag(spacing)),
    so spacing and orientation are honoured. J = det(I + du/dp); dimensionless, 1 = volume kept,
    <= 0 = folding. dtype: of the computation and the result; float32 takes about half the time and
    memory, to about 1e-6 of J. Computed in slabs of a few slices along the first numpy axis, spread
    over threads (:mod:`DIRVNetLib.blocks`), so the temporaries stay small (the result is the same as for
    the whole volume at once).
    """
    check_displacement(displacement)
    if min(displacement.GetSize()) < 2:
        raise ValueError(
            f"displacement grid {displacement.GetSize()} is too small for finite "
            f"differences: every axis needs at least 2 voxels"
        )
    u = sitk.GetArrayViewFromImage(displacement)  # (*spatial, dim), components x, y, z
    to_index = Grid.of(displacement).physical_to_index.astype(dtype)
    det = np.empty(u.shape[:-1], dtype)
    length = u.shape[0]
    slab = max(1, _SLAB_VOXELS // int(np.prod(u.shape[1:-1])))

    def fill(start: int) -> None:
        stop = min(start + slab, length)
        low, high = max(start - 1, 0), min(stop + 1, length)  # one neighbour each side: central differences
        det[start:stop] = _determinant(u[low:high], to_index, dtype)[start - low : stop - low]

    map_blocks(fill, range(0, length, slab))
    return det


def _central_differences(x: np.ndarray) -> list[np.ndarray]:
    """Derivative of ``x`` along each of its axes, as ``np.gradient`` (unit spacing, one-sided at the
    ends, the same values) but faster: written into preallocated arrays."""
    derivatives = []
    for axis in range(x.ndim):
        out = np.empty_like(x)
        inner = out[_along(axis, 1, -1)]
        np.subtract(x[_along(axis, 2, None)], x[_along(axis, None, -2)], out=inner)
        inner *= 0.5
        np.subtract(x[_along(axis, 1, 2)], x[_along(axis, 0, 1)], out=out[_along(axis, 0, 1)])
        np.subtract(x[_along(axis, -1, None)], x[_along(axis, -2, -1)], out=out[_along(axis, -1, None)])
        derivatives.append(out)
    return derivatives


def _along(axis: int, start: int | None, stop: int | None) -> tuple[slice, ...]:
    """Index selecting ``start:stop`` along ``axis``."""
    return (slice(None),) * axis + (slice(start, stop),)


def _determinant(u: np.ndarray, to_index: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
    """J of a block ``u`` (*spatial, dim) of the field (differences one-sided at the block's ends)."""
    dim = u.shape[-1]
    # J[c][j] = delta_cj + sum_i d u_c / d index_i * to_index[i, j], index i in (x, y, z) order =
    # numpy axis dim - 1 - i; entries kept as separate arrays (no per-voxel matrices: fast, small), zero
    # terms of to_index (axis-aligned grids) skipped, sums formed in place.
    jac = []
    for c in range(dim):
        derivs = _central_differences(u[..., c].astype(dtype))[::-1]  # by index axis x, y, z
        row = []
        for j in range(dim):
            first, *rest = (i for i in range(dim) if to_index[i, j] != 0)
            entry = derivs[first] * to_index[first, j]
            for i in rest:
                entry += derivs[i] * to_index[i, j]
            if c == j:
                entry += 1.0
            row.append(entry)
        jac.append(row)
    if dim == 2:
        return jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
    return (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )


def jacobian_statistics(
    displacement: sitk.Image,
    mask: Mask = None,
    dtype: npt.DTypeLike = np.float64,
    determinant: np.ndarray | None = None,
) -> dict[str, float]:
    """Summary of the Jacobian determinant J of p -> p + u(p) over ``mask`` (all voxels if None).

    Keys:
      ``jacobian_min``: smallest J.
      ``jacobian_nonpositive_percent``: percent (0-100) of voxels with J <= 0 (folding).
      ``std_log_jacobian``: std of log J over the voxels with J > 0 (NaN if there are none).
      ``std_log_jacobian_l2r``: Learn2Reg challenge variant, std(log(clip(J + 3, 1e-9, 1e9))) over
          all voxels; the "+3" follows the challenge's evaluation code and only makes its numbers
          comparable with published Learn2Reg results.
    ``mask``: SimpleITK label image on the field's grid or boolean array, nonzero = inside.
    ``dtype``: of the computation (:func:`jacobian_determinant`); ``determinant``: J already computed
    by :func:`jacobian_determinant` for ``displacement`` (then ``dtype`` is not used).
    """
    det = jacobian_determinant(displacement, dtype) if determinant is None else determinant
    values = det.ravel() if mask is None else det[mask_array(mask, det.shape, reference=displacement)]

    def summarise(start: int) -> tuple[float, _Moments, _Moments]:
        block = values[start : start + _SLAB_VOXELS]
        smallest = float(block.min())
        positive = block if smallest > 0 else block[block > 0]
        shifted = block + 3.0
        np.log(np.clip(shifted, 1e-9, 1e9, out=shifted), out=shifted)
        return smallest, _Moments.of(np.log(positive)), _Moments.of(shifted)

    smallest, log_jacobian, l2r = zip(*map_blocks(summarise, range(0, values.size, _SLAB_VOXELS)))
    return {
        "jacobian_min": min(smallest),
        "jacobian_nonpositive_percent": nonpositive_percent(values),
        "std_log_jacobian": _Moments.merged(log_jacobian).std,
        "std_log_jacobian_l2r": _Moments.merged(l2r).std,
    }


@dataclasses.dataclass(frozen=True)
class _Moments:
    """Count, mean and sum of squared deviations from the mean of some values (float64), merged block by
    block (Chan et al.'s pairwise update: no cancellation, unlike sums of squares)."""

    count: int
    mean: float
    squares: float

    @classmethod
    def of(cls, values: np.ndarray) -> _Moments:
        if values.size == 0:
            return cls(0, 0.0, 0.0)
        mean = float(np.mean(values, dtype=np.float64))
        deviations = values.astype(np.float64)
        deviations -= mean
        return cls(values.size, mean, float(np.einsum("i,i", deviations, deviations)))

    @classmethod
    def merged(cls, parts: tuple[_Moments, ...]) -> _Moments:
        total = cls(0, 0.0, 0.0)
        for part in parts:
            count = total.count + part.count
            if part.count:
                delta = part.mean - total.mean
                total = cls(
                    count,
                    total.mean + delta * part.count / count,
                    total.squares + part.squares + delta * delta * total.count * part.count / count,
                )
        return total

    @property
    def std(self) -> float:
        """Population standard deviation (NaN without values)."""
        return float(np.sqrt(self.squares / self.count)) if self.count else float("nan")


def nonpositive_percent(determinant: np.ndarray) -> float:
    """Percent (0-100) of the values of a Jacobian determinant that are ``<= 0`` (folding)."""
    return float(100.0 * np.count_nonzero(determinant <= 0) / determinant.size)


def endpoint_error(displacement: sitk.Image, true_displacement: sitk.Image, mask: Mask = None) -> dict[str, float]:
    """End-point error |u - u_true| (Euclidean, mm) between two fields on the same grid.

    Returns ``epe_mean_mm``, ``epe_median_mm``, ``epe_p95_mm``, ``epe_max_mm`` over ``mask``
    (SimpleITK label image on the same grid or boolean array, nonzero = inside; None = all voxels).
    Raises ValueError when the grids or the numbers of components differ.
    """
    check_displacement(displacement, "displacement")
    check_displacement(true_displacement, "true_displacement")
    check_same_grid(displacement, true_displacement, "displacement", "true_displacement")
    diff = displacement_array(displacement) - displacement_array(true_displacement)
    error = np.sqrt(np.sum(diff * diff, axis=-1))
    values = error[mask_array(mask, error.shape, reference=displacement)]
    return {
        "epe_mean_mm": float(values.mean()),
        "epe_median_mm": float(np.median(values)),
        "epe_p95_mm": float(np.percentile(values, 95)),
        "epe_max_mm": float(values.max()),
    }


def largest_displacement_point(displacement: sitk.Image, smoothing_mm: float = 5.0) -> tuple[float, ...]:
    """The physical point (LPS mm) where |u| smoothed with a Gaussian of ``smoothing_mm`` is largest:
    the centre of the region the registration changed most (ties: the first in array order)."""
    check_displacement(displacement)
    magnitude = sitk.VectorMagnitude(sitk.Cast(displacement, sitk.sitkVectorFloat32))
    smoothed = (
        sitk.SmoothingRecursiveGaussian(magnitude, smoothing_mm) if min(displacement.GetSize()) >= 4 else magnitude
    )
    values = sitk.GetArrayViewFromImage(smoothed)
    index = np.unravel_index(int(np.argmax(values)), values.shape)[::-1]  # (x, y[, z])
    return displacement.TransformIndexToPhysicalPoint([int(i) for i in index])
