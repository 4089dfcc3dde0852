"""Intensity similarity between two images on the same grid (global, voxel-wise).

Inputs are scalar SimpleITK images (grids must match) or arrays of equal shape; ``mask`` is a
SimpleITK label image on the same grid or an array, nonzero = voxels used (None = all voxels).
"""

import numpy as np
import SimpleITK as sitk

from ._common import check_pair, check_shapes, mask_array, scalar_array


def _values(mask, **images):
    """Flat float64 arrays of the named images (each read once) over ``mask``; grids and shapes must
    match the first image's (errors name the images)."""
    (first, reference_image), *others = images.items()
    for name, image in others:
        check_pair(reference_image, image, first, name)
    arrays = [scalar_array(image, name) for name, image in images.items()]
    for (name, _), array in zip(others, arrays[1:]):
        check_shapes(arrays[0], array, first, name)
    if mask is None:
        return [array.ravel() for array in arrays]
    reference = next((x for x in images.values() if isinstance(x, sitk.Image)), None)
    inside = mask_array(mask, arrays[0].shape, reference=reference)
    return [array[inside] for array in arrays]


def ncc(a, b, mask=None) -> float:
    """Global normalised cross-correlation in [-1, 1] (Pearson correlation of the intensities).

    Invariant to affine intensity changes with positive slope. NaN when either image is constant
    inside the mask (correlation undefined).
    """
    xa, xb = _values(mask, a=a, b=b)
    return _correlation(_centred(xa), _centred(xb))


def mse(a, b, mask=None) -> float:
    """Mean squared intensity difference (intensity units squared)."""
    return _mse(*_values(mask, a=a, b=b))


def mutual_information(a, b, bins: int = 32, mask=None) -> float:
    """Mutual information in nats from a joint histogram with ``bins`` x ``bins`` equal-width bins
    spanning each image's own intensity range inside the mask. 0 for independent images; for
    identical images it equals the entropy of the binned intensities.
    """
    bins = _check_bins(bins)
    xa, xb = _values(mask, a=a, b=b)
    return _mutual_information(_bin_index(xa, bins), _bin_index(xb, bins), bins)


def similarity_report(fixed, moving_resampled, warped, mask=None, bins: int = 32) -> dict:
    """Similarity before and after registration.

    "before": ``fixed`` vs ``moving_resampled`` (the moving image resampled onto the fixed grid
    without deformation); "after": ``fixed`` vs ``warped``. Keys ``ncc_before``, ``ncc_after``,
    ``mse_before``, ``mse_after``, ``mi_before``, ``mi_after`` (MI in nats, ``bins`` bins).
    Each image is read once (the fixed image's values and bins serve both comparisons).
    """
    bins = _check_bins(bins)
    xf, before, after = _values(mask, fixed=fixed, moving_resampled=moving_resampled, warped=warped)
    fixed_bins = _bin_index(xf, bins)
    fixed_centred = _centred(xf)
    return {
        "ncc_before": _correlation(fixed_centred, _centred(before)),
        "ncc_after": _correlation(fixed_centred, _centred(after)),
        "mse_before": _mse(xf, before),
        "mse_after": _mse(xf, after),
        "mi_before": _mutual_information(fixed_bins, _bin_index(before, bins), bins),
        "mi_after": _mutual_information(fixed_bins, _bin_index(after, bins), bins),
    }


def _centred(x):
    return x - x.mean()


def _correlation(da, db):
    """Pearson correlation of two centred arrays (NaN when either is constant)."""
    denom = np.sqrt(np.dot(da, da) * np.dot(db, db))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(da, db) / denom, -1.0, 1.0))


def _mse(xa, xb):
    diff = xa - xb
    return float(np.dot(diff, diff) / diff.size)


def _check_bins(bins):
    if int(bins) < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    return int(bins)


def _mutual_information(index_a, index_b, bins):
    """MI (nats) of two equal-length arrays of bin indices (0 .. bins - 1)."""
    joint_index = index_a * bins
    joint_index += index_b
    joint = np.bincount(joint_index, minlength=bins * bins)
    p_ab = joint.reshape(bins, bins) / joint.sum()
    p_a = p_ab.sum(axis=1, keepdims=True)
    p_b = p_ab.sum(axis=0, keepdims=True)
    nz = p_ab > 0
    return float(max(0.0, np.sum(p_ab[nz] * np.log(p_ab[nz] / (p_a @ p_b)[nz]))))


def _bin_index(x, bins):
    """Equal-width bin (0 .. bins - 1) of every value over ``x``'s range, the maximum in the last bin
    (as ``np.histogram``)."""
    low, high = float(x.min()), float(x.max())
    if high == low:
        return np.zeros(x.shape, np.int64)
    scaled = x - low
    scaled *= bins / (high - low)
    index = scaled.astype(np.int64)
    return np.minimum(index, bins - 1, out=index)
