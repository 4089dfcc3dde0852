"""Slicer MRML layer of DIRVNetLib: volume nodes in, grid transform node (and QA volumes) out.

Imports Slicer's MRML classes (``import slicer``: the Slicer application, or the ``slicer-core``
wheel outside it) and VTK, never Qt, and only works through the nodes' own scene, so it runs on a
bare ``vtkMRMLScene``. Coordinate conventions: see :mod:`DIRVNetLib.mrml.convert`. :func:`register` runs
in this process; :mod:`DIRVNetLib.mrml.background` runs the same registration in a worker process (the
Slicer module's way, TensorFlow never loaded here). Importing this package does not import TensorFlow.
"""

from .points import markups_points, refine_with_points
from .register import (
    FIXED_VOLUME_ROLE,
    INTERMEDIATE_BROWSER_ROLE,
    INTERMEDIATE_SEQUENCE_ROLE,
    JACOBIAN_VOLUME_ROLE,
    MOVING_VOLUME_ROLE,
    REPORT_ATTRIBUTE,
    WARPED_VOLUME_ROLE,
    WEIGHTS_ATTRIBUTE,
    RegistrationJob,
    prepare,
    previous_result,
    register,
)

__all__ = [
    "register",
    "refine_with_points",
    "markups_points",
    "prepare",
    "previous_result",
    "RegistrationJob",
    "FIXED_VOLUME_ROLE",
    "MOVING_VOLUME_ROLE",
    "WARPED_VOLUME_ROLE",
    "JACOBIAN_VOLUME_ROLE",
    "INTERMEDIATE_SEQUENCE_ROLE",
    "INTERMEDIATE_BROWSER_ROLE",
    "REPORT_ATTRIBUTE",
    "WEIGHTS_ATTRIBUTE",
]
