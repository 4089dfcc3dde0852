"""Evaluation metrics (numpy + SimpleITK only): fields, similarity, labels, landmarks (TRE).

Conventions: displacement fields are SimpleITK vector images on the fixed grid, components
(x, y[, z]) in physical LPS millimetres; warped(p) = moving(p + u(p)). Arrays are in numpy order
([z, y, x]). Distances are in mm.
"""

from .field import (
    endpoint_error,
    jacobian_determinant,
    jacobian_statistics,
    largest_displacement_point,
    nonpositive_percent,
)
from .labels import dice, displacement_transform, hausdorff95, warp_labels
from .landmarks import target_registration_error
from .similarity import mse, mutual_information, ncc, similarity_report

__all__ = [
    "jacobian_determinant",
    "jacobian_statistics",
    "nonpositive_percent",
    "largest_displacement_point",
    "endpoint_error",
    "ncc",
    "mse",
    "mutual_information",
    "similarity_report",
    "warp_labels",
    "displacement_transform",
    "dice",
    "hausdorff95",
    "target_registration_error",
]
