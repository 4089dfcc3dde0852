"""Test-time refinement (registration/refinement.py), the modes and the fall-back to the identity."""

import logging

import numpy as np
import pytest
import SimpleITK as sitk
import tensorflow as tf

import DIRVNetLib
from DIRVNetLib.data.deformations import deform_image
from DIRVNetLib.errors import RegistrationCancelled
from DIRVNetLib.metrics import endpoint_error, jacobian_statistics
from DIRVNetLib.preprocessing import normalise_intensity
from DIRVNetLib.registration.geometry import WorkingGrid
from DIRVNetLib.registration.refinement import (
    Landmarks,
    RefinementSettings,
    _diffusion_factors,
    _smoothness_terms,
    refine_flow,
)


@pytest.fixture(scope="module")
def small_pair(t1_slice):
    """The real T1 slice at 2 mm (91x109) deformed by a known smooth field of at most 4 mm."""
    image = sitk.Resample(t1_slice, [91, 109], sitk.Transform(), sitk.sitkLinear, (0.0, 0.0), (2.0, 2.0))
    fixed, true = deform_image(image, 4.0, seed=5)
    return fixed, image, true


class _TensorFlowMessages(logging.Handler):
    """Collects the messages of TensorFlow's Python logger."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.texts = []

    def emit(self, record):
        self.texts.append(record.getMessage())


def _arrays(fixed, moving):
    return (normalise_intensity(sitk.GetArrayFromImage(fixed)), normalise_intensity(sitk.GetArrayFromImage(moving)))


def _displacement(flow, reference):
    return WorkingGrid(reference).flow_to_displacement(flow)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_refinement_lowers_the_loss_and_the_error_without_folding(small_pair, optimizer):
    fixed, moving, true = small_pair
    f, m = _arrays(fixed, moving)
    zero = np.zeros(f.shape + (2,), np.float32)
    flow, info = refine_flow(f, m, zero, RefinementSettings(steps=30, optimizer=optimizer))
    assert info["steps"] > 1
    assert info["similarity_after"] < 0.7 * info["similarity_before"]
    assert info["energy_after"] < info["energy_before"]
    before = endpoint_error(_displacement(zero, fixed), true)["epe_mean_mm"]
    after = endpoint_error(_displacement(flow, fixed), true)["epe_mean_mm"]
    assert after < 0.6 * before, (before, after)
    assert jacobian_statistics(_displacement(flow, fixed))["jacobian_nonpositive_percent"] == 0.0


def _diffusion(flow):
    """The refinement's ``R``: the mean squared forward difference over voxels, axes and components."""
    ndim = flow.shape[-1]
    differences = [tf.experimental.numpy.diff(flow, axis=axis) for axis in range(1, ndim + 1)]
    return sum(tf.reduce_mean(tf.square(d)) for d in differences) / ndim


