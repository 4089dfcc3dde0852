"""Geometry: the one grid type; working-grid voxels -> LPS displacement on the fixed grid, through transform.h5."""

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib.grid import Grid
from DIRVNetLib.io.resample import coarser_reference, resample_like, warp_image
from DIRVNetLib.io.transforms import read_displacement, write_transform
from DIRVNetLib.metrics import displacement_transform
from DIRVNetLib.registration.geometry import WorkingGrid, resample_displacement


def _oblique(image, spacing, origin, angles):
    out = sitk.Image(image)
    out.SetSpacing(spacing)
    out.SetOrigin(origin)
    rotation = sitk.Euler3DTransform((0, 0, 0), *angles)
    out.SetDirection(rotation.GetMatrix())
    return out


@pytest.fixture(scope="module")
def oblique_pair(t1_volume):
    fixed = _oblique(t1_volume[20:100, 24:104, 10:50], (1.3, 0.9, 2.6), (-40.0, 12.5, 30.0), (0.2, -0.1, 0.3))
    moving = _oblique(t1_volume[16:110, 20:108, 8:52], (1.2, 1.0, 2.2), (-45.0, 8.0, 26.0), (0.1, 0.05, 0.2))
    return fixed, moving


def test_working_grid_is_isotropic_and_covers_the_fixed_image(oblique_pair):
    fixed, _ = oblique_pair
    grid = WorkingGrid.for_fixed(fixed)
    assert grid.reference.GetSpacing() == (0.9, 0.9, 0.9)
    assert grid.reference.GetDirection() == fixed.GetDirection()
    corner = [n - 1 for n in fixed.GetSize()]
    far = grid.reference.TransformPhysicalPointToContinuousIndex(fixed.TransformIndexToPhysicalPoint(corner))
    assert all(-1e-6 <= c <= n - 1 + 1e-6 for c, n in zip(far, grid.reference.GetSize()))
    assert WorkingGrid.for_fixed(fixed, isotropic=False).shape == tuple(reversed(fixed.GetSize()))


def test_voxel_flow_to_lps_field_is_exact_through_transform_file(oblique_pair, tmp_path):
    """An affine map p -> A p + t expressed as a working-grid voxel flow, converted, resampled onto
    the fixed grid and written as transform.h5, warps moving exactly as the affine transform does."""
    fixed, moving = oblique_pair
    grid = WorkingGrid.for_fixed(fixed)
    matrix = np.eye(3) + np.array([[0.03, -0.02, 0.01], [0.02, 0.01, -0.03], [-0.01, 0.02, 0.02]])
    translation = np.array([2.5, -1.5, 3.0])
    # Physical displacement u(p) = (A - I) p + t at every working-grid point, then as voxel flow.
    index = np.stack(np.meshgrid(*[np.arange(n) for n in reversed(grid.shape)], indexing="ij"), -1)
    index = index.reshape(-1, 3).astype(np.float64)  # (i, j, k) in x-fastest order after transpose below
    origin = np.array(grid.reference.GetOrigin())
    points = origin + index @ grid.voxel_to_physical.T
    u = points @ (matrix - np.eye(3)).T + translation
    u_index = u @ np.linalg.inv(grid.voxel_to_physical).T  # (x, y, z) index components
    flow = u_index.reshape(tuple(reversed(grid.shape)) + (3,)).transpose(2, 1, 0, 3)[..., ::-1]
    displacement = resample_displacement(grid.flow_to_displacement(flow), fixed)

    write_transform(displacement_transform(displacement), tmp_path / "transform.h5")
    transform = sitk.ReadTransform(str(tmp_path / "transform.h5"))
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    expected = sitk.Resample(
        moving, fixed, sitk.AffineTransform(matrix.ravel(), translation), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    scale = float(sitk.GetArrayViewFromImage(moving).max())
    np.testing.assert_allclose(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(expected), atol=1e-4 * scale)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(read_displacement(tmp_path / "transform.h5")),
        sitk.GetArrayFromImage(displacement),
        atol=1e-9,
    )
    np.testing.assert_allclose(grid.displacement_to_flow(grid.flow_to_displacement(flow)), flow, atol=1e-4)


def test_moving_is_resampled_in_physical_space(oblique_pair):
    fixed, moving = oblique_pair
    on_fixed = resample_like(moving, fixed)
    point = fixed.TransformIndexToPhysicalPoint((40, 40, 20))
    expected = sitk.Resample(
        moving, [1, 1, 1], sitk.Transform(), sitk.sitkLinear, point, (1, 1, 1), moving.GetDirection()
    )
    assert on_fixed[40, 40, 20] == pytest.approx(expected[0, 0, 0], rel=1e-5)


