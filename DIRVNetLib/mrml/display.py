"""How a DIRVNet result is shown in Slicer's views after Apply; MRML only (no Qt), on the result's scene.

- :func:`show_result`: the fixed volume in the background and the moving volume under the result in the
  foreground at half opacity, on every slice view (slice composite node) of the scene.
- :func:`show_before_after`: the before/after toggle (the moving volume without / under the result).
- :func:`show_jacobian`: the Jacobian determinant volume in the foreground with its colour legend.
- :func:`show_deformation_grid`: the transform's deformation grid drawn on the slices.
- :func:`report_summary`: the report as text for the panel.
The functions change display settings (and the moving volume's parent transform, which is how Slicer
shows a volume registered), never voxels.
"""

import json

from DIRVNetLib.errors import InputImageError

from .outputs import JACOBIAN_DISPLAY_RANGE
from .register import FIXED_VOLUME_ROLE, JACOBIAN_VOLUME_ROLE, MOVING_VOLUME_ROLE, REPORT_ATTRIBUTE

FOREGROUND_OPACITY = 0.5
"""Opacity of the moving (or Jacobian) volume over the fixed one."""
GRID_SPACING_MM = 10.0
"""Spacing of the deformation grid lines drawn on the slices."""
LEGEND_TITLE = "Jacobian determinant"


def _referenced(transformNode, role, what):
    node = transformNode.GetNodeReference(role)
    if node is None:
        raise InputImageError(f"The transform '{transformNode.GetName()}' has no {what}: show a DIRVNet result.")
    return node


def _slice_composites(scene):
    return [
        scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
    ]


def _place_moving(transformNode, movingNode, registered):
    """Put the moving volume under the result (``registered``) or take it out; refuses when the moving
    volume sits under another transform (that would be lost)."""
    parent = movingNode.GetParentTransformNode()
    if parent is not None and parent is not transformNode:
        raise InputImageError(
            f"The moving volume '{movingNode.GetName()}' is under the transform '{parent.GetName()}'"
            f", not under the result '{transformNode.GetName()}'; harden or remove that transform "
            f"first."
        )
    movingNode.SetAndObserveTransformNodeID(transformNode.GetID() if registered else None)


def show_result(transformNode, opacity=FOREGROUND_OPACITY):
    """Fixed volume in the background, the moving volume under ``transformNode`` in the foreground at
    ``opacity``, on every slice composite node of the scene; returns the number of views set."""
    fixedNode = _referenced(transformNode, FIXED_VOLUME_ROLE, "fixed volume")
    movingNode = _referenced(transformNode, MOVING_VOLUME_ROLE, "moving volume")
    _place_moving(transformNode, movingNode, True)
    composites = _slice_composites(transformNode.GetScene())
    for composite in composites:
        composite.SetBackgroundVolumeID(fixedNode.GetID())
        composite.SetForegroundVolumeID(movingNode.GetID())
        composite.SetForegroundOpacity(opacity)
    _legend_visibility(transformNode, False)
    return len(composites)


def show_before_after(transformNode, after):
    """The before/after toggle: ``after`` True shows the moving volume under the result (registered),
    False without it (as it was before registration); views keep their layers."""
    _place_moving(transformNode, _referenced(transformNode, MOVING_VOLUME_ROLE, "moving volume"), bool(after))


def _jacobian_legend(jacobianNode):
    """The Jacobian volume's colour legend display node (created once, like Slicer's Colors module does)."""
    for i in range(jacobianNode.GetNumberOfDisplayNodes()):
        display = jacobianNode.GetNthDisplayNode(i)
        if display is not None and display.IsA("vtkMRMLColorLegendDisplayNode"):
            return display
    import slicer

    scene = jacobianNode.GetScene()
    legend = scene.AddNode(slicer.vtkMRMLColorLegendDisplayNode())  # a bare scene has not registered the class
    legend.SetName(scene.GenerateUniqueName(f"{jacobianNode.GetName()} color legend"))
    legend.SetAndObservePrimaryDisplayNode(jacobianNode.GetDisplayNode())
    legend.SetTitleText(LEGEND_TITLE)
    legend.SetLabelFormat("%.2f")
    legend.SetNumberOfLabels(5)  # 0, 0.5, 1, 1.5, 2 over the display window
    jacobianNode.AddAndObserveDisplayNodeID(legend.GetID())
    return legend


