"""Registration with the bundled weights on real MR deformed by known smooth fields; the CLI."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib.cli.main import main
from DIRVNetLib.data.deformations import deform_image as deform
from DIRVNetLib.errors import RegistrationCancelled
from DIRVNetLib.io.transforms import read_displacement
from DIRVNetLib.metrics import endpoint_error, jacobian_statistics

# The bundled weights must at least halve the mean end-point error on unseen real MR (issue 2).
REQUIRED_EPE_FACTOR = 2.0


def _identity_like(displacement):
    zero = sitk.Image(displacement.GetSize(), sitk.sitkVectorFloat64, displacement.GetDimension())
    zero.CopyInformation(displacement)
    return zero


@pytest.mark.parametrize("setting, enabled", [(None, "True"), ("0", "False")])
def test_importing_dirvnet_turns_on_onednn_unless_the_user_chose(setting, enabled):
    """oneDNN's CPU kernels (2x the 3D network's speed on AVX2 CPUs) are on once DIRVNetLib is imported
    before TensorFlow, and a user's own TF_ENABLE_ONEDNN_OPTS is kept."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = (
        "import DIRVNetLib.registration.api\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == enabled


@pytest.fixture(scope="module")
def deformed_volume(t1_volume):
    """The real T1 (2x2x3 mm, never seen in training) deformed by a smooth field of at most 8 mm."""
    fixed, true = deform(t1_volume, 8.0, seed=11)
    return fixed, t1_volume, true


@pytest.mark.slow
def test_3d_registration_halves_the_end_point_error(deformed_volume, brain_mask):
    fixed, moving, true = deformed_volume
    moving_before = sitk.GetArrayFromImage(moving).copy()
    seen = []
    result = DIRVNetLib.register(fixed, moving, progress=seen.append)
    before = endpoint_error(_identity_like(true), true, mask=brain_mask)["epe_mean_mm"]
    after = endpoint_error(result.displacement, true, mask=brain_mask)["epe_mean_mm"]
    assert after * REQUIRED_EPE_FACTOR <= before, (before, after)
    assert result.report["jacobian_nonpositive_percent"] == 0.0
    assert result.report["ncc_after"] > result.report["ncc_before"]
    assert result.displacement.GetSize() == fixed.GetSize() and result.displacement.GetOrigin() == fixed.GetOrigin()
    assert result.report["working_grid"]["spacing_mm"] == [2.0, 2.0, 2.0]  # anisotropic 2x2x3 -> isotropic
    # the default in 3D: a coarse pass, the network's pass without its finest level, then the refinement
    assert result.report["coarse_pass"] == 2.0 and result.report["network_finest_level"] == 1
    assert [p.done for p in seen] == list(range(1, seen[0].total + 1))
    assert not any(p.level == 0 for p in seen if p.stage.startswith("level"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(moving), moving_before)  # input untouched


def test_2d_registration_halves_the_end_point_error(t1_slice):
    moving = sitk.Image(t1_slice)
    moving.SetSpacing((1.0, 1.0))
    fixed, true = deform(moving, 6.0, seed=3)
    result = DIRVNetLib.register(fixed, moving)
    mask = sitk.BinaryThreshold(moving, 10.0, 1e9)  # the head, not the empty background
    before = endpoint_error(_identity_like(true), true, mask=mask)["epe_mean_mm"]
    after = endpoint_error(result.displacement, true, mask=mask)["epe_mean_mm"]
    assert after * REQUIRED_EPE_FACTOR <= before, (before, after)
    assert jacobian_statistics(result.displacement)["jacobian_nonpositive_percent"] == 0.0


def test_refinement_and_intermediate_fields(t1_slice):
    moving = sitk.Image(t1_slice)
    fixed, _ = deform(moving, 6.0, seed=4)
    result = DIRVNetLib.register(fixed, moving, refinement_rounds=2, keep_intermediate=True, mode="fast")
    residuals = result.report["residual_mse_per_round"]
    assert all(b < a for a, b in zip(residuals, residuals[1:]))
    rounds = result.report["refinement_rounds_used"]
    config = DIRVNetLib.io.weights.load_weight_set(result.report["weights"]).config
    assert len(result.intermediate) >= (1 + rounds) * config.levels * config.units
    first_round_last = [d for r, level, unit, d in result.intermediate if r == 0][-1]
    assert first_round_last.GetSize() == fixed.GetSize()


def test_whole_graph_passes_give_the_per_unit_result(t1_slice):
    moving = sitk.Image(t1_slice)
    fixed, _ = deform(moving, 6.0, seed=4)
    per_unit = DIRVNetLib.register(fixed, moving, refinement_rounds=1, progress=lambda p: None, mode="fast")
    whole = DIRVNetLib.register(fixed, moving, refinement_rounds=1, whole_graph=True, mode="fast")
    assert whole.report["whole_graph"] and not per_unit.report["whole_graph"]
    assert whole.report["residual_mse_per_round"] == per_unit.report["residual_mse_per_round"]
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(whole.displacement), sitk.GetArrayFromImage(per_unit.displacement), rtol=0, atol=1e-5
    )
    for watched in ({"progress": print}, {"cancel": threading.Event()}, {"keep_intermediate": True}):
        with pytest.raises(ValueError, match="whole_graph runs no code between units"):
            DIRVNetLib.register(fixed, moving, whole_graph=True, **watched)