@pytest.mark.parametrize(
    "shape, spacing", [((7, 9), 2), ((13, 10), 4), ((5, 6, 4), 2), ((9, 12, 11), 4), ((6, 5, 7), 1)]
)
def test_the_smoothness_term_on_the_control_grid_is_that_of_the_dense_correction(shape, spacing):
    """``R`` and its gradient computed on the control grid equal ``R`` of the dense correction ``B(c)`` and its
    gradient with respect to ``c`` by automatic differentiation through ``B``."""
    from DIRVNetLib.ops import bspline_interpolate, control_grid_shape

    control = np.random.default_rng(3).normal(size=(1, *control_grid_shape(shape, spacing), len(shape)))
    control = tf.constant(control.astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(control)
        energy = _diffusion(bspline_interpolate(control, spacing, shape))
    grams, stiffnesses = (tuple(map(tf.constant, f)) for f in _diffusion_factors(shape, spacing))
    smoothness_energy, smoothness_gradient = _smoothness_terms(control, grams, stiffnesses)
    assert float(smoothness_energy) == pytest.approx(float(energy), rel=1e-5)
    expected = tape.gradient(energy, control).numpy()
    np.testing.assert_allclose(smoothness_gradient, expected, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("similarity", ["mse", "ncc"])
def test_the_smoothness_term_leaves_the_starting_flow_alone(optimizer, similarity):
    """The smoothness term regularises the correction, not the starting flow: where the images give no
    force (both uniform), a rough starting flow comes back unchanged."""
    uniform = np.full((40, 48), 0.5, np.float32)
    rough = np.random.default_rng(1).normal(0.0, 1.0, (40, 48, 2)).astype(np.float32)
    settings = RefinementSettings(steps=8, optimizer=optimizer, similarity=similarity, smoothness=1.0)
    flow, info = refine_flow(uniform, uniform, rough, settings)
    assert info["steps"] > 1
    np.testing.assert_array_equal(flow, rough)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_refinement_is_deterministic(small_pair, optimizer):
    f, m = _arrays(*small_pair[:2])
    zero = np.zeros(f.shape + (2,), np.float32)
    first, _ = refine_flow(f, m, zero, RefinementSettings(steps=5, optimizer=optimizer))
    second, _ = refine_flow(f, m, zero, RefinementSettings(steps=5, optimizer=optimizer))
    np.testing.assert_array_equal(first, second)


def test_adam_steps_in_one_graph_call_as_one_step_per_call(small_pair, monkeypatch):
    """Adam runs several steps per graph call: the flow, the energies reported step by step and where the
    stopping rule stops are those of one step per call; the rule stops once the energy has not fallen by
    ``tolerance`` for ``patience`` steps."""
    from DIRVNetLib.registration import refinement

    f, m = _arrays(*small_pair[:2])
    zero = np.zeros(f.shape + (2,), np.float32)
    settings = RefinementSettings(steps=40, learning_rate=1.0, patience=3, tolerance=0.1)
    results = {}
    for chunk in (1, 7):
        monkeypatch.setattr(refinement, "_ADAM_CHUNK_STEPS", chunk)
        reported: list[tuple[int, float]] = []
        flow, info = refine_flow(
            f, m, zero, settings, on_step=lambda step, energy, seen=reported: seen.append((step, energy))
        )
        assert reported == list(enumerate(info["energies"], start=1))
        results[chunk] = flow, info
    (flow, info), (chunked_flow, chunked_info) = results[1], results[7]
    np.testing.assert_array_equal(chunked_flow, flow)
    assert chunked_info["energies"] == info["energies"]
    energies = info["energies"]
    assert 3 < info["steps"] < 40, energies
    best = min(energies[:-3])
    assert all(e >= best * (1 - 0.1) for e in energies[-3:]), energies


def test_lbfgs_returns_the_last_accepted_step_and_counts_every_evaluation(small_pair):
    from DIRVNetLib.registration.refinement import _direction_graph

    f, m = _arrays(*small_pair[:2])
    zero = np.zeros(f.shape + (2,), np.float32)
    steps = []
    settings = RefinementSettings(steps=12, optimizer="lbfgs", learning_rate=0.5)
    _direction_graph.cache_clear()
    messages = _TensorFlowMessages()
    tf.get_logger().addHandler(messages)
    try:
        _, info = refine_flow(f, m, zero, settings, on_step=lambda step, energy: steps.append((step, energy)))
    finally:
        tf.get_logger().removeHandler(messages)
    assert not [m for m in messages.texts if "retracing" in m], messages.texts
    # the direction's graph for each number of curvature pairs is traced once (no retracing, no warning)
    tracings = [_direction_graph(count).experimental_get_tracing_count() for count in range(6)]
    assert tracings[:4] == [1, 1, 1, 1] and set(tracings) <= {0, 1}, tracings
    assert [s for s, _ in steps] == list(range(1, info["steps"] + 1)) and info["steps"] == 12
    assert [e for _, e in steps] == info["energies"]
    # line-search trials that were rejected are counted but never returned: the energy after is the lowest
    assert info["energy_after"] == min(info["energies"]) < info["energy_before"]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        RefinementSettings(optimizer="sgd")


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_local_ncc_similarity_also_lowers_its_loss(small_pair, optimizer):
    f, m = _arrays(*small_pair[:2])
    settings = RefinementSettings(steps=10, similarity="ncc", optimizer=optimizer)
    _, info = refine_flow(f, m, np.zeros(f.shape + (2,), np.float32), settings)
    assert info["similarity_after"] < info["similarity_before"]


def test_the_landmark_term_pulls_points_to_their_targets(small_pair):
    fixed = small_pair[0]
    f, _ = _arrays(fixed, fixed)
    # Identical images: no image force. Points at voxel centres, targets 3 mm away along x (LPS).
    fixed_points = np.array([fixed.TransformIndexToPhysicalPoint(ij) for ij in [(30, 40), (60, 70), (45, 20)]])
    moving_points = fixed_points + [3.0, 0.0]
    pairs = Landmarks.on_grid(fixed, fixed_points, moving_points)
    zero = np.zeros(f.shape + (2,), np.float32)
    np.testing.assert_allclose(pairs.distances_mm(zero), 3.0, rtol=1e-5)
    flow, _ = refine_flow(f, f, zero, RefinementSettings(steps=60, landmark_weight=1.0), pairs)
    assert pairs.distances_mm(flow).max() < 1.0
    # The pull is along +x (array axis 1), 1.5 voxels of 2 mm.
    np.testing.assert_allclose(flow[40, 30], [0.0, 1.5], atol=0.5)
    assert jacobian_statistics(_displacement(flow, fixed))["jacobian_nonpositive_percent"] == 0.0


def test_landmarks_outside_the_image_or_unpaired_are_refused(small_pair):
    fixed = small_pair[0]
    with pytest.raises(ValueError, match="fixed point 1 .* outside the fixed image"):
        Landmarks.on_grid(fixed, [[-50.0, 10.0]], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="2 fixed points but 1 moving"):
        Landmarks.on_grid(fixed, [[10.0, 10.0], [20.0, 20.0]], [[0.0, 0.0]])


def test_register_modes_progress_and_cancel(small_pair):
    fixed, moving, true = small_pair
    seen = []
    accurate = DIRVNetLib.register(fixed, moving, refine_steps=8, progress=seen.append)
    fast = DIRVNetLib.register(fixed, moving, mode="fast")
    assert fast.report["refinement"] is None and fast.report["mode"] == "fast"
    assert accurate.report["mode"] == "accurate" and 1 <= accurate.report["refinement"]["steps"] <= 8
    assert [p.done for p in seen] == list(range(1, len(seen) + 1)) and seen[-1].done == seen[-1].total
    assert any(p.stage.startswith("refinement step") for p in seen)
    assert accurate.report["ncc_after"] >= fast.report["ncc_after"]
    assert accurate.report["jacobian_nonpositive_percent"] == 0.0

    def cancel():
        return any(p.stage == "refinement step 2" for p in seen)

    seen.clear()
    with pytest.raises(RegistrationCancelled):
        DIRVNetLib.register(fixed, moving, refine_steps=8, progress=seen.append, cancel=cancel)
    assert seen[-1].stage == "refinement step 2"
    with pytest.raises(ValueError, match="mode must be one of fast, accurate"):
        DIRVNetLib.register(fixed, moving, mode="best")
    with pytest.raises(ValueError, match="refine_steps must be a whole number >= 0"):
        DIRVNetLib.register(fixed, moving, refine_steps=-1)


def test_the_modes_coarse_pass_and_its_override():
    from DIRVNetLib.registration.modes import MODES, coarse_pass_for

    assert coarse_pass_for("accurate", 3) == MODES["accurate"][3].coarse_pass > 1
    assert coarse_pass_for("accurate", 3, 1) is None and coarse_pass_for("accurate", 3, 1.5) == 1.5
    assert coarse_pass_for("fast", 3) is None and coarse_pass_for("fast", 2, 2.0) == 2.0
    with pytest.raises(ValueError, match="mode must be one of"):
        coarse_pass_for("best", 3)


def test_a_result_worse_than_the_input_falls_back_to_the_identity(small_pair):
    fixed, moving, _ = small_pair
    wild = RefinementSettings(steps=5, learning_rate=40.0, smoothness=0.0, patience=100)
    result = DIRVNetLib.register(fixed, moving, refinement=wild)
    assert result.report["fell_back_to_identity"]
    assert "less similar to the fixed image than the input" in result.report["warnings"][0]
    assert not sitk.GetArrayViewFromImage(result.displacement).any()
    assert result.report["ncc_after"] == result.report["ncc_before"]
    kept = DIRVNetLib.register(fixed, moving, refinement=wild, fallback=False)
    assert not kept.report["fell_back_to_identity"] and "fallback off" in kept.report["warnings"][0]
    assert kept.report["ncc_after"] < kept.report["ncc_before"]


def test_cli_mode_flag_and_warnings_in_the_summary(small_pair, tmp_path, capsys):
    import json

    from DIRVNetLib.cli.main import main
    from DIRVNetLib.cli.register_command import _summary

    fixed, moving, _ = small_pair
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nrrd"))
    code = main(
        [
            "register",
            "--fixed",
            str(tmp_path / "fixed.nrrd"),
            "--moving",
            str(tmp_path / "moving.nrrd"),
            "--output-dir",
            str(tmp_path / "out"),
            "--mode",
            "fast",
            "--no-figure",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mode"] == "fast" and report["refinement"] is None and report["warnings"] == []
    assert "mode fast" in capsys.readouterr().out
    report["warnings"] = ["the registered moving image is less similar"]
    assert "\nWARNING: the registered moving image is less similar" in _summary(report, tmp_path / "out", True)
