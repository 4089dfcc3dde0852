"""Resampling helpers shared by training and registration (physical space, SimpleITK)."""

import dataclasses

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.grid import Grid


def isotropic_reference(image, spacing):
    """An empty image with ``image``'s origin, direction and physical extent on an isotropic grid of
    ``spacing`` mm (the extent is kept: size = ceil(old size * old spacing / spacing))."""
    size = [max(2, int(np.ceil(n * s / spacing - 1e-6))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return _reference_like(image, size, [float(spacing)] * image.GetDimension())


def coarser_reference(image, factor):
    """An empty image with ``image``'s origin, direction and physical extent on a grid ``factor``
    times coarser along every axis (spacing x factor; size = ceil(old size / factor))."""
    size = [max(2, int(np.ceil(n / factor - 1e-6))) for n in image.GetSize()]
    return _reference_like(image, size, [s * factor for s in image.GetSpacing()])


def _reference_like(image, size, spacing):
    """An empty float32 image of ``size`` and ``spacing`` with ``image``'s origin and direction."""
    return dataclasses.replace(Grid.of(image), size=tuple(size), spacing=tuple(spacing)).image()


def resample_like(image, reference, interpolator=sitk.sitkLinear):
    """``image`` resampled (identity transform, physical space) onto ``reference``'s grid; points
    outside ``image`` take the nearest voxel's value."""
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID(), True)


def resample_isotropic(image, spacing, interpolator=sitk.sitkLinear):
    """``image`` on an isotropic grid of ``spacing`` mm covering the same physical extent."""
    return resample_like(image, isotropic_reference(image, spacing), interpolator)
