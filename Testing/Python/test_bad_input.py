"""Bad input gets a clear error naming the file or argument; inputs and outputs stay whole."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

import DIRVNetLib
from DIRVNetLib.cli.main import main
from DIRVNetLib.errors import InputImageError, InsufficientMemoryError, WeightSetError
from DIRVNetLib.io.atomic import atomic_path
from DIRVNetLib.io.weights import config_sha256, load_weight_set, resolve
from DIRVNetLib.registration import memory

from conftest import shifted


@pytest.fixture(scope="module")
def small_pair(t1_slice):
    return t1_slice, shifted(t1_slice, 3.0)


def test_2d_against_3d(t1_slice, t1_volume):
    with pytest.raises(InputImageError, match="fixed image is 2D but moving image is 3D"):
        DIRVNetLib.register(t1_slice, t1_volume)


def test_vector_image_is_refused(small_pair, tmp_path):
    rgb = sitk.Compose(*[sitk.Cast(small_pair[0], sitk.sitkUInt8)] * 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.png"))
    with pytest.raises(InputImageError, match=r"moving image .*rgb.png has 3 components per voxel"):
        DIRVNetLib.register(small_pair[0], tmp_path / "rgb.png")


def test_4d_image_is_refused(small_pair):
    with pytest.raises(InputImageError, match="fixed image is 4D"):
        DIRVNetLib.register(sitk.Image([4, 4, 4, 4], sitk.sitkFloat32), small_pair[1])


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_constant_or_empty_image_is_refused(small_pair, value):
    constant = sitk.Image(small_pair[0].GetSize(), sitk.sitkFloat32) + value
    with pytest.raises(InputImageError, match="moving image is constant"):
        DIRVNetLib.register(small_pair[0], constant)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_refused(small_pair, bad):
    array = sitk.GetArrayFromImage(small_pair[0])
    array[10, 10] = bad
    image = sitk.GetImageFromArray(array)
    with pytest.raises(InputImageError, match="fixed image has 1 NaN or Inf voxels"):
        DIRVNetLib.register(image, small_pair[1])


def test_images_that_do_not_overlap_are_refused(small_pair, t1_volume):
    fixed, moving = small_pair
    far = sitk.Image(moving)
    far.SetOrigin((fixed.GetOrigin()[0] + fixed.GetSize()[0] * fixed.GetSpacing()[0] + 5.0, fixed.GetOrigin()[1]))
    with pytest.raises(InputImageError, match="the moving image does not overlap the fixed image in physical space"):
        DIRVNetLib.register(fixed, far)
    # Oblique 3D: turned 0.4 rad about physical z at its origin and moved along z (the volume's index y
    # axis, 256 mm): just beyond the fixed volume on either side -> refused; by half -> about a third
    # of the fixed extent covered; 8 mm short of the end -> a sliver (2% > 1%) still accepted.
    from DIRVNetLib.registration.geometry import check_overlap

    rotated = sitk.Image(t1_volume)
    turn = np.array(sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.4).GetMatrix()).reshape(3, 3)
    rotated.SetDirection((turn @ np.array(t1_volume.GetDirection()).reshape(3, 3)).ravel())
    extent = t1_volume.GetSize()[1] * t1_volume.GetSpacing()[1]
    for offset, covered in ((extent + 3.0, 0.0), (extent / 2, 0.32), (extent - 8.0, 0.02), (-extent - 3.0, 0.0)):
        rotated.SetOrigin(np.add(t1_volume.GetOrigin(), (0.0, 0.0, offset)))
        if covered:
            assert check_overlap(t1_volume, rotated) == pytest.approx(covered, abs=0.005)
        else:
            with pytest.raises(InputImageError, match="does not overlap"):
                check_overlap(t1_volume, rotated)


def test_images_that_only_touch_are_refused(small_pair):
    """Edge to edge (voxel edges meet), or overlapping at a corner by 4x4 of 181x217 voxels (< 1%)."""
    fixed = small_pair[0]
    extent = np.multiply(fixed.GetSize(), fixed.GetSpacing())
    for shift, message in (((extent[0], 0.0), "does not overlap"), (extent - 4.0, r"covers only 0.\d+% of the fixed")):
        touching = sitk.Image(fixed)
        touching.SetOrigin(np.add(fixed.GetOrigin(), shift))
        with pytest.raises(InputImageError, match=message):
            DIRVNetLib.register(fixed, touching)


def test_weights_of_the_wrong_dimension(small_pair):
    with pytest.raises(WeightSetError, match="is for 3D images but the images are 2D"):
        DIRVNetLib.register(*small_pair, weights="mr3d")


def test_missing_weight_set(small_pair, tmp_path):
    with pytest.raises(WeightSetError, match="weight set 'nonexistent' not found"):
        DIRVNetLib.register(*small_pair, weights="nonexistent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightSetError, match="config.json is missing"):
        DIRVNetLib.register(*small_pair, weights=tmp_path / "empty")


def test_corrupt_weight_file_is_refused(small_pair, tmp_path):
    copy = tmp_path / "mr2d"
    shutil.copytree(resolve("mr2d", 2), copy)
    intact = load_weight_set(copy).weights  # unpacked once, then reused while the file's checksum holds
    name = next(iter(intact))
    with pytest.raises(ValueError, match="read-only"):
        intact[name][...] = 0.0
    assert np.array_equal(load_weight_set(copy).weights[name], np.load(copy / "weights.npz")[name])
    data = bytearray((copy / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(WeightSetError, match="weights.npz is corrupt or was changed"):
        DIRVNetLib.register(*small_pair, weights=copy)


def test_changed_config_is_refused(tmp_path):
    """The checksum covers config.json's values (data_range changes the result), not its formatting."""
    copy = tmp_path / "mr2d"
    shutil.copytree(resolve("mr2d", 2), copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config, indent=None).replace(",", ",\r\n"))  # reformatted: loads
    load_weight_set(copy)
    config["data_range"] *= 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightSetError, match=r"config .*config.json was changed: sha256"):
        load_weight_set(copy)


