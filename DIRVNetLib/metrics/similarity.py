"""Intensity similarity between two images on the same grid (global, voxel-wise).

Inputs are scalar SimpleITK images (grids must match) or arrays of equal shape; ``mask`` is a
SimpleITK label image on the same grid or an array, nonzero = voxels used (None = all voxels).
"""

import numpy as np
import SimpleITK as sitk

from ._common import check_pair, check_shapes, mask_array, scalar_array


def _pair(a, b, mask):
    check_pair(a, b, "a", "b")
    xa, xb = scalar_array(a, "a"), scalar_array(b, "b")
    check_shapes(xa, xb, "a", "b")
    if mask is None:
        return xa.ravel(), xb.ravel()
    reference = next((x for x in (a, b) if isinstance(x, sitk.Image)), None)
    inside = mask_array(mask, xa.shape, reference=reference)
    return xa[inside], xb[inside]


def ncc(a, b, mask=None) -> float:
    """Global normalised cross-correlation in [-1, 1] (Pearson correlation of the intensities).

    Invariant to affine intensity changes with positive slope. NaN when either image is constant
    inside the mask (correlation undefined).
    """
    xa, xb = _pair(a, b, mask)
    da, db = xa - xa.mean(), xb - xb.mean()
    denom = np.sqrt(np.sum(da * da) * np.sum(db * db))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.sum(da * db) / denom, -1.0, 1.0))


def mse(a, b, mask=None) -> float:
    """Mean squared intensity difference (intensity units squared)."""
    xa, xb = _pair(a, b, mask)
    diff = xa - xb
    return float(np.mean(diff * diff))


def mutual_information(a, b, bins: int = 32, mask=None) -> float:
    """Mutual information in nats from a joint histogram with ``bins`` x ``bins`` equal-width bins
    spanning each image's own intensity range inside the mask. 0 for independent images; for
    identical images it equals the entropy of the binned intensities.
    """
    if int(bins) < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    bins = int(bins)
    xa, xb = _pair(a, b, mask)
    joint = np.bincount(_bin_index(xa, bins) * bins + _bin_index(xb, bins), minlength=bins * bins)
    p_ab = joint.reshape(bins, bins) / joint.sum()
    p_a = p_ab.sum(axis=1, keepdims=True)
    p_b = p_ab.sum(axis=0, keepdims=True)
    nz = p_ab > 0
    return float(max(0.0, np.sum(p_ab[nz] * np.log(p_ab[nz] / (p_a @ p_b)[nz]))))


def similarity_report(fixed, moving_resampled, warped, mask=None, bins: int = 32) -> dict:
    """Similarity before and after registration.

    "before": ``fixed`` vs ``moving_resampled`` (the moving image resampled onto the fixed grid
    without deformation); "after": ``fixed`` vs ``warped``. Keys ``ncc_before``, ``ncc_after``,
    ``mse_before``, ``mse_after``, ``mi_before``, ``mi_after`` (MI in nats, ``bins`` bins).
    """
    return {
        "ncc_before": ncc(fixed, moving_resampled, mask),
        "ncc_after": ncc(fixed, warped, mask),
        "mse_before": mse(fixed, moving_resampled, mask),
        "mse_after": mse(fixed, warped, mask),
        "mi_before": mutual_information(fixed, moving_resampled, bins, mask),
        "mi_after": mutual_information(fixed, warped, bins, mask),
    }


def _bin_index(x, bins):
    """Equal-width bin (0 .. bins - 1) of every value over ``x``'s range, the maximum in the last bin
    (as ``np.histogram``)."""
    low, high = float(x.min()), float(x.max())
    if high == low:
        return np.zeros(x.shape, np.int64)
    return np.minimum(((x - low) * (bins / (high - low))).astype(np.int64), bins - 1)
