"""Correction by point pairs: a local displacement the network misses is fixed at the points, the field
elsewhere is kept, nothing folds; through the correction itself, the API and the CLI."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from test_metrics import write_fcsv, write_mrk_json

import DIRVNetLib
from DIRVNetLib.cli.main import main
from DIRVNetLib.errors import PointsError
from DIRVNetLib.io.transforms import read_displacement
from DIRVNetLib.metrics import displacement_transform, jacobian_determinant, target_registration_error
from DIRVNetLib.registration.point_correction import correct_with_points

BUMP_CENTRES = np.array([[-30.0, -40.0], [40.0, 10.0]])  # LPS mm on the 2D slice
BUMP_SHIFTS = np.array([[7.0, 3.0], [-4.0, 6.0]])  # mm: local motions of 6 mm radius the network misses
FIXED_POINTS = np.array([[-30.3, -39.6], [40.4, 10.3], [-25.2, -35.7]])  # off the voxel centres


def physical_points(image):
    """LPS coordinates of every voxel, [*S, dim] in numpy order (axis-aligned grids)."""
    shape = image.GetSize()[::-1]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")[::-1], axis=-1)
    return index * np.array(image.GetSpacing()) + np.array(image.GetOrigin())


def bump_field(reference, centres, shifts, radius):
    points = physical_points(reference)
    field = sum(
        np.exp(-np.sum((points - c) ** 2, -1) / (2 * radius**2))[..., None] * s for c, s in zip(centres, shifts)
    )
    image = sitk.GetImageFromArray(field, isVector=True)
    image.CopyInformation(reference)
    return image


def error_map(displacement, true):
    return np.linalg.norm(sitk.GetArrayFromImage(displacement) - sitk.GetArrayFromImage(true), axis=-1)


def beyond(reference, points, radius):
    """Voxels farther than ``radius`` mm from every point."""
    grid = physical_points(reference)
    return np.min([np.linalg.norm(grid - p, axis=-1) for p in points], axis=0) > radius


@pytest.fixture(scope="module")
def local_pair(t1_slice):
    """(fixed, moving, true field, fixed points, moving points): the T1 slice (moving) and a copy moved
    locally (fixed): fixed(p) = moving(p + true(p)), so each moving point is p + true(p)."""
    moving = sitk.Image(t1_slice)
    moving.SetOrigin((-100.0, -110.0))
    true = bump_field(moving, BUMP_CENTRES, BUMP_SHIFTS, 6.0)
    transform = displacement_transform(true)
    fixed = sitk.Resample(moving, moving, transform, sitk.sitkLinear, 0.0)
    moving_points = np.array([transform.TransformPoint(p.tolist()) for p in FIXED_POINTS])
    return fixed, moving, true, FIXED_POINTS, moving_points


# ----------------------------------------------------------------------------- the correction alone


def test_correction_is_exact_at_the_points_and_local():
    reference = sitk.Image([56, 64, 60], sitk.sitkVectorFloat32, 3)
    reference.SetSpacing((2.0, 2.0, 2.0))
    reference.SetOrigin((-50.0, -60.0, -40.0))
    centres = np.array([[0.3, 0.7, -0.4], [20.5, -19.1, 10.2]])
    true = bump_field(reference, centres, np.array([[6.0, 0.0, 0.0], [0.0, 5.0, -3.0]]), 8.0)
    estimate = sitk.Cast(
        bump_field(reference, centres, np.array([[1.8, 0, 0], [0, 1.5, -0.9]]), 8.0), sitk.sitkVectorFloat32
    )
    before = sitk.GetArrayFromImage(estimate).copy()
    moving = np.array([displacement_transform(true).TransformPoint(p.tolist()) for p in centres])
    corrected, report = correct_with_points(estimate, centres, moving)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(estimate), before)  # input untouched
    assert corrected.GetPixelID() == estimate.GetPixelID() and corrected.GetOrigin() == estimate.GetOrigin()
    assert min(report["error_before_mm"]) > 3.0
    assert max(report["error_after_mm"]) < 0.01
    assert target_registration_error(centres, moving, corrected)["tre_max_mm"] < 0.01
    far = beyond(reference, centres, report["radius_mm"])
    assert far.any()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(corrected)[far], before[far])  # unchanged beyond R
    assert error_map(corrected, true).mean() < error_map(estimate, true).mean()
    assert jacobian_determinant(corrected).min() > 0


def test_large_residuals_widen_the_correction_instead_of_folding():
    reference = sitk.Image([48, 48], sitk.sitkVectorFloat64, 2)
    point, target = np.array([[24.0, 24.0]]), np.array([[36.0, 24.0]])  # 12 mm at one point: folds within 10 mm
    corrected, report = correct_with_points(reference, point, target, radius=10.0)
    assert report["radius_mm"] > 10.0
    assert jacobian_determinant(corrected).min() > 0
    assert report["error_after_mm"][0] < 0.01


def test_a_correction_that_adding_would_fold_is_composed():
    """The field compresses sharply near the points (a narrow bump, det J 0.27) and the true motion moves
    that region first: adding a smooth correction would fold it, applying it before the field does not."""
    reference = sitk.Image([64, 64], sitk.sitkVectorFloat64, 2)
    centre = np.array([32.0, 32.0])
    field = bump_field(reference, centre[None], np.array([[2.6, 0.0]]), 2.0)
    fixed = np.array([[29.0, 32.0], [33.0, 33.0], [25.0, 30.0]])
    before_motion = fixed + np.exp(-np.sum((fixed - centre + [3.0, 0.0]) ** 2, -1) / 128.0)[:, None] * [3.0, 0.0]
    moving = np.array([displacement_transform(field).TransformPoint(p.tolist()) for p in before_motion])
    corrected, report = correct_with_points(field, fixed, moving)
    assert report["composed"] and max(report["error_after_mm"]) < 0.01
    assert jacobian_determinant(corrected).min() > 0 and report["jacobian_min_after"] > 0
    far = beyond(reference, fixed, report["radius_mm"])
    assert far.any()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(corrected)[far], sitk.GetArrayFromImage(field)[far])


def test_pairs_that_force_folding_are_refused():
    reference = sitk.Image([48, 48], sitk.sitkVectorFloat64, 2)
    fixed = np.array([[20.0, 24.0], [22.0, 24.0]])
    moving = np.array([[30.0, 24.0], [12.0, 24.0]])  # 2 mm apart, moved 10 mm towards each other and past
    with pytest.raises(PointsError, match=r"would fold the field.*pairs 1 and 2 are 2.0 mm apart.*20.0 mm"):
        correct_with_points(reference, fixed, moving)
    with pytest.raises(PointsError, match="pairs 1 and 2 share a fixed point"):
        correct_with_points(reference, fixed[[0, 0]], moving)


# ----------------------------------------------------------------------------- API and CLI, with the network


def test_api_point_pairs_fix_what_the_network_missed(local_pair):
    """The network alone (fast mode): the field beyond the correction's radius is the network's, exactly."""
    fixed, moving, true, fixed_points, moving_points = local_pair
    plain = DIRVNetLib.register(fixed, moving, mode="fast", fallback=False)
    corrected = DIRVNetLib.register(
        fixed, moving, mode="fast", fallback=False, fixed_points=fixed_points, moving_points=moving_points
    )
    missed = target_registration_error(fixed_points, moving_points, plain.displacement)
    assert min(missed["tre_per_point_mm"]) > 2.0  # the network misses them
    assert target_registration_error(fixed_points, moving_points, corrected.displacement)["tre_max_mm"] < 1.0
    report = corrected.report["point_correction"]
    assert report["points"] == 3 and max(report["error_after_mm"]) < 1.0
    np.testing.assert_allclose(report["error_before_mm"], missed["tre_per_point_mm"], atol=1e-3)
    elsewhere = beyond(fixed, fixed_points, report["radius_mm"])
    error_plain, error_corrected = error_map(plain.displacement, true), error_map(corrected.displacement, true)
    assert error_corrected[elsewhere].mean() <= error_plain[elsewhere].mean() + 1e-6
    assert error_corrected.mean() < error_plain.mean()
    assert jacobian_determinant(corrected.displacement).min() > 0
    assert corrected.report["jacobian_nonpositive_percent"] == 0.0
    assert plain.report["point_correction"] is None


NEIGHBOURHOOD_MM = 10.0  # of the fixed points: the bumps (radius 6 mm) and their rim


@pytest.fixture(scope="module")
def default_plain(local_pair):
    """The default mode's result without points (the reference for the error elsewhere)."""
    fixed, moving, *_ = local_pair
    return DIRVNetLib.register(fixed, moving)