def test_weights_that_do_not_fit_their_config(tmp_path):
    copy = tmp_path / "mr2d"
    shutil.copytree(resolve("mr2d", 2), copy)
    config = json.loads((copy / "config.json").read_text())
    config["data_filters"] += 1
    (copy / "config.json").write_text(json.dumps(config))
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["config_sha256"] = config_sha256(config)  # an edit that also updated the checksum ...
    (copy / "metadata.json").write_text(json.dumps(metadata))
    weight_set = load_weight_set(copy)  # ... loads ...
    image = sitk.GetImageFromArray(np.random.default_rng(0).uniform(size=(40, 40)).astype(np.float32))
    with pytest.raises(WeightSetError, match="weights do not match the network configuration"):
        DIRVNetLib.register(image, image, weights=weight_set.path)  # ... and is refused when built


def test_weight_set_without_config_checksum_still_loads(tmp_path, caplog):
    """Sets saved before config_sha256 existed load, with a warning that the config is not verified."""
    copy = tmp_path / "old"
    shutil.copytree(resolve("mr2d", 2), copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    del metadata["config_sha256"]
    (copy / "metadata.json").write_text(json.dumps(metadata))
    assert load_weight_set(copy).config.ndim == 2
    assert "has no config_sha256" in caplog.text


def test_unreadable_file(small_pair, tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(InputImageError, match=r"moving image .*broken.nii.gz is unreadable"):
        DIRVNetLib.register(small_pair[0], tmp_path / "broken.nii.gz")
    with pytest.raises(InputImageError, match=r"fixed image .*missing.nrrd does not exist"):
        DIRVNetLib.register(tmp_path / "missing.nrrd", small_pair[1])


def test_too_large_for_memory(small_pair, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1024**2)  # a machine with 1 MiB free
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* GiB of memory but only 0.0 GiB is free"):
        DIRVNetLib.register(*small_pair)


def test_cli_reports_errors_without_writing_outputs(tmp_path, capsys, small_pair):
    sitk.WriteImage(small_pair[0], str(tmp_path / "fixed.nrrd"))
    code = main(
        [
            "register",
            "--fixed",
            str(tmp_path / "fixed.nrrd"),
            "--moving",
            str(tmp_path / "nope.nrrd"),
            "--output-dir",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "nope.nrrd does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
