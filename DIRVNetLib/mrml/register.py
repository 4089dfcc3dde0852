"""Register two Slicer volume nodes with DIRVNetLib and put the result in their scene.

Three steps, so that a GUI can run the expensive one off the main thread:

1. :func:`prepare` (main thread) checks the inputs and reads the volumes into SimpleITK images in
   world LPS space; it does not change the scene.
2. :meth:`RegistrationJob.run` (any thread) calls :func:`DIRVNetLib.register`; it never touches the
   scene.
3. :meth:`RegistrationJob.apply` (main thread) writes the outputs into the scene and returns the
   transform node.

:func:`register` does all three and blocks. When anything fails or is cancelled before step 3 has
finished, the scene is as it was: step 3 removes what it added if it fails halfway.

The output transform node holds the displacement u as a grid transform (TransformFromParent, RAS,
on the fixed grid): a volume placed under it is displayed as moving(p + u(p)), i.e. aligned to the
fixed volume. Written with Slicer's transform storage node it becomes ITK's displacement field
transform (LPS) that :func:`DIRVNetLib.register` returns.
"""

import json
import logging
from dataclasses import dataclass, field

import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib.errors import InputImageError, WeightSetError
from DIRVNetLib.grid import Grid
from DIRVNetLib.io.points import point_pairs

from .convert import displacement_to_grid_transform, image_array_on_grid, volume_to_image
from .outputs import JACOBIAN_COLOR_NODE_NAME, add_intermediate_sequence, write_jacobian_volume, write_warped_volume
from .weightsets import describe

FIXED_VOLUME_ROLE = "fixedVolume"
"""Node reference role from the output transform to the fixed volume."""
MOVING_VOLUME_ROLE = "movingVolume"
"""Node reference role from the output transform to the moving volume."""
WARPED_VOLUME_ROLE = "warpedVolume"
"""Node reference role from the output transform to the warped moving volume."""
JACOBIAN_VOLUME_ROLE = "jacobianVolume"
"""Node reference role from the output transform to the Jacobian determinant volume."""
INTERMEDIATE_SEQUENCE_ROLE = "intermediateFields"
"""Node reference role from the output transform to the sequence of intermediate fields."""
INTERMEDIATE_BROWSER_ROLE = "intermediateFieldsBrowser"
"""Node reference role from the output transform to the browser of that sequence."""
REPORT_ATTRIBUTE = "DIRVNet.Report"
"""Attribute of the output transform: the registration report as JSON."""
WEIGHTS_ATTRIBUTE = "DIRVNet.Weights"
"""Attribute of the output transform: the weight set used (name or folder; empty = default)."""

logger = logging.getLogger(__name__)


def _describe(node) -> str:
    return f"'{node.GetName()}'"


def _check_volume(node, role: str) -> None:
    """Raise InputImageError unless ``node`` is a scalar volume with voxels in a scene."""
    if node is None:
        raise InputImageError(f"The {role} volume is not set: choose a volume.")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputImageError(f"The {role} volume {_describe(node)} is a {node.GetClassName()}, not a scalar volume.")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputImageError(
            f"The {role} volume {_describe(node)} is a label map; DIRVNet registers intensity images. "
            f"Choose the image the labels belong to."
        )
    if node.GetImageData() is None or node.GetImageData().GetNumberOfPoints() == 0:
        raise InputImageError(f"The {role} volume {_describe(node)} has no voxels.")
    if node.GetScene() is None:
        raise InputImageError(f"The {role} volume {_describe(node)} is not in a scene.")


def _check_output(node, role: str, expected_class: str, inputs) -> None:
    """Raise InputImageError when an output node has the wrong type, another scene, or is an input."""
    if node is None:
        return
    if not node.IsA(expected_class):
        raise InputImageError(f"The {role} {_describe(node)} is a {node.GetClassName()}, not a {expected_class}.")
    if any(node is inputNode for inputNode in inputs):
        raise InputImageError(
            f"The {role} {_describe(node)} is one of the input volumes; DIRVNet never overwrites an input. "
            f"Choose another node or create a new one."
        )
    if node.GetScene() is not inputs[0].GetScene():
        raise InputImageError(f"The {role} {_describe(node)} is not in the scene of the input volumes.")


