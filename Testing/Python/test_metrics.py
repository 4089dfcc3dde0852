"""Tests of DIRVNetLib.metrics against hand-computable cases, on non-trivial geometry.

Grids use anisotropic spacing, oblique (and reflected) directions and nonzero origins, so any
mix-up of index and physical units, of numpy and (x, y, z) order, or a forgotten direction fails.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib import metrics
from DIRVNetLib.io.points import read_points
from DIRVNetLib.metrics import (
    dice,
    endpoint_error,
    hausdorff95,
    jacobian_determinant,
    jacobian_statistics,
    mse,
    mutual_information,
    ncc,
    similarity_report,
    target_registration_error,
    warp_labels,
)

DATA = Path(__file__).resolve().parents[1] / "Data"


# ----------------------------------------------------------------------------- geometry helpers


def rotation(dim, angles):
    if dim == 2:
        (a,) = angles
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    a, b, c = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


GEOMETRY = {
    # size (x, y[, z]), spacing, origin, direction (oblique, with a reflection in 3D)
    2: dict(size=(9, 7), spacing=(0.7, 1.9), origin=(-12.5, 30.25), direction=rotation(2, [0.4])),
    3: dict(
        size=(8, 7, 6),
        spacing=(0.7, 1.3, 2.1),
        origin=(-20.0, 15.5, 4.25),
        direction=rotation(3, [0.3, -0.5, 0.8]) @ np.diag([1.0, -1.0, 1.0]),
    ),
}


def set_geometry(image, geometry):
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(np.asarray(geometry["direction"], dtype=float).ravel().tolist())
    return image


def physical_points(geometry):
    """Physical point of every voxel, shape (*numpy_shape, dim), components x, y[, z]."""
    size = geometry["size"]
    index_xyz = np.moveaxis(np.indices(size[::-1])[::-1], 0, -1).astype(float)
    matrix = np.asarray(geometry["direction"]) @ np.diag(geometry["spacing"])
    return index_xyz @ matrix.T + np.asarray(geometry["origin"])


def field_image(u, geometry, pixel=sitk.sitkVectorFloat64):
    image = sitk.GetImageFromArray(np.asarray(u, dtype=float), isVector=True)
    return set_geometry(sitk.Cast(image, pixel), geometry)


def scalar_image(array, geometry):
    return set_geometry(sitk.GetImageFromArray(array), geometry)


def t1_crop():
    image = sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"))
    return image[40:72, 40:72, 20:36]


def labels_crop():
    image = sitk.ReadImage(str(DATA / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))
    return image[40:72, 40:72, 20:36]


def png_slice(name):
    image = sitk.ReadImage(str(DATA / name))
    if image.GetNumberOfComponentsPerPixel() > 1:  # RGB-stored grey levels
        image = sitk.VectorIndexSelectionCast(image, 0)
    return sitk.Cast(image, sitk.sitkFloat64)[60:110, 70:130]


def brain_slice():
    return png_slice("BrainT1Slice.png")


def test_physical_points_helper_matches_simpleitk():
    for dim, geometry in GEOMETRY.items():
        image = scalar_image(np.zeros(geometry["size"][::-1]), geometry)
        points = physical_points(geometry)
        index = (1, 2, 3)[:dim]
        np.testing.assert_allclose(points[index[::-1]], image.TransformIndexToPhysicalPoint(index))


# ----------------------------------------------------------------------------- Jacobian

AFFINE = {
    2: np.array([[1.2, 0.3], [-0.1, 0.8]]),
    3: np.array([[1.1, 0.2, -0.1], [0.05, 0.9, 0.3], [-0.2, 0.1, 1.3]]),
}


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("pixel", [sitk.sitkVectorFloat64, sitk.sitkVectorFloat32], ids=["float64", "float32"])
def test_jacobian_of_affine_field_is_det_a_everywhere(dim, pixel):
    geometry, a = GEOMETRY[dim], AFFINE[dim]
    t = np.array([3.0, -1.5, 2.0][:dim])
    p = physical_points(geometry)
    u = p @ (a - np.eye(dim)).T + t  # u(p) = (A - I) p + t
    det = jacobian_determinant(field_image(u, geometry, pixel))
    assert det.shape == tuple(geometry["size"][::-1])
    tol = 1e-9 if pixel == sitk.sitkVectorFloat64 else 1e-4
    np.testing.assert_allclose(det, np.linalg.det(a), atol=tol)


@pytest.mark.parametrize("dim", [2, 3])
def test_float32_jacobian_agrees_with_float64(dim):
    """The float32 computation (registration reports) matches float64 on an oblique folding field."""
    geometry = GEOMETRY[dim]
    p = physical_points(geometry)
    u = np.stack([2.5 * np.sin(p @ np.roll(np.linspace(0.2, 0.45, dim), k)) for k in range(dim)], -1)
    field = field_image(u, geometry)
    single, double = jacobian_determinant(field, np.float32), jacobian_determinant(field)
    assert single.dtype == np.float32
    assert (double <= 0).any() and (double > 0).any()
    np.testing.assert_allclose(single, double, atol=1e-6 * np.abs(double).max())
    stats32, stats64 = jacobian_statistics(field, dtype=np.float32), jacobian_statistics(field)
    assert stats32["jacobian_nonpositive_percent"] == stats64["jacobian_nonpositive_percent"]
    assert stats32["std_log_jacobian"] == pytest.approx(stats64["std_log_jacobian"], rel=1e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_matches_a_per_voxel_reference_on_an_oblique_nonlinear_field(dim, monkeypatch):
    """The slab-wise computation against np.gradient + the chain rule + np.linalg.det per voxel."""
    from DIRVNetLib.metrics import field as field_module

    geometry = dict(GEOMETRY[dim], size=GEOMETRY[dim]["size"][:-1] + (19,))
    monkeypatch.setattr(
        field_module, "_SLAB_VOXELS", 3 * int(np.prod(geometry["size"][:-1]))
    )  # slabs of 3 slices, a short last one
    p = physical_points(geometry)
    u = np.stack([2.5 * np.sin(p @ np.roll(np.linspace(0.2, 0.45, dim), k)) for k in range(dim)], -1)
    matrix = np.asarray(geometry["direction"]).reshape(dim, dim) @ np.diag(geometry["spacing"])
    by_index = np.stack([np.stack(np.gradient(u[..., c])[::-1], -1) for c in range(dim)], -2)  # du_c / d index_i
    reference = np.linalg.det(np.eye(dim) + by_index @ np.linalg.inv(matrix))
    np.testing.assert_allclose(jacobian_determinant(field_image(u, geometry)), reference, rtol=0, atol=1e-12)


def test_block_work_gives_the_same_values_on_one_thread_or_several(monkeypatch):
    """The Jacobian, its statistics and the similarity report over many blocks: the same values, to the
    last bit, whatever the number of threads; the statistics as the whole-array formulas (float64)."""
    from DIRVNetLib import blocks
    from DIRVNetLib.metrics import field as field_module
    from DIRVNetLib.metrics import similarity

    geometry = dict(GEOMETRY[3], size=(8, 7, 40))
    monkeypatch.setattr(field_module, "_SLAB_VOXELS", 3 * 8 * 7)  # 14 slabs, a short last one
    monkeypatch.setattr(similarity, "_CHUNK", 100)
    p = physical_points(geometry)
    u = np.stack([2.5 * np.sin(p @ np.roll(np.linspace(0.2, 0.45, 3), k)) for k in range(3)], -1)
    field = field_image(u, geometry)
    rng = np.random.default_rng(4)
    images = [scalar_image(rng.normal(size=u.shape[:-1]).astype(np.float32), geometry) for _ in range(3)]
    results = {}
    for count in (1, 3):
        monkeypatch.setattr(blocks, "threads", lambda count=count: count)
        determinant = jacobian_determinant(field)
        results[count] = determinant, jacobian_statistics(field, determinant=determinant), similarity_report(*images)
    (determinant, stats, report), threaded = results[1], results[3]
    np.testing.assert_array_equal(threaded[0], determinant)
    assert threaded[1:] == (stats, report)
    assert (determinant <= 0).any() and (determinant > 0).any()
    positive = determinant[determinant > 0]
    assert stats["std_log_jacobian"] == pytest.approx(np.std(np.log(positive)), rel=1e-12)
    l2r = np.log(np.clip(determinant + 3.0, 1e-9, 1e9))
    assert stats["std_log_jacobian_l2r"] == pytest.approx(np.std(l2r), rel=1e-12)
    assert stats["jacobian_min"] == determinant.min()


@pytest.mark.parametrize("dim", [2, 3])
def test_identity_field_statistics(dim):
    geometry = GEOMETRY[dim]
    zero = field_image(np.zeros(tuple(geometry["size"][::-1]) + (dim,)), geometry)
    stats = jacobian_statistics(zero)
    assert stats["jacobian_min"] == pytest.approx(1.0)
    assert stats["jacobian_nonpositive_percent"] == 0.0
    assert stats["std_log_jacobian"] == pytest.approx(0.0, abs=1e-12)
    assert stats["std_log_jacobian_l2r"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_folding_field_has_nonpositive_jacobians(dim):
    geometry = dict(GEOMETRY[dim], size=(20,) + GEOMETRY[dim]["size"][1:])
    p = physical_points(geometry)
    x_axis = np.asarray(geometry["direction"])[:, 0]  # fold along the grid's first axis
    s = p @ x_axis
    period = 8.0
    u = np.zeros_like(p)
    u += (3.0 * np.sin(2 * np.pi * s / period))[..., None] * x_axis  # slope 3*2pi/8 > 1: folds
    stats = jacobian_statistics(field_image(u, geometry))
    assert 0.0 < stats["jacobian_nonpositive_percent"] < 100.0
    assert stats["jacobian_min"] < 0.0
    assert stats["std_log_jacobian"] > 0.0
    # restricted by a mask to a region without deformation: no folding there
    u_half = np.where(
        (np.arange(20) < 10)[None, ..., None] if dim == 2 else (np.arange(20) < 10)[None, None, :, None], u, 0.0
    )
    field = field_image(u_half, geometry)
    mask = np.zeros(u.shape[:-1], dtype=np.uint8)
    mask[..., 12:] = 1
    assert jacobian_statistics(field)["jacobian_nonpositive_percent"] > 0.0
    masked = jacobian_statistics(field, mask=scalar_image(mask, geometry))
    assert masked["jacobian_nonpositive_percent"] == 0.0
    assert masked["jacobian_min"] == pytest.approx(1.0)


def test_jacobian_rejects_non_displacement_images():
    scalar = sitk.Image([5, 5, 5], sitk.sitkFloat64)
    with pytest.raises(ValueError, match="dimension mismatch"):
        jacobian_determinant(sitk.Compose([scalar, scalar]))  # 2 components on a 3D grid
    with pytest.raises(ValueError, match="dimension mismatch"):
        jacobian_determinant(scalar)


# ----------------------------------------------------------------------------- end-point error


@pytest.mark.parametrize("dim", [2, 3])
def test_endpoint_error_of_constant_offset_is_its_norm(dim):
    geometry = GEOMETRY[dim]
    rng = np.random.default_rng(0)
    u = rng.normal(size=tuple(geometry["size"][::-1]) + (dim,))
    offset = np.array([0.6, -1.2, 2.0][:dim])
    result = endpoint_error(field_image(u + offset, geometry), field_image(u, geometry))
    norm = np.linalg.norm(offset)
    for key in ("epe_mean_mm", "epe_median_mm", "epe_p95_mm", "epe_max_mm"):
        assert result[key] == pytest.approx(norm)


def test_endpoint_error_mask_restricts_voxels():
    geometry = GEOMETRY[3]
    u = np.zeros(tuple(geometry["size"][::-1]) + (3,))
    v = u.copy()
    v[:, :4] = (3.0, 4.0, 0.0)  # |.| = 5 inside the mask (y index < 4)
    v[:, 4:] = (0.0, 0.0, 10.0)  # 10 outside
    mask = np.zeros(u.shape[:-1], dtype=bool)
    mask[:, :4, :] = True
    for m in (mask, scalar_image(mask.astype(np.uint8), geometry)):
        result = endpoint_error(field_image(v, geometry), field_image(u, geometry), mask=m)
        assert result["epe_mean_mm"] == pytest.approx(5.0)
        assert result["epe_max_mm"] == pytest.approx(5.0)
    assert endpoint_error(field_image(v, geometry), field_image(u, geometry))["epe_max_mm"] == 10.0


def test_endpoint_error_grid_mismatch_and_empty_mask():
    geometry = GEOMETRY[3]
    u = np.zeros(tuple(geometry["size"][::-1]) + (3,))
    moved = dict(geometry, origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="grid mismatch"):
        endpoint_error(field_image(u, geometry), field_image(u, moved))
    with pytest.raises(ValueError, match="empty"):
        endpoint_error(field_image(u, geometry), field_image(u, geometry), mask=np.zeros(u.shape[:-1], bool))
    with pytest.raises(ValueError, match="grid mismatch"):
        endpoint_error(field_image(u, geometry), field_image(u, geometry), mask=np.ones((2, 2, 2), bool))


# ----------------------------------------------------------------------------- similarity


def test_ncc_identity_and_affine_intensity_change():
    for image in (t1_crop(), brain_slice()):
        assert ncc(image, image) == pytest.approx(1.0)
        assert ncc(image, 3.0 * sitk.Cast(image, sitk.sitkFloat64) + 7.0) == pytest.approx(1.0)
        assert ncc(image, -sitk.Cast(image, sitk.sitkFloat64)) == pytest.approx(-1.0)
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 3.0, 2.0, 4.0])  # Pearson by hand: 4 / 5
    assert ncc(a, b) == pytest.approx(0.8)
    assert ncc(a, b, mask=[1, 0, 0, 1]) == pytest.approx(1.0)
    assert np.isnan(ncc(a, np.ones(4)))


def test_mse_by_hand():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert mse(a, np.zeros((2, 2))) == pytest.approx((0 + 1 + 4 + 9) / 4)
    assert mse(a, np.zeros((2, 2)), mask=a > 1) == pytest.approx((4 + 9) / 2)
    image = t1_crop()
    assert mse(image, sitk.Cast(image, sitk.sitkFloat64) + 2.0) == pytest.approx(4.0)


def test_mutual_information():
    two_values = np.array([0.0, 0.0, 1.0, 1.0])
    assert mutual_information(two_values, two_values, bins=2) == pytest.approx(np.log(2.0))
    image = t1_crop()
    rng = np.random.default_rng(1)
    shape = sitk.GetArrayViewFromImage(image).shape
    noise_a, noise_b = rng.random(shape), rng.random(shape)
    mi_same = mutual_information(image, image)
    mi_noise = mutual_information(noise_a, noise_b)
    assert mi_same > 1.0 > 0.05 > mi_noise >= 0.0
    # The joint histogram is numpy's equal-width one over each image's range.
    moving = sitk.GetArrayFromImage(image).astype(np.float64)
    other = moving + 40.0 * rng.random(shape)
    joint, _, _ = np.histogram2d(moving.ravel(), other.ravel(), bins=16)
    p = joint / joint.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    expected = np.sum(p[p > 0] * np.log(p[p > 0] / outer[p > 0]))
    assert mutual_information(moving, other, bins=16) == pytest.approx(expected, rel=1e-9)


def test_similarity_over_several_blocks_matches_whole_array_formulas():
    # More than two accumulation blocks and a partial last one, in the images' own pixel types
    # (uint8 fixed, float32 others read as views): the block sums must equal the textbook formulas.
    from DIRVNetLib.metrics import similarity

    rng = np.random.default_rng(3)
    size = 2 * similarity._CHUNK + 8 * 1234
    fixed = rng.integers(0, 256, size).astype(np.uint8)
    moving = (0.5 * fixed + rng.normal(0.0, 40.0, size)).astype(np.float32)
    warped = (2.0 * fixed + 5.0 + rng.normal(0.0, 4.0, size)).astype(np.float32)
    images = [sitk.GetImageFromArray(a.reshape(-1, 8)) for a in (fixed, moving, warped)]
    report = similarity_report(*images, bins=16)
    x = fixed.astype(np.float64)
    for key, other in (("before", moving), ("after", warped)):
        y = other.astype(np.float64)
        assert report[f"ncc_{key}"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
        assert report[f"mse_{key}"] == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)
        joint, _, _ = np.histogram2d(x, y, bins=16)
        p = joint / joint.sum()
        outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
        assert report[f"mi_{key}"] == pytest.approx(np.sum(p[p > 0] * np.log(p[p > 0] / outer[p > 0])), rel=1e-9)
    assert report["ncc_after"] > 0.99 > report["ncc_before"]
    assert np.array_equal(sitk.GetArrayViewFromImage(images[0]).ravel(), fixed)  # inputs untouched


def test_similarity_grid_checks():
    image = t1_crop()
    other = sitk.Image(image)
    other.SetOrigin((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="grid mismatch"):
        ncc(image, other)
    with pytest.raises(ValueError, match="grid mismatch"):
        mse(np.zeros((3, 4)), np.zeros((4, 3)))


def test_similarity_report_before_and_after():
    fixed = sitk.Cast(brain_slice(), sitk.sitkFloat64)
    moving_resampled = png_slice("BrainProtonDensitySlice.png")
    moving_resampled.CopyInformation(fixed)
    report = similarity_report(fixed, moving_resampled, fixed)
    assert set(report) == {"ncc_before", "ncc_after", "mse_before", "mse_after", "mi_before", "mi_after"}
    assert report["ncc_after"] == pytest.approx(1.0)
    assert report["mse_after"] == 0.0
    assert report["ncc_before"] < 1.0 and report["mse_before"] > 0.0
    assert report["mi_after"] > report["mi_before"]
    assert report["ncc_before"] == pytest.approx(ncc(fixed, moving_resampled))


# ----------------------------------------------------------------------------- labels


def shifted_boxes(dim, n, k, axis):
    """Two label maps with box label 1 of length n along numpy ``axis``, the second shifted by k;
    label 2 is a fixed block present identically in both."""
    shape = (10, 12, 24)[-dim:]
    a = np.zeros(shape, np.uint8)
    box = [slice(2, 8)] * dim
    box[axis] = slice(3, 3 + n)
    a[tuple(box)] = 1
    b = np.zeros_like(a)
    box[axis] = slice(3 + k, 3 + k + n)
    b[tuple(box)] = 1
    a[(slice(0, 1),) * dim] = 2
    b[(slice(0, 1),) * dim] = 2
    return a, b


@pytest.mark.parametrize("dim", [2, 3])
def test_dice_of_shifted_box(dim):
    n, k = 10, 3
    a, b = shifted_boxes(dim, n, k, axis=dim - 1)
    geometry = dict(GEOMETRY[dim], size=a.shape[::-1])
    result = dice(scalar_image(a, geometry), scalar_image(b, geometry))
    assert result["per_label"][1] == pytest.approx((n - k) / n)
    assert result["per_label"][2] == pytest.approx(1.0)
    assert result["dice_mean"] == pytest.approx(((n - k) / n + 1.0) / 2)
    assert dice(a, b, labels=[1])["per_label"] == {1: pytest.approx((n - k) / n)}
    assert np.isnan(dice(a, b, labels=[7])["per_label"][7])


@pytest.mark.parametrize("dim,axis", [(2, 0), (2, 1), (3, 0), (3, 2)])
def test_hausdorff95_of_shifted_slab_is_k_times_spacing(dim, axis):
    """A slab crossing the whole image (only its two faces are surface) shifted by k voxels: every
    surface voxel is exactly k voxels from the other surface."""
    n, k = 6, 2  # n >= 2k + 1: each face's nearest face of the other slab is k voxels away
    shape = (10, 12, 24)[-dim:]
    a = np.zeros(shape, np.uint8)
    b = np.zeros(shape, np.uint8)
    sl = [slice(None)] * dim
    sl[axis] = slice(1, 1 + n)
    a[tuple(sl)] = 1
    sl[axis] = slice(1 + k, 1 + k + n)
    b[tuple(sl)] = 1
    geometry = dict(GEOMETRY[dim], size=shape[::-1])
    spacing_along_axis = geometry["spacing"][dim - 1 - axis]
    result = hausdorff95(scalar_image(a, geometry), scalar_image(b, geometry))
    assert result["per_label"][1] == pytest.approx(k * spacing_along_axis)
    assert result["hd95_mean_mm"] == pytest.approx(k * spacing_along_axis)
    # dice of the same pair, by hand
    assert dice(a, b)["per_label"][1] == pytest.approx((n - k) / n)


def test_identical_real_labels_and_empty_label_sets():
    labels = labels_crop()
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0]
    d = dice(labels, labels)
    assert sorted(d["per_label"]) == present and d["dice_mean"] == pytest.approx(1.0)
    h = hausdorff95(labels, labels)
    assert h["hd95_mean_mm"] == 0.0
    empty = sitk.Image(labels.GetSize(), labels.GetPixelID())
    empty.CopyInformation(labels)
    with pytest.raises(ValueError, match="empty label set"):
        dice(labels, empty)
    with pytest.raises(ValueError, match="empty label set"):
        hausdorff95(labels, empty)
    assert hausdorff95(labels, empty, labels=[present[0]])["per_label"][present[0]] == np.inf


def test_warp_labels_integer_shift_on_sub_grid():
    labels = labels_crop()  # spacing (2, 2, 3), direction with a y/z swap, nonzero origin
    source = sitk.GetArrayFromImage(labels)
    # displacement grid: the crop minus 2 voxels at each side, u = 3 voxels along index z
    grid = labels[2:-2, 2:-2, 2:-2]
    matrix = np.asarray(labels.GetDirection()).reshape(3, 3) @ np.diag(labels.GetSpacing())
    u_mm = matrix @ np.array([0.0, 0.0, 3.0])
    u = np.broadcast_to(u_mm, sitk.GetArrayViewFromImage(grid).shape + (3,))
    field = sitk.GetImageFromArray(np.array(u, dtype=np.float32), isVector=True)
    field.CopyInformation(grid)
    before = sitk.GetArrayFromImage(field).copy()
    warped = warp_labels(labels, field)
    assert warped.GetPixelID() == labels.GetPixelID()
    assert warped.GetSize() == field.GetSize() and warped.GetOrigin() == field.GetOrigin()
    expected = np.zeros_like(sitk.GetArrayViewFromImage(grid))
    expected[:-1] = source[5:, 2:-2, 2:-2]  # out(z) = labels(z + 2 + 3); last slice falls outside
    np.testing.assert_array_equal(sitk.GetArrayFromImage(warped), expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(field), before)  # input untouched
    assert field.GetPixelID() == sitk.sitkVectorFloat32


def test_warp_labels_keeps_float64_input_and_checks_dimension():
    labels = labels_crop()
    field = sitk.Image(labels.GetSize(), sitk.sitkVectorFloat64)
    field.CopyInformation(labels)
    warped = warp_labels(labels, field)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(labels))
    assert field.GetSize() == labels.GetSize()  # not emptied by the transform constructor
    with pytest.raises(ValueError, match="dimension mismatch"):
        warp_labels(labels[:, :, 0], field)


# ----------------------------------------------------------------------------- landmarks

POINTS_LPS = np.array([[-10.0, 20.0, 5.0], [-12.5, 22.0, 8.0], [-15.0, 18.5, 6.5], [-11.0, 24.0, 9.0]])


def write_mrk_json(path, points, system):
    document = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
        "Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": system,
                "coordinateUnits": "mm",
                "controlPoints": [
                    {
                        "id": str(i + 1),
                        "label": f"F-{i + 1}",
                        "position": [float(v) for v in p],
                        "positionStatus": "defined",
                    }
                    for i, p in enumerate(points)
                ],
            }
        ],
    }
    path.write_text(json.dumps(document))
    return path


def write_fcsv(path, points, system):
    lines = [
        "# Markups fiducial file version = 4.11",
        f"# CoordinateSystem = {system}",
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
    ]
    for i, p in enumerate(points):
        lines.append(f"vtkMRMLMarkupsFiducialNode_{i},{p[0]},{p[1]},{p[2]},0,0,0,1,1,1,0,F-{i + 1},,")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("dim", [2, 3])
def test_tre_of_known_translation(dim):
    geometry = dict(
        GEOMETRY[dim],
        size=(30, 30, 30)[:dim],
        origin=(-30.0, 5.0, -5.0)[:dim],
        direction=np.eye(dim),
        spacing=(1.5, 1.2, 2.0)[:dim],
    )
    t = np.array([2.0, -3.0, 6.0][:dim])
    p = physical_points(geometry)
    field = field_image(np.broadcast_to(t, p.shape), geometry, sitk.sitkVectorFloat32)
    fixed = POINTS_LPS[:, :dim] + np.array([0.0, -5.0, 10.0][:dim])
    moving = fixed + t
    before = sitk.GetArrayFromImage(field).copy()
    result = target_registration_error(fixed, moving, field)
    assert result["tre_mean_mm"] == pytest.approx(0.0, abs=1e-5)
    assert result["tre_max_mm"] == pytest.approx(0.0, abs=1e-5)
    assert result["tre_median_mm"] == pytest.approx(0.0, abs=1e-5)
    assert result["tre_before_mean_mm"] == pytest.approx(np.linalg.norm(t))
    assert result["n_points"] == 4
    np.testing.assert_array_equal(sitk.GetArrayFromImage(field), before)
    # the same with a SimpleITK transform, and with no correction (identity)
    assert target_registration_error(fixed, moving, sitk.TranslationTransform(dim, t.tolist()))[
        "tre_max_mm"
    ] == pytest.approx(0.0, abs=1e-9)
    assert target_registration_error(fixed, moving, sitk.Transform(dim, sitk.sitkIdentity))[
        "tre_mean_mm"
    ] == pytest.approx(np.linalg.norm(t))


def test_tre_from_files_and_mismatches(tmp_path):
    t = np.array([1.0, 2.0, 2.0])
    fixed_file = write_fcsv(tmp_path / "fixed.fcsv", POINTS_LPS * [-1, -1, 1], "RAS")
    moving_file = write_mrk_json(tmp_path / "moving.mrk.json", POINTS_LPS + t, "LPS")
    translation = sitk.TranslationTransform(3, t.tolist())
    result = target_registration_error(read_points(fixed_file), read_points(moving_file), translation)
    assert result["tre_max_mm"] == pytest.approx(0.0, abs=1e-9)
    assert result["tre_before_mean_mm"] == pytest.approx(3.0)
    short = write_mrk_json(tmp_path / "short.mrk.json", POINTS_LPS[:3], "LPS")
    with pytest.raises(ValueError, match="landmark mismatch"):
        target_registration_error(read_points(fixed_file), read_points(short), translation)
    with pytest.raises(ValueError, match="dimension mismatch"):
        target_registration_error(POINTS_LPS, POINTS_LPS, sitk.TranslationTransform(2))


def test_public_names():
    assert set(metrics.__all__) == {
        "jacobian_determinant",
        "jacobian_statistics",
        "endpoint_error",
        "ncc",
        "mse",
        "mutual_information",
        "similarity_report",
        "warp_labels",
        "dice",
        "hausdorff95",
        "target_registration_error",
        "nonpositive_percent",
        "displacement_transform",
        "largest_displacement_point",
    }
