"""DIRVNetLib.mrml.register end to end on a bare vtkMRMLScene, against DIRVNetLib.register on the files.

Volumes come from real files read by MRML's storage nodes: a crop of the T1 head MR with an oblique
direction and anisotropic voxels (fixed), and a smoothly deformed copy (moving). The network is a small
untrained DIRV-Net saved as a weight set (its initial steps already improve the match); one test also
runs the bundled 3D weight set when it is present.
"""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from vtk.util import numpy_support

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")
pytest.importorskip("DIRVNetLib.registration.api", reason="DIRVNetLib.register is not available (core missing)")

from test_mrml_convert import DATA, assert_unchanged, load_volume, node_state, rotation, scene_node_ids  # noqa: E402

import DIRVNetLib  # noqa: E402
from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.errors import InputImageError, RegistrationCancelled  # noqa: E402
from DIRVNetLib.metrics import displacement_transform, jacobian_determinant, ncc  # noqa: E402
from DIRVNetLib.mrml.weightsets import bundled  # noqa: E402

TINY = dict(levels=2, units=2, data_filters=4, reg_filters=4, data_kernel=3, reg_kernel=3, knots=8)


def tiny_weight_set(folder, ndim):
    """An untrained, small DIRV-Net saved as a weight set folder."""
    from DIRVNetLib.io.weights import save_weight_set
    from DIRVNetLib.model import DIRVNet, NetworkConfig

    config = NetworkConfig(ndim=ndim, **TINY)
    save_weight_set(folder, config, DIRVNet(config).get_weights(), "untrained test network", {"data": "none"})
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(fixed path, moving path, weights folder): oblique anisotropic T1 crop and a deformed copy (NRRD)."""
    from DIRVNetLib.data.deformations import deform_image as deform

    folder = tmp_path_factory.mktemp("pair")
    image = sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"), sitk.sitkFloat32)[24:104, 20:100, 14:46]
    image.SetDirection(rotation(0.15, -0.1, 0.3).ravel().tolist())
    image.SetOrigin((30.0, -12.0, 5.0))
    moving, _ = deform(image, max_mm=4.0, seed=3)
    sitk.WriteImage(image, str(folder / "fixed.nrrd"))
    sitk.WriteImage(moving, str(folder / "moving.nrrd"))
    return folder / "fixed.nrrd", folder / "moving.nrrd", tiny_weight_set(folder / "tiny3d", 3)


@pytest.fixture
def scene_pair(files):
    fixed_path, moving_path, _ = files
    scene = slicer.vtkMRMLScene()
    return scene, load_volume(scene, fixed_path), load_volume(scene, moving_path)


def written_field(scene, transformNode, path):
    """The node's transform written by MRML's transform storage node and read back by SimpleITK."""
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(transformNode) == 1
    return sitk.DisplacementFieldTransform(sitk.ReadTransform(str(path))).GetDisplacementField()


def test_register_writes_the_core_field_and_outputs(scene_pair, files, tmp_path):
    scene, fixed, moving = scene_pair
    fixed_path, moving_path, weights = files
    before = {"fixed": node_state(fixed), "moving": node_state(moving)}
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "warped")
    jacobian = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
    steps = []

    transform = mrml.register(
        fixed,
        moving,
        weights=weights,
        outputVolumeNode=warped,
        jacobianVolumeNode=jacobian,
        keepIntermediate=True,
        progress=steps.append,
    )
    # keepIntermediate skips the mode's coarse pass and runs every pyramid level: the same here
    expected = DIRVNetLib.register(str(fixed_path), str(moving_path), weights=weights, keep_intermediate=True)

    # The node holds the same field as DIRVNetLib.register on the files, on the fixed grid, in LPS.
    assert transform.IsA("vtkMRMLGridTransformNode")
    field = written_field(scene, transform, tmp_path / "result.h5")
    for getter in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(field, getter)(), getattr(expected.displacement, getter)(), atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(field), sitk.GetArrayFromImage(expected.displacement), atol=1e-4)
    # References, report, and inputs untouched (the moving volume was not asked to move).
    assert transform.GetNodeReference(mrml.FIXED_VOLUME_ROLE) is fixed
    assert transform.GetNodeReference(mrml.MOVING_VOLUME_ROLE) is moving
    report = json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE))
    assert report["ncc_after"] > report["ncc_before"]
    assert_unchanged(fixed, before["fixed"])
    assert_unchanged(moving, before["moving"])
    # Progress: one report per unit, ending at done == total.
    assert [info.done for info in steps] == list(range(1, steps[-1].total + 1))
    # Warped and Jacobian volumes on the fixed grid: the moving image through the node's field (the field
    # equals the reference run's to 1e-4 mm above; the intensities would differ by that times their gradient)
    from DIRVNetLib.io.resample import warp_image

    through_field = warp_image(sitk.ReadImage(str(moving_path)), field, pixel_id=expected.warped.GetPixelID())
    np.testing.assert_allclose(slicer.util.arrayFromVolume(warped), sitk.GetArrayFromImage(through_field), atol=1e-3)
    np.testing.assert_allclose(
        slicer.util.arrayFromVolume(jacobian), jacobian_determinant(expected.displacement), rtol=1e-4, atol=1e-4
    )
    assert jacobian.GetDisplayNode().GetColorNode().GetName() == "DIRVNet Jacobian"
    assert transform.GetNodeReference(mrml.WARPED_VOLUME_ROLE) is warped
    assert transform.GetNodeReference(mrml.JACOBIAN_VOLUME_ROLE) is jacobian
    # One intermediate field per unit, replayable through the browser's proxy transform.
    sequence = transform.GetNodeReference(mrml.INTERMEDIATE_SEQUENCE_ROLE)
    browser = transform.GetNodeReference(mrml.INTERMEDIATE_BROWSER_ROLE)
    assert sequence.GetNumberOfDataNodes() == TINY["levels"] * TINY["units"]
    assert sequence.GetNthDataNode(0).GetName() == "round 0 level 1 unit 0"
    assert browser.GetProxyNode(sequence).IsA("vtkMRMLGridTransformNode")


def test_moving_resampled_through_the_node_matches_fixed_better(scene_pair, files, tmp_path):
    scene, fixed, moving = scene_pair
    fixed_path, moving_path, weights = files
    transform = mrml.register(fixed, moving, weights=weights, placeMovingUnderTransform=True)
    assert moving.GetTransformNodeID() == transform.GetID()

    fixed_image, moving_image = sitk.ReadImage(str(fixed_path)), sitk.ReadImage(str(moving_path))
    node_transform = displacement_transform(written_field(scene, transform, tmp_path / "t.h5"))
    resampled = sitk.Resample(moving_image, fixed_image, node_transform, sitk.sitkLinear, 0.0)
    unregistered = sitk.Resample(moving_image, fixed_image, sitk.Transform(), sitk.sitkLinear, 0.0)
    assert ncc(resampled, fixed_image) > ncc(unregistered, fixed_image) + 0.005


@pytest.mark.parametrize("when", ["before the first unit", "after the first unit"])
def test_cancel_leaves_no_new_nodes(scene_pair, files, when):
    scene, fixed, moving = scene_pair
    before = scene_node_ids(scene)
    state = node_state(moving)
    cancel = threading.Event()
    if when == "before the first unit":
        cancel.set()
    with pytest.raises(RegistrationCancelled):
        mrml.register(
            fixed,
            moving,
            weights=files[2],
            keepIntermediate=True,
            placeMovingUnderTransform=True,
            outputVolumeNode=None,
            cancel=cancel,
            progress=lambda info: cancel.set(),
        )
    assert scene_node_ids(scene) == before
    assert_unchanged(moving, state)


def test_existing_output_transform_is_filled(scene_pair, files):
    scene, fixed, moving = scene_pair
    output = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "my result")
    count = scene.GetNumberOfNodes()
    assert mrml.register(fixed, moving, weights=files[2], outputTransformNode=output, mode="fast") is output
    assert scene.GetNumberOfNodes() == count
    assert output.GetTransformFromParent().IsA("vtkOrientedGridTransform")


def test_2d_slices_register_to_a_single_slice_grid_transform(tmp_path):
    scene = slicer.vtkMRMLScene()
    fixed_image = sitk.ReadImage(str(DATA / "BrainT1Slice.png"), sitk.sitkFloat32)
    moving_image = sitk.ReadImage(str(DATA / "BrainProtonDensitySlice.png"), sitk.sitkFloat32)
    for name, image in (("fixed", fixed_image), ("moving", moving_image)):
        sitk.WriteImage(image, str(tmp_path / f"{name}.nrrd"))  # slicer-core's MRML reads no PNG
    fixed, moving = load_volume(scene, tmp_path / "fixed.nrrd"), load_volume(scene, tmp_path / "moving.nrrd")
    weights = tiny_weight_set(tmp_path / "tiny2d", 2)

    transform = mrml.register(fixed, moving, weights=weights, mode="fast")
    expected = DIRVNetLib.register(fixed_image, moving_image, weights=weights, mode="fast")

    grid = transform.GetTransformFromParent().GetDisplacementGrid()
    assert grid.GetDimensions() == (181, 217, 1)
    vectors = numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars()).reshape(217, 181, 3)
    np.testing.assert_allclose(vectors[..., 2], 0.0)
    np.testing.assert_allclose(vectors[..., :2] * (-1, -1), sitk.GetArrayFromImage(expected.displacement), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not any(info.dimension == 3 for info in bundled()), reason="no bundled 3D weight set yet")
def test_bundled_default_weights_improve_the_match(scene_pair):
    scene, fixed, moving = scene_pair
    transform = mrml.register(fixed, moving)
    report = json.loads(transform.GetAttribute(mrml.REPORT_ATTRIBUTE))
    assert report["ncc_after"] > report["ncc_before"]
    assert transform.GetAttribute(mrml.WEIGHTS_ATTRIBUTE) == ""
    assert Path(report["weights"]).name in {info.name for info in bundled()}


def test_result_figure_tool_renders_the_sample_pair(files, tmp_path):
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[2] / "tools" / "render_result_figure.py"
    output = tmp_path / "figure.png"
    subprocess.run(
        [sys.executable, str(tool), "--weights", files[2], "--output", str(output)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    figure = sitk.ReadImage(str(output))
    assert figure.GetSize()[:2] == (1840, 840)  # the QA figure: three views, eight columns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]  # no temporary left behind


def field_of(transformNode):
    """The grid transform node's displacement vectors (RAS mm) as an array."""
    grid = transformNode.GetTransformFromParent().GetDisplacementGrid()
    return numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars()).copy()