def _remove_node(scene, node) -> None:
    """Remove ``node`` and the storage and display nodes that came with it, if still in ``scene``."""
    if node is None or node.GetScene() is not scene:
        return
    helpers = []
    if node.IsA("vtkMRMLStorableNode"):
        helpers += [node.GetNthStorageNode(n) for n in range(node.GetNumberOfStorageNodes())]
    if node.IsA("vtkMRMLDisplayableNode"):
        helpers += [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and helper.GetScene() is scene:
            scene.RemoveNode(helper)


def _is_dirvnet_result(node) -> bool:
    return node is not None and node.IsA("vtkMRMLTransformNode") and node.GetAttribute(REPORT_ATTRIBUTE) is not None


def previous_result(movingVolumeNode):
    """The DIRVNet result the moving volume is shown through, or None.

    That is its parent transform when the parent is a DIRVNet output transform made for this volume, or
    the replay proxy (browser proxy node) of such a transform's intermediate fields; only results that
    sit directly in world space (no parent of their own) count. A new registration reads the moving
    volume without it.
    """
    parent = movingVolumeNode.GetParentTransformNode()
    scene = movingVolumeNode.GetScene()
    if parent is None or scene is None:
        return None
    candidates = (
        [parent]
        if _is_dirvnet_result(parent)
        else [
            scene.GetNthNodeByClass(n, "vtkMRMLTransformNode")
            for n in range(scene.GetNumberOfNodesByClass("vtkMRMLTransformNode"))
        ]
    )
    for result in candidates:
        if (
            not _is_dirvnet_result(result)
            or result.GetParentTransformNode() is not None
            or result.GetNodeReference(MOVING_VOLUME_ROLE) is not movingVolumeNode
        ):
            continue
        if parent is result:
            return result
        sequence = result.GetNodeReference(INTERMEDIATE_SEQUENCE_ROLE)
        browser = result.GetNodeReference(INTERMEDIATE_BROWSER_ROLE)
        if sequence is not None and browser is not None and browser.GetProxyNode(sequence) is parent:
            return result
    return None


@dataclass
class RegistrationJob:
    """One registration: the nodes it reads and writes, and the images read from them.

    ``fixed``/``moving``: SimpleITK images in world LPS mm (parent transforms hardened). ``grid``: the
    fixed volume's grid in world LPS, on which every output lives. ``options``: further keyword
    arguments of :func:`DIRVNetLib.register` (e.g. ``refinement_rounds``, ``working_spacing``).
    """

    fixedVolumeNode: object
    movingVolumeNode: object
    fixed: sitk.Image
    moving: sitk.Image
    grid: Grid
    outputTransformNode: object = None
    outputVolumeNode: object = None
    jacobianVolumeNode: object = None
    keepIntermediate: bool = False
    placeMovingUnderTransform: bool = False
    weights: object = None
    device: str = "auto"
    options: dict = field(default_factory=dict)

    def run(self, progress=None, cancel=None):
        """Run :func:`DIRVNetLib.register` on the images; touches no node, so any thread may call it.

        ``progress``/``cancel`` as in :func:`DIRVNetLib.register`; cancelling raises
        :class:`~DIRVNetLib.errors.RegistrationCancelled`.
        """
        return DIRVNetLib.register(
            self.fixed,
            self.moving,
            weights=self.weights,
            device=self.device,
            progress=progress,
            cancel=cancel,
            keep_intermediate=self.keepIntermediate,
            **self.options,
        )

    def apply(self, result):
        """Write ``result`` into the scene (main thread) and return the output transform node.

        If writing fails halfway, the nodes this call created are removed again before re-raising.
        """
        scene = self.fixedVolumeNode.GetScene()
        nodes = (
            (self.fixedVolumeNode, "fixed volume"),
            (self.movingVolumeNode, "moving volume"),
            (self.outputTransformNode, "output transform"),
            (self.outputVolumeNode, "output volume"),
            (self.jacobianVolumeNode, "Jacobian volume"),
        )
        for node, role in nodes:
            if node is not None and (scene is None or node.GetScene() is not scene):
                raise InputImageError(
                    f"The {role} {_describe(node)} was removed from the scene while registering; nothing was added."
                )
        created = []
        try:
            transformNode = self._write_transform(scene, result, created)
            if self.outputVolumeNode is not None:
                write_warped_volume(self.outputVolumeNode, result.warped, self.grid)
                transformNode.SetNodeReferenceID(WARPED_VOLUME_ROLE, self.outputVolumeNode.GetID())
            if self.jacobianVolumeNode is not None:
                colorNodePresent = scene.GetFirstNodeByName(JACOBIAN_COLOR_NODE_NAME) is not None
                write_jacobian_volume(self.jacobianVolumeNode, result.displacement, self.grid)
                if not colorNodePresent:
                    created.append(self.jacobianVolumeNode.GetDisplayNode().GetColorNode())
                transformNode.SetNodeReferenceID(JACOBIAN_VOLUME_ROLE, self.jacobianVolumeNode.GetID())
            if self.keepIntermediate and result.intermediate:
                sequence, browser = add_intermediate_sequence(
                    scene, result.intermediate, self.grid, transformNode.GetName()
                )
                created.extend([sequence, browser, browser.GetProxyNode(sequence)])
                transformNode.SetNodeReferenceID(INTERMEDIATE_SEQUENCE_ROLE, sequence.GetID())
                transformNode.SetNodeReferenceID(INTERMEDIATE_BROWSER_ROLE, browser.GetID())
            if self.placeMovingUnderTransform:
                self.movingVolumeNode.SetAndObserveTransformNodeID(transformNode.GetID())
        except Exception:
            for node in reversed(created):
                _remove_node(scene, node)
            raise
        return transformNode

    def _write_transform(self, scene, result, created):
        transformNode = self.outputTransformNode
        if transformNode is None:
            name = scene.GenerateUniqueName(
                f"{self.movingVolumeNode.GetName()} to {self.fixedVolumeNode.GetName()} (DIRVNet)"
            )
            transformNode = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
            created.append(transformNode)
        displacement = image_array_on_grid(result.displacement, self.grid, "displacement field")
        transformNode.SetAndObserveTransformFromParent(displacement_to_grid_transform(displacement, self.grid))
        transformNode.SetNodeReferenceID(FIXED_VOLUME_ROLE, self.fixedVolumeNode.GetID())
        transformNode.SetNodeReferenceID(MOVING_VOLUME_ROLE, self.movingVolumeNode.GetID())
        transformNode.SetAttribute(REPORT_ATTRIBUTE, json.dumps(result.report, default=float))
        transformNode.SetAttribute(WEIGHTS_ATTRIBUTE, "" if self.weights is None else str(self.weights))
        return transformNode


def prepare(
    fixedVolumeNode,
    movingVolumeNode,
    outputTransformNode=None,
    weights=None,
    device="auto",
    outputVolumeNode=None,
    jacobianVolumeNode=None,
    keepIntermediate=False,
    placeMovingUnderTransform=False,
    fixedPointsNode=None,
    movingPointsNode=None,
    **options,
) -> RegistrationJob:
    """Check the nodes and read the volumes (main thread); the scene is not changed. ``fixedPointsNode``,
    ``movingPointsNode``: markups point lists whose i-th points correspond (the ``fixed_points`` and
    ``moving_points`` of :func:`DIRVNetLib.register`).

    Raises :class:`~DIRVNetLib.errors.InputImageError` or :class:`~DIRVNetLib.errors.WeightSetError`
    with a message that names the node or weight set at fault.
    """
    _check_volume(fixedVolumeNode, "fixed")
    _check_volume(movingVolumeNode, "moving")
    if fixedVolumeNode is movingVolumeNode:
        raise InputImageError(
            f"The fixed and moving volumes are the same node {_describe(fixedVolumeNode)}: choose two "
            f"different volumes."
        )
    if fixedVolumeNode.GetScene() is not movingVolumeNode.GetScene():
        raise InputImageError("The fixed and moving volumes are in different scenes.")
    inputs = (fixedVolumeNode, movingVolumeNode)
    if outputTransformNode is not None and not (
        outputTransformNode.IsA("vtkMRMLGridTransformNode")
        or outputTransformNode.GetClassName() == "vtkMRMLTransformNode"
    ):
        raise InputImageError(
            f"The output transform {_describe(outputTransformNode)} is a {outputTransformNode.GetClassName()}; "
            f"a deformable result needs a grid transform (or a generic transform) node."
        )
    _check_output(outputTransformNode, "output transform", "vtkMRMLTransformNode", inputs)
    _check_output(outputVolumeNode, "output volume", "vtkMRMLScalarVolumeNode", inputs)
    _check_output(jacobianVolumeNode, "Jacobian volume", "vtkMRMLScalarVolumeNode", inputs)
    if outputVolumeNode is not None and outputVolumeNode is jacobianVolumeNode:
        raise InputImageError("The output volume and the Jacobian volume must be different nodes.")
    previous = previous_result(movingVolumeNode)
    if placeMovingUnderTransform and previous is None and movingVolumeNode.GetParentTransformNode() is not None:
        raise InputImageError(
            f"The moving volume {_describe(movingVolumeNode)} is already under the transform "
            f"{_describe(movingVolumeNode.GetParentTransformNode())}. Harden that transform first, or do "
            f"not place the moving volume under the result."
        )

    fixed, grid = volume_to_image(fixedVolumeNode)
    # Under an earlier DIRVNet result (or its replay proxy) the original moving volume is registered again.
    moving, _ = volume_to_image(movingVolumeNode, None) if previous is not None else volume_to_image(movingVolumeNode)
    if fixed.GetDimension() != moving.GetDimension():
        raise InputImageError(
            f"The fixed volume {_describe(fixedVolumeNode)} is {fixed.GetDimension()}D and the moving volume "
            f"{_describe(movingVolumeNode)} is {moving.GetDimension()}D; both must have the same dimension."
        )
    expected = None if weights is None else describe(weights).dimension
    if expected is not None and expected != fixed.GetDimension():
        raise WeightSetError(
            f"Weight set '{weights}' registers {expected}D images, but the volumes are {fixed.GetDimension()}D "
            f"(fixed {_describe(fixedVolumeNode)}, size {tuple(grid.size)}). Choose a {fixed.GetDimension()}D "
            f"weight set."
        )
    if fixedPointsNode is not None or movingPointsNode is not None:
        from .points import markups_points

        fixed_points, moving_points = point_pairs(
            markups_points(fixedPointsNode, fixed.GetDimension(), "fixed"),
            markups_points(movingPointsNode, fixed.GetDimension(), "moving"),
            fixed,
        )
        # lists (LPS mm), so that the options travel to a worker process as JSON
        options = dict(options, fixed_points=fixed_points.tolist(), moving_points=moving_points.tolist())
    logger.info(
        "DIRVNet: registering %s to %s (%dD)",
        movingVolumeNode.GetName(),
        fixedVolumeNode.GetName(),
        fixed.GetDimension(),
    )
    return RegistrationJob(
        fixedVolumeNode=fixedVolumeNode,
        movingVolumeNode=movingVolumeNode,
        fixed=fixed,
        moving=moving,
        grid=grid,
        outputTransformNode=outputTransformNode,
        outputVolumeNode=outputVolumeNode,
        jacobianVolumeNode=jacobianVolumeNode,
        keepIntermediate=keepIntermediate,
        placeMovingUnderTransform=placeMovingUnderTransform,
        weights=weights,
        device=device,
        options=options,
    )


def register(
    fixedVolumeNode,
    movingVolumeNode,
    outputTransformNode=None,
    weights=None,
    device="auto",
    outputVolumeNode=None,
    jacobianVolumeNode=None,
    keepIntermediate=False,
    placeMovingUnderTransform=False,
    progress=None,
    cancel=None,
    fixedPointsNode=None,
    movingPointsNode=None,
    **options,
):
    """Register ``movingVolumeNode`` to ``fixedVolumeNode``; returns the output grid transform node.

    Works on the nodes' own scene (a bare ``vtkMRMLScene`` is enough). Arguments:

    - ``outputTransformNode``: grid transform node to fill; None creates "<moving> to <fixed> (DIRVNet)".
    - ``weights``/``device``/``**options``: as in :func:`DIRVNetLib.register` (``refinement_rounds``,
      ``working_spacing``, ...).
    - ``outputVolumeNode``: scalar volume to receive the moving volume resampled on the fixed grid.
    - ``jacobianVolumeNode``: scalar volume to receive det(I + du/dp) with a diverging colour map.
    - ``keepIntermediate``: also add a Sequence with one grid transform per (level, unit).
    - ``placeMovingUnderTransform``: put the moving volume under the result so it shows aligned.
    - ``progress``/``cancel``: as in :func:`DIRVNetLib.register`.
    - ``fixedPointsNode``/``movingPointsNode``: markups point lists of corresponding points; the result
      carries each fixed point to its moving point (:mod:`DIRVNetLib.mrml.points`).

    The input volumes are never modified (apart from the requested parent transform). On an error or
    a cancel (:class:`~DIRVNetLib.errors.RegistrationCancelled`) the scene is unchanged.
    """
    job = prepare(
        fixedVolumeNode,
        movingVolumeNode,
        outputTransformNode=outputTransformNode,
        weights=weights,
        device=device,
        outputVolumeNode=outputVolumeNode,
        jacobianVolumeNode=jacobianVolumeNode,
        keepIntermediate=keepIntermediate,
        placeMovingUnderTransform=placeMovingUnderTransform,
        fixedPointsNode=fixedPointsNode,
        movingPointsNode=movingPointsNode,
        **options,
    )
    return job.apply(job.run(progress=progress, cancel=cancel))
