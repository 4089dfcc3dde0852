"""Checks of :func:`~DIRVNetLib.registration.api.register`'s arguments before anything is computed, and
of its results before anything is returned: every error names the argument and what it accepts."""

import dataclasses
import math
import numbers
import os

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError, RegistrationFailedError
from DIRVNetLib.io.images import check_image, looks_like_labels, read_raw
from DIRVNetLib.registration.devices import DEVICES


@dataclasses.dataclass
class CheckedInputs:
    """fixed, moving: float32 images (checked); moving_labels: whether the moving image is warped as a
    label map (nearest neighbour, its own pixel type moving_pixel_id); warnings: sentences for the report."""

    fixed: sitk.Image
    moving: sitk.Image
    moving_labels: bool
    moving_pixel_id: int
    warnings: list


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _flag(name):
    def check(value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")

    return check


def _optional_flag(name):
    def check(value):
        if value is not None:
            _flag(name)(value)

    return check


def _count(name, optional=False):
    def check(value):
        if optional and value is None:
            return
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0{' (or None)' if optional else ''}, got {value!r}")

    return check


def _points_radius(value):
    if value is not None and not (_is_number(value) and 0 < value < math.inf):
        raise ValueError(f"points_radius must be a finite number of mm > 0 (or None), got {value!r}")


def _spacing(name):
    def check(value):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number of mm > 0 (or None), got {value!r}")

    return check


def _coarse_pass(value):
    if value is not None and not (_is_number(value) and 1 <= value < math.inf):
        raise ValueError(f"coarse_pass must be a finite factor >= 1 (1: none) or None (the mode's), got {value!r}")


def _device(value):
    if value not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {value!r}")


def _weights(value):
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"weights must be None, a bundled weight-set name or a folder path, got {type(value).__name__}")


def _callable_or_none(name, also=None):
    def check(value):
        if value is not None and not callable(value) and not (also and hasattr(value, also)):
            raise TypeError(
                f"{name} must be None or a callable{f' (or have {also}())' if also else ''}, got {type(value).__name__}"
            )

    return check


_CHECKS = {
    "weights": _weights,
    "device": _device,
    "refinement_rounds": _count("refinement_rounds"),
    "refine_steps": _count("refine_steps", optional=True),
    "points_radius": _points_radius,
    "fallback": _flag("fallback"),
    "working_spacing": _spacing("working_spacing"),
    "refinement_spacing": _spacing("refinement_spacing"),
    "coarse_pass": _coarse_pass,
    "isotropic": _flag("isotropic"),
    "keep_intermediate": _flag("keep_intermediate"),
    "unfold": _flag("unfold"),
    "whole_graph": _flag("whole_graph"),
    "moving_labels": _optional_flag("moving_labels"),
    "progress": _callable_or_none("progress"),
    "cancel": _callable_or_none("cancel", also="is_set"),
}


def check_arguments(fixed, moving, **arguments):
    """Check ``register``'s keyword ``arguments`` (those known here; others are left to their users),
    then read and check the two images. Returns :class:`CheckedInputs`. Raises ``TypeError`` or
    ``ValueError`` naming the argument, or :class:`InputImageError`."""
    for name, value in arguments.items():
        if name in _CHECKS:
            _CHECKS[name](value)
    warnings = []
    fixed_raw = _raw(fixed, "fixed", warnings)
    moving_raw = _raw(moving, "moving", warnings)
    fixed_image = check_image(fixed_raw, _name(fixed, "fixed"))
    moving_image = check_image(moving_raw, _name(moving, "moving"))
    labels = arguments.get("moving_labels")
    if labels is None:
        labels = looks_like_labels(moving_raw)
        if labels:
            warnings.append(
                f"{_name(moving, 'moving')} looks like a label map (integer, few values): warped with nearest neighbour"
            )
    pixel_id = moving_raw.GetPixelID() if labels and moving_raw.GetPixelID() != sitk.sitkFloat64 else sitk.sitkFloat32
    return CheckedInputs(fixed_image, moving_image, bool(labels), pixel_id, warnings)


def _name(image, role):
    return f"{role} image" if isinstance(image, sitk.Image) else f"{role} image {image}"


def _raw(image, role, warnings):
    if isinstance(image, sitk.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_raw(image, role, warnings)
    raise InputImageError(
        f"{role} must be a SimpleITK image or a path (str or pathlib.Path), got {type(image).__name__}"
        + (
            " (make one with SimpleITK.GetImageFromArray and set its spacing, origin and direction)"
            if isinstance(image, np.ndarray)
            else ""
        )
    )


def check_finite(array, what):
    """Raise :class:`RegistrationFailedError` when ``array`` holds NaN or Inf (``what`` names it)."""
    array = np.asarray(array)
    if not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise RegistrationFailedError(
            f"the registration failed: the {what} has {bad} non-finite values (NaN/Inf) of {array.size}; "
            "nothing was written (check the images' overlap and the working spacing)"
        )


def check_finite_report(report):
    """Raise :class:`RegistrationFailedError` for any NaN/Inf number in the report (nested)."""

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif _is_number(value) and not math.isfinite(value):
            raise RegistrationFailedError(
                f"the registration failed: its report's {key} is {value}; nothing was written"
            )

    walk(report, "")
