"""Target registration error of corresponding points (LPS mm). Point files: :mod:`DIRVNetLib.io.points`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from .labels import displacement_transform


def _as_points(points: npt.ArrayLike, name: str) -> tuple[np.ndarray, str]:
    arr = np.array(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be an (N, dim) array of points, got shape {arr.shape}")
    return arr, name


def target_registration_error(
    fixed_points: npt.ArrayLike,
    moving_points: npt.ArrayLike,
    transform_or_displacement: sitk.Image | sitk.Transform,
) -> dict[str, Any]:
    """Target registration error (mm) of corresponding landmarks.

    Each fixed point p (LPS mm) is mapped to p + u(p) and compared with its moving point:
    TRE_i = |p_i + u(p_i) - q_i|. ``transform_or_displacement``: a displacement field on the
    fixed grid (SimpleITK vector image; linearly interpolated, zero outside its grid) or any
    SimpleITK transform mapping fixed to moving points. Points are (N, dim) arrays (files:
    :func:`DIRVNetLib.io.points.read_points`). Returns ``tre_mean_mm``, ``tre_median_mm``,
    ``tre_max_mm``, ``tre_std_mm``, ``tre_before_mean_mm`` (|p_i - q_i|, no registration),
    ``tre_before_median_mm``, ``tre_before_max_mm``, ``n_points`` and ``tre_per_point_mm`` (list).
    """
    fixed, fixed_name = _as_points(fixed_points, "fixed_points")
    moving, moving_name = _as_points(moving_points, "moving_points")
    if fixed.shape != moving.shape:
        raise ValueError(
            f"landmark mismatch: {fixed_name} holds {fixed.shape[0]} points of "
            f"dimension {fixed.shape[1]}, {moving_name} holds {moving.shape[0]} of "
            f"dimension {moving.shape[1]}"
        )
    transform: sitk.Transform
    if isinstance(transform_or_displacement, sitk.Image):
        transform = displacement_transform(transform_or_displacement)
    elif isinstance(transform_or_displacement, sitk.Transform):
        transform = transform_or_displacement
    else:
        raise TypeError(
            "transform_or_displacement must be a SimpleITK displacement image or "
            f"transform, got {type(transform_or_displacement).__name__}"
        )
    dim = transform.GetDimension()
    if fixed.shape[1] != dim:
        raise ValueError(
            f"dimension mismatch: {fixed_name} holds {fixed.shape[1]}D points but "
            f"the transform is {dim}D (read_points(path, dimension=2) drops a "
            f"constant z)"
        )
    mapped = np.array([transform.TransformPoint(tuple(map(float, p))) for p in fixed])
    after = np.linalg.norm(mapped - moving, axis=1)
    before = np.linalg.norm(fixed - moving, axis=1)
    return {
        "tre_mean_mm": float(after.mean()),
        "tre_median_mm": float(np.median(after)),
        "tre_max_mm": float(after.max()),
        "tre_std_mm": float(after.std()),
        "tre_before_mean_mm": float(before.mean()),
        "tre_before_median_mm": float(np.median(before)),
        "tre_before_max_mm": float(before.max()),
        "n_points": int(fixed.shape[0]),
        "tre_per_point_mm": [float(v) for v in after],
    }
