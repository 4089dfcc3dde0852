"""Point pairs in the MRML layer (slicer-core, bare scene): markups point lists -> LPS, registration with
points, and "Refine with points" starting from an existing result."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")

from test_mrml_convert import load_volume  # noqa: E402
from test_point_correction import beyond, check_local_correction, error_map, local_pair  # noqa: E402, F401

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


@pytest.fixture(scope="module")
def registered(local_pair, tmp_path_factory):
    """The pair in a scene with two point lists, registered once without points (default mode) with a
    warped and a Jacobian volume and the moving volume under the result; ``plain``: that field (a copy)."""
    fixed, moving, true, fixed_points, moving_points = local_pair
    folder = tmp_path_factory.mktemp("scene")
    sitk.WriteImage(fixed, str(folder / "fixed.nrrd"))
    sitk.WriteImage(moving, str(folder / "moving.nrrd"))
    scene = slicer.vtkMRMLScene()
    nodes = {
        "scene": scene,
        "fixed": load_volume(scene, folder / "fixed.nrrd"),
        "moving": load_volume(scene, folder / "moving.nrrd"),
        "fixed_list": point_list(scene, "F", fixed_points),
        "moving_list": point_list(scene, "M", moving_points),
        "warped": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "warped"),
        "jacobian": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian"),
    }
    nodes["transform"] = mrml.register(
        nodes["fixed"],
        nodes["moving"],
        outputVolumeNode=nodes["warped"],
        jacobianVolumeNode=nodes["jacobian"],
        placeMovingUnderTransform=True,
    )
    nodes["plain"] = sitk.Image(grid_transform_to_displacement(nodes["transform"])[0])
    return nodes, true, fixed_points, moving_points


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


def test_register_with_point_lists(registered):
    """The default mode through the MRML layer: the key property of the API holds for the node's field."""
    nodes, true, fixed_points, moving_points = registered
    scene = nodes["scene"]
    transform = mrml.register(
        nodes["fixed"], nodes["moving"], fixedPointsNode=nodes["fixed_list"], movingPointsNode=nodes["moving_list"]
    )
    displacement, _ = grid_transform_to_displacement(transform)
    assert displacement.GetDimension() == 2
    report = json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE))
    assert report["mode"] == "accurate" and max(report["point_correction"]["error_after_mm"]) < 1.0
    radius = report["point_correction"]["radius_mm"]
    check_local_correction(nodes["plain"], displacement, true, fixed_points, moving_points, radius)
    short = point_list(scene, "short", moving_points[:2])
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(PointsError, match="unpaired points"):
        mrml.register(nodes["fixed"], nodes["moving"], fixedPointsNode=nodes["fixed_list"], movingPointsNode=short)
    assert scene.GetNumberOfNodes() == nodes_before


def test_refine_with_points_starts_from_the_current_result(registered):
    """ "Refine with points" (no TensorFlow): the correction alone, on the field the node holds."""
    nodes, true, fixed_points, moving_points = registered
    scene, transform, warped, jacobian = nodes["scene"], nodes["transform"], nodes["warped"], nodes["jacobian"]
    before = nodes["plain"]
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(grid_transform_to_displacement(transform)[0]), sitk.GetArrayFromImage(before)
    )
    assert target_registration_error(fixed_points, moving_points, before)["tre_max_mm"] > 2.0
    warped_before = volume_array(warped).copy()

    short = point_list(scene, "short", moving_points[:2])
    with pytest.raises(PointsError, match="unpaired points"):
        mrml.refine_with_points(transform, nodes["fixed_list"], short)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(grid_transform_to_displacement(transform)[0]), sitk.GetArrayFromImage(before)
    )  # unchanged after the error

    report = mrml.refine_with_points(transform, nodes["fixed_list"], nodes["moving_list"])
    after, _ = grid_transform_to_displacement(transform)
    assert target_registration_error(fixed_points, moving_points, after)["tre_max_mm"] < 1.0
    assert jacobian_determinant(after).min() > 0
    far = beyond(before, fixed_points, report["point_correction"]["radius_mm"])
    assert far.mean() > 0.5
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after)[far], sitk.GetArrayFromImage(before)[far])
    assert error_map(after, true).mean() < error_map(before, true).mean()
    assert json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE)) == json.loads(json.dumps(report))
    assert report["point_correction"]["points"] == 3 and report["jacobian_nonpositive_percent"] == 0.0
    assert not np.array_equal(volume_array(warped), warped_before)  # the warped volume follows
    np.testing.assert_allclose(volume_array(jacobian)[0], jacobian_determinant(after), atol=1e-5)
    assert nodes["moving"].GetParentTransformNode() is transform
    # a second refinement starts from the corrected field: nothing left to correct at the points
    again = mrml.refine_with_points(transform, nodes["fixed_list"], nodes["moving_list"])
    assert max(again["point_correction"]["error_before_mm"]) < 1.0
