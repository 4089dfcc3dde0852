"""Correction of a displacement field by corresponding point pairs, where the registration is wrong.

Each pair is a fixed point p_i and the moving point q_i it shows (LPS mm); the corrected field should
carry p_i to q_i: p_i + u(p_i) = q_i (pull convention, warped(p) = moving(p + u(p))). The correction
is a smooth field added to u: a sum of compactly supported radial functions (Wendland's C2 function
(1 - r/R)^4 (4 r/R + 1), zero beyond the radius R in mm) centred on the fixed points, whose weights are
solved so that it interpolates the residuals q_i - p_i - u(p_i) exactly (then once more for what the
grid's linear interpolation left). Farther than R from every fixed point u is unchanged. If the result
folds, R is enlarged (x1.5, up to 3 times); if it still folds, the pairs are refused
(:class:`~DIRVNetLib.errors.PointsError`, naming the pair that asks most).
"""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import PointsError
from DIRVNetLib.metrics import displacement_transform, jacobian_determinant

MIN_RADIUS_MM = 20.0
MIN_RADIUS_VOXELS = 6.0  # of the finest spacing
RADIUS_PER_RESIDUAL = 4.0  # default radius >= 4 x the largest residual: one pair alone keeps det J >= 0.47
_ENLARGEMENTS = 3


def _mapped(displacement, points):
    """p + u(p) for each point (u linearly interpolated, as ITK's displacement-field transform)."""
    transform = displacement_transform(displacement)
    return np.array([transform.TransformPoint([float(v) for v in p]) for p in points])


def _physical_grid(displacement, box):
    """LPS coordinates (mm) of the voxels in ``box`` (numpy slices, array order) as [..., dim]."""
    dim = displacement.GetDimension()
    index = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")[::-1]  # x, y[, z] order
    matrix = np.array(displacement.GetDirection()).reshape(dim, dim) @ np.diag(displacement.GetSpacing())
    stacked = np.stack(index, axis=-1).astype(np.float64)
    return stacked @ matrix.T + np.array(displacement.GetOrigin())


def _wendland(distance, radius):
    """Wendland's C2 function of ``distance / radius``: 1 at 0, 0 from ``radius`` on."""
    r = np.minimum(np.asarray(distance) / radius, 1.0)
    return (1.0 - r) ** 4 * (4.0 * r + 1.0)


def _radial_field(displacement, centres, weights, radius):
    """sum_j weights_j * phi(|x - c_j|) on the field's grid, [*S, dim] (phi: :func:`_wendland`)."""
    dim = displacement.GetDimension()
    shape = displacement.GetSize()[::-1]
    field = np.zeros(tuple(shape) + (dim,), np.float64)
    reach = radius
    for centre, weight in zip(centres, weights):
        corners = [displacement.TransformPhysicalPointToContinuousIndex((centre + offset).tolist())
                   for offset in np.array(np.meshgrid(*[[-reach, reach]] * dim)).reshape(dim, -1).T]
        corners = np.array(corners)[:, ::-1]  # array order
        low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, np.array(shape))
        high = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, np.array(shape))
        if np.any(high <= low):
            continue
        box = tuple(slice(a, b) for a, b in zip(low, high))
        distance = np.linalg.norm(_physical_grid(displacement, box) - centre, axis=-1)
        field[box] += _wendland(distance, radius)[..., np.newaxis] * weight
    return field


def _solve(fixed_points, residuals, radius):
    kernel = _wendland(np.linalg.norm(fixed_points[:, None] - fixed_points[None], axis=-1), radius)
    return np.linalg.lstsq(kernel, residuals, rcond=1e-10)[0]


def _image(array, reference):
    image = sitk.GetImageFromArray(array.astype(np.float64), isVector=True)
    image.CopyInformation(reference)
    return image