def check_local_correction(plain, corrected, true, fixed_points, moving_points, radius):
    """plain, corrected: displacements without and with the pairs. Each point within 1 mm of its moving
    point; farther than ``radius`` mm (the correction's support) the field is the one without points (the
    refinement is deterministic: equal to 1e-6 mm); the mean error outside the points' neighbourhood is
    not raised and over the whole image it falls; no folding."""
    assert target_registration_error(fixed_points, moving_points, plain)["tre_max_mm"] > 2.0  # wrong there
    assert target_registration_error(fixed_points, moving_points, corrected)["tre_max_mm"] < 1.0
    far = beyond(plain, fixed_points, radius)
    assert far.mean() > 0.5
    np.testing.assert_allclose(sitk.GetArrayFromImage(corrected)[far], sitk.GetArrayFromImage(plain)[far], atol=1e-6)
    error_plain, error_corrected = error_map(plain, true), error_map(corrected, true)
    outside = beyond(plain, fixed_points, NEIGHBOURHOOD_MM)
    assert error_corrected[outside].mean() <= error_plain[outside].mean() + 1e-6
    assert error_corrected.mean() < error_plain.mean()
    assert jacobian_determinant(corrected).min() > 0


def test_api_point_pairs_with_the_refinement(local_pair, default_plain):
    """The default mode: the pairs' neighbourhood is refined again with the landmark term; farther than the
    correction's radius the field is the refinement's without points."""
    fixed, moving, true, fixed_points, moving_points = local_pair
    corrected = DIRVNetLib.register(fixed, moving, fixed_points=fixed_points, moving_points=moving_points)
    assert corrected.report["mode"] == "accurate" and corrected.report["refinement"]["steps"] > 0
    near = corrected.report["refinement"]["near_points"]
    assert near["steps"] > 0 and max(near["landmark_distance_mm_after"]) < 1.0  # the landmark term held them
    assert min(near["landmark_distance_mm_before"]) > 1.0  # the refinement without points misses them
    radius = corrected.report["point_correction"]["radius_mm"]
    assert radius >= near["radius_mm"]
    check_local_correction(
        default_plain.displacement, corrected.displacement, true, fixed_points, moving_points, radius
    )
    assert corrected.report["jacobian_nonpositive_percent"] == 0.0


