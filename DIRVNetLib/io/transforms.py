"""Writing displacement fields: ITK displacement-field transform (.h5/.tfm) and vector images (NRRD/NIfTI)."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from DIRVNetLib.io.atomic import atomic_path


def write_transform(transform: sitk.Transform, path: str | os.PathLike[str]) -> None:
    """Write an ITK transform file (format from the suffix: .h5, .tfm, .txt) whole."""
    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))


def write_image(image: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> None:
    """Write an image (a displacement field as a vector image: NRRD "vector" kind, LPS) whole."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)


TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")
"""Suffixes read as ITK transform files; anything else is read as a vector image."""


def read_displacement(path: str | os.PathLike[str], reference: sitk.Image | None = None) -> sitk.Image:
    """A displacement field (sitkVectorFloat64, LPS mm, pull convention) from a transform file or a
    vector image; ValueError naming the file when it is missing, unreadable or of the wrong dimension.

    reference: an image whose grid a transform file is sampled on (any ITK transform: displacement
    field, affine, composite; ``T(p) - p``), and whose dimension the file must have. Without it a
    transform file must hold a displacement-field transform (first of a composite), returned on its
    own grid. A vector image is returned on its own grid either way.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: transform or displacement file not found")
    try:
        if path.suffix.lower() in TRANSFORM_SUFFIXES:
            transform = sitk.ReadTransform(str(path))
            if reference is None:
                if transform.GetTransformEnum() == sitk.sitkComposite:
                    transform = sitk.CompositeTransform(transform).GetNthTransform(0)
                return sitk.DisplacementFieldTransform(transform).GetDisplacementField()
            if transform.GetDimension() != reference.GetDimension():
                dimensions = f"{transform.GetDimension()}D transform for {reference.GetDimension()}D images"
                raise ValueError(f"{path}: a {dimensions}")
            return sitk.TransformToDisplacementField(
                transform,
                sitk.sitkVectorFloat64,
                reference.GetSize(),
                reference.GetOrigin(),
                reference.GetSpacing(),
                reference.GetDirection(),
            )
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ValueError(f"{path}: unreadable: {str(e).strip().splitlines()[-1]}") from e
    if reference is not None and image.GetDimension() != reference.GetDimension():
        raise ValueError(f"{path}: a {image.GetDimension()}D field for {reference.GetDimension()}D images")
    return sitk.Cast(image, sitk.sitkVectorFloat64)
