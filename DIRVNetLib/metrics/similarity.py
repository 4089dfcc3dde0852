"""Intensity similarity between two images on the same grid (global, voxel-wise).

Inputs are scalar SimpleITK images (grids must match) or arrays of equal shape; ``mask`` is a
SimpleITK label image on the same grid or an array, nonzero = voxels used (None = all voxels).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.blocks import map_blocks

from ._common import ImageOrArray, Mask, check_pair, check_shapes, mask_array, scalar_view

_CHUNK = 1 << 18  # voxels per block of the accumulations: blocks stay in cache, no whole-image temporaries


def _values(mask: Mask, **images: ImageOrArray) -> list[np.ndarray]:
    """Flat arrays of the named images (in their own pixel types: views of SimpleITK images where
    possible, never modified) over ``mask``; grids and shapes must match the first image's (errors
    name the images)."""
    (first, reference_image), *others = images.items()
    for name, image in others:
        check_pair(reference_image, image, first, name)
    arrays = [scalar_view(image, name) for name, image in images.items()]
    for (name, _), array in zip(others, arrays[1:]):
        check_shapes(arrays[0], array, first, name)
    if mask is None:
        return [array.ravel() for array in arrays]
    reference = next((x for x in images.values() if isinstance(x, sitk.Image)), None)
    inside = mask_array(mask, arrays[0].shape, reference=reference)
    return [array[inside] for array in arrays]


def ncc(a: ImageOrArray, b: ImageOrArray, mask: Mask = None) -> float:
    """Global normalised cross-correlation in [-1, 1] (Pearson correlation of the intensities).

    Invariant to affine intensity changes with positive slope. NaN when either image is constant
    inside the mask (correlation undefined).
    """
    return _compare(*_values(mask, a=a, b=b), bins=2)[0]["ncc"]


def mse(a: ImageOrArray, b: ImageOrArray, mask: Mask = None) -> float:
    """Mean squared intensity difference (intensity units squared)."""
    return _compare(*_values(mask, a=a, b=b), bins=2)[0]["mse"]


def mutual_information(a: ImageOrArray, b: ImageOrArray, bins: int = 32, mask: Mask = None) -> float:
    """Mutual information in nats from a joint histogram with ``bins`` x ``bins`` equal-width bins
    spanning each image's own intensity range inside the mask. 0 for independent images; for
    identical images it equals the entropy of the binned intensities.
    """
    return _compare(*_values(mask, a=a, b=b), bins=_check_bins(bins))[0]["mi"]


def similarity_report(
    fixed: ImageOrArray, moving_resampled: ImageOrArray, warped: ImageOrArray, mask: Mask = None, bins: int = 32
) -> dict[str, float]:
    """Similarity before and after registration.

    "before": ``fixed`` vs ``moving_resampled`` (the moving image resampled onto the fixed grid
    without deformation); "after": ``fixed`` vs ``warped``. Keys ``ncc_before``, ``ncc_after``,
    ``mse_before``, ``mse_after``, ``mi_before``, ``mi_after`` (MI in nats, ``bins`` bins).
    The fixed image's values and bins serve both comparisons.
    """
    bins = _check_bins(bins)
    values = _values(mask, fixed=fixed, moving_resampled=moving_resampled, warped=warped)
    before, after = _compare(*values, bins=bins)
    return {
        "ncc_before": before["ncc"],
        "ncc_after": after["ncc"],
        "mse_before": before["mse"],
        "mse_after": after["mse"],
        "mi_before": before["mi"],
        "mi_after": after["mi"],
    }


def _compare(reference: np.ndarray, *others: np.ndarray, bins: int) -> list[dict[str, float]]:
    """``[{"ncc", "mse", "mi"}]`` of flat ``reference`` against each of ``others`` (same length).

    Two passes over blocks of :data:`_CHUNK` values spread over threads (:mod:`DIRVNetLib.blocks`;
    summed in block order), in float64: the means and ranges, then the centred sums of products and the
    joint histograms (bins as :func:`_bin_index`). The mean squared
    difference is ``(sum ((x - mx) - (y - my))^2) / n + (mx - my)^2``.
    """
    summaries = [_summary(array) for array in (reference, *others)]
    (mean_x, low_x, high_x), rest = summaries[0], summaries[1:]

    def accumulate(start: int) -> tuple[float, np.ndarray, np.ndarray]:
        """xx, and per other: (yy, xy, (x - y)^2) of the centred values and the joint histogram."""
        x = reference[start : start + _CHUNK].astype(np.float64)
        x_bins = _bin_index(x, bins, low_x, high_x)
        x_bins *= bins
        x -= mean_x
        sums = np.zeros((len(others), 3))
        joints = np.zeros((len(others), bins * bins), np.int64)
        for k, (other, (mean_y, low_y, high_y)) in enumerate(zip(others, rest)):
            y = other[start : start + _CHUNK].astype(np.float64)
            joint_index = _bin_index(y, bins, low_y, high_y)
            joint_index += x_bins
            joints[k] = np.bincount(joint_index, minlength=bins * bins)
            y -= mean_y
            sums[k, :2] = np.einsum("i,i", y, y), np.einsum("i,i", x, y)
            y -= x
            sums[k, 2] = np.einsum("i,i", y, y)
        return float(np.einsum("i,i", x, x)), sums, joints

    xx, sums, joints = 0.0, np.zeros((len(others), 3)), np.zeros((len(others), bins * bins), np.int64)
    for block_xx, block_sums, block_joints in map_blocks(accumulate, range(0, reference.size, _CHUNK)):
        xx += block_xx
        sums += block_sums
        joints += block_joints
    results = []
    for (mean_y, _, _), (yy, xy, squared), joint in zip(rest, sums, joints):
        denom = np.sqrt(xx * yy)
        results.append(
            {
                "ncc": float("nan") if denom == 0.0 else float(np.clip(xy / denom, -1.0, 1.0)),
                "mse": float(squared / reference.size + (mean_x - mean_y) ** 2),
                "mi": _mutual_information(joint, bins),
            }
        )
    return results


def _summary(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, minimum and maximum (float64) of a flat array, block by block."""

    def summarise(start: int) -> tuple[float, float, float]:
        block = values[start : start + _CHUNK].astype(np.float64)
        return float(block.sum()), float(block.min()), float(block.max())

    totals, lows, highs = zip(*map_blocks(summarise, range(0, values.size, _CHUNK)))
    return sum(totals, 0.0) / values.size, float(min(lows)), float(max(highs))


def _check_bins(bins: int) -> int:
    if int(bins) < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    return int(bins)


def _mutual_information(joint: np.ndarray, bins: int) -> float:
    """MI (nats) of a flat ``bins * bins`` joint histogram of counts (row = reference bin)."""
    p_ab = joint.reshape(bins, bins) / joint.sum()
    p_a = p_ab.sum(axis=1, keepdims=True)
    p_b = p_ab.sum(axis=0, keepdims=True)
    nz = p_ab > 0
    return float(max(0.0, np.sum(p_ab[nz] * np.log(p_ab[nz] / (p_a @ p_b)[nz]))))


def _bin_index(x: np.ndarray, bins: int, low: float, high: float) -> np.ndarray:
    """Equal-width bin (0 .. bins - 1) of every value of float64 ``x`` over ``[low, high]``, the
    maximum in the last bin (as ``np.histogram``)."""
    if high == low:
        return np.zeros(x.shape, np.intp)
    scaled = x - low
    scaled *= bins / (high - low)
    index = scaled.astype(np.intp)
    return np.minimum(index, bins - 1, out=index)