def test_api_point_errors_come_before_the_network(local_pair):
    fixed, moving, _, fixed_points, moving_points = local_pair
    with pytest.raises(PointsError, match="go together"):
        DIRVNetLib.register(fixed, moving, fixed_points=fixed_points)
    with pytest.raises(PointsError, match="unpaired points: fixed points holds 3 points but moving points holds 2"):
        DIRVNetLib.register(fixed, moving, fixed_points=fixed_points, moving_points=moving_points[:2])
    outside = fixed_points.copy()
    outside[1] = [500.0, 0.0]
    with pytest.raises(PointsError, match=r"fixed point 2 .* lies outside the fixed image"):
        DIRVNetLib.register(fixed, moving, fixed_points=outside, moving_points=moving_points)


def test_cli_point_files(local_pair, default_plain, tmp_path, capsys):
    """The default mode through the CLI, with Slicer's point files (RAS .mrk.json, LPS .fcsv)."""
    fixed, moving, true, fixed_points, moving_points = local_pair
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    flat = np.zeros((len(fixed_points), 1))  # Slicer's files hold 3D points; the slice lies at z = 0
    fixed_file = write_mrk_json(tmp_path / "fixed.mrk.json", np.hstack([fixed_points, flat]) * [-1, -1, 1], "RAS")
    moving_file = write_fcsv(tmp_path / "moving.fcsv", np.hstack([moving_points, flat]), "LPS")
    common = [
        "register",
        "--fixed",
        str(tmp_path / "fixed.nrrd"),
        "--moving",
        str(tmp_path / "moving.nrrd"),
        "--no-progress",
    ]
    out = tmp_path / "out"
    assert (
        main(
            [
                *common,
                "--output-dir",
                str(out),
                "--fixed-points",
                str(fixed_file),
                "--moving-points",
                str(moving_file),
                "--qa-point=-30,-40",
                "--qa-convention",
                "neurological",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "3 point pairs: error at the points" in printed
    assert sitk.ReadImage(str(out / "qa.png")).GetSize()[0] > 1000
    report = json.loads((out / "report.json").read_text())
    assert max(report["point_correction"]["error_after_mm"]) < 1.0
    assert report["inputs"]["fixed_points"] == str(fixed_file)
    assert report["mode"] == "accurate"
    from_file = read_displacement(out / "transform.h5")
    radius = report["point_correction"]["radius_mm"]
    check_local_correction(default_plain.displacement, from_file, true, fixed_points, moving_points, radius)

    short = write_fcsv(tmp_path / "short.fcsv", np.hstack([moving_points, flat])[:2], "LPS")
    assert (
        main(
            [
                *common,
                "--output-dir",
                str(tmp_path / "bad"),
                "--fixed-points",
                str(fixed_file),
                "--moving-points",
                str(short),
            ]
        )
        == 2
    )
    assert "unpaired points" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main([*common, "--output-dir", str(tmp_path / "bad"), "--qa-point=1,2,3"]) == 2
    assert "--qa-point [1.0, 2.0, 3.0] has 3 coordinates but the images are 2D" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
