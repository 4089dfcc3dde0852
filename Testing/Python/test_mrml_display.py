"""Display of a result after Apply, on a real MRML scene (slicer-core) with slice composite nodes made here,
as Slicer's layout makes them for its slice views."""

import json

import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")

from test_mrml_convert import load_volume  # noqa: E402

from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.errors import InputImageError  # noqa: E402
from DIRVNetLib.mrml import display  # noqa: E402
from DIRVNetLib.mrml.outputs import JACOBIAN_COLOR_NODE_NAME  # noqa: E402


@pytest.fixture
def result(t1_slice, tiny_weights, tmp_path):
    """(scene, transform, fixed, moving, jacobian, composites): a registration with the tiny 2D network."""
    fixed = sitk.Image(t1_slice)
    moving = sitk.Resample(fixed, fixed, sitk.TranslationTransform(2, (2.0, -1.0)), sitk.sitkLinear, 0.0)
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    scene = slicer.vtkMRMLScene()
    composites = []
    for name in ("Red", "Yellow", "Green"):
        composite = scene.AddNode(slicer.vtkMRMLSliceCompositeNode())
        composite.SetLayoutName(name)
        composites.append(composite)
    fixedNode = load_volume(scene, tmp_path / "fixed.nrrd")
    movingNode = load_volume(scene, tmp_path / "moving.nrrd")
    jacobian = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
    transform = mrml.register(
        fixedNode, movingNode, weights=str(tiny_weights), jacobianVolumeNode=jacobian, mode="fast"
    )
    return scene, transform, fixedNode, movingNode, jacobian, composites


def test_show_result_and_before_after(result):
    scene, transform, fixed, moving, _, composites = result
    assert moving.GetParentTransformNode() is None
    assert display.show_result(transform) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == fixed.GetID()
        assert composite.GetForegroundVolumeID() == moving.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    assert moving.GetParentTransformNode() is transform
    display.show_before_after(transform, after=False)
    assert moving.GetParentTransformNode() is None
    assert composites[0].GetForegroundVolumeID() == moving.GetID()  # the views keep their layers
    display.show_before_after(transform, after=True)
    assert moving.GetParentTransformNode() is transform

    other = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "other")
    moving.SetAndObserveTransformNodeID(other.GetID())
    with pytest.raises(InputImageError, match="'moving' is under the transform 'other'"):
        display.show_before_after(transform, after=True)
    assert moving.GetParentTransformNode() is other


def test_show_jacobian_with_its_legend(result):
    scene, transform, fixed, _, jacobian, composites = result
    legend = display.show_jacobian(transform)
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == fixed.GetID()
        assert composite.GetForegroundVolumeID() == jacobian.GetID()
    shown = jacobian.GetDisplayNode()
    assert shown.GetColorNode().GetName() == JACOBIAN_COLOR_NODE_NAME
    assert (shown.GetWindowLevelMin(), shown.GetWindowLevelMax()) == pytest.approx((0.0, 2.0))
    assert legend.IsA("vtkMRMLColorLegendDisplayNode") and legend.GetVisibility()
    assert legend.GetPrimaryDisplayNode() is shown
    assert legend.GetTitleText() == "Jacobian determinant"
    assert display.show_jacobian(transform) is legend  # one legend, reused
    assert display.show_jacobian(transform, show=False) is None
    assert not legend.GetVisibility()
    assert composites[1].GetForegroundVolumeID() == transform.GetNodeReference("movingVolume").GetID()


def test_deformation_grid_on_request(result):
    _, transform, *_ = result
    shown = display.show_deformation_grid(transform, spacingMm=8.0)
    assert shown is transform.GetDisplayNode()
    assert shown.GetVisualizationMode() == shown.VIS_MODE_GRID
    assert shown.GetGridSpacingMm() == 8.0
    assert shown.GetVisibility() and shown.GetVisibility2D() and not shown.GetVisibility3D()
    display.show_deformation_grid(transform, show=False)
    assert not shown.GetVisibility2D() and not shown.GetVisibility()


def test_report_summary(result):
    _, transform, *_ = result
    report = json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE))
    text = display.report_summary(transform)
    assert f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}" in text
    assert f"min {report['jacobian_min']:.3f}" in text and "% folding" in text
    assert f"{report['seconds']['total']:.1f} s" in text
    assert "point pairs" not in text
    bare = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLGridTransformNode", "bare")
    with pytest.raises(InputImageError, match="'bare' holds no DIRVNet report"):
        display.report_summary(bare)
    with pytest.raises(InputImageError, match="'bare' has no fixed volume"):
        display.show_result(bare)


def test_report_summary_shows_the_warnings_and_point_correction():
    """Without a registration: a report as DIRVNetLib.register writes it, with warnings and a point correction."""
    report = {
        "ncc_before": 0.5,
        "ncc_after": 0.9,
        "mse_before": 10.0,
        "mse_after": 2.0,
        "mi_before": 0.4,
        "mi_after": 0.8,
        "jacobian_min": 0.2,
        "jacobian_nonpositive_percent": 0.0,
        "std_log_jacobian": 0.1,
        "seconds": {"total": 3.0, "network": 1.0},
        "point_correction": {
            "points": 2,
            "error_before_mm": [3.0, 1.0],
            "error_after_mm": [0.5, 0.25],
            "radius_mm": 20.0,
        },
        "warnings": [
            "the result is worse than the identity: the identity transform was returned instead",
            "the volumes barely overlap",
        ],
    }
    transform = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLGridTransformNode", "with warnings")
    transform.SetAttribute(mrml.REPORT_ATTRIBUTE, json.dumps(report))
    lines = display.report_summary(transform).splitlines()
    assert lines[0].startswith("NCC 0.500 -> 0.900")
    assert "2 point pairs: largest error 3.00 -> 0.50 mm, corrected within 20 mm" in lines
    assert lines[-2:] == [f"Warning: {warning}" for warning in report["warnings"]]
    del report["warnings"]
    transform.SetAttribute(mrml.REPORT_ATTRIBUTE, json.dumps(report))
    assert "Warning" not in display.report_summary(transform)
