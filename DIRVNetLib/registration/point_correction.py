"""Correction of a displacement field by corresponding point pairs, where the registration is wrong.

Each pair is a fixed point p_i and the moving point q_i it shows (LPS mm); the corrected field should
carry p_i to q_i: p_i + u(p_i) = q_i (pull convention, warped(p) = moving(p + u(p))). The correction
is a smooth field added to u, built in levels: each a sum of compactly supported radial functions
(Wendland's C2 function (1 - r/R)^4 (4 r/R + 1), zero beyond the radius R in mm) centred on the fixed
points, whose weights fit the residuals q_i - p_i - u(p_i) left by the levels before (a slightly
regularised solve, so close points first move together); R halves from level to level, down to two
voxels. Farther than the first R from every fixed point u is unchanged. A level that would fold the
field is not applied (the first, widest one is widened x1.5 up to 3 times instead). When the points are
then not met within ``TOLERANCE_MM`` (adding a smooth correction to a field that compresses sharply near
them folds it), the correction c is composed instead, applied before the field: ``c(x) + u(x + c(x))``,
which folds nowhere ``u`` and ``x + c(x)`` do not. When that does not meet them either, the pairs are
refused (:class:`~DIRVNetLib.errors.PointsError`, naming the pair that asks most) and nothing is returned.
"""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import PointsError
from DIRVNetLib.metrics import displacement_transform, jacobian_determinant

MIN_RADIUS_MM = 20.0
MIN_RADIUS_VOXELS = 6.0  # of the finest spacing
RADIUS_PER_RESIDUAL = 4.0  # default radius >= 4 x the largest residual: one pair alone keeps det J >= 0.47
_ENLARGEMENTS = 3  # times the widest level may be widened (x1.5) when it would fold
_MAX_LEVELS = 12
_SMALLEST_RADIUS_VOXELS = 2.0  # the finest level's radius, in voxels of the finest spacing
_REGULARISATION = 0.1  # of each level's solve: close points' common motion first, their differences later
_CONVERGED_MM = 1e-3
TOLERANCE_MM = 0.1
"""Each fixed point is carried to within this distance of its moving point, or the pairs are refused."""


def _mapped(displacement, points):
    """p + u(p) for each point (u linearly interpolated, as ITK's displacement-field transform)."""
    return _mapped_by(displacement_transform(displacement), points)


def _mapped_by(transform, points):
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
        corners = [
            displacement.TransformPhysicalPointToContinuousIndex((centre + offset).tolist())
            for offset in np.array(np.meshgrid(*[[-reach, reach]] * dim)).reshape(dim, -1).T
        ]
        corners = np.array(corners)[:, ::-1]  # array order
        low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, np.array(shape))
        high = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, np.array(shape))
        if np.any(high <= low):
            continue
        box = tuple(slice(a, b) for a, b in zip(low, high))
        distance = np.linalg.norm(_physical_grid(displacement, box) - centre, axis=-1)
        field[box] += _wendland(distance, radius)[..., np.newaxis] * weight
    return field


def support_weight(image, points, radius):
    """``1 - prod_i (1 - phi(|x - p_i|))`` on ``image``'s grid (a SimpleITK image), ``[*S]`` float64: 1 at
    each point, 0 farther than ``radius`` mm from every point, smooth between (phi: :func:`_wendland`)."""
    outside = np.ones(image.GetSize()[::-1])
    box = support_box(image, points, radius)
    grid = _physical_grid(image, box)
    for point in points:
        outside[box] *= 1.0 - _wendland(np.linalg.norm(grid - point, axis=-1), radius)
    return 1.0 - outside


def _solve(fixed_points, residuals, radius):
    """Weights w of one level: (K + lambda I) w = residuals, K_ij = phi(|p_i - p_j|)."""
    kernel = _wendland(np.linalg.norm(fixed_points[:, None] - fixed_points[None], axis=-1), radius)
    return np.linalg.solve(kernel + _REGULARISATION * np.eye(len(kernel)), residuals)


def _image(array, reference):
    image = sitk.GetImageFromArray(array.astype(np.float64), isVector=True)
    image.CopyInformation(reference)
    return image


