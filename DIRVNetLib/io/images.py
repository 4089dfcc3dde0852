"""Reading and checking images. Anything SimpleITK reads, plus DICOM series folders."""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError


def read_image(path, role="image"):
    """Read ``path`` (a file SimpleITK reads, or a folder holding one DICOM series) as float32.

    ``role`` (e.g. "fixed") names the image in error messages. The result is checked with
    :func:`check_image`.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{role} image {path} does not exist")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputImageError(f"{role} folder {path} holds no DICOM series")
            if len(series) > 1:
                raise InputImageError(
                    f"{role} folder {path} holds {len(series)} DICOM series; point at a folder with one"
                )
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputImageError(f"{role} image {path} is unreadable: {str(e).strip().splitlines()[-1]}") from e
    return check_image(image, f"{role} image {path}")


def check_image(image, name):
    """Return ``image`` as a float32 scalar image after checking it is usable for registration.

    Refuses (naming ``name``): vector/multi-component and 4D images, images with fewer than 2 voxels
    along an axis, NaN or Inf voxels, and constant (or empty) images. Never modifies ``image``.
    """
    if not isinstance(image, sitk.Image):
        raise InputImageError(f"{name} is a {type(image).__name__}, not a SimpleITK image or a path")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a scalar (single-channel) image is needed"
        )
    if image.GetDimension() not in (2, 3):
        raise InputImageError(f"{name} is {image.GetDimension()}D; 2D or 3D images are needed")
    if min(image.GetSize()) < 2:
        raise InputImageError(f"{name} has size {image.GetSize()}: every axis needs at least 2 voxels")
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputImageError(f"{name} has {bad} NaN or Inf voxels")
    if float(array.max()) == float(array.min()):
        raise InputImageError(f"{name} is constant (all voxels {float(array.min())}): nothing to register")
    return image


def load_training_volume(source, spacing=None):
    """A training volume as a numpy array: a file path, or ``nilearn:mni152_t1`` (the ICBM 2009a
    template shipped inside the installed nilearn package; nothing is downloaded). Resampled to an
    isotropic ``spacing`` (mm) when given."""
    if str(source).startswith("nilearn:"):
        source = nilearn_file(str(source).split(":", 1)[1])
    image = read_image(source, "training")
    if spacing:
        from DIRVNetLib.io.resample import resample_isotropic

        image = resample_isotropic(image, spacing)
    return sitk.GetArrayFromImage(image)


NILEARN_FILES = {
    "mni152_t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "mni152_gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "mni152_wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def nilearn_file(name):
    """Path of an image shipped inside the installed nilearn package, by its short name in
    :data:`NILEARN_FILES` (nothing is downloaded)."""
    try:
        import nilearn
    except ImportError as e:
        raise InputImageError(f"'nilearn:{name}' needs the nilearn package (pip install nilearn)") from e
    if name not in NILEARN_FILES:
        raise InputImageError(f"unknown nilearn image '{name}'; known: {sorted(NILEARN_FILES)}")
    return Path(nilearn.__file__).parent / "datasets" / "data" / NILEARN_FILES[name]
