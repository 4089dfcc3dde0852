"""Point pairs from Slicer markups point lists, and "Refine with points" on an existing DIRVNet result.

Markups hold control points in RAS; DIRVNetLib takes LPS mm (:mod:`DIRVNetLib.mrml.convert`). The i-th
point of the fixed list pairs with the i-th point of the moving list. Runs without TensorFlow (the
correction is :mod:`DIRVNetLib.registration.point_correction`), on the main thread.
"""

import json

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.errors import InputImageError, PointsError
from DIRVNetLib.io.points import point_pairs
from DIRVNetLib.metrics import displacement_transform, jacobian_statistics, similarity_report
from DIRVNetLib.registration.point_correction import correct_with_points

from .convert import (
    RAS_TO_LPS,
    array_to_image,
    displacement_to_grid_transform,
    grid_transform_to_displacement,
    image_array_on_grid,
    volume_array,
    volume_grid,
    volume_to_image,
)
from .outputs import write_jacobian_volume, write_warped_volume

POINT_CORRECTION_KEY = "point_correction"
"""Key of the report (transform attribute ``DIRVNet.Report``) that describes the last point correction."""


def markups_points(markupsNode, dimension=3, role="fixed"):
    """World positions (parent transforms applied) of the node's control points as an (N, dimension)
    array in LPS mm; ``dimension`` 2 keeps x, y (points placed on an axial slice). ``role`` ("fixed" or
    "moving") names the list in errors. Raises PointsError for a missing list, an empty one, or a point
    without a defined position."""
    if markupsNode is None:
        raise PointsError(f"The {role} points are not set: choose a point list.")
    if not markupsNode.IsA("vtkMRMLMarkupsNode"):
        raise PointsError(
            f"The {role} points '{markupsNode.GetName()}' are a {markupsNode.GetClassName()}, not a markups point list."
        )
    count = markupsNode.GetNumberOfControlPoints()
    if count == 0:
        raise PointsError(f"The {role} point list '{markupsNode.GetName()}' has no points.")
    points = np.zeros((count, 3))
    for i in range(count):
        if markupsNode.GetNthControlPointPositionStatus(i) != markupsNode.PositionDefined:
            raise PointsError(
                f"Point {i + 1} ('{markupsNode.GetNthControlPointLabel(i)}') of the {role} point list "
                f"'{markupsNode.GetName()}' has no position: place it or delete it."
            )
        ras = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(i, ras)
        points[i] = RAS_TO_LPS @ np.array(ras)
    return points[:, :dimension].copy()


def _node_image(volumeNode, underTransform):
    """The volume in world LPS, ignoring its parent transform when that is ``underTransform`` (the moving
    volume shown under the result is read as it was registered)."""
    if volumeNode.GetParentTransformNode() is underTransform:
        return array_to_image(volume_array(volumeNode), volume_grid(volumeNode))
    return volume_to_image(volumeNode)[0]


def refine_with_points(transformNode, fixedPointsNode, movingPointsNode, radius=None):
    """Correct an existing DIRVNet result so that each fixed point maps to its moving point; returns the
    report (the transform's ``DIRVNet.Report``, updated: similarity and Jacobian statistics after, and
    ``point_correction`` with the error at each point before and after, mm).

    Starts from the field the transform node holds now (so corrections add up), writes the corrected
    field into the same node and refreshes its warped and Jacobian volumes (node references
    ``warpedVolume``, ``jacobianVolume``). ``radius``: mm around each point (None: from the largest error).
    On an error (:class:`~DIRVNetLib.errors.PointsError`, e.g. unpaired points, a point outside the fixed
    volume, pairs that would fold the field) nothing is changed.
    """
    from .register import (
        FIXED_VOLUME_ROLE,
        JACOBIAN_VOLUME_ROLE,
        MOVING_VOLUME_ROLE,
        REPORT_ATTRIBUTE,
        WARPED_VOLUME_ROLE,
    )

    displacement, grid = grid_transform_to_displacement(transformNode)
    fixedNode = transformNode.GetNodeReference(FIXED_VOLUME_ROLE)
    movingNode = transformNode.GetNodeReference(MOVING_VOLUME_ROLE)
    if fixedNode is None or movingNode is None:
        raise InputImageError(
            f"The transform '{transformNode.GetName()}' does not refer to its fixed and moving "
            f"volumes: refine a DIRVNet result."
        )
    dimension = displacement.GetDimension()
    pairs = point_pairs(
        markups_points(fixedPointsNode, dimension, "fixed"),
        markups_points(movingPointsNode, dimension, "moving"),
        displacement,
    )
    corrected, correction = correct_with_points(displacement, *pairs, radius=radius)

    fixed = _node_image(fixedNode, transformNode)
    moving = _node_image(movingNode, transformNode)
    warped = sitk.Resample(moving, corrected, displacement_transform(corrected), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    moving_on_fixed = sitk.Resample(moving, corrected, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    report = json.loads(transformNode.GetAttribute(REPORT_ATTRIBUTE) or "{}")
    report.update(similarity_report(sitk.Cast(fixed, sitk.sitkFloat32), moving_on_fixed, warped))
    report.update(jacobian_statistics(corrected, dtype=np.float32))
    report[POINT_CORRECTION_KEY] = correction

    transformNode.SetAndObserveTransformFromParent(
        displacement_to_grid_transform(image_array_on_grid(corrected, grid, "corrected field"), grid)
    )
    transformNode.SetAttribute(REPORT_ATTRIBUTE, json.dumps(report, default=float))
    warpedNode = transformNode.GetNodeReference(WARPED_VOLUME_ROLE)
    if warpedNode is not None:
        write_warped_volume(warpedNode, warped, grid)
    jacobianNode = transformNode.GetNodeReference(JACOBIAN_VOLUME_ROLE)
    if jacobianNode is not None:
        write_jacobian_volume(jacobianNode, corrected, grid)
    return report