def test_apply_again_registers_the_original_moving_volume_and_moves_it_to_the_new_result(scene_pair, files):
    scene, fixed, moving = scene_pair
    state = node_state(moving)
    first = mrml.register(fixed, moving, weights=files[2], placeMovingUnderTransform=True, mode="fast")
    assert moving.GetParentTransformNode() is first

    again = mrml.register(fixed, moving, weights=files[2], placeMovingUnderTransform=True, mode="fast")
    changed = mrml.register(
        fixed, moving, weights=files[2], placeMovingUnderTransform=True, working_spacing=4.0, mode="fast"
    )

    assert again is not first and moving.GetParentTransformNode() is changed
    # the same registration of the same original volume: a moving volume read through the first result
    # would have given a different (near zero) field
    np.testing.assert_allclose(field_of(again), field_of(first), atol=1e-4)
    assert np.abs(field_of(changed) - field_of(first)).max() > 1e-3
    assert json.loads(changed.GetAttribute(mrml.REPORT_ATTRIBUTE))["working_grid"]["spacing_mm"] == [4.0] * 3
    moving.SetAndObserveTransformNodeID(None)
    assert_unchanged(moving, state)


def test_apply_again_from_the_replay_proxy(scene_pair, files):
    scene, fixed, moving = scene_pair
    first = mrml.register(
        fixed, moving, weights=files[2], keepIntermediate=True, placeMovingUnderTransform=True, mode="fast"
    )
    sequence = first.GetNodeReference(mrml.INTERMEDIATE_SEQUENCE_ROLE)
    browser = first.GetNodeReference(mrml.INTERMEDIATE_BROWSER_ROLE)
    browser.SetSelectedItemNumber(1)  # what the panel's replay slider does
    moving.SetAndObserveTransformNodeID(browser.GetProxyNode(sequence).GetID())
    assert mrml.previous_result(moving) is first

    again = mrml.register(fixed, moving, weights=files[2], placeMovingUnderTransform=True, mode="fast")

    assert moving.GetParentTransformNode() is again
    np.testing.assert_allclose(field_of(again), field_of(first), atol=1e-4)


def test_a_transform_dirvnet_did_not_make_still_has_to_be_hardened(scene_pair, files):
    scene, fixed, moving = scene_pair
    first = mrml.register(fixed, moving, weights=files[2], mode="fast")
    other = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "user transform")
    first.SetAndObserveTransformNodeID(other.GetID())  # a DIRVNet result under another transform: not replaced
    moving.SetAndObserveTransformNodeID(first.GetID())
    assert mrml.previous_result(moving) is None
    with pytest.raises(InputImageError, match="Harden"):
        mrml.register(fixed, moving, weights=files[2], placeMovingUnderTransform=True)
