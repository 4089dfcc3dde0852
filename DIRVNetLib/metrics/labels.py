"""Label-map metrics: warping a label map through a displacement field, Dice, HD95.

Label maps are scalar integer images, 0 = background. Distances are physical millimetres.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from ._common import ImageOrArray, check_displacement, check_pair, check_shapes, label_array


def displacement_transform(displacement: sitk.Image) -> sitk.DisplacementFieldTransform:
    """DisplacementFieldTransform (p -> p + u(p), linear interpolation) built on a float64 copy of
    ``displacement``: the SimpleITK constructor empties the image it is given, never the input."""
    check_displacement(displacement)
    if displacement.GetPixelID() == sitk.sitkVectorFloat64:
        field = sitk.Image(displacement)  # copy-on-write copy; the constructor empties this one
    else:
        field = sitk.Cast(displacement, sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(field)


def warp_labels(labels: sitk.Image, displacement: sitk.Image) -> sitk.Image:
    """Label map ``labels`` warped onto the displacement's grid: out(p) = labels(p + u(p)).

    Nearest-neighbour resampling through a DisplacementFieldTransform; ``labels`` may lie on any
    grid (it is sampled in physical space), points falling outside it get 0. The output has the
    displacement's grid and the label image's pixel type. Inputs are not modified.
    """
    if not isinstance(labels, sitk.Image):
        raise TypeError(f"labels must be a SimpleITK image, got {type(labels).__name__}")
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"labels must be a scalar label image, got {labels.GetNumberOfComponentsPerPixel()} components per pixel"
        )
    check_displacement(displacement)
    if labels.GetDimension() != displacement.GetDimension():
        raise ValueError(
            f"dimension mismatch: labels are {labels.GetDimension()}D but the "
            f"displacement is {displacement.GetDimension()}D"
        )
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(displacement.GetSize())
    resampler.SetOutputSpacing(displacement.GetSpacing())
    resampler.SetOutputOrigin(displacement.GetOrigin())
    resampler.SetOutputDirection(displacement.GetDirection())
    resampler.SetTransform(displacement_transform(displacement))
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetDefaultPixelValue(0)
    resampler.SetOutputPixelType(labels.GetPixelID())
    return resampler.Execute(labels)


def _label_pair(a: ImageOrArray, b: ImageOrArray) -> tuple[np.ndarray, np.ndarray]:
    check_pair(a, b, "a", "b")
    xa, xb = label_array(a, "a"), label_array(b, "b")
    check_shapes(xa, xb, "a", "b")
    return xa, xb


def _select_labels(xa: np.ndarray, xb: np.ndarray, labels: npt.ArrayLike | None) -> list[int]:
    if labels is None:
        common = np.intersect1d(np.unique(xa), np.unique(xb))
        chosen = [int(v) for v in common if v != 0]
        if not chosen:
            raise ValueError("empty label set: a and b share no foreground (nonzero) label")
        return chosen
    chosen = [int(v) for v in np.atleast_1d(labels)]
    if not chosen:
        raise ValueError("empty label set: labels=[] selects nothing")
    return chosen


def _mean_defined(per_label: dict[int, float]) -> float:
    values = [v for v in per_label.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def dice(a: ImageOrArray, b: ImageOrArray, labels: npt.ArrayLike | None = None) -> dict[str, Any]:
    """Dice overlap 2|A∩B| / (|A| + |B|) per label.

    ``a``, ``b``: label images on the same grid (SimpleITK images or arrays). ``labels``: labels to
    score; default = nonzero labels present in both. A requested label absent from both gives NaN
    (left out of the mean). Returns {"per_label": {label: dice}, "dice_mean": mean}.
    """
    xa, xb = _label_pair(a, b)
    per_label: dict[int, float] = {}
    for label in _select_labels(xa, xb, labels):
        in_a, in_b = xa == label, xb == label
        total = np.count_nonzero(in_a) + np.count_nonzero(in_b)
        per_label[label] = float(2.0 * np.count_nonzero(in_a & in_b) / total) if total else float("nan")
    return {"per_label": per_label, "dice_mean": _mean_defined(per_label)}


def _surface(mask_image: sitk.Image) -> sitk.Image:
    """Face-connected boundary voxels of a binary image (the image border is not a boundary; an
    object without any boundary inside the image is its own surface)."""
    contour = sitk.BinaryContour(mask_image, fullyConnected=False, backgroundValue=0, foregroundValue=1)
    if sitk.GetArrayViewFromImage(contour).any():
        return contour
    return mask_image


def _distance_to(surface: sitk.Image) -> np.ndarray:
    """Physical distance (mm) of every voxel centre to the nearest voxel of ``surface``."""
    distance = sitk.SignedMaurerDistanceMap(
        surface, insideIsPositive=False, squaredDistance=False, useImageSpacing=True, backgroundValue=0
    )
    return np.abs(sitk.GetArrayFromImage(distance))


def hausdorff95(a: ImageOrArray, b: ImageOrArray, labels: npt.ArrayLike | None = None) -> dict[str, Any]:
    """95th-percentile symmetric Hausdorff distance (mm) per label, between label surfaces.

    Surfaces are the face-connected boundary voxels of each label; distances use physical spacing
    (SimpleITK Maurer distance maps). HD95 = max of the two directed 95th percentiles (A's surface
    to B's, B's to A's), the convention of Learn2Reg / MONAI / DeepMind's surface-distance.
    ``a``, ``b``: label images on one grid; at least one must be a SimpleITK image (the geometry).
    Default labels = nonzero labels present in both; a label missing from one image gives inf,
    from both NaN (left out of the mean). Returns {"per_label": {label: mm}, "hd95_mean_mm": mean}.
    """
    reference = next((x for x in (a, b) if isinstance(x, sitk.Image)), None)
    if reference is None:
        raise TypeError("hausdorff95 needs physical spacing: pass at least one SimpleITK image")
    xa, xb = _label_pair(a, b)
    per_label: dict[int, float] = {}
    for label in _select_labels(xa, xb, labels):
        in_a, in_b = xa == label, xb == label
        if not in_a.any() or not in_b.any():
            per_label[label] = float("nan") if not (in_a.any() or in_b.any()) else float("inf")
            continue
        surfaces = []
        for inside in (in_a, in_b):
            image = sitk.GetImageFromArray(inside.astype(np.uint8))
            image.CopyInformation(reference)
            surfaces.append(_surface(image))
        on_a, on_b = (sitk.GetArrayViewFromImage(s) != 0 for s in surfaces)
        a_to_b = _distance_to(surfaces[1])[on_a]
        b_to_a = _distance_to(surfaces[0])[on_b]
        per_label[label] = float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))
    return {"per_label": per_label, "hd95_mean_mm": _mean_defined(per_label)}
