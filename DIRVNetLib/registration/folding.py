"""Removal of residual folding from a displacement field (a documented safeguard after the network).

Where the Jacobian determinant of ``p -> p + u(p)`` is not positive, ``u`` is replaced, in a one-voxel
neighbourhood of those voxels only, by a Gaussian-smoothed copy; repeated until no voxel folds (or an
iteration limit). Elsewhere the network's field is returned unchanged.
"""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.metrics import jacobian_determinant

_MARGIN = 6  # voxels of context around the folding voxels for the smoothing


def remove_folding(displacement, max_iterations=100, determinant=None):
    """``(field, voxels changed, determinant)`` for a displacement vector image (LPS mm).

    Voxels with a Jacobian determinant ``<= 0`` and their neighbours take the values of the field
    smoothed with a Gaussian of one voxel (the finest spacing, mm), computed in a box around them.
    determinant: the float32 Jacobian determinant of ``displacement`` (numpy order) when already known;
    the one returned is that of the returned field, the same values :func:`jacobian_determinant` gives
    (voxels still folding after ``max_iterations``: ``determinant <= 0``). ``displacement`` and
    ``determinant`` are not modified.
    """
    values = sitk.GetArrayFromImage(displacement)
    shape = values.shape[:-1]
    changed = np.zeros(shape, bool)
    sigma = float(min(displacement.GetSpacing()))
    ndim = displacement.GetDimension()
    if determinant is None:
        determinant = jacobian_determinant(displacement, np.float32)
    determinant = determinant.copy()

    def box_image(box):  # the values in ``box`` with the field's spacing and direction
        image = sitk.GetImageFromArray(values[box], isVector=True)
        image.SetSpacing(displacement.GetSpacing())
        image.SetDirection(displacement.GetDirection())
        return image

    for _ in range(max_iterations):
        where = np.argwhere(determinant <= 0)
        if not len(where):
            break
        # the folding voxels and their neighbours (a one-voxel dilation), within their bounding box
        near = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(where.min(0), where.max(0)))
        dilated = sitk.BinaryDilate(sitk.GetImageFromArray((determinant[near] <= 0).astype(np.uint8)), [1] * ndim)
        region = np.zeros_like(changed)
        region[near] = sitk.GetArrayViewFromImage(dilated) > 0
        box = tuple(slice(max(0, n.start - _MARGIN), min(size, n.stop + _MARGIN)) for n, size in zip(near, shape))
        inside = region[box]
        values[box][inside] = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(box_image(box), sigma))[inside]
        changed |= region
        # Only the box changed: its determinant is recomputed from the box and one voxel around it (the
        # central differences' neighbours), so it equals the whole field's.
        around = tuple(slice(max(0, b.start - 1), min(size, b.stop + 1)) for b, size in zip(box, shape))
        inner = tuple(slice(b.start - a.start, b.stop - a.start) for a, b in zip(around, box))
        determinant[box] = jacobian_determinant(box_image(around), np.float32)[inner]
    field = sitk.GetImageFromArray(values, isVector=True)
    field.CopyInformation(displacement)
    return field, int(changed.sum()), determinant
