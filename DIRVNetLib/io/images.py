"""Reading and checking images. Anything SimpleITK reads, plus DICOM series folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError
from DIRVNetLib.io.filechecks import capture_itk_warnings, check_dicom_series, check_file_whole

PathInput = str | os.PathLike[str]
"""A file or folder path."""
ImageInput = sitk.Image | PathInput
"""An image in memory or the path of one (what ``register`` and ``evaluate`` accept)."""


def read_image(path: PathInput, role: str = "image", warnings: list[str] | None = None) -> sitk.Image:
    """Read ``path`` (a file SimpleITK reads, or a folder holding one DICOM series) as float32.

    ``role`` (e.g. "fixed") names the image in error messages. The file is checked whole first
    (:func:`read_raw`); the image is checked with :func:`check_image`. ITK's warnings go to the list
    ``warnings`` when given, else to the log.
    """
    return check_image(read_raw(path, role, warnings), f"{role} image {path}")


def read_raw(path: PathInput, role: str = "image", warnings: list[str] | None = None) -> sitk.Image:
    """``path`` read in its own pixel type, after checking the file holds all the data its header
    promises (:mod:`DIRVNetLib.io.filechecks`) and, for a DICOM folder, that its slices are evenly
    spaced. ITK's warnings while reading go to ``warnings`` (a list) when given, else to the log."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{role} image {path} does not exist")
    captured: list[str] = []
    try:
        if path.is_dir():
            with capture_itk_warnings(captured):
                image = _read_dicom_series(path, role)
        else:
            check_file_whole(path, role)
            with capture_itk_warnings(captured):
                image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1]
        if "No such file or directory" in reason:  # what ITK says of a file it could not read to the end
            reason = "its data is missing or cut short"
        raise InputImageError(f"{role} image {path} is unreadable: {reason}") from e
    for text in captured:
        message = f"{role} image {path}: {text}"
        if warnings is None:
            logging.getLogger(__name__).warning(message)
        else:
            warnings.append(message)
    return image


def _read_dicom_series(path: Path, role: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise InputImageError(f"{role} folder {path} holds no DICOM series")
    if len(series) > 1:
        raise InputImageError(f"{role} folder {path} holds {len(series)} DICOM series; point at a folder with one")
    files = reader.GetGDCMSeriesFileNames(str(path), series[0])
    check_dicom_series(path, files, role)
    reader.SetFileNames(files)
    return reader.Execute()


def looks_like_labels(image: sitk.Image, max_values: int = 64) -> bool:
    """Whether ``image`` looks like a label map: an integer pixel type holding at most ``max_values``
    distinct values."""
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetPixelID() not in _INTEGER_TYPES:
        return False
    return bool(np.unique(sitk.GetArrayViewFromImage(image)).size <= max_values)


_INTEGER_TYPES = {
    sitk.sitkUInt8,
    sitk.sitkInt8,
    sitk.sitkUInt16,
    sitk.sitkInt16,
    sitk.sitkUInt32,
    sitk.sitkInt32,
    sitk.sitkUInt64,
    sitk.sitkInt64,
}


def check_image(image: object, name: str) -> sitk.Image:
    """Return ``image`` as a float32 scalar image after checking it is usable for registration.

    Refuses (naming ``name``): vector/multi-component and 4D images, images with fewer than 2 voxels
    along an axis, a spacing, origin or direction that is not finite (or a spacing outside 1e-3 to 1e4 mm,
    a singular direction), NaN or Inf voxels, and constant (or empty) images. Never modifies ``image``.
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
    check_geometry(image, name)
    scalar = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(scalar)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputImageError(f"{name} has {bad} NaN or Inf voxels")
    if float(array.max()) == float(array.min()):
        raise InputImageError(f"{name} is constant (all voxels {float(array.min())}): nothing to register")
    return scalar


def check_geometry(image: sitk.Image, name: str) -> None:
    """Refuse a grid no registration can use: non-finite or out-of-range spacing (1e-3 to 1e4 mm),
    non-finite origin, non-finite or singular direction."""
    spacing, origin = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    if not (np.isfinite(spacing).all() and (spacing >= MIN_SPACING_MM).all() and (spacing <= MAX_SPACING_MM).all()):
        raise InputImageError(
            f"{name} has spacing {tuple(float(v) for v in spacing)} mm; each must lie between "
            f"{MIN_SPACING_MM:g} and {MAX_SPACING_MM:g} mm (check the header's spacing and units)"
        )
    if not np.isfinite(origin).all():
        raise InputImageError(f"{name} has a non-finite origin {tuple(float(v) for v in origin)}")
    if not np.isfinite(direction).all() or abs(np.linalg.det(direction)) < 1e-6:
        raise InputImageError(f"{name} has an invalid direction matrix {tuple(direction.ravel())}")


MIN_SPACING_MM, MAX_SPACING_MM = 1e-3, 1e4


def load_training_volume(source: PathInput, spacing: float | None = None) -> np.ndarray:
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


def nilearn_file(name: str) -> Path:
    """Path of an image shipped inside the installed nilearn package, by its short name in
    :data:`NILEARN_FILES` (nothing is downloaded)."""
    try:
        import nilearn
    except ImportError as e:
        raise InputImageError(f"'nilearn:{name}' needs the nilearn package (pip install nilearn)") from e
    if name not in NILEARN_FILES:
        raise InputImageError(f"unknown nilearn image '{name}'; known: {sorted(NILEARN_FILES)}")
    return Path(nilearn.__file__).parent / "datasets" / "data" / NILEARN_FILES[name]
