"""Output nodes of a registration: warped volume, Jacobian determinant volume, intermediate fields.

Every function here writes into the scene and runs on the main thread, after the registration has
succeeded. Geometry comes from the fixed grid (:class:`~DIRVNetLib.grid.Grid`, world LPS).
"""

import numpy as np
import slicer

from DIRVNetLib.grid import Grid
from DIRVNetLib.metrics import jacobian_determinant

from .convert import displacement_to_grid_transform, image_array_on_grid, is_axial_slice, set_volume_voxels

JACOBIAN_COLOR_NODE_NAME = "DIRVNet Jacobian"
"""Name of the colour map shared by all Jacobian volumes of a scene (created once per scene)."""

JACOBIAN_DISPLAY_RANGE = (0.0, 2.0)
"""Window of the Jacobian display: 1 (volume kept) in the middle, <= 0 (folding) at the bottom."""

# (value, r, g, b): folding black, compression blue, volume kept white, expansion red.
_JACOBIAN_COLORS = (
    (0.0, 0.0, 0.0, 0.0),
    (0.05, 0.0, 0.2, 0.8),
    (1.0, 1.0, 1.0, 1.0),
    (2.0, 0.8, 0.0, 0.0),
)


def _show_volume(volumeNode, colorNodeID=None, window_range=None) -> None:
    """Give the volume a display node; optionally a colour map and a fixed window (min, max)."""
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    if colorNodeID is not None:
        display.SetAndObserveColorNodeID(colorNodeID)
    if window_range is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(*window_range)


def write_warped_volume(volumeNode, warped, grid: Grid) -> None:
    """Fill ``volumeNode`` with the warped moving image (SimpleITK, on the fixed grid), in world space."""
    set_volume_voxels(volumeNode, image_array_on_grid(warped, grid, "warped image"), grid)
    volumeNode.SetAndObserveTransformNodeID(None)
    _show_volume(volumeNode)


def jacobian_color_node(scene):
    """The scene's Jacobian colour map (black <= 0 folding, blue < 1, white 1, red > 1), created once."""
    existing = scene.GetFirstNodeByName(JACOBIAN_COLOR_NODE_NAME)
    if existing is not None and existing.IsA("vtkMRMLProceduralColorNode"):
        return existing
    colorNode = scene.AddNewNodeByClass("vtkMRMLProceduralColorNode", JACOBIAN_COLOR_NODE_NAME)
    colorNode.SetAttribute("Category", "DIRVNet")
    transfer = colorNode.GetColorTransferFunction()
    transfer.RemoveAllPoints()
    for value, r, g, b in _JACOBIAN_COLORS:
        transfer.AddRGBPoint(value, r, g, b)
    colorNode.SetDescription(
        "Jacobian determinant of p -> p + u(p): <= 0 folding, < 1 compression, 1 volume kept, > 1 expansion"
    )
    return colorNode


def write_jacobian_volume(volumeNode, displacement, grid: Grid) -> None:
    """Fill ``volumeNode`` with det(I + du/dp) of the displacement (float32, dimensionless)."""
    determinant = jacobian_determinant(displacement).astype(np.float32)
    if is_axial_slice(grid):
        determinant = determinant[np.newaxis]
    set_volume_voxels(volumeNode, determinant, grid)
    volumeNode.SetAndObserveTransformNodeID(None)
    _show_volume(volumeNode, jacobian_color_node(volumeNode.GetScene()).GetID(), JACOBIAN_DISPLAY_RANGE)


def add_intermediate_sequence(scene, intermediate, grid: Grid, baseName: str):
    """(sequence, browser): one grid transform per (level, unit) so the user can scrub through them.

    ``intermediate``: ``result.intermediate`` of :func:`DIRVNetLib.register`, in the order the network
    produced them: tuples whose last item is the displacement (SimpleITK, fixed grid, LPS mm) and whose
    leading items are its position (round, level, unit) or (level, unit). The sequence index is the
    step number (1, 2, ...); each item is named after its position ("round 0 level 2 unit 1"). The
    browser's proxy node is the transform to place a volume under. Fields are stored as float32.
    """
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{baseName} steps"))
    sequence.SetIndexName("step")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(sequence.NumericIndex)
    for step, (*position, field) in enumerate(intermediate, start=1):
        names = ("round", "level", "unit")[-len(position) :]
        label = " ".join(f"{name} {value}" for name, value in zip(names, position))
        item = slicer.vtkMRMLGridTransformNode()
        item.SetName(label)
        array = image_array_on_grid(field, grid, f"intermediate field ({label})")
        item.SetAndObserveTransformFromParent(displacement_to_grid_transform(array, grid, np.float32))
        sequence.SetDataNodeAtValue(item, str(step))
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):
        # A bare scene (no Sequences module) does not know the browser class; Slicer's does.
        scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{baseName} browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    slicer.vtkSlicerSequencesLogic().UpdateProxyNodesFromSequences(browser)
    return sequence, browser
