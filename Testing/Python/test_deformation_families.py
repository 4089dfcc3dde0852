"""The training deformation families (smooth, multi-scale, local bumps, mixed): magnitude, support,
determinism, no folding; the ``data.deformation`` option; a tiny run on the mixed family learns."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from DIRVNetLib.data.deformations import (
    DeformationFamily,
    gradient_norm,
    local_bump_field,
    multiscale_random_field,
    smooth_random_field,
)
from DIRVNetLib.data.pairs import PairSampler
from DIRVNetLib.io.weights import load_weight_set
from DIRVNetLib.model import DIRVNet
from DIRVNetLib.training.config import load_run, read_run
from DIRVNetLib.training.losses import jacobian_determinant, supervised_epe
from DIRVNetLib.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]


def _longest(field):
    return float(np.sqrt((field**2).sum(axis=-1)).max())


def _min_determinant(field):
    return float(tf.reduce_min(jacobian_determinant(tf.constant(field[np.newaxis]))))


@pytest.mark.parametrize("shape", [(48, 48), (24, 24, 24)])
def test_multiscale_fields_honour_the_magnitude_and_never_fold(shape):
    for seed in range(6):
        field = multiscale_random_field(shape, 6.0, np.random.default_rng(seed), scales=(3, 6, 12))
        assert field.shape == (*shape, len(shape)) and field.dtype == np.float32
        assert 0.0 < _longest(field) <= 6.0 + 1e-4
        assert gradient_norm(field) <= 0.7 + 1e-4 and _min_determinant(field) > 0.0


def test_multiscale_fields_hold_fine_structure_a_single_coarse_field_lacks():
    """Relative to its size, the multi-scale field bends more than a 3-point field (its finer scales)."""
    shape = (64, 64)
    coarse = [smooth_random_field(shape, 2.0, np.random.default_rng(s), control_points=3) for s in range(4)]
    fine = [multiscale_random_field(shape, 2.0, np.random.default_rng(s), scales=(3, 12)) for s in range(4)]
    ratio = [np.mean([gradient_norm(f) / _longest(f) for f in group]) for group in (coarse, fine)]
    assert ratio[1] > 1.5 * ratio[0], ratio


def test_local_bumps_leave_the_far_field_at_zero():
    shape = (64, 64)
    radius = 0.15 * 64
    for seed in range(5):
        field = local_bump_field(shape, 3.0, np.random.default_rng(seed), bumps=(1, 1), radius=(0.15, 0.15))
        moving = np.argwhere(np.abs(field).sum(axis=-1) > 0)
        assert len(moving) > 0 and np.ptp(moving, axis=0).max() <= 2 * radius  # one ball of that radius
        assert len(moving) <= np.pi * (radius + 1) ** 2  # the lattice points of that ball, at most
        assert 0.0 < _longest(field) <= 3.0 + 1e-5
        assert _min_determinant(field) > 0.0
    several = local_bump_field(shape, 4.0, np.random.default_rng(9), bumps=(3, 3), radius=(0.1, 0.2))
    assert np.mean(np.abs(several).sum(axis=-1) == 0) > 0.3 and _min_determinant(several) > 0.0


def test_large_local_bumps_are_shrunk_rather_than_folded():
    field = local_bump_field((48, 48), 20.0, np.random.default_rng(1), bumps=(2, 2), radius=(0.1, 0.1))
    assert _longest(field) < 20.0 and gradient_norm(field) == pytest.approx(0.7, rel=1e-4)
    assert _min_determinant(field) > 0.0


def test_families_are_deterministic_by_seed_and_smooth_keeps_the_old_stream():
    shape = (32, 32)
    for family in ("smooth", "multiscale", "local", "mixed"):
        chosen = DeformationFamily(family=family)
        first = chosen.draw(shape, 4.0, np.random.default_rng(5), control_points=4, affine_scale=0.1)
        again = chosen.draw(shape, 4.0, np.random.default_rng(5), control_points=4, affine_scale=0.1)
        other = chosen.draw(shape, 4.0, np.random.default_rng(6), control_points=4, affine_scale=0.1)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other), family
    old = smooth_random_field(shape, 4.0, np.random.default_rng(5), control_points=4, affine_scale=0.1)
    np.testing.assert_array_equal(DeformationFamily().draw(shape, 4.0, np.random.default_rng(5), 4, 0.1), old)
    plain = PairSampler(shape, 3.0, ["chessboard"]).batch_for_step(0, 2, 2)
    default = PairSampler(shape, 3.0, ["chessboard"], deformation=DeformationFamily()).batch_for_step(0, 2, 2)
    for a, b in zip(plain, default):
        np.testing.assert_array_equal(a, b)


def test_nearly_static_pairs_and_the_mixed_draw():
    static = DeformationFamily(family="local", static_fraction=1.0, static_magnitude=0.5)
    for seed in range(5):
        assert _longest(static.draw((32, 32), 8.0, np.random.default_rng(seed))) <= 0.5 + 1e-6
    mixed = DeformationFamily(family="mixed", weights=(0.0, 1.0, 1.0), static_fraction=0.0)
    fields = [mixed.draw((32, 32), 4.0, np.random.default_rng(s), 4, 0.1) for s in range(12)]
    still = [np.mean(np.abs(f).sum(axis=-1) == 0) for f in fields]
    assert any(s > 0.3 for s in still) and any(s == 0.0 for s in still)  # local and multi-scale drawn
    sampler = PairSampler((32, 32), 4.0, ["chessboard"], deformation=mixed)
    assert sampler.summary()["deformation"]["family"] == "mixed"


def test_the_deformation_option_parses_strictly_and_defaults_to_todays_runs():
    base = {"network": {"ndim": 2, "levels": 2, "units": 1, "control_spacing": 4}, "data": {"max_magnitude": 3.0}}
    run = load_run({**base, "data": {"max_magnitude": 3.0, "deformation": {"family": "mixed", "scales": [3, 6]}}})
    assert run.data.deformation == DeformationFamily(family="mixed", scales=(3, 6))
    assert load_run(json.loads(json.dumps(run.to_dict()))) == run
    assert "deformation" not in load_run(base).to_dict()["data"]  # recorded identities of older runs unchanged
    bad = [
        ({"family": "mixed", "scale": [3]}, "unknown keys in 'data.deformation': scale"),
        ({"family": "wavy"}, "data.deformation.family 'wavy' is unknown"),
        ({"weights": [1, 1]}, "data.deformation.weights"),
        ({"bumps": [4, 1]}, "data.deformation.bumps"),
        ({"max_gradient": 1.2}, "data.deformation.max_gradient"),
        ({"scales": [1, 6]}, "data.deformation.scales"),
    ]
    for deformation, message in bad:
        with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("'", "'")):
            load_run({**base, "data": {"max_magnitude": 3.0, "deformation": deformation}})
    with pytest.raises(ValueError, match="'deformation' applies to synthetic deformations"):
        load_run({**base, "data": {"pairs": "somewhere", "deformation": {"family": "local"}}})
    for path in sorted((ROOT / "model_weights").glob("*/train*.json")):
        if "deformation" not in json.loads(path.read_text())["data"]:  # written before the option
            assert read_run(path).data.deformation == DeformationFamily(), path
            assert "deformation" not in read_run(path).to_dict()["data"], path


@pytest.mark.slow
def test_a_tiny_run_on_the_mixed_family_lowers_its_loss(tmp_path):
    run = {
        "network": {"ndim": 2, "levels": 2, "units": 2, "control_spacing": 4, "data_filters": 4, "reg_filters": 4},
        "data": {
            "patch_shape": [32, 32],
            "max_magnitude": 3.0,
            "sources": ["chessboard", "shapes"],
            "deformation": {"family": "mixed", "scales": [3, 6]},
        },
        "steps": 40,
        "batch_size": 4,
        "learning_rate": 0.01,
        "seed": 2,
        "checkpoint_every": 40,
        "validation": {"pairs": 8},
        "tensorboard": False,
    }
    weights = load_weight_set(train(run, tmp_path / "run", progress=False))
    figures = weights.metadata["training"]["validation"]
    assert figures["epe_voxels"] < 0.8 * figures["epe_before_voxels"], figures
    assert weights.metadata["training"]["data"]["deformation"]["family"] == "mixed"
    family = DeformationFamily(family="mixed", scales=(3, 6))
    fixed, moving, field = PairSampler([32, 32], 3.0, ["chessboard", "shapes"], seed=1234, deformation=family).batch(8)
    errors = []
    for values in (DIRVNet(weights.config, seed=2).get_weights(), weights.weights):  # untrained, trained
        network = DIRVNet(weights.config)
        network.set_weights(values)
        errors.append(float(supervised_epe(network(fixed, moving), field, weights.config.control_spacing)[0]))
    assert errors[1] < 0.8 * errors[0], errors
