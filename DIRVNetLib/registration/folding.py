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
    ``determinant`` are not modified; without folding, ``displacement`` itself is returned.
    """
    field = sitk.GetArrayViewFromImage(displacement)
    shape = field.shape[:-1]
    changed = np.zeros(shape, bool)
    sigma = float(min(displacement.GetSpacing()))
    ndim = displacement.GetDimension()
    if determinant is None:
        determinant = jacobian_determinant(displacement, np.float32)
    determinant = determinant.copy()
    window = _Window(field)

    def box_image(box):  # the current values in ``box`` with the field's spacing and direction
        image = sitk.GetImageFromArray(window.values(box), isVector=True)
        image.SetSpacing(displacement.GetSpacing())
        image.SetDirection(displacement.GetDirection())
        return image

    search = tuple(slice(0, n) for n in shape)  # where folding voxels can be: everywhere, then the last box
    for _ in range(max_iterations):
        where = np.argwhere(determinant[search] <= 0) + [s.start for s in search]
        if not len(where):
            break
        # the folding voxels and their neighbours (a one-voxel dilation), within their bounding box
        near = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(where.min(0), where.max(0)))
        dilated = sitk.BinaryDilate(sitk.GetImageFromArray((determinant[near] <= 0).astype(np.uint8)), [1] * ndim)
        box = tuple(slice(max(0, n.start - _MARGIN), min(size, n.stop + _MARGIN)) for n, size in zip(near, shape))
        inside = np.zeros([b.stop - b.start for b in box], bool)
        inside[_within(near, box)] = sitk.GetArrayViewFromImage(dilated) > 0
        smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(box_image(box), sigma))
        window.values(box)[inside] = smoothed[inside]
        changed[box] |= inside
        # Only the box changed: its determinant is recomputed from the box and one voxel around it (the
        # central differences' neighbours), so it equals the whole field's.
        around = tuple(slice(max(0, b.start - 1), min(size, b.stop + 1)) for b, size in zip(box, shape))
        determinant[box] = jacobian_determinant(box_image(around), np.float32)[_within(box, around)]
        search = box
    if window.box is None:
        return displacement, 0, determinant
    # the window pasted into a copy of the field: quicker than an image of the whole array
    patch = box_image(window.box)
    start = [int(b.start) for b in reversed(window.box)]
    return sitk.Paste(displacement, patch, patch.GetSize(), [0] * ndim, start), int(changed.sum()), determinant


def _within(inner, outer):
    """The slices of box ``inner`` relative to box ``outer``, which holds it."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


class _Window:
    """A writable copy of a read-only field's values in a box that grows to hold every box asked for (a copy
    of the whole field would cost more than the repair)."""

    def __init__(self, field):
        self.field, self.box, self.copy = field, None, None

    def values(self, box):
        """The values in ``box``: a view into the copy, which is grown first when needed."""
        if self.box is None:
            self.box, self.copy = box, self.field[box].copy()
        else:
            grown = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(self.box, box))
            if grown != self.box:
                copy = self.field[grown].copy()
                copy[_within(self.box, grown)] = self.copy
                self.box, self.copy = grown, copy
        return self.copy[_within(box, self.box)]