@pytest.mark.parametrize("labels", [False, True])
def test_warping_through_the_field_equals_resampling_through_its_transform(oblique_pair, labels):
    """The moving image on another oblique grid, warped onto the field's grid (with values past the moving
    image's edge): the same values as SimpleITK's resampling through the displacement-field transform."""
    fixed, moving = oblique_pair
    if labels:
        moving = sitk.Cast(moving > 60, sitk.sitkUInt8) + sitk.Cast(moving > 120, sitk.sitkUInt8)
    values = np.random.default_rng(4).normal(0.0, 3.0, (8, 10, 9, 3))
    coarse = sitk.GetImageFromArray(values, isVector=True)
    coarse.SetOrigin(fixed.GetOrigin())
    coarse.SetDirection(fixed.GetDirection())
    coarse.SetSpacing([n * s / 7 for n, s in zip(fixed.GetSize(), fixed.GetSpacing())])
    field = resample_displacement(coarse, fixed)  # smooth, up to about 10 mm
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    expected = sitk.Resample(moving, fixed, displacement_transform(field), interpolator, 0.0, sitk.sitkFloat32)
    warped = warp_image(moving, field, labels, moving.GetPixelID())
    assert warped.GetPixelID() == moving.GetPixelID() and Grid.of(warped) == Grid.of(fixed)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(sitk.Cast(expected, moving.GetPixelID()))
    )
    assert (sitk.GetArrayViewFromImage(expected) == 0).mean() > 0.01  # some points fell outside the moving image


def test_displacement_already_on_the_grid_is_kept_as_float64(oblique_pair):
    fixed, _ = oblique_pair
    values = np.random.default_rng(3).normal(size=tuple(reversed(fixed.GetSize())) + (3,))
    field = sitk.GetImageFromArray(values, isVector=True)
    field.CopyInformation(fixed)
    assert resample_displacement(field, fixed) is field
    single = sitk.Cast(field, sitk.sitkVectorFloat32)
    converted = resample_displacement(single, fixed)
    assert converted.GetPixelID() == sitk.sitkVectorFloat64
    np.testing.assert_allclose(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(single), atol=1e-5)
    shifted = sitk.Image(fixed)
    shifted.SetOrigin(tuple(o + 0.5 for o in fixed.GetOrigin()))
    moved = resample_displacement(field, shifted)
    assert moved.GetOrigin() == shifted.GetOrigin()
    assert not np.allclose(sitk.GetArrayFromImage(moved), values)


def test_coarser_reference_keeps_the_frame_and_covers_the_extent(oblique_pair):
    fixed, _ = oblique_pair
    for factor in (1.5, 2.0, 3.7):
        coarse = coarser_reference(fixed, factor)
        assert coarse.GetOrigin() == fixed.GetOrigin() and coarse.GetDirection() == fixed.GetDirection()
        np.testing.assert_allclose(coarse.GetSpacing(), np.multiply(fixed.GetSpacing(), factor))
        extent, coarse_extent = (np.multiply(i.GetSize(), i.GetSpacing()) for i in (fixed, coarse))
        assert np.all(coarse_extent >= extent - 1e-9) and np.all(coarse_extent < extent + np.array(coarse.GetSpacing()))


@pytest.mark.parametrize("factor", [1.5, 2.0, 3.0])
def test_a_coarse_flow_upsampled_as_its_field_is_resampled(oblique_pair, factor):
    """The coarse pass's flow carried onto the working grid in voxels gives what the physical route gives:
    the flow as an LPS field on the coarse grid, resampled linearly onto the fine grid, read back as a
    flow. Past the coarse grid's last voxel along an axis (the fine grid's last slices) the coarse flow
    counts as repeated along that axis: the physical route on a coarse grid one voxel longer there."""
    from DIRVNetLib.ops import upsample_flow

    fixed, _ = oblique_pair
    grid = WorkingGrid.for_fixed(fixed, 1.7, isotropic=False)  # oblique, sizes not multiples of the factor
    coarse = coarser_reference(grid.reference, factor)
    flow = np.random.default_rng(2).normal(0.0, 2.0, Grid.of(coarse).shape + (3,)).astype(np.float32)
    upsampled = upsample_flow(flow[np.newaxis], factor, grid.shape)[0].numpy()
    assert upsampled.shape == grid.shape + (3,)
    longer, repeated = Grid.of(coarse), flow
    for axis in range(3):  # array axis: SimpleITK axis 2 - axis
        size = list(longer.size)
        size[2 - axis] += 1
        longer = dataclasses.replace(longer, size=tuple(size))
        repeated = np.concatenate([repeated, np.take(repeated, [-1], axis=axis)], axis=axis)
    field = WorkingGrid(longer.image()).flow_to_displacement(repeated)
    resampled = sitk.Resample(
        field, grid.reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64, True
    )
    np.testing.assert_allclose(upsampled, grid.displacement_to_flow(resampled), atol=1e-4 * factor)