def _legend_visibility(transformNode, visible):
    jacobianNode = transformNode.GetNodeReference(JACOBIAN_VOLUME_ROLE)
    if jacobianNode is not None and jacobianNode.GetDisplayNode() is not None:
        _jacobian_legend(jacobianNode).SetVisibility(bool(visible))


def show_jacobian(transformNode, show=True, opacity=FOREGROUND_OPACITY):
    """``show``: the Jacobian determinant volume in the foreground of every slice view at ``opacity``
    over the fixed volume, its colour map (blue < 1 < red, black <= 0 folding) windowed to 0-2, with its
    colour legend shown; False: back to :func:`show_result`. Returns the legend display node (or None)."""
    if not show:
        show_result(transformNode, opacity)
        return None
    fixedNode = _referenced(transformNode, FIXED_VOLUME_ROLE, "fixed volume")
    jacobianNode = _referenced(transformNode, JACOBIAN_VOLUME_ROLE, "Jacobian volume (ask for one before Apply)")
    display = jacobianNode.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*JACOBIAN_DISPLAY_RANGE)
    for composite in _slice_composites(transformNode.GetScene()):
        composite.SetBackgroundVolumeID(fixedNode.GetID())
        composite.SetForegroundVolumeID(jacobianNode.GetID())
        composite.SetForegroundOpacity(opacity)
    legend = _jacobian_legend(jacobianNode)
    legend.SetVisibility(True)
    return legend


def show_deformation_grid(transformNode, show=True, spacingMm=GRID_SPACING_MM):
    """Draw (``show``) or hide the result's deformation as a warped grid of lines ``spacingMm`` apart on
    the slice views (the transform's display node, grid mode, 2D only); returns the display node."""
    if transformNode.GetDisplayNode() is None:
        transformNode.CreateDefaultDisplayNodes()
    display = transformNode.GetDisplayNode()
    display.SetVisualizationMode(display.VIS_MODE_GRID)
    display.SetGridSpacingMm(float(spacingMm))
    display.SetVisibility2D(bool(show))
    display.SetVisibility3D(False)
    display.SetVisibility(bool(show))
    return display


def report_summary(transformNode):
    """The result's report (``DIRVNet.Report``) in a few lines for the panel: similarity before and after,
    Jacobian statistics, the point correction if any, the seconds taken, and one line per warning
    (``report["warnings"]``, e.g. a result worse than the identity)."""
    text = transformNode.GetAttribute(REPORT_ATTRIBUTE)
    if not text:
        raise InputImageError(f"The transform '{transformNode.GetName()}' holds no DIRVNet report.")
    report = json.loads(text)
    lines = [
        f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}, MSE {report['mse_before']:.4g} -> "
        f"{report['mse_after']:.4g}, MI {report['mi_before']:.3f} -> {report['mi_after']:.3f}",
        f"Jacobian determinant: min {report['jacobian_min']:.3f}, {report['jacobian_nonpositive_percent']:.3f} % "
        f"folding (<= 0), std of log {report['std_log_jacobian']:.3f}",
    ]
    correction = report.get("point_correction")
    if correction:
        lines.append(
            f"{correction['points']} point pairs: largest error {max(correction['error_before_mm']):.2f} -> "
            f"{max(correction['error_after_mm']):.2f} mm, corrected within {correction['radius_mm']:.0f} mm"
        )
    seconds = report.get("seconds", {})
    if "total" in seconds:
        lines.append(f"{seconds['total']:.1f} s ({seconds.get('network', 0.0):.1f} s network)")
    lines.extend(f"Warning: {warning}" for warning in report.get("warnings") or [])
    return "\n".join(lines)
