"""Writing displacement fields: ITK displacement-field transform (.h5/.tfm) and vector images (NRRD/NIfTI)."""

from pathlib import Path

import SimpleITK as sitk

from DIRVNetLib.io.atomic import atomic_path


def write_transform(transform, path):
    """Write an ITK transform file (format from the suffix: .h5, .tfm, .txt) whole."""
    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))


def write_image(image, path, compress=True):
    """Write an image (a displacement field as a vector image: NRRD "vector" kind, LPS) whole."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)


def read_displacement(path):
    """A displacement field (sitkVectorFloat64, LPS mm) from a transform file or a vector image."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".tfm", ".txt"):
        transform = sitk.ReadTransform(str(path))
        if transform.GetTransformEnum() == sitk.sitkComposite:
            transform = sitk.CompositeTransform(transform).GetNthTransform(0)
        return sitk.DisplacementFieldTransform(transform).GetDisplacementField()
    return sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkVectorFloat64)