def _check_distinct(fixed_points, moving_points):
    """Two pairs with one fixed point but different moving points cannot both hold."""
    for i in range(len(fixed_points)):
        for j in range(i + 1, len(fixed_points)):
            if (
                np.linalg.norm(fixed_points[i] - fixed_points[j]) < 1e-6
                and np.linalg.norm(moving_points[i] - moving_points[j]) > 1e-6
            ):
                raise PointsError(
                    f"point pairs {i + 1} and {j + 1} share a fixed point but have different moving "
                    f"points: no field can carry one point to two places"
                )


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


def support_box(image, points, radius):
    """Numpy slices of ``image``'s grid (a SimpleITK image) within ``radius`` mm (plus two voxels) of any point."""
    shape = np.array(image.GetSize()[::-1])
    reach = radius + 2.0 * max(image.GetSpacing())
    dim = image.GetDimension()
    corners = [
        image.TransformPhysicalPointToContinuousIndex((p + offset).tolist())[::-1]
        for p in points
        for offset in np.array(np.meshgrid(*[[-reach, reach]] * dim)).reshape(dim, -1).T
    ]
    low = np.clip(np.floor(np.min(corners, axis=0)).astype(int), 0, shape)
    high = np.clip(np.ceil(np.max(corners, axis=0)).astype(int) + 1, 0, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def _folds(values, displacement, box):
    """Whether the field ``values`` folds (det J <= 0) inside ``box``."""
    if any(s.stop - s.start < 2 for s in box):
        return False
    part = sitk.GetImageFromArray(values[box], isVector=True)
    part.SetSpacing(displacement.GetSpacing())
    part.SetDirection(displacement.GetDirection())
    return bool(jacobian_determinant(part).min() <= 0)


def _jacobians(displacement, points):
    """``[K, dim, dim]``: the derivative of p -> p + u(p) at each point (central differences, one voxel)."""
    transform = displacement_transform(displacement)
    step = min(displacement.GetSpacing())
    columns = [
        (_mapped_by(transform, points + step * axis) - _mapped_by(transform, points - step * axis)) / (2.0 * step)
        for axis in np.eye(displacement.GetDimension())
    ]
    return np.stack(columns, axis=-1)


def _levels(displacement, fixed_points, moving_points, radius, composed):
    """``(field, levels applied, largest radius applied)``: the levels of the module docstring. The
    correction ``c`` is added (``u + c``) or, when ``composed``, applied before the field:
    ``c + u(x + c(x))``, which folds nowhere ``u`` and ``x + c(x)`` do not; its residuals at the points
    are then taken back through the derivative of p -> p + u(p) at ``p + c(p)``."""
    spacing = min(displacement.GetSpacing())
    outer = support_box(displacement, fixed_points, radius * 1.5**_ENLARGEMENTS)  # all levels stay inside
    region = displacement[tuple(reversed(outer))]  # SimpleITK slices in (x, y, z) order; keeps the geometry
    base = sitk.GetArrayFromImage(region).astype(np.float64)
    base_folds = bool(jacobian_determinant(region).min() <= 0)  # then only the points are corrected

    def corrected(correction):
        if not composed:
            return base + correction
        transform = displacement_transform(_image(correction, region))
        moved = sitk.Resample(displacement, region, transform, sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64, True)
        return correction + sitk.GetArrayFromImage(moved)

    def residuals(values, correction):
        missed = moving_points - _mapped(_image(values, region), fixed_points)
        if not composed:
            return missed
        moved = _mapped(_image(correction, region), fixed_points)  # p + c(p)
        return np.linalg.solve(_jacobians(displacement, moved), missed[..., np.newaxis])[..., 0]

    correction, values = np.zeros_like(base), base
    remaining, levels, largest, level_radius = residuals(values, correction), 0, None, radius
    for _ in range(_ENLARGEMENTS + _MAX_LEVELS):
        if np.linalg.norm(remaining, axis=1).max() <= _CONVERGED_MM:
            break
        weights = _solve(fixed_points, remaining, level_radius)
        candidate_correction = correction + _radial_field(region, fixed_points, weights, level_radius)
        candidate = corrected(candidate_correction)
        if not base_folds and _folds(candidate, region, support_box(region, fixed_points, level_radius)):
            if levels == 0 and level_radius < radius * 1.5**_ENLARGEMENTS:
                level_radius *= 1.5  # the first, widest level asks too much: widen it
                continue
            break  # finer levels would fold: keep what the coarser ones reached
        correction, values, levels = candidate_correction, candidate, levels + 1
        largest = level_radius if largest is None else largest
        remaining = residuals(values, correction)
        level_radius = max(level_radius / 2.0, _SMALLEST_RADIUS_VOXELS * spacing)
    full = sitk.GetArrayFromImage(displacement)
    full[outer] = values
    output = sitk.GetImageFromArray(full, isVector=True)
    output.CopyInformation(displacement)
    return output, levels, largest


def correct_with_points(displacement, fixed_points, moving_points, radius=None):
    """``(corrected displacement, report)`` carrying each fixed point to its moving point (module docstring).

    displacement: SimpleITK vector image on the fixed grid (LPS mm; not modified). fixed_points,
    moving_points: (N, dim) arrays in LPS mm (checked pairs, e.g. from :func:`DIRVNetLib.io.points.point_pairs`).
    radius: of the correction around each fixed point, mm; None: max(20 mm, 6 voxels, 4 x the largest
    residual). report: ``points``, ``radius_mm`` (the largest used), ``levels``, ``composed`` (whether the
    correction was composed with the field rather than added), ``error_before_mm`` /
    ``error_after_mm`` (|p_i + u(p_i) - q_i| per point), ``jacobian_min_after`` (smallest det J where the
    field may have changed). Raises PointsError when
    the pairs cannot be met within ``TOLERANCE_MM`` without folding the field.
    """
    fixed_points = np.asarray(fixed_points, np.float64)
    moving_points = np.asarray(moving_points, np.float64)
    _check_distinct(fixed_points, moving_points)
    residuals = moving_points - _mapped(displacement, fixed_points)
    before = np.linalg.norm(residuals, axis=1)
    spacing = min(displacement.GetSpacing())
    if radius is None:
        radius = max(MIN_RADIUS_MM, MIN_RADIUS_VOXELS * spacing, RADIUS_PER_RESIDUAL * float(before.max()))
    elif not (np.isfinite(radius) and radius > 0):
        raise PointsError(f"the point correction's radius must be > 0 mm, got {radius!r}")
    output, levels, largest = _levels(displacement, fixed_points, moving_points, radius, composed=False)
    after = np.linalg.norm(moving_points - _mapped(output, fixed_points), axis=1)
    composed = bool(after.max() > TOLERANCE_MM)
    if composed:  # adding would fold the field: compose instead
        output, levels, largest = _levels(displacement, fixed_points, moving_points, radius, composed=True)
        after = np.linalg.norm(moving_points - _mapped(output, fixed_points), axis=1)
    if after.max() > TOLERANCE_MM:
        pair = _most_demanding_pair(fixed_points, residuals)
        detail = (
            ""
            if pair is None
            else (
                f"; pairs {pair[0] + 1} and {pair[1] + 1} are {pair[2]:.1f} mm apart on the fixed image but must move "
                f"{pair[3]:.1f} mm relative to each other"
            )
        )
        worst = int(np.argmax(after))
        raise PointsError(
            f"the point pairs would fold the field: pair {worst + 1} stays {after[worst]:.1f} mm from its "
            f"moving point without folding{detail}; check that each moving point corresponds to its "
            f"fixed point"
        )
    report = {
        "points": int(len(fixed_points)),
        "radius_mm": float(largest or radius),
        "levels": levels,
        "composed": composed,
        "error_before_mm": [float(v) for v in before],
        "error_after_mm": [float(v) for v in after],
        "jacobian_min_after": float(
            jacobian_determinant(output[tuple(reversed(support_box(output, fixed_points, largest or radius)))]).min()
        ),
    }
    return output, report