def test_coarse_pass_registers_on_a_coarser_grid_first(t1_slice, tmp_path):
    moving = sitk.Image(t1_slice)
    moving.SetSpacing((1.0, 1.0))
    fixed, true = deform(moving, 8.0, seed=3)
    seen = []
    result = DIRVNetLib.register(fixed, moving, coarse_pass=1.5, progress=seen.append, mode="fast")  # units only
    mask = sitk.BinaryThreshold(moving, 10.0, 1e9)
    before = endpoint_error(_identity_like(true), true, mask=mask)["epe_mean_mm"]
    after = endpoint_error(result.displacement, true, mask=mask)["epe_mean_mm"]
    assert after * REQUIRED_EPE_FACTOR <= before, (before, after)
    assert result.report["jacobian_nonpositive_percent"] == 0.0 and result.report["coarse_pass"] == 1.5
    # Two whole passes, the coarse one first, each reported unit by unit.
    units = len(seen) // 2
    assert [p.done for p in seen] == list(range(1, seen[0].total + 1)) and seen[0].total == 2 * units
    assert all(p.stage.startswith("coarse pass, ") for p in seen[:units])
    assert not any(p.stage.startswith("coarse pass") for p in seen[units:])
    # Deterministic (the coarse images are read while alive; the same call gives the same field).
    again = DIRVNetLib.register(fixed, moving, coarse_pass=1.5, mode="fast")
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(again.displacement), sitk.GetArrayFromImage(result.displacement)
    )
    plain = DIRVNetLib.register(fixed, moving, mode="fast")  # the coarse field is used: another result than one pass
    assert np.abs(sitk.GetArrayFromImage(plain.displacement) - sitk.GetArrayFromImage(result.displacement)).max() > 0.1
    for bad in (0.5, -2, float("inf"), "2", True):
        with pytest.raises(ValueError, match="coarse_pass must be a finite factor >= 1"):
            DIRVNetLib.register(fixed, moving, coarse_pass=bad)
    with pytest.raises(ValueError, match="keep_intermediate cannot be combined with coarse_pass"):
        DIRVNetLib.register(fixed, moving, coarse_pass=2.0, keep_intermediate=True)
    # The command line passes it through.
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    main(
        [
            "register",
            "--fixed",
            str(tmp_path / "fixed.nrrd"),
            "--moving",
            str(tmp_path / "moving.nrrd"),
            "--output-dir",
            str(tmp_path / "out"),
            "--coarse-pass",
            "1.5",
            "--mode",
            "fast",
            "--no-figure",
            "--no-progress",
        ]
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text())["coarse_pass"] == 1.5


def test_cancel_stops_within_one_unit(t1_slice):
    moving = sitk.Image(t1_slice)
    fixed, _ = deform(moving, 4.0, seed=5)
    cancel = threading.Event()
    seen = []

    def progress(info):
        seen.append(info)
        if info.done == 3:
            cancel.set()

    with pytest.raises(RegistrationCancelled):
        DIRVNetLib.register(fixed, moving, progress=progress, cancel=cancel)
    assert len(seen) == 3


@pytest.mark.slow
def test_cli_register_writes_outputs_that_recover_the_field(deformed_volume, brain_mask, tmp_path, capsys):
    fixed, moving, true = deformed_volume
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nii.gz"))
    out = tmp_path / "out"
    code = main(
        [
            "register",
            "--fixed",
            str(tmp_path / "fixed.nrrd"),
            "--moving",
            str(tmp_path / "moving.nii.gz"),
            "--output-dir",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "NCC" in printed and str(out) in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "displacement.nrrd",
        "qa.png",
        "report.json",
        "transform.h5",
        "warped.nrrd",
    ]
    report = json.loads((out / "report.json").read_text())
    assert {"load", "preprocess", "network", "postprocess", "write"} <= set(report["seconds"])
    assert {
        "ncc_before",
        "ncc_after",
        "mse_before",
        "mse_after",
        "jacobian_min",
        "jacobian_nonpositive_percent",
        "std_log_jacobian",
    } <= set(report)
    from_file = read_displacement(out / "transform.h5")
    before = endpoint_error(_identity_like(true), true, mask=brain_mask)["epe_mean_mm"]
    after = endpoint_error(from_file, true, mask=brain_mask)["epe_mean_mm"]
    assert after * REQUIRED_EPE_FACTOR <= before
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(sitk.ReadImage(str(out / "displacement.nrrd"))),
        sitk.GetArrayFromImage(from_file),
        atol=1e-5,
    )
    warped = sitk.ReadImage(str(out / "warped.nrrd"))
    assert warped.GetSize() == fixed.GetSize()
