"""Removal of residual folding from a displacement field (a documented safeguard after the network).

Where the Jacobian determinant of ``p -> p + u(p)`` is not positive, ``u`` is replaced, in a one-voxel
neighbourhood of those voxels only, by a Gaussian-smoothed copy; repeated until no voxel folds (or an
iteration limit). Elsewhere the network's field is returned unchanged. Folds far apart are repaired each
in its own box, so that scattered folds cost no more than the voxels around them.
"""

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.metrics import jacobian_determinant

_MARGIN = 6  # voxels of context around the folding voxels for the smoothing
_CELL = 4
"""Folding voxels are gathered into cells of this many boxes' reach per axis before their boxes are merged:
fewer, larger boxes where folds crowd (each box costs a few filter calls), separate ones where they are
far apart."""


def remove_folding(displacement, max_iterations=100, determinant=None, in_place=False):
    """``(field, voxels changed, determinant)`` for a displacement vector image (LPS mm).

    Voxels with a Jacobian determinant ``<= 0`` and their neighbours take the values of the field
    smoothed with a Gaussian of one voxel (the finest spacing, mm), computed in a box around them.
    determinant: the float32 Jacobian determinant of ``displacement`` (numpy order) when already known;
    the one returned is that of the returned field, the same values :func:`jacobian_determinant` gives
    (voxels still folding after ``max_iterations``: ``determinant <= 0``). ``determinant`` is not
    modified; nor is ``displacement`` (a copy is repaired) unless ``in_place``, for a field the caller
    owns: then the boxes are written into it and it is returned (no copy of a whole large field).
    Without folding, ``displacement`` itself is returned.
    """
    shape = tuple(reversed(displacement.GetSize()))
    sigma = float(min(displacement.GetSpacing()))
    ndim = displacement.GetDimension()
    if determinant is None:
        determinant = jacobian_determinant(displacement, np.float32)
    determinant = determinant.copy()
    changed = np.zeros(shape, bool)
    field = None  # the field repaired: displacement, or its copy, once the first fold is found

    def image_of(values):  # a box's values with the field's spacing and direction
        image = sitk.GetImageFromArray(values, isVector=True)
        image.SetSpacing(displacement.GetSpacing())
        image.SetDirection(displacement.GetDirection())
        return image

    def values_in(box):  # a copy of the field's values in a box (numpy order)
        return sitk.GetArrayFromImage(field[tuple(reversed(box))])

    boxes = [tuple(slice(0, n) for n in shape)]  # where folding voxels can be: everywhere, then the last boxes
    for _ in range(max_iterations):
        where = [np.argwhere(determinant[box] <= 0) + [s.start for s in box] for box in boxes]
        where = np.concatenate(where)
        if not len(where):
            break
        if field is None:  # SimpleITK copies the buffer at the first write into the copy
            field = displacement if in_place else sitk.Image(displacement)
        boxes = []
        for points in _groups(where, 1 + _MARGIN):
            # the folding voxels and their neighbours (a one-voxel dilation), within their bounding box
            near = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(points.min(0), points.max(0)))
            dilated = sitk.BinaryDilate(sitk.GetImageFromArray((determinant[near] <= 0).astype(np.uint8)), [1] * ndim)
            box = tuple(slice(max(0, n.start - _MARGIN), min(size, n.stop + _MARGIN)) for n, size in zip(near, shape))
            inside = np.zeros([b.stop - b.start for b in box], bool)
            inside[_within(near, box)] = sitk.GetArrayViewFromImage(dilated) > 0
            values = values_in(box)
            smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image_of(values), sigma))
            values[inside] = smoothed[inside]
            field[tuple(reversed(box))] = sitk.GetImageFromArray(values, isVector=True)  # pasted in place
            changed[box] |= inside
            # Only the box changed: its determinant is recomputed from the box and one voxel around it (the
            # central differences' neighbours), so it equals the whole field's.
            around = tuple(slice(max(0, b.start - 1), min(size, b.stop + 1)) for b, size in zip(box, shape))
            determinant[box] = jacobian_determinant(image_of(values_in(around)), np.float32)[_within(box, around)]
            boxes.append(box)
    if field is None:
        return displacement, 0, determinant
    return field, int(changed.sum()), determinant


def _groups(points, reach):
    """``points`` (an ``(N, dim)`` index array) split into groups whose boxes (the points' bounding box
    grown by ``reach``) do not overlap: a repair in one group's box leaves every other group's box as it was.
    The points are first gathered into cells of :data:`_CELL` x ``reach`` voxels (each cell's box: the cell
    grown by ``reach``), so that the merging costs per cell, not per point."""
    cell = _CELL * reach
    cells, cell_of_point = np.unique(points // cell, axis=0, return_inverse=True)
    cell_of_point = cell_of_point.reshape(-1)
    lower, upper = cells * cell - reach, (cells + 1) * cell + reach
    members = [[i] for i in range(len(cells))]
    while True:
        merged_lower, merged_upper, merged_members = [], [], []
        for low, high, member in zip(lower, upper, members):
            if merged_lower:
                overlaps = np.all(low < np.array(merged_upper), axis=1) & np.all(np.array(merged_lower) < high, axis=1)
                hits = np.flatnonzero(overlaps)
                if len(hits):
                    first = hits[0]
                    merged_lower[first] = np.minimum(merged_lower[first], low)
                    merged_upper[first] = np.maximum(merged_upper[first], high)
                    merged_members[first] = merged_members[first] + member
                    continue
            merged_lower.append(low)
            merged_upper.append(high)
            merged_members.append(member)
        if len(merged_members) == len(members):
            group_of_cell = np.empty(len(cells), int)
            for group, member in enumerate(merged_members):
                group_of_cell[member] = group
            group_of_point = group_of_cell[cell_of_point]
            return [points[group_of_point == group] for group in range(len(merged_members))]
        lower, upper, members = merged_lower, merged_upper, merged_members


def _within(inner, outer):
    """The slices of box ``inner`` relative to box ``outer``, which holds it."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))
