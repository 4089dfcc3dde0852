"""Removal of residual folding from a displacement field (a documented safeguard after the network).

Where the Jacobian determinant of ``p -> p + u(p)`` is not positive, ``u`` is replaced, in a one-voxel
neighbourhood of those voxels only, by a Gaussian-smoothed copy; repeated until no voxel folds (or an
iteration limit). Elsewhere the network's field is returned unchanged.
"""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.metrics import jacobian_determinant

_MARGIN = 6  # voxels of context around the folding voxels for the smoothing


def remove_folding(displacement, max_iterations=100, folding=None):
    """``(field, voxels changed, folding voxels left)`` for a displacement vector image (LPS mm).

    Voxels with a Jacobian determinant ``<= 0`` (computed in float32; ``folding``: that boolean array,
    numpy order, when already known) and their neighbours take the values of the field smoothed with a
    Gaussian of one voxel (the finest spacing, mm), computed in a box around them. ``displacement`` is
    not modified.
    """
    values = sitk.GetArrayFromImage(displacement)
    changed = np.zeros(values.shape[:-1], bool)
    sigma = float(min(displacement.GetSpacing()))
    ndim = displacement.GetDimension()

    def as_image(array):
        image = sitk.GetImageFromArray(array, isVector=True)
        image.CopyInformation(displacement)
        return image

    def box_image(box):  # the values in ``box`` with the field's spacing and direction
        image = sitk.GetImageFromArray(values[box], isVector=True)
        image.SetSpacing(displacement.GetSpacing())
        image.SetDirection(displacement.GetDirection())
        return image

    folding = jacobian_determinant(displacement, np.float32) <= 0 if folding is None else folding.copy()
    for _ in range(max_iterations):
        where = np.argwhere(folding)
        if not len(where):
            return as_image(values), int(changed.sum()), 0
        # the folding voxels and their neighbours (a one-voxel dilation), within their bounding box
        near = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(where.min(0), where.max(0)))
        dilated = sitk.BinaryDilate(sitk.GetImageFromArray(folding[near].astype(np.uint8)), [1] * ndim)
        region = np.zeros_like(folding)
        region[near] = sitk.GetArrayViewFromImage(dilated) > 0
        box = tuple(slice(max(0, n.start - _MARGIN), n.stop + _MARGIN) for n in near)
        inside = region[box]
        values[box][inside] = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(box_image(box), sigma))[inside]
        changed |= region
        # Only the box changed: recompute the determinant there (its outer layer is one-sided, so the
        # margin keeps it away from the voxels that were edited).
        folding[box] = jacobian_determinant(box_image(box), np.float32) <= 0
    left = int((jacobian_determinant(as_image(values), np.float32) <= 0).sum())
    return as_image(values), int(changed.sum()), left
