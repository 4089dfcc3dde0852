"""The working-grid policy: the network's grid from the spacing the weights handle, the refinement's grid,
an explicit working_spacing, and what report.json records."""

import numpy as np
import pytest
import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib.data.deformations import deform_image
from DIRVNetLib.io.resample import resample_isotropic
from DIRVNetLib.io.weights import load_weight_set, resolve
from DIRVNetLib.registration.grids import choose_grids, handled_spacings, training_spacing


@pytest.fixture(scope="module")
def metadata():
    """The bundled weight sets' metadata by dimension (3D trained at 2 mm, 2D at 1 mm)."""
    return {d: load_weight_set(resolve(None, d)).metadata for d in (2, 3)}


def _image(spacing):
    image = sitk.Image([8] * len(spacing), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    return image


@pytest.mark.parametrize(
    ("spacing", "network"),
    [
        ((1.0, 1.0, 1.0), 2.0),  # finer than the 3D weights handle: their 2 mm
        ((2.0, 2.0, 2.0), None),  # the image's own grid
        ((2.0, 2.0, 3.0), None),  # isotropic at its finest spacing, 2 mm: handled
        ((1.0, 1.0, 3.0), 2.0),  # finest 1 mm: not handled
        ((1.5, 1.5, 1.5), None),
        ((4.0, 4.0, 4.0), 2.0),  # coarser than handled
        ((1.0, 1.0), None),  # the 2D weights were trained at 1 mm
        ((2.0, 2.0), 1.0),
        ((0.9, 1.2), None),
    ],
)
def test_the_network_grid_is_one_the_weights_handle(metadata, spacing, network):
    choice = choose_grids(_image(spacing), metadata[len(spacing)])
    assert choice.network_spacing == network
    assert choice.refinement_spacing is None and choice.warnings == ()


def test_training_spacing_is_read_from_the_metadata(metadata):
    assert training_spacing(metadata[3]) == 2.0 and training_spacing(metadata[2]) == 1.0
    assert handled_spacings(metadata[3]) == pytest.approx((2.0 / 1.5, 3.0))
    assert training_spacing({"training": {"steps": 0}}) is None  # trained on pairs: unknown, any grid
    assert choose_grids(_image((1.0, 1.0, 1.0)), {}).network_spacing is None
    assert training_spacing({**metadata[3], "network_spacing_mm": 1.0}) == 1.0  # stated explicitly


def test_an_explicit_working_spacing_wins_and_is_warned_about_outside_the_handled_range(metadata):
    image = _image((1.0, 1.0, 1.0))
    inside = choose_grids(image, metadata[3], working_spacing=2.5, refinement_spacing=1.0)
    assert (inside.network_spacing, inside.refinement_spacing, inside.warnings) == (2.5, 1.0, ())
    outside = choose_grids(image, metadata[3], working_spacing=1.0)
    assert outside.network_spacing == 1.0
    assert len(outside.warnings) == 1 and "working_spacing 1 mm lies outside the 1.3-3 mm" in outside.warnings[0]


def _same_geometry(a, b):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing())
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin())
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection())


@pytest.fixture(scope="module")
def pair_2mm(t1_slice):
    """The 2D T1 slice at 2 mm (the benchmark's tiny case), deformed by up to 4 mm."""
    moving = resample_isotropic(t1_slice, 2.0)
    moving.SetOrigin((-30.0, 12.0))
    fixed, true = deform_image(moving, 4.0, 1)
    return fixed, moving, true


def test_a_2mm_slice_is_registered_on_the_weights_grid_and_returned_on_its_own(pair_2mm):
    fixed, moving, _ = pair_2mm
    result = DIRVNetLib.register(fixed, moving, refine_steps=3)
    report = result.report
    assert report["working_grid"]["spacing_mm"] == [1.0, 1.0]
    assert report["refinement_grid"] == report["working_grid"]
    assert report["weights_handle_spacing_mm"] == pytest.approx([1 / 1.5, 1.5])
    assert report["warnings"] == []
    _same_geometry(result.displacement, fixed)
    _same_geometry(result.warped, fixed)


def test_refinement_spacing_and_an_explicit_working_spacing_are_used_and_reported(pair_2mm, tmp_path):
    import json

    from DIRVNetLib.cli.main import main

    fixed, moving, _ = pair_2mm
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    out = tmp_path / "out"
    files = ["--fixed", str(tmp_path / "fixed.nrrd"), "--moving", str(tmp_path / "moving.nrrd"), "--output-dir"]
    flags = ["--refine-steps", "3", "--refinement-spacing", "2", "--no-fallback", "--no-figure", "--no-progress"]
    assert main(["register", *files, str(out), *flags]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["working_grid"]["spacing_mm"] == [1.0, 1.0]
    assert report["refinement_grid"]["spacing_mm"] == [2.0, 2.0]
    assert report["refinement_grid"]["size"] == list(fixed.GetSize())
    _same_geometry(sitk.ReadImage(str(out / "displacement.nrrd")), fixed)
    explicit = DIRVNetLib.register(fixed, moving, mode="fast", working_spacing=2.0, fallback=False)
    assert explicit.report["working_grid"]["spacing_mm"] == [2.0, 2.0] and explicit.report["refinement_grid"] is None
    assert any("working_spacing 2 mm lies outside" in w for w in explicit.report["warnings"])


def test_the_2mm_slice_is_registered_better_than_doing_nothing(pair_2mm):
    """The tiny benchmark case's pair: on the weights' 1 mm grid the default lowers the end-point error."""
    from DIRVNetLib.metrics import endpoint_error

    fixed, moving, true = pair_2mm
    result = DIRVNetLib.register(fixed, moving, fallback=False)
    identity = sitk.Image(true.GetSize(), sitk.sitkVectorFloat64, 2)
    identity.CopyInformation(true)
    mask = sitk.BinaryThreshold(fixed, 10.0, 1e9)
    before = endpoint_error(identity, true, mask=mask)["epe_mean_mm"]
    after = endpoint_error(result.displacement, true, mask=mask)["epe_mean_mm"]
    assert after < 0.5 * before, (before, after)
    assert result.report["ncc_after"] > result.report["ncc_before"]


def test_a_1mm_volume_runs_the_network_at_2mm_and_returns_the_field_at_1mm(t1_volume):
    moving = resample_isotropic(t1_volume[40:80, 40:80, 20:36], 1.0)
    fixed, _ = deform_image(moving, 3.0, 2)
    result = DIRVNetLib.register(fixed, moving, mode="fast")
    assert result.report["working_grid"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert result.report["refinement_grid"] is None
    _same_geometry(result.displacement, fixed)
    assert result.report["ncc_after"] > result.report["ncc_before"]
