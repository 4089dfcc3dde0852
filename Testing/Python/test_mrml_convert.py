"""DIRVNetLib.mrml without the network: node <-> image conversion, RAS/LPS, grid transforms, input checks.

Real MRML from the slicer-core wheel on a bare vtkMRMLScene; volumes are read by MRML's own storage
nodes from real files (Testing/Data and oblique/anisotropic copies written with SimpleITK).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="needs Slicer's MRML (pip install slicer-core)")
import vtk  # noqa: E402

from DIRVNetLib.errors import InputImageError, WeightSetError  # noqa: E402
from DIRVNetLib.mrml import prepare  # noqa: E402
from DIRVNetLib.mrml.convert import (  # noqa: E402
    RAS_TO_LPS,
    displacement_to_grid_transform,
    ijk_to_ras,
    is_axial_slice,
    matrix_to_numpy,
    numpy_to_matrix,
    volume_grid,
    volume_to_image,
)

DATA = Path(__file__).resolve().parents[1] / "Data"
T1 = DATA / "KmeansTest_T1UCharRaw.nii.gz"


def load_volume(scene, path, labelmap=False):
    """Read a file into a new volume node with MRML's archetype storage node (as Slicer does)."""
    volume = scene.AddNewNodeByClass(
        "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", Path(path).stem
    )
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(volume) == 1, f"MRML could not read {path}"
    volume.SetAndObserveStorageNodeID(storage.GetID())
    return volume


def rotation(ax, ay, az):
    """A rotation matrix (radians about x, then y, then z)."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture(scope="module")
def oblique_file(tmp_path_factory):
    """The T1 volume, cropped, with an oblique direction and anisotropic spacing, written as NRRD."""
    image = sitk.ReadImage(str(T1))[20:100, 16:112, 10:50]
    image.SetDirection(rotation(0.2, -0.35, 0.5).ravel().tolist())
    image.SetSpacing((1.3, 2.1, 3.7))
    image.SetOrigin((12.5, -40.0, 7.25))
    path = tmp_path_factory.mktemp("oblique") / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def node_state(volume):
    """(IJK-to-RAS matrix, voxel copy, parent transform ID): what 'unchanged' means for an input."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix), slicer.util.arrayFromVolume(volume).copy(), volume.GetTransformNodeID()


def assert_unchanged(volume, before):
    after = node_state(volume)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]


def assert_same_geometry(a, b, atol=1e-4):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


@pytest.mark.parametrize("which", ["nifti", "oblique"])
def test_volume_to_image_matches_simpleitk_reading_the_file(which, oblique_file):
    path = T1 if which == "nifti" else oblique_file
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, path)
    image, grid = volume_to_image(volume)
    expected = sitk.ReadImage(str(path))
    assert_same_geometry(image, expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected))
    assert not is_axial_slice(grid) and grid.size == expected.GetSize()


def test_linear_parent_transform_is_folded_into_geometry_and_input_untouched(oblique_file):
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, oblique_file)
    parent = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    toParent = np.eye(4)
    toParent[:3, :3] = rotation(0.1, 0.0, -0.3)
    toParent[:3, 3] = (5.0, -7.0, 11.0)
    parent.SetMatrixTransformToParent(numpy_to_matrix(toParent))
    volume.SetAndObserveTransformNodeID(parent.GetID())
    before = node_state(volume)

    image, _ = volume_to_image(volume)

    assert_unchanged(volume, before)
    # Expected LPS geometry: the RAS index-to-world matrix is toParent @ IJKToRAS.
    ijkToWorld = toParent @ before[0]
    spacing = np.linalg.norm(ijkToWorld[:3, :3], axis=0)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-9)
    np.testing.assert_allclose(
        np.reshape(image.GetDirection(), (3, 3)), RAS_TO_LPS @ ijkToWorld[:3, :3] / spacing, atol=1e-9
    )
    np.testing.assert_allclose(image.GetOrigin(), RAS_TO_LPS @ ijkToWorld[:3, 3], atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), before[1])


def test_nonlinear_parent_transform_is_hardened_into_a_copy():
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, T1)  # 2 mm voxels; i runs along -R (IJK-to-RAS column 0 is (-2, 0, 0))
    field = vtk.vtkImageData()
    field.SetDimensions(4, 4, 4)
    field.SetSpacing(200.0, 200.0, 200.0)
    field.SetOrigin(-300.0, -300.0, -300.0)
    shift = np.zeros((4, 4, 4, 3))
    shift[..., 0] = 4.0  # the volume moves 4 mm towards R: two voxels towards lower i
    field.GetPointData().SetScalars(vtk.util.numpy_support.numpy_to_vtk(shift.reshape(-1, 3), deep=True))
    grid = slicer.vtkOrientedGridTransform()
    grid.SetDisplacementGridData(field)
    parent = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    parent.SetAndObserveTransformToParent(grid)
    volume.SetAndObserveTransformNodeID(parent.GetID())
    before = node_state(volume)

    image, _ = volume_to_image(volume)

    assert_unchanged(volume, before)
    hardened = sitk.GetArrayFromImage(image)
    np.testing.assert_array_equal(hardened[:, :, :-2], before[1][:, :, 2:])