@pytest.mark.parametrize("spacing", [1.7, 0.6])
def test_a_field_onto_a_grid_of_its_origin_and_direction_is_resampled_as_by_simpleitk(oblique_pair, spacing):
    """A field made on the working grid (coarser or finer than the fixed grid, another spacing per axis)
    is carried onto the fixed grid one axis at a time: the same vectors as SimpleITK's linear resampling of
    the field continued past its last voxel along each axis by repeating that voxel's vectors."""
    fixed, _ = oblique_pair
    grid = WorkingGrid.for_fixed(fixed, spacing, isotropic=False)
    rng = np.random.default_rng(5)
    field = grid.flow_to_displacement(rng.normal(0.0, 2.0, grid.shape + (3,)))[:-4, :, :-3]  # short along x, z
    fast = resample_displacement(field, fixed)
    assert Grid.of(fast) == Grid.of(fixed) and fast.GetPixelID() == sitk.sitkVectorFloat64
    extent = (np.array(fixed.GetSize()) - 1) * fixed.GetSpacing(), (np.array(field.GetSize()) - 1) * spacing
    assert (extent[0] > extent[1] + spacing).any()  # the fixed grid reaches past the field's last voxel
    continued = sitk.GetImageFromArray(np.pad(sitk.GetArrayFromImage(field), [(0, 60)] * 3 + [(0, 0)], "edge"), True)
    continued.SetOrigin(field.GetOrigin())
    continued.SetSpacing(field.GetSpacing())
    continued.SetDirection(field.GetDirection())
    slow = sitk.Resample(continued, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(fast), sitk.GetArrayViewFromImage(slow), atol=1e-9)


def test_one_grid_type_for_same_grid_index_to_physical_and_references(oblique_pair, tmp_path):
    fixed, moving = oblique_pair
    grid = Grid.of(fixed)
    assert grid.shape == sitk.GetArrayViewFromImage(fixed).shape
    index = np.array([3.0, 7.0, 2.0])
    physical = np.array(grid.origin) + grid.index_to_physical @ index
    np.testing.assert_allclose(physical, fixed.TransformContinuousIndexToPhysicalPoint(index.tolist()), atol=1e-9)
    np.testing.assert_allclose(grid.physical_to_index @ grid.index_to_physical, np.eye(3), atol=1e-12)
    reference = grid.image()
    assert Grid.of(reference) == grid and reference.GetPixelID() == sitk.sitkFloat32
    placed = grid.place(sitk.GetImageFromArray(sitk.GetArrayFromImage(fixed)))
    assert Grid.of(placed) == grid
    with pytest.raises(ValueError, match="cannot be placed on a grid of size"):
        grid.place(sitk.Image(4, 4, 4, sitk.sitkFloat32))

    # A NIfTI header rounds the geometry to float32: the same grid, though not exactly equal.
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nii.gz"))
    written = Grid.of(sitk.ReadImage(str(tmp_path / "fixed.nii.gz")))
    assert written != grid and written.same_as(grid) and not Grid.of(moving).same_as(grid)
    assert not dataclasses.replace(grid, spacing=tuple(s * 1.001 for s in grid.spacing)).same_as(grid)
    shifted = dataclasses.replace(grid, origin=tuple(o + 0.01 for o in grid.origin))
    assert not shifted.same_as(grid) and "size (80, 80, 40)" in grid.describe()

    # The transform reader: a displacement field on its own grid, or any transform sampled on a reference.
    translation = sitk.TranslationTransform(3, (1.0, -2.0, 0.5))
    write_transform(translation, tmp_path / "translation.tfm")
    sampled = read_displacement(tmp_path / "translation.tfm", fixed)
    assert Grid.of(sampled) == grid
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(sampled)[5, 6, 7], (1.0, -2.0, 0.5))
    with pytest.raises(ValueError, match="a 3D transform for 2D images"):
        read_displacement(tmp_path / "translation.tfm", sitk.Image(4, 4, sitk.sitkFloat32))
    with pytest.raises(ValueError, match="transform or displacement file not found"):
        read_displacement(tmp_path / "missing.h5")


def test_fields_of_many_grids_are_resampled_without_tensorflow_retracing_warnings(oblique_pair, caplog):
    """A session registering many pairs resamples onto a new grid each time: each pair of grids gets its own
    compiled function, traced once, so TensorFlow's retracing warning (after five tracings of one function)
    never shows."""
    fixed, _ = oblique_pair
    small = fixed[:30, :30, :12]
    for spacing in (1.1, 1.3, 1.5, 1.7, 1.9, 2.1, 2.3):
        grid = WorkingGrid.for_fixed(small, spacing, isotropic=False)
        field = grid.flow_to_displacement(np.ones(grid.shape + (3,)))
        resampled = resample_displacement(field, small)
        values, vector = sitk.GetArrayViewFromImage(resampled), sitk.GetArrayViewFromImage(field)[0, 0, 0]
        np.testing.assert_allclose(values, np.broadcast_to(vector, values.shape), rtol=1e-12)
    assert "retracing" not in caplog.text
