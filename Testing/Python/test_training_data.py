"""Training data (bias field, folders of volumes and pairs, tf.data pipelines in 2D and 3D), the loss
terms and the learning-rate schedules."""

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import tensorflow as tf

from DIRVNetLib.data.folders import PairFolderSampler, expand_volume_sources, find_pairs
from DIRVNetLib.data.images import augment_intensity, bias_field
from DIRVNetLib.data.pairs import PairSampler, step_dataset, thick_slices
from DIRVNetLib.errors import InputImageError
from DIRVNetLib.io.images import load_training_volume
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.preprocessing import normalise_intensity
from DIRVNetLib.training.config import ScheduleConfig
from DIRVNetLib.training.losses import (
    LossConfig,
    diffusion,
    folding,
    jacobian_determinant,
    level_epe,
    local_ncc,
    overshoot,
    registration_loss,
    supervised_epe,
)
from DIRVNetLib.training.schedule import learning_rate

from conftest import DATA, write_pairs


def test_normalise_intensity_maps_robust_percentiles_to_the_unit_range():
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz")))
    before = t1.copy()
    out = normalise_intensity(t1)
    assert out.dtype == np.float32 and out.shape == t1.shape and np.array_equal(t1, before)
    lo, hi = np.percentile(t1, [1.0, 99.0])
    expected = np.clip((t1.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    assert np.abs(out - expected).max() < 1e-6  # float32 arithmetic, same mapping
    assert out.min() == 0.0 and out.max() == 1.0 and 0.0 < np.mean(out) < 1.0
    assert np.count_nonzero(out == 1.0) >= 0.005 * out.size  # the top percent is clipped
    assert np.all(normalise_intensity(np.full((4, 5), 7.0)) == 0.0)  # constant: no division by zero


def test_bias_field_is_smooth_multiplicative_and_keeps_the_old_random_stream():
    rng = np.random.default_rng(0)
    field = bias_field((40, 48), rng, strength=0.3)
    assert field.shape == (40, 48) and np.all(np.abs(np.log(field)) <= 0.3 + 1e-5)
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.05  # smooth
    image = np.full((16, 16), 0.5, np.float32)
    # bias=0 draws nothing extra: the stream of older runs is unchanged.
    a = augment_intensity(image, np.random.default_rng(1))
    b = augment_intensity(image, np.random.default_rng(1), bias=0.0)
    np.testing.assert_array_equal(a, b)
    biased = augment_intensity(image, np.random.default_rng(1), noise=0.0, gamma=0.0, bias=0.5)
    assert biased.std() > 0.01 and np.all((biased >= 0) & (biased <= 1))


@pytest.mark.parametrize("shape", [[32, 32], [16, 16, 16]])
def test_synthetic_pairs_as_a_deterministic_tf_data_pipeline(shape):
    sampler = PairSampler(shape, 3.0, ["chessboard", "shapes"], bias=0.3)
    batches = list(step_dataset(sampler, 2, seed=5, start=3, stop=5))
    assert len(batches) == 2
    fixed, moving, field = batches[0]
    assert fixed.shape == (2, *shape, 1) and field.shape == (2, *shape, len(shape))
    again = PairSampler(shape, 3.0, ["chessboard", "shapes"], bias=0.3).batch_for_step(5, 3, 2)
    np.testing.assert_array_equal(fixed.numpy(), again[0])
    assert float(tf.reduce_max(tf.norm(field, axis=-1))) <= 3.0 + 1e-4


def test_fewer_control_points_draw_smoother_fields():
    def roughness(points):
        sampler = PairSampler([48, 48], 4.0, ["chessboard"], affine_scale=0.0, control_points=points)
        fields = sampler.batch_for_step(0, 0, 6)[2]
        return np.mean(np.abs(np.diff(fields, 2, axis=1))) / np.mean(np.linalg.norm(fields, axis=-1))

    assert roughness((3, 3)) < 0.5 * roughness((8, 8))
    mixed = PairSampler([48, 48], 4.0, ["chessboard"], control_points=(3, 5))
    assert mixed.summary()["control_points"] == [3, 5]
    with pytest.raises(ValueError, match="control_points"):
        PairSampler([48, 48], 4.0, ["chessboard"], control_points=(5, 3))


def test_thick_slices_blur_one_axis_of_both_images_alike():
    image = np.random.default_rng(0).uniform(size=(24, 20, 16)).astype(np.float32)
    axes = set()
    for seed in range(12):
        a, b = thick_slices((image, image.copy()), np.random.default_rng(seed), 4.0)
        np.testing.assert_array_equal(a, b)  # one axis and width for the pair
        assert a.dtype == np.float32 and a.shape == image.shape
        assert abs(a.mean() - image.mean()) < 0.01
        # An image constant along the blurred axis, and only along it, comes out unchanged.
        flats = [np.repeat(image.take([0], axis=k), image.shape[k], axis=k) for k in range(3)]
        kept = [
            k
            for k, flat in enumerate(flats)
            if np.allclose(thick_slices((flat, flat), np.random.default_rng(seed), 4.0)[0], flat, atol=1e-6)
        ]
        if np.allclose(a, image, atol=1e-6):  # a width that rounds to no blur
            assert kept == [0, 1, 2]
            continue
        assert len(kept) == 1
        axis = kept[0]
        axes.add(axis)
        ratios = [np.abs(np.diff(a, axis=k)).mean() / np.abs(np.diff(image, axis=k)).mean() for k in range(3)]
        assert int(np.argmin(ratios)) == axis  # the differences along that axis shrink most
    assert axes == {0, 1, 2}


def test_slice_thickness_off_keeps_the_random_stream():
    plain = PairSampler([32, 32, 32], 3.0, ["chessboard"]).batch_for_step(0, 5, 2)
    off = PairSampler([32, 32, 32], 3.0, ["chessboard"], slice_thickness=1.0).batch_for_step(0, 5, 2)
    thick = PairSampler([32, 32, 32], 3.0, ["chessboard"], slice_thickness=3.0).batch_for_step(0, 5, 2)
    for x, y in zip(plain, off):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(thick[2][0], plain[2][0])  # the first pair's field is drawn before its slices
    assert not np.allclose(thick[0], plain[0])
    assert PairSampler([32, 32, 32], 3.0, ["chessboard"], slice_thickness=3.0).summary()["slice_thickness"] == 3.0
    with pytest.raises(ValueError, match="slice_thickness"):
        PairSampler([32, 32, 32], 3.0, ["chessboard"], slice_thickness=0.5)


def test_volume_folders_expand_to_their_images(tmp_path, t1_slice):
    sitk.WriteImage(t1_slice, str(tmp_path / "one.nrrd"))
    sitk.WriteImage(t1_slice, str(tmp_path / "two.nii.gz"))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.split("/")[-1] for p in expand_volume_sources([str(tmp_path)])] == ["one.nrrd", "two.nii.gz"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="holds no images"):
        expand_volume_sources([str(tmp_path / "empty")])


def write_dicom_series(image, folder):
    """``image`` (3D) as a DICOM series of int16 slices in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_k = image[:, :, k]
        position = "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, value in (
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.4242"),
            ("0020|0013", str(k + 1)),
            ("0008|0060", "MR"),
            ("0020|0032", position),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0028|0030", "{:g}\\{:g}".format(*image.GetSpacing()[:2])),
            ("0018|0050", str(image.GetSpacing()[2])),
        ):
            slice_k.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_k)
    return folder


def test_dicom_series_folders_serve_as_volumes_and_pair_members(tmp_path, t1_volume):
    small = t1_volume[::4, ::4, ::4]
    write_dicom_series(small, tmp_path / "volumes" / "series")
    sitk.WriteImage(small, str(tmp_path / "volumes" / "file.nii.gz"))
    sources = expand_volume_sources([str(tmp_path / "volumes")])
    assert [s.split("/")[-1] for s in sources] == ["file.nii.gz", "series"]
    np.testing.assert_array_equal(load_training_volume(sources[1]), sitk.GetArrayFromImage(small))
    pairs = tmp_path / "pairs"
    write_dicom_series(small, pairs / "p_fixed")
    sitk.WriteImage(small, str(pairs / "p_moving.nrrd"))
    assert [(n, f.name, m.name) for n, f, m in find_pairs(pairs)] == [("p", "p_fixed", "p_moving.nrrd")]
    assert PairFolderSampler(pairs, [16, 16, 16]).batch(1)[0].shape == (1, 16, 16, 16, 1)


@pytest.mark.parametrize("layout", ["suffix", "subfolders"])
def test_pair_folders_give_unsupervised_2d_patches(tmp_path, t1_slice, layout):
    folder = write_pairs(tmp_path / "pairs", t1_slice, layout=layout)
    assert [p[0] for p in find_pairs(folder)] == ["a", "b"]
    sampler = PairFolderSampler(folder, [32, 32], seed=0)
    fixed, moving, field = next(iter(step_dataset(sampler, 3, seed=0)))
    assert fixed.shape == (3, 32, 32, 1) and not sampler.supervised
    assert float(tf.reduce_max(tf.abs(field))) == 0.0
    assert float(tf.reduce_mean(tf.abs(fixed - moving))) > 0.0


def test_pair_folders_of_3d_volumes_give_3d_or_axial_2d_patches(tmp_path, t1_volume):
    small = t1_volume[::4, ::4, ::2]
    folder = write_pairs(tmp_path / "pairs", small, names=("v",))
    assert PairFolderSampler(folder, [16, 16, 16]).batch(1)[0].shape == (1, 16, 16, 16, 1)
    assert PairFolderSampler(folder, [32, 32]).batch(2)[1].shape == (2, 32, 32, 1)


def test_bad_pair_folders_are_named(tmp_path, t1_slice):
    with pytest.raises(InputImageError, match="does not exist"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="holds no image pairs"):
        find_pairs(tmp_path / "empty")
    folder = write_pairs(tmp_path / "pairs", t1_slice)
    (folder / "b_moving.nii.gz").unlink()
    with pytest.raises(InputImageError, match="unpaired.*b has no NAME_moving"):
        find_pairs(folder)
    sitk.WriteImage(t1_slice, str(folder / "c.nrrd"))
    with pytest.raises(InputImageError, match="c.nrrd named neither"):
        find_pairs(folder)


def test_loss_terms():
    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(size=(2, 24, 24, 1)).astype(np.float32))
    assert float(local_ncc(a, a)) == pytest.approx(1.0, abs=1e-3)
    assert float(local_ncc(a, 2.0 * a + 0.3)) == pytest.approx(1.0, abs=1e-3)  # contrast-invariant
    assert float(local_ncc(a, tf.constant(rng.uniform(size=(2, 24, 24, 1)).astype(np.float32)))) < 0.1
    still = tf.zeros((1, 16, 16, 2))
    shift = tf.ones((1, 16, 16, 2)) * 2.5
    assert float(diffusion(shift)) == 0.0 and float(folding(still)) == 0.0
    np.testing.assert_allclose(jacobian_determinant(still).numpy(), 1.0)
    # u(x) = -2x along axis 0 maps x to -x: the map folds everywhere (det = -1).
    ramp = tf.reshape(tf.range(16, dtype=tf.float32), (1, 16, 1, 1)) * tf.ones((1, 16, 16, 1))
    flipping = tf.concat([-2.0 * ramp, tf.zeros_like(ramp)], axis=-1)
    assert float(folding(flipping)) == pytest.approx(1.0)
    assert float(diffusion(flipping)) > 0


def test_unit_epe_supervises_every_unit_of_a_level():
    config = NetworkConfig(ndim=2, levels=2, units=3, data_filters=4, reg_filters=4, knots=9, control_spacing=4)
    network = DIRVNet(config, seed=1)
    sampler = PairSampler((32, 32), max_magnitude=3.0, sources=("chessboard",), seed=2)
    fixed, moving, field = (tf.constant(a) for a in sampler.batch(1))
    output = network(fixed, moving)
    assert all(output.unit_controls[level][-1] is output.level_controls[level] for level in range(2))
    last_only, _ = registration_loss(output, fixed, moving, field, config, LossConfig.from_value("supervised"))
    np.testing.assert_allclose(float(last_only), float(supervised_epe(output, field, 4)[0]), rtol=1e-6)
    every, terms = registration_loss(output, fixed, moving, field, config, LossConfig.from_value({"unit_epe": 1.0}))
    per_unit = [[float(level_epe(c, field, level, 4)) for c in output.unit_controls[level]] for level in range(2)]
    np.testing.assert_allclose(float(every), np.mean(per_unit), rtol=1e-5)
    assert float(terms["epe_level0"]) == pytest.approx(per_unit[0][-1], rel=1e-5)  # the logged term: last unit
    assert abs(float(every) - float(last_only)) > 1e-4
    relative, _ = registration_loss(
        output, fixed, moving, field, config, LossConfig.from_value({"unit_epe": 1.0, "relative_epe": True})
    )
    per_unit = [
        [float(level_epe(c, field, level, 4, relative=True)) for c in output.unit_controls[level]] for level in range(2)
    ]
    np.testing.assert_allclose(float(relative), np.mean(per_unit), rtol=1e-5)
    with pytest.raises(ValueError, match="loss weights must be >= 0"):
        LossConfig.from_value({"unit_epe": -1.0})


def test_overshoot_sums_every_rise_of_a_pairs_error_along_the_units():
    config = NetworkConfig(ndim=2, levels=2, units=2, data_filters=4, reg_filters=4, knots=9, control_spacing=4)
    sampler = PairSampler((32, 32), max_magnitude=3.0, sources=("chessboard",), seed=2)
    fixed, moving, field = (tf.constant(a) for a in sampler.batch(2))
    network = DIRVNet(config, seed=1)
    output = network(fixed, moving)
    coarse_shape = output.unit_controls[1][0].shape
    fine_shape = output.unit_controls[0][0].shape
    big = tf.constant(np.random.default_rng(0).normal(0.0, 4.0, fine_shape), tf.float32)

    def trajectory(coarse, fine):
        return dataclasses.replace(
            output, unit_controls={1: coarse, 0: fine}, level_controls={1: coarse[-1], 0: fine[-1]}
        )

    still = trajectory([tf.zeros(coarse_shape)] * 2, [tf.zeros(fine_shape)] * 2)
    assert float(overshoot(still, field, 4)) == pytest.approx(0.0, abs=1e-6)  # the identity all along
    jump = trajectory([tf.zeros(coarse_shape)] * 2, [tf.zeros(fine_shape), big])
    rises = []
    for pair in range(2):
        truth = field[pair : pair + 1]
        start = float(tf.reduce_mean(tf.norm(truth, axis=-1)))
        rises.append(max(0.0, float(level_epe(big[pair : pair + 1], truth, 0, 4)) - start))
    assert min(rises) > 1.0  # a large random step moves both pairs away from their truth
    assert float(overshoot(jump, field, 4)) == pytest.approx(np.mean(rises), rel=1e-4)
    back = trajectory([tf.zeros(coarse_shape)] * 2, [big, tf.zeros(fine_shape)])  # away, then back again
    assert float(overshoot(back, field, 4)) == pytest.approx(np.mean(rises), rel=1e-4)
    coarse_big = tf.constant(np.random.default_rng(1).normal(0.0, 2.0, coarse_shape), tf.float32)
    coarse_jump = trajectory([coarse_big, tf.zeros(coarse_shape)], [tf.zeros(fine_shape)] * 2)
    level1 = [
        float(level_epe(coarse_big[p : p + 1], field[p : p + 1], 1, 4))
        - float(tf.reduce_mean(tf.norm(field[p], axis=-1)))
        for p in range(2)
    ]  # measured on level 1's grid, in finest voxels: close to the finest grid's figure
    assert float(overshoot(coarse_jump, field, 4)) == pytest.approx(np.mean(level1), rel=0.05)
    plain, _ = registration_loss(back, fixed, moving, field, config, LossConfig.from_value("supervised"))
    total, terms = registration_loss(back, fixed, moving, field, config, LossConfig.from_value({"overshoot": 0.5}))
    assert float(terms["overshoot"]) == pytest.approx(np.mean(rises), rel=1e-4)
    assert float(total) == pytest.approx(float(plain) + 0.5 * np.mean(rises), rel=1e-5)
    assert LossConfig.from_value({"overshoot": 0.5}).terms(2)[-1] == "overshoot"
    with pytest.raises(ValueError, match="overshoot needs the true field"):
        LossConfig.from_value({"preset": "ncc", "overshoot": 1.0})


def test_relative_epe_divides_every_pair_by_its_mean_true_length():
    from DIRVNetLib.ops import control_grid_shape
    from DIRVNetLib.training.losses import RELATIVE_FLOOR

    rng = np.random.default_rng(3)
    direction = rng.normal(size=(1, 32, 32, 2)).astype(np.float32)
    field = tf.constant(np.concatenate([2.0 * direction, 0.01 * direction]))  # a large and a tiny field
    lengths = np.linalg.norm(field.numpy(), axis=-1).mean(axis=(1, 2))
    still = tf.zeros([2, *control_grid_shape([32, 32], 4), 2])  # no displacement: the error is the truth
    assert float(level_epe(still, field, 0, 4)) == pytest.approx(lengths.mean(), rel=1e-5)
    expected = np.mean([1.0, lengths[1] / RELATIVE_FLOOR])  # the tiny field is divided by the floor
    assert float(level_epe(still, field, 0, 4, relative=True)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="relative_epe must be true or false"):
        LossConfig.from_value({"relative_epe": "yes"})


def test_loss_configuration_presets_and_errors():
    assert LossConfig.from_value("supervised").terms(2) == ["epe_level0", "epe_level1"]
    ncc = LossConfig.from_value({"preset": "ncc", "smoothness": 0.5})
    assert ncc.smoothness == 0.5 and not ncc.supervised and ncc.similarity == "ncc"
    assert LossConfig.from_value("hybrid").supervised and LossConfig.from_value("hybrid").unsupervised
    with pytest.raises(ValueError, match="unknown keys in 'loss': smoothnes"):
        LossConfig.from_value({"smoothnes": 1.0})
    with pytest.raises(ValueError, match="unknown loss preset 'nccc'"):
        LossConfig.from_value("nccc")
    with pytest.raises(ValueError, match="similarity must be one of"):
        LossConfig.from_value({"similarity": "mi", "similarity_weight": 1.0})


def test_learning_rate_schedules():
    cosine = ScheduleConfig.from_value({"kind": "cosine", "warmup_steps": 10, "final_fraction": 0.1})
    assert learning_rate(0, 1.0, 110, cosine) == pytest.approx(1 / 11)
    assert learning_rate(10, 1.0, 110, cosine) == pytest.approx(1.0)
    assert learning_rate(109, 1.0, 110, cosine) == pytest.approx(0.1)
    step = ScheduleConfig.from_value({"kind": "step", "milestones": [5, 8], "factor": 0.5})
    assert [learning_rate(s, 1.0, 10, step) for s in (4, 5, 8)] == [1.0, 0.5, 0.25]
    assert learning_rate(7, 2e-4, 10, None) == 2e-4
    with pytest.raises(ValueError, match="unknown keys in 'schedule': warmup"):
        ScheduleConfig.from_value({"warmup": 3})
