"""Point pairs in the MRML layer (slicer-core, bare scene): markups point lists -> LPS, registration with
points, and "Refine with points" starting from an existing result."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")

from test_mrml_convert import load_volume  # noqa: E402
from test_point_correction import local_pair  # noqa: E402, F401  (the fixture)

from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.errors import PointsError  # noqa: E402
from DIRVNetLib.metrics import jacobian_determinant, target_registration_error  # noqa: E402
from DIRVNetLib.mrml.convert import grid_transform_to_displacement, volume_array  # noqa: E402


def point_list(scene, name, points_lps):
    """A markups point list holding ``points_lps`` (2D points get z = 0), placed in RAS as Slicer does."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for p in points_lps:
        x, y, *z = (float(v) for v in p)
        node.AddControlPoint(-x, -y, z[0] if z else 0.0)
    return node


@pytest.fixture
def scene_pair(local_pair, tmp_path):
    fixed, moving, _, fixed_points, moving_points = local_pair
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    scene = slicer.vtkMRMLScene()
    return (
        scene,
        load_volume(scene, tmp_path / "fixed.nrrd"),
        load_volume(scene, tmp_path / "moving.nrrd"),
        point_list(scene, "F", fixed_points),
        point_list(scene, "M", moving_points),
        fixed_points,
        moving_points,
    )


def test_markups_points_are_world_lps():
    scene = slicer.vtkMRMLScene()
    node = point_list(scene, "P", [[1.0, 2.0, 3.0], [-4.0, 5.5, 6.0]])
    np.testing.assert_allclose(mrml.markups_points(node), [[1, 2, 3], [-4, 5.5, 6]])
    np.testing.assert_allclose(mrml.markups_points(node, 2), [[1, 2], [-4, 5.5]])
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)  # 10 mm towards R = -10 mm in LPS x
    shift.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(shift.GetID())
    np.testing.assert_allclose(mrml.markups_points(node)[:, 0], [-9.0, -14.0])
    node.UnsetNthControlPointPosition(1)
    with pytest.raises(PointsError, match="Point 2 .* of the fixed point list 'P' has no position"):
        mrml.markups_points(node)
    with pytest.raises(PointsError, match="The moving points are not set"):
        mrml.markups_points(None, 3, "moving")


def test_register_with_point_lists(scene_pair):
    scene, fixed, moving, fixed_list, moving_list, fixed_points, moving_points = scene_pair
    transform = mrml.register(fixed, moving, fixedPointsNode=fixed_list, movingPointsNode=moving_list)
    displacement, _ = grid_transform_to_displacement(transform)
    assert displacement.GetDimension() == 2
    assert target_registration_error(fixed_points, moving_points, displacement)["tre_max_mm"] < 1.0
    report = json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE))
    assert max(report["point_correction"]["error_after_mm"]) < 1.0
    short = point_list(scene, "short", moving_points[:2])
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(PointsError, match="unpaired points"):
        mrml.register(fixed, moving, fixedPointsNode=fixed_list, movingPointsNode=short)
    assert scene.GetNumberOfNodes() == nodes_before


def test_refine_with_points_starts_from_the_current_result(scene_pair):
    scene, fixed, moving, fixed_list, moving_list, fixed_points, moving_points = scene_pair
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "warped")
    jacobian = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
    transform = mrml.register(
        fixed, moving, outputVolumeNode=warped, jacobianVolumeNode=jacobian, placeMovingUnderTransform=True, mode="fast"
    )
    before, _ = grid_transform_to_displacement(transform)
    assert target_registration_error(fixed_points, moving_points, before)["tre_max_mm"] > 2.0
    warped_before = volume_array(warped).copy()

    short = point_list(scene, "short", moving_points[:2])
    with pytest.raises(PointsError, match="unpaired points"):
        mrml.refine_with_points(transform, fixed_list, short)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(grid_transform_to_displacement(transform)[0]), sitk.GetArrayFromImage(before)
    )  # unchanged after the error

    report = mrml.refine_with_points(transform, fixed_list, moving_list)
    after, _ = grid_transform_to_displacement(transform)
    assert target_registration_error(fixed_points, moving_points, after)["tre_max_mm"] < 1.0
    assert jacobian_determinant(after).min() > 0
    assert json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE)) == json.loads(json.dumps(report))
    assert report["point_correction"]["points"] == 3 and report["jacobian_nonpositive_percent"] == 0.0
    assert not np.array_equal(volume_array(warped), warped_before)  # the warped volume follows
    np.testing.assert_allclose(volume_array(jacobian)[0], jacobian_determinant(after), atol=1e-5)
    assert moving.GetParentTransformNode() is transform
    # a second refinement starts from the corrected field: nothing left to correct at the points
    again = mrml.refine_with_points(transform, fixed_list, moving_list)
    assert max(again["point_correction"]["error_before_mm"]) < 1.0
