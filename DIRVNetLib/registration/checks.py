"""Checks of :func:`~DIRVNetLib.registration.api.register`'s arguments before anything is computed, and
of its results before anything is returned: every error names the argument and what it accepts."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError, RegistrationFailedError
from DIRVNetLib.io.images import ImageInput, check_image, looks_like_labels, read_raw
from DIRVNetLib.registration.devices import DEVICES


@dataclasses.dataclass
class CheckedInputs:
    """fixed, moving: float32 images (checked); moving_labels: whether the moving image is warped as a
    label map (nearest neighbour, its own pixel type moving_pixel_id); warnings: sentences for the report."""

    fixed: sitk.Image
    moving: sitk.Image
    moving_labels: bool
    moving_pixel_id: int
    warnings: list[str]


Check = Callable[[Any], None]
"""A check of one argument's value: raises TypeError or ValueError naming it."""


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _flag(name: str) -> Check:
    def check(value: object) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")

    return check


def _optional_flag(name: str) -> Check:
    def check(value: object) -> None:
        if value is not None:
            _flag(name)(value)

    return check


def _count(name: str, optional: bool = False) -> Check:
    def check(value: Any) -> None:
        if optional and value is None:
            return
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0{' (or None)' if optional else ''}, got {value!r}")

    return check


def _points_radius(value: Any) -> None:
    if value is not None and not (_is_number(value) and 0 < value < math.inf):
        raise ValueError(f"points_radius must be a finite number of mm > 0 (or None), got {value!r}")


def _spacing(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number of mm > 0 (or None), got {value!r}")

    return check


def _coarse_pass(value: Any) -> None:
    if value is not None and not (_is_number(value) and 1 <= value < math.inf):
        raise ValueError(f"coarse_pass must be a finite factor >= 1 (1: none) or None (the mode's), got {value!r}")


def _device(value: object) -> None:
    if value not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {value!r}")


def _weights(value: object) -> None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"weights must be None, a bundled weight-set name or a folder path, got {type(value).__name__}")


def _callable_or_none(name: str, also: str | None = None) -> Check:
    def check(value: object) -> None:
        if value is not None and not callable(value) and not (also and hasattr(value, also)):
            raise TypeError(
                f"{name} must be None or a callable{f' (or have {also}())' if also else ''}, got {type(value).__name__}"
            )

    return check


_CHECKS: dict[str, Check] = {
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


def check_arguments(fixed: ImageInput, moving: ImageInput, **arguments: Any) -> CheckedInputs:
    """Check ``register``'s keyword ``arguments`` (those known here; others are left to their users),
    then read and check the two images. Returns :class:`CheckedInputs`. Raises ``TypeError`` or
    ``ValueError`` naming the argument, or :class:`InputImageError`."""
    for name, value in arguments.items():
        if name in _CHECKS:
            _CHECKS[name](value)
    warnings: list[str] = []
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


def _name(image: ImageInput, role: str) -> str:
    return f"{role} image" if isinstance(image, sitk.Image) else f"{role} image {image}"


def _raw(image: object, role: str, warnings: list[str]) -> sitk.Image:
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


def check_finite(array: npt.ArrayLike, what: str) -> None:
    """Raise :class:`RegistrationFailedError` when ``array`` holds NaN or Inf (``what`` names it)."""
    array = np.asarray(array)
    if not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise RegistrationFailedError(
            f"the registration failed: the {what} has {bad} non-finite values (NaN/Inf) of {array.size}; "
            "nothing was written (check the images' overlap and the working spacing)"
        )


def check_finite_report(report: object) -> None:
    """Raise :class:`RegistrationFailedError` for any NaN/Inf number in the report (nested)."""

    def walk(value: object, key: str) -> None:
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