def _check_distinct(fixed_points, moving_points):
    """Two pairs with one fixed point but different moving points cannot both hold."""
    for i in range(len(fixed_points)):
        for j in range(i + 1, len(fixed_points)):
            if np.linalg.norm(fixed_points[i] - fixed_points[j]) < 1e-6 and \
                    np.linalg.norm(moving_points[i] - moving_points[j]) > 1e-6:
                raise PointsError(f"point pairs {i + 1} and {j + 1} share a fixed point but have different moving "
                                  f"points: no field can carry one point to two places")


def _most_demanding_pair(fixed_points, residuals):
    """(i, j, distance mm, relative motion mm) of the pair whose residuals differ most per mm apart."""
    best = None
    for i in range(len(fixed_points)):
        for j in range(i + 1, len(fixed_points)):
            distance = float(np.linalg.norm(fixed_points[i] - fixed_points[j]))
            relative = float(np.linalg.norm(residuals[i] - residuals[j]))
            ratio = relative / max(distance, 1e-9)
            if best is None or ratio > best[0]:
                best = (ratio, i, j, distance, relative)
    return None if best is None else best[1:]


def correct_with_points(displacement, fixed_points, moving_points, radius=None):
    """``(corrected displacement, report)`` carrying each fixed point to its moving point (module docstring).

    displacement: SimpleITK vector image on the fixed grid (LPS mm; not modified). fixed_points,
    moving_points: (N, dim) arrays in LPS mm (checked pairs, e.g. from :func:`DIRVNetLib.io.points.point_pairs`).
    radius: of the correction around each fixed point, mm; None: max(20 mm, 6 voxels, 4 x the largest
    residual). report: ``points``, ``radius_mm`` (used), ``error_before_mm`` / ``error_after_mm`` (|p_i + u(p_i) - q_i|
    per point), ``jacobian_min_after``. Raises PointsError when the pairs would fold the field.
    """
    fixed_points = np.asarray(fixed_points, np.float64)
    moving_points = np.asarray(moving_points, np.float64)
    _check_distinct(fixed_points, moving_points)
    residuals = moving_points - _mapped(displacement, fixed_points)
    before = np.linalg.norm(residuals, axis=1)
    if radius is None:
        radius = max(MIN_RADIUS_MM, MIN_RADIUS_VOXELS * min(displacement.GetSpacing()),
                     RADIUS_PER_RESIDUAL * float(before.max()))
    elif not (np.isfinite(radius) and radius > 0):
        raise PointsError(f"the point correction's radius must be > 0 mm, got {radius!r}")
    base = sitk.GetArrayFromImage(displacement).astype(np.float64)
    base_folds = float(jacobian_determinant(displacement).min()) <= 0  # then only the points are corrected
    for attempt in range(_ENLARGEMENTS + 1):
        values = base.copy()
        remaining = residuals
        for _ in range(2):  # the second pass removes what the grid interpolation left at the points
            values += _radial_field(displacement, fixed_points, _solve(fixed_points, remaining, radius), radius)
            remaining = moving_points - _mapped(_image(values, displacement), fixed_points)
        corrected = _image(values, displacement)
        jacobian_min = float(jacobian_determinant(corrected).min())
        if jacobian_min > 0 or base_folds:
            break
        if attempt < _ENLARGEMENTS:
            radius *= 1.5
    else:
        pair = _most_demanding_pair(fixed_points, residuals)
        detail = "" if pair is None else (
            f"; pairs {pair[0] + 1} and {pair[1] + 1} are {pair[2]:.1f} mm apart on the fixed image but must move "
            f"{pair[3]:.1f} mm relative to each other")
        raise PointsError(f"the point pairs would fold the field even with a correction radius of {radius:.0f} mm"
                          f"{detail}; check that each moving point corresponds to its fixed point")
    output = sitk.Cast(corrected, displacement.GetPixelID())
    after = np.linalg.norm(moving_points - _mapped(output, fixed_points), axis=1)
    report = {"points": int(len(fixed_points)), "radius_mm": float(radius),
              "error_before_mm": [float(v) for v in before], "error_after_mm": [float(v) for v in after],
              "jacobian_min_after": jacobian_min}
    return output, report
