"""A tiny network trains (supervised per-level EPE falls) and its weight set loads and registers."""

import json

import numpy as np
import SimpleITK as sitk

import DIRVNetLib
from conftest import shifted
from DIRVNetLib.cli.main import main
from DIRVNetLib.data.pairs import PairSampler
from DIRVNetLib.io.weights import load_weight_set
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.training.losses import supervised_epe

TINY = {"ndim": 2, "levels": 2, "units": 2, "control_spacing": 4, "data_filters": 4, "data_kernel": 5,
        "reg_filters": 4, "reg_kernel": 3}


def _validation_loss(config, weights, batch):
    network = DIRVNet(config)
    network.set_weights(weights)
    fixed, moving, field = batch
    return float(supervised_epe(network(fixed, moving), field, config.control_spacing)[0])


def test_training_reduces_the_loss_and_exports_a_usable_weight_set(tmp_path, data_dir):
    run = {"network": TINY, "description": "tiny test network",
           "data": {"patch_shape": [32, 32], "max_magnitude": 3.0, "sources": ["chessboard", "shapes", "volumes"],
                    "volumes": [str(data_dir / "BrainT1Slice.png")]},
           "steps": 60, "batch_size": 4, "learning_rate": 0.01, "seed": 3, "checkpoint_every": 30}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--output-dir", str(tmp_path / "run"), "--no-progress"]) == 0

    weight_set = load_weight_set(tmp_path / "run" / "weights")
    config = NetworkConfig.from_dict(TINY)
    assert weight_set.config == config
    assert weight_set.metadata["training"]["steps"] == 60
    assert "dirvnet train --config" in weight_set.metadata["training"]["command"]
    held_out = PairSampler([32, 32], 3.0, ["chessboard", "shapes"], seed=1234).batch(8)
    untrained = _validation_loss(config, DIRVNet(config, seed=3).get_weights(), held_out)
    trained = _validation_loss(config, weight_set.weights, held_out)
    assert trained < 0.8 * untrained, (untrained, trained)
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,epe_level0,epe_level1") and len(rows) == 61

    image = sitk.ReadImage(str(data_dir / "BrainT1Slice.png"), sitk.sitkFloat32)
    result = DIRVNetLib.register(image, shifted(image, 2.0), weights=tmp_path / "run" / "weights")
    assert result.displacement.GetSize() == image.GetSize()


def test_training_resumes_from_its_checkpoint(tmp_path):
    run = {"network": TINY, "data": {"patch_shape": [32, 32], "max_magnitude": 3.0, "sources": ["chessboard"]},
           "steps": 4, "batch_size": 2, "learning_rate": 0.01, "seed": 0, "checkpoint_every": 2}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--output-dir", str(tmp_path / "a"), "--no-progress"]) == 0
    run["steps"] = 2
    (tmp_path / "half.json").write_text(json.dumps(run))
    assert main(["train", "--config", str(tmp_path / "half.json"), "--output-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    assert main(["train", "--config", str(tmp_path / "run.json"), "--output-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    a = load_weight_set(tmp_path / "a" / "weights").weights
    b = load_weight_set(tmp_path / "b" / "weights").weights
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6)
