"""Slices of an image as Slicer's slice views show them: axial, coronal, sagittal in patient orientation.

Slicer's views (and radiology): superior up in coronal and sagittal views, anterior up in axial views,
anterior on the left of sagittal views; the patient's right on the screen's left in axial and coronal
views ("radiological"), or on the right ("neurological"). Any direction matrix: an image whose axes
are a permutation of L, P, S (flips included) is shown exactly (its own voxels, reordered); an oblique
one is sampled (linearly) on an axis-aligned LPS grid of its finest spacing covering its corners. Only
the three planes shown are sampled. A 2D image is taken as an axial slice (x towards L, y towards P).
Points are LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

CONVENTIONS = ("radiological", "neurological")
VIEWS = ("axial", "coronal", "sagittal")

_TOLERANCE = 1e-6
_MAX_DISPLAY_VOXELS = 512  # per axis of the grid an oblique image is resampled on
_NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # LPS axis along the view's normal
_POSITION_LETTERS = {0: ("R", "L"), 1: ("A", "P"), 2: ("I", "S")}  # (negative, positive) LPS coordinate


@dataclass(frozen=True)
class SliceView:
    """One view of an image. ``array``: 2D, row 0 at the top of the screen, column 0 at the left;
    ``size_mm``: (width, height) of the panel in mm (pixels may be anisotropic); ``edges``: the
    patient direction at each screen edge ("top", "bottom", "left", "right" -> "A", "S", "R", ...);
    ``position_mm``: the slice's LPS coordinate along the view's normal (None for a 2D image);
    ``label``: that position as read in Slicer ("S 12.0 mm", "R 3.5 mm")."""

    view: str
    array: np.ndarray
    size_mm: tuple[float, float]
    edges: dict[str, str]
    position_mm: float | None
    label: str


def _signed_permutation(direction: np.ndarray) -> np.ndarray | None:
    """The rounded direction when it is a signed permutation matrix (within 1e-6), else None."""
    rounded = np.round(direction)
    if not np.allclose(direction, rounded, atol=_TOLERANCE):
        return None
    if not (np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1)):
        return None
    return rounded


def display_grid(image: sitk.Image) -> tuple[sitk.Image, bool]:
    """``(reference, exact)``: an empty float32 image with identity direction (axes towards L, P[, S])
    that views of ``image`` are sampled on. ``exact``: the direction is a signed permutation and the
    reference's voxels are ``image``'s own, reordered (sample with nearest neighbour: same values);
    otherwise the reference is an axis-aligned grid of the finest spacing (coarser when an axis would
    exceed 512 voxels) covering the image's corners."""
    dim = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    corners = np.array(
        [
            image.TransformContinuousIndexToPhysicalPoint([c * (n - 1) for c, n in zip(corner, image.GetSize())])
            for corner in np.ndindex(*(2,) * dim)
        ]
    )
    low, high = corners.min(axis=0), corners.max(axis=0)
    permutation = _signed_permutation(direction)
    if permutation is not None:
        order = [int(np.argmax(np.abs(permutation[axis]))) for axis in range(dim)]
        spacing = [image.GetSpacing()[i] for i in order]
        size = [image.GetSize()[i] for i in order]
    else:
        step = max(min(image.GetSpacing()), float(np.max(high - low)) / (_MAX_DISPLAY_VOXELS - 1))
        spacing = [step] * dim
        size = [int(np.floor((h - lo) / step + _TOLERANCE)) + 1 for lo, h in zip(low, high)]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetOrigin(low.tolist())
    reference.SetSpacing(spacing)
    return reference, permutation is not None


def _sample(image: sitk.Image, reference: sitk.Image, exact: bool) -> np.ndarray:
    """``image`` sampled on ``reference`` as a float32 array (NaN outside ``image``)."""
    interpolator = sitk.sitkNearestNeighbor if exact else sitk.sitkLinear
    return sitk.GetArrayFromImage(
        sitk.Resample(
            sitk.Cast(image, sitk.sitkFloat32),
            reference,
            sitk.Transform(),
            interpolator,
            float("nan"),
            sitk.sitkFloat32,
        )
    )


def _edges(view: str, convention: str) -> dict[str, str]:
    if view == "sagittal":
        return {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    left, right = ("R", "L") if convention == "radiological" else ("L", "R")
    top, bottom = ("A", "P") if view == "axial" else ("S", "I")
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def _position_label(axis: int, coordinate: float) -> str:
    negative, positive = _POSITION_LETTERS[axis]
    letter = positive if coordinate >= 0 else negative
    return f"{letter} {abs(coordinate):.1f} mm"


def anatomical_slices(
    image: sitk.Image, point: npt.ArrayLike | None = None, convention: str = "radiological"
) -> list[SliceView]:
    """The axial, coronal and sagittal :class:`SliceView` of ``image`` through ``point`` (LPS mm; None:
    the image's centre); a 2D image gives one axial view. ``convention``: "radiological" (the
    patient's right on the screen's left, as Slicer) or "neurological". A point outside the image is
    clamped to its nearest slice."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    dim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("anatomical_slices needs a scalar image")
    reference, exact = display_grid(image)
    if point is None:
        centre = [(n - 1) / 2.0 for n in image.GetSize()]
        point = image.TransformContinuousIndexToPhysicalPoint(centre)
    point = np.asarray(point, dtype=np.float64)
    if point.shape != (dim,):
        raise ValueError(f"point must hold {dim} LPS coordinates, got {point.tolist()}")
    spacing = reference.GetSpacing()
    flip_lr = convention == "neurological"
    if dim == 2:
        shown = _sample(image, reference, exact)  # rows towards P (A on top), columns towards L
        shown = np.ascontiguousarray(shown[:, ::-1] if flip_lr else shown)
        size = (shown.shape[1] * spacing[0], shown.shape[0] * spacing[1])
        return [SliceView("axial", shown, size, _edges("axial", convention), None, "2D")]
    index = np.round(reference.TransformPhysicalPointToContinuousIndex(point.tolist())).astype(int)
    index = np.clip(index, 0, np.array(reference.GetSize()) - 1)
    views = []
    for view in VIEWS:
        axis = _NORMAL_AXIS[view]
        slab = sitk.Image([1 if a == axis else n for a, n in enumerate(reference.GetSize())], sitk.sitkFloat32)
        slab.SetSpacing(spacing)
        slab.SetOrigin(
            reference.TransformIndexToPhysicalPoint([int(i) if a == axis else 0 for a, i in enumerate(index)])
        )
        plane = np.squeeze(_sample(image, slab, exact), axis=2 - axis)  # [y, x], [z, x] or [z, y]
        if view == "axial":
            shown = plane  # rows towards P (A on top), columns towards L
            width, height = spacing[0], spacing[1]
        elif view == "coronal":
            shown = plane[::-1]  # rows towards I (S on top), columns towards L
            width, height = spacing[0], spacing[2]
        else:
            shown = plane[::-1]  # rows towards I, columns towards P (A on the left)
            width, height = spacing[1], spacing[2]
        if flip_lr and view != "sagittal":
            shown = shown[:, ::-1]
        position = slab.GetOrigin()[axis]
        views.append(
            SliceView(
                view,
                np.ascontiguousarray(shown),
                (shown.shape[1] * width, shown.shape[0] * height),
                _edges(view, convention),
                float(position),
                _position_label(axis, position),
            )
        )
    return views
