"""Measure one displacement field: accuracy (EPE, Dice, HD95, TRE), smoothness (Jacobian) and
similarity before/after, all in physical units. Shared by ``dirvnet evaluate`` and ``dirvnet benchmark``.

Convention (docs/architecture.md): ``displacement`` is a vector image in LPS mm, warped(p) = moving(p + u(p)).
Every "before" figure is the same measure for the identity (u = 0): what registration has to improve.
"""

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.grid import Grid
from DIRVNetLib.io.points import read_points
from DIRVNetLib.io.resample import resample_like
from DIRVNetLib.io.transforms import read_displacement
from DIRVNetLib.metrics import (
    dice,
    displacement_transform,
    endpoint_error,
    hausdorff95,
    jacobian_statistics,
    similarity_report,
    target_registration_error,
    warp_labels,
)
from DIRVNetLib.registration.geometry import resample_displacement


def zero_field(reference):
    """The identity displacement (all zeros, float64) on ``reference``'s grid."""
    return Grid.of(reference).image(sitk.sitkVectorFloat64, reference.GetDimension())


def on_grid(displacement, reference):
    """``displacement`` (vector image, mm) on ``reference``'s grid as float64 (resampled linearly only
    where the grids differ beyond header rounding, :meth:`Grid.same_as`)."""
    if displacement.GetNumberOfComponentsPerPixel() != reference.GetDimension():
        raise ValueError(
            f"a {reference.GetDimension()}D displacement needs {reference.GetDimension()} components, "
            f"got {displacement.GetNumberOfComponentsPerPixel()}"
        )
    if Grid.of(displacement).same_as(Grid.of(reference)):
        field = sitk.Cast(displacement, sitk.sitkVectorFloat64)
        field.CopyInformation(reference)
        return field
    return resample_displacement(displacement, reference)


def read_field(path, reference):
    """A displacement on ``reference``'s grid from a transform file (sampled on it) or a vector image
    (resampled onto it); see :func:`DIRVNetLib.io.transforms.read_displacement`."""
    return on_grid(read_displacement(path, reference), reference)


def read_label_image(path, role="labels"):
    """A scalar label image from a file, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{role} {path} not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ValueError(f"{role} {path}: unreadable: {str(e).strip().splitlines()[-1]}") from e
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{role} {path} must be a scalar label image")
    return image


def labels_on(labels, reference):
    """A label image on ``reference``'s grid (nearest neighbour, 0 outside), as integers."""
    if labels.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        labels = sitk.Cast(sitk.Round(labels), sitk.sitkInt32)
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def evaluate_displacement(
    fixed,
    moving,
    displacement,
    *,
    true_field=None,
    mask=None,
    fixed_labels=None,
    moving_labels=None,
    fixed_points=None,
    moving_points=None,
):
    """All measures that apply, as a flat dict of floats (plus ``dice_per_label`` and
    ``hd95_per_label_mm`` dicts when labels are given).

    fixed, moving: scalar SimpleITK images (any grids). displacement: vector image (resampled onto the
    fixed grid if it is not on it). true_field: the known displacement (EPE keys). mask: label image,
    nonzero = where EPE is measured (resampled onto the fixed grid, nearest neighbour).
    fixed_labels/moving_labels: label maps (Dice, HD95 of the moving labels warped with nearest
    neighbour against the fixed labels, over the labels present in both). fixed_points/moving_points:
    (N, dim) arrays or landmark files (TRE).
    """
    if (fixed_labels is None) != (moving_labels is None):
        raise ValueError("fixed and moving labels go together")
    if (fixed_points is None) != (moving_points is None):
        raise ValueError("fixed and moving landmarks go together")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    displacement = on_grid(displacement, fixed)
    identity = zero_field(fixed)
    result = {}
    warped = sitk.Resample(moving, fixed, displacement_transform(displacement), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    result.update(similarity_report(fixed, resample_like(moving, fixed), warped))
    result.update(jacobian_statistics(displacement))
    if true_field is not None:
        true_field = on_grid(true_field, fixed)
        inside = labels_on(mask, fixed) if mask is not None else None
        result.update(endpoint_error(displacement, true_field, mask=inside))
        before = endpoint_error(identity, true_field, mask=inside)
        result.update(epe_before_mean_mm=before["epe_mean_mm"], epe_before_p95_mm=before["epe_p95_mm"])
    if fixed_labels is not None:
        fixed_labels = labels_on(fixed_labels, fixed)
        for suffix, field in (("_before", identity), ("", displacement)):
            warped_labels = warp_labels(moving_labels, field)
            overlap = dice(fixed_labels, warped_labels)
            distance = hausdorff95(fixed_labels, warped_labels, labels=list(overlap["per_label"]))
            result[f"dice{suffix}_mean"] = overlap["dice_mean"]
            result[f"hd95{suffix}_mean_mm"] = distance["hd95_mean_mm"]
            if not suffix:
                result["dice_per_label"] = overlap["per_label"]
                result["hd95_per_label_mm"] = distance["per_label"]
    if fixed_points is not None:
        dimension = fixed.GetDimension()
        if isinstance(fixed_points, (str, Path)):
            fixed_points = read_points(fixed_points, dimension)
        if isinstance(moving_points, (str, Path)):
            moving_points = read_points(moving_points, dimension)
        tre = target_registration_error(fixed_points, moving_points, displacement)
        result.update({k: v for k, v in tre.items() if k != "tre_per_point_mm"})
    return result


def json_safe(value):
    """``value`` with NaN/inf replaced by None (strict JSON) and dict keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
