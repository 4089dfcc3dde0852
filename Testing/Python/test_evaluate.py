"""``dirvnet evaluate`` on hand-computable cases: a known transform evaluated against itself, a shifted
label slab, translated landmarks, a mask, and the registration path with a (tiny, untrained) weight set.

Geometry is non-trivial (anisotropic spacing, rotated direction, nonzero origin), so a sign, axis or
unit error in reading transforms and fields fails.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib.cli.main import main
from DIRVNetLib.io.transforms import write_image, write_transform
from DIRVNetLib.metrics import displacement_transform

SPACING = (1.5, 2.0)
DIRECTION = (0.0, -1.0, 1.0, 0.0)  # 90 degree rotation: index x runs along physical y
ORIGIN = (12.0, -7.5)
SHIFT = (3.0, -2.0)  # mm, physical


def _geometry(image):
    image.SetSpacing(SPACING)
    image.SetDirection(DIRECTION)
    image.SetOrigin(ORIGIN)
    return image


@pytest.fixture()
def pair(tmp_path, data_dir):
    """fixed(p) = moving(p + SHIFT) on a rotated, anisotropic grid; files in tmp_path."""
    raw = sitk.ReadImage(str(data_dir / "BrainT1Slice.png"), sitk.sitkFloat32)[::2, ::2]
    moving = _geometry(sitk.GetImageFromArray(sitk.GetArrayFromImage(raw)))
    fixed = sitk.Resample(moving, moving, sitk.TranslationTransform(2, SHIFT), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    field = sitk.Compose(*[sitk.Image(fixed.GetSize(), sitk.sitkFloat64) + s for s in SHIFT])
    field.CopyInformation(fixed)
    write_image(field, tmp_path / "true.nrrd")
    write_transform(displacement_transform(field), tmp_path / "transform.h5")
    return tmp_path, fixed, moving, field


def _evaluate(tmp_path, *extra):
    out = tmp_path / "out" / "evaluation.json"
    code = main(
        [
            "evaluate",
            "--fixed",
            str(tmp_path / "fixed.nrrd"),
            "--moving",
            str(tmp_path / "moving.nrrd"),
            "--output-json",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    # strict JSON: NaN and inf are written as null
    return json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_known_transform_against_itself_gives_zero_epe(pair, capsys):
    tmp_path, *_ = pair
    for transform in ("transform.h5", "true.nrrd"):  # ITK transform file and vector image
        result = _evaluate(
            tmp_path, "--transform", str(tmp_path / transform), "--true-field", str(tmp_path / "true.nrrd")
        )
        assert result["epe_mean_mm"] == pytest.approx(0.0, abs=1e-6)
        assert result["epe_p95_mm"] == pytest.approx(0.0, abs=1e-6)
        assert result["epe_before_mean_mm"] == pytest.approx(np.hypot(*SHIFT), abs=1e-6)
        assert result["jacobian_nonpositive_percent"] == 0.0
        assert result["jacobian_min"] == pytest.approx(1.0, abs=1e-9)
        assert result["std_log_jacobian"] == pytest.approx(0.0, abs=1e-9)
        assert result["ncc_after"] > result["ncc_before"]
        assert "seconds" not in result  # nothing was registered
    printed = capsys.readouterr().out
    assert "epe_mean_mm" in printed and "ncc_after" in printed


def test_a_plain_translation_transform_file_is_sampled_on_the_fixed_grid(pair):
    tmp_path, *_ = pair
    sitk.WriteTransform(sitk.TranslationTransform(2, SHIFT), str(tmp_path / "translation.tfm"))
    result = _evaluate(
        tmp_path, "--transform", str(tmp_path / "translation.tfm"), "--true-field", str(tmp_path / "true.nrrd")
    )
    assert result["epe_max_mm"] == pytest.approx(0.0, abs=1e-6)


def _slab(reference, start, width=8):
    """Label 1 on index-x columns [start, start + width), every row."""
    array = np.zeros(tuple(reversed(reference.GetSize())), np.uint8)
    array[:, start : start + width] = 1
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def test_shifted_label_slab_gives_the_known_dice_and_hd95(pair, tmp_path):
    _, fixed, _, _ = pair
    k = 2  # voxels along index x = 3 mm (spacing 1.5) along physical +y (the direction's first column)
    sitk.WriteImage(_slab(fixed, 20), str(tmp_path / "fixed_labels.nrrd"))
    sitk.WriteImage(_slab(fixed, 20 + k), str(tmp_path / "moving_labels.nrrd"))
    # u = +k voxels along index x in physical terms: direction column 0 * spacing 0 * k = (0, 3) mm
    offset = np.array(DIRECTION).reshape(2, 2)[:, 0] * SPACING[0] * k
    sitk.WriteTransform(sitk.TranslationTransform(2, offset.tolist()), str(tmp_path / "labels.tfm"))
    labels = [
        "--fixed-labels",
        str(tmp_path / "fixed_labels.nrrd"),
        "--moving-labels",
        str(tmp_path / "moving_labels.nrrd"),
    ]
    result = _evaluate(tmp_path, "--transform", str(tmp_path / "labels.tfm"), *labels)
    assert result["dice_before_mean"] == pytest.approx((8 - k) / 8)
    assert result["hd95_before_mean_mm"] == pytest.approx(k * SPACING[0])
    assert result["dice_mean"] == pytest.approx(1.0)
    assert result["hd95_mean_mm"] == pytest.approx(0.0)
    assert result["dice_per_label"] == {"1": pytest.approx(1.0)}
    # the wrong sign would double the offset
    sitk.WriteTransform(sitk.TranslationTransform(2, (-offset).tolist()), str(tmp_path / "wrong.tfm"))
    wrong = _evaluate(tmp_path, "--transform", str(tmp_path / "wrong.tfm"), *labels)
    assert wrong["dice_mean"] == pytest.approx((8 - 2 * k) / 8)


def test_translated_landmarks_give_the_known_tre(pair):
    tmp_path, fixed, _, _ = pair
    points = np.array(
        [fixed.TransformContinuousIndexToPhysicalPoint((x, y)) for x, y in [(10, 12), (30, 40), (50, 20)]]
    )
    np.savetxt(tmp_path / "fixed.csv", points, delimiter=",", header="x,y", comments="")
    np.savetxt(tmp_path / "moving.csv", points + SHIFT, delimiter=",", header="x,y", comments="")
    landmarks = ["--fixed-landmarks", str(tmp_path / "fixed.csv"), "--moving-landmarks", str(tmp_path / "moving.csv")]
    result = _evaluate(tmp_path, "--transform", str(tmp_path / "transform.h5"), *landmarks)
    assert result["tre_mean_mm"] == pytest.approx(0.0, abs=1e-6)
    assert result["tre_before_mean_mm"] == pytest.approx(np.hypot(*SHIFT))
    assert result["n_points"] == 3


def test_mask_restricts_the_end_point_error(pair):
    tmp_path, fixed, _, true = pair
    half = np.zeros(tuple(reversed(fixed.GetSize())), np.uint8)
    half[:, : half.shape[1] // 2] = 1
    estimate = sitk.GetArrayFromImage(true) * half[..., None]  # right where the mask is, zero elsewhere
    estimate_image = sitk.GetImageFromArray(estimate, isVector=True)
    estimate_image.CopyInformation(fixed)
    write_image(estimate_image, tmp_path / "estimate.nrrd")
    mask = sitk.GetImageFromArray(half)
    mask.CopyInformation(fixed)
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
    common = ["--transform", str(tmp_path / "estimate.nrrd"), "--true-field", str(tmp_path / "true.nrrd")]
    inside = _evaluate(tmp_path, *common, "--mask", str(tmp_path / "mask.nrrd"))
    everywhere = _evaluate(tmp_path, *common)
    assert inside["epe_mean_mm"] == pytest.approx(0.0, abs=1e-6)
    assert everywhere["epe_mean_mm"] == pytest.approx(np.hypot(*SHIFT) * (1 - half.mean()), rel=1e-6)


def test_registering_reports_seconds_and_the_required_keys(pair, tiny_weights):
    tmp_path, *_ = pair
    result = _evaluate(tmp_path, "--weights", str(tiny_weights), "--true-field", str(tmp_path / "true.nrrd"))
    for key in (
        "epe_mean_mm",
        "epe_p95_mm",
        "jacobian_nonpositive_percent",
        "std_log_jacobian",
        "ncc_before",
        "ncc_after",
        "seconds",
    ):
        assert isinstance(result[key], float), key
    assert result["seconds"] > 0
    assert set(result["seconds_per_stage"]) >= {"load", "preprocess", "network", "postprocess", "total"}


def test_half_given_pairs_and_missing_files_are_reported(pair, capsys):
    tmp_path, *_ = pair
    base = [
        "evaluate",
        "--fixed",
        str(tmp_path / "fixed.nrrd"),
        "--moving",
        str(tmp_path / "moving.nrrd"),
        "--output-json",
        str(tmp_path / "e.json"),
        "--transform",
        str(tmp_path / "transform.h5"),
    ]
    assert main([*base, "--fixed-labels", str(tmp_path / "fixed.nrrd")]) == 2
    assert "--fixed-labels and --moving-labels go together" in capsys.readouterr().err
    assert main([*base, "--true-field", str(tmp_path / "missing.nrrd")]) == 2
    assert "missing.nrrd" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
