"""Resampling helpers shared by training and registration (physical space, SimpleITK)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.grid import Grid


def isotropic_reference(image: sitk.Image, spacing: float) -> sitk.Image:
    """An empty image with ``image``'s origin, direction and physical extent on an isotropic grid of
    ``spacing`` mm (the extent is kept: size = ceil(old size * old spacing / spacing))."""
    return _reference_like(image, isotropic_size(image, spacing), [float(spacing)] * image.GetDimension())


def isotropic_size(image: sitk.Image, spacing: float) -> list[int]:
    """The size of :func:`isotropic_reference`'s grid (nothing allocated)."""
    return [max(2, int(np.ceil(n * s / spacing - 1e-6))) for n, s in zip(image.GetSize(), image.GetSpacing())]


def coarser_reference(image: sitk.Image, factor: float) -> sitk.Image:
    """An empty image with ``image``'s origin, direction and physical extent on a grid ``factor``
    times coarser along every axis (spacing x factor; size = ceil(old size / factor))."""
    size = [max(2, int(np.ceil(n / factor - 1e-6))) for n in image.GetSize()]
    return _reference_like(image, size, [s * factor for s in image.GetSpacing()])


def _reference_like(image: sitk.Image, size: Sequence[int], spacing: Sequence[float]) -> sitk.Image:
    """An empty float32 image of ``size`` and ``spacing`` with ``image``'s origin and direction."""
    return dataclasses.replace(Grid.of(image), size=tuple(size), spacing=tuple(spacing)).image()


def resample_like(image: sitk.Image, reference: sitk.Image, interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """``image`` resampled (identity transform, physical space) onto ``reference``'s grid; points
    outside ``image`` take the nearest voxel's value. An image already on that grid is returned as it is."""
    if Grid.of(image) == Grid.of(reference):
        return image
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID(), True)


def warp_image(
    image: sitk.Image,
    displacement: sitk.Image,
    labels: bool = False,
    pixel_id: int = sitk.sitkFloat32,
) -> sitk.Image:
    """``image`` warped onto ``displacement``'s grid: ``out(p) = image(p + u(p))`` (LPS mm, 0 outside
    ``image``), linearly or with nearest neighbour for a label map (``labels``), as ``pixel_id``. The same
    values as resampling through the field's ITK displacement-field transform, without building one (a copy
    of the field) or interpolating the field at its own grid points."""
    field = (
        displacement
        if displacement.GetPixelID() == sitk.sitkVectorFloat64
        else sitk.Cast(displacement, sitk.sitkVectorFloat64)
    )
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    warped = sitk.Warp(
        sitk.Cast(image, sitk.sitkFloat32),
        field,
        interpolator,
        field.GetSize(),
        field.GetOrigin(),
        field.GetSpacing(),
        field.GetDirection(),
        0.0,
    )
    return sitk.Cast(warped, pixel_id)


def resample_isotropic(image: sitk.Image, spacing: float, interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """``image`` on an isotropic grid of ``spacing`` mm covering the same physical extent."""
    return resample_like(image, isotropic_reference(image, spacing), interpolator)