def analytic_field(image):
    """A smooth analytic displacement (LPS mm) evaluated at the physical points of ``image``'s grid."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(np.float64)
    direction = np.reshape(image.GetDirection(), (3, 3))
    points = np.asarray(image.GetOrigin()) + (index * image.GetSpacing()) @ direction.T
    return np.stack(
        [3.0 * np.sin(points[..., 1] / 17.0), -2.0 * np.cos(points[..., 0] / 13.0), 0.05 * points[..., 2] + 1.0],
        axis=-1,
    ), points


def test_analytic_displacement_round_trips_through_grid_transform_node(tmp_path, oblique_file):
    scene = slicer.vtkMRMLScene()
    fixed = load_volume(scene, oblique_file)
    image, grid = volume_to_image(fixed)
    u, points = analytic_field(image)
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformFromParent(displacement_to_grid_transform(u, grid))

    # Written by MRML, read by ITK: the same LPS field on the same (fixed) grid, bit for bit.
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(tmp_path / "field.h5"))
    assert storage.WriteData(node) == 1
    transform = sitk.DisplacementFieldTransform(sitk.ReadTransform(str(tmp_path / "field.h5")))
    written = transform.GetDisplacementField()
    assert_same_geometry(written, image, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), u)

    # Point mapping in RAS through the node: p -> p + u(p) at grid points (to 1e-5 mm: VTK finds the
    # grid index of a point by a matrix inverse, so grid points come out a few 1e-7 voxels off) ...
    fromParent = node.GetTransformFromParent()
    for index in [(0, 0, 0), (17, 40, 9), (79, 95, 39), (33, 5, 21)]:
        p = points[index[2], index[1], index[0]]
        mapped = np.array(fromParent.TransformPoint(*(RAS_TO_LPS @ p)))
        np.testing.assert_allclose(mapped, RAS_TO_LPS @ (p + u[index[2], index[1], index[0]]), atol=1e-5)
    # ... and between them, where the node interpolates linearly like ITK's displacement field.
    rng = np.random.default_rng(0)
    for continuous in rng.uniform([1, 1, 1], np.array(image.GetSize()) - 2, size=(20, 3)):
        p = np.array(image.TransformContinuousIndexToPhysicalPoint(continuous.tolist()))
        mapped = np.array(fromParent.TransformPoint(*(RAS_TO_LPS @ p)))
        np.testing.assert_allclose(mapped, RAS_TO_LPS @ np.array(transform.TransformPoint(p.tolist())), atol=1e-5)


def test_single_axial_slice_is_a_2d_image_and_2d_field_has_no_z_displacement(tmp_path):
    expected = sitk.ReadImage(str(DATA / "BrainT1Slice.png"))
    expected.SetOrigin((-20.0, 35.5))
    expected.SetSpacing((0.8, 1.2))
    sitk.WriteImage(expected, str(tmp_path / "slice.nrrd"))  # slicer-core's MRML has no PNG reader
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, tmp_path / "slice.nrrd")
    image, grid = volume_to_image(volume)
    assert image.GetDimension() == 2 and is_axial_slice(grid)
    assert_same_geometry(image, expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected))

    u = np.zeros(grid.shape + (2,))
    u[..., 0], u[..., 1] = 1.5, -2.5  # LPS mm
    transform = displacement_to_grid_transform(u, grid)
    p = ijk_to_ras(grid) @ np.array([30.0, 40.0, 0.0, 1.0])
    np.testing.assert_allclose(transform.TransformPoint(*p[:3]), p[:3] + RAS_TO_LPS @ (1.5, -2.5, 0.0), atol=1e-9)


def test_volume_grid_reports_node_geometry():
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, T1)
    grid = volume_grid(volume)
    np.testing.assert_allclose(grid.spacing, (2.0, 2.0, 3.0))
    assert grid.size == (128, 128, 62) and grid.shape == (62, 128, 128)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(ijk_to_ras(grid), matrix_to_numpy(matrix), rtol=0, atol=1e-12)


# --- Bad inputs: clear message, scene unchanged (checked before any computation) -----------------


def scene_node_ids(scene):
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


@pytest.fixture
def scene_with_volumes():
    scene = slicer.vtkMRMLScene()
    fixed = load_volume(scene, T1)
    moving = load_volume(scene, DATA / "KmeansTest_T1RawSkullStrip.nii.gz")
    return scene, fixed, moving


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing fixed", "fixed volume is not set"),
        ("missing moving", "moving volume is not set"),
        ("same node", "same node"),
        ("label map", "is a label map"),
        ("output is input", "never overwrites an input"),
        ("linear output transform", "needs a grid transform"),
    ],
)
def test_bad_inputs_raise_clear_message_and_leave_scene_unchanged(scene_with_volumes, case, message):
    scene, fixed, moving = scene_with_volumes
    kwargs = {}
    if case == "missing fixed":
        fixed = None
    elif case == "missing moving":
        moving = None
    elif case == "same node":
        moving = fixed
    elif case == "label map":
        moving = load_volume(scene, DATA / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", labelmap=True)
    elif case == "output is input":
        kwargs["outputVolumeNode"] = moving
    elif case == "linear output transform":
        kwargs["outputTransformNode"] = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    before = scene_node_ids(scene)
    with pytest.raises(InputImageError, match=message):
        prepare(fixed, moving, **kwargs)
    assert scene_node_ids(scene) == before


def test_2d_weights_on_3d_volumes_raise_clear_message(scene_with_volumes, tmp_path):
    scene, fixed, moving = scene_with_volumes
    (tmp_path / "metadata.json").write_text('{"dimension": 2, "description": "a 2D weight set"}')
    before = scene_node_ids(scene)
    with pytest.raises(WeightSetError, match=r"registers 2D images, but the volumes are 3D"):
        prepare(fixed, moving, weights=str(tmp_path))
    assert scene_node_ids(scene) == before


def test_moving_under_a_transform_cannot_also_be_placed_under_the_result(scene_with_volumes):
    scene, fixed, moving = scene_with_volumes
    moving.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    with pytest.raises(InputImageError, match="already under the transform"):
        prepare(fixed, moving, placeMovingUnderTransform=True)
