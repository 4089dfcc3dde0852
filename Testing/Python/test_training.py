"""A tiny network trains on each loss (supervised, unsupervised NCC and MSE, hybrid) and the loss falls
on held-out pairs; its weight set loads and registers; resume is exact; TensorBoard events are written."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import tensorflow as tf

import DIRVNetLib
from DIRVNetLib.cli.main import main
from DIRVNetLib.data.pairs import PairSampler
from DIRVNetLib.io.weights import load_weight_set
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.training.losses import LossConfig, registration_loss, supervised_epe
from DIRVNetLib.training.trainer import train

from conftest import TINY_NETWORK, shifted, tiny_run


def _validation_loss(config, weights, batch):
    network = DIRVNet(config)
    network.set_weights(weights)
    fixed, moving, field = batch
    return float(supervised_epe(network(fixed, moving), field, config.control_spacing)[0])


@pytest.mark.slow
def test_training_reduces_the_loss_and_exports_a_usable_weight_set(tmp_path, data_dir):
    run = tiny_run(
        ["chessboard", "shapes", "volumes"],
        description="tiny test network",
        steps=60,
        batch_size=4,
        seed=3,
        checkpoint_every=30,
    )
    run["data"]["volumes"] = [str(data_dir / "BrainT1Slice.png")]
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert (
        main(["train", "--config", str(tmp_path / "run.json"), "--output-dir", str(tmp_path / "run"), "--no-progress"])
        == 0
    )

    weight_set = load_weight_set(tmp_path / "run" / "weights")
    config = NetworkConfig.from_dict(TINY_NETWORK)
    assert weight_set.config == config
    assert weight_set.metadata["training"]["steps"] == 60
    assert "dirvnet train --config" in weight_set.metadata["training"]["command"]
    assert weight_set.metadata["training"]["strategy"] == {"name": "default", "replicas": 1}
    validation = weight_set.metadata["training"]["validation"]
    assert validation["pairs"] == 8 and validation["epe_voxels"] < validation["epe_before_voxels"]
    held_out = PairSampler([32, 32], 3.0, ["chessboard", "shapes"], seed=1234).batch(8)
    untrained = _validation_loss(config, DIRVNet(config, seed=3).get_weights(), held_out)
    trained = _validation_loss(config, weight_set.weights, held_out)
    assert trained < 0.8 * untrained, (untrained, trained)
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,epe_level0,epe_level1") and len(rows) == 61
    assert len((tmp_path / "run" / "validation.csv").read_text().splitlines()) == 3  # header, steps 30 and 60

    image = sitk.ReadImage(str(data_dir / "BrainT1Slice.png"), sitk.sitkFloat32)
    result = DIRVNetLib.register(image, shifted(image, 2.0), weights=tmp_path / "run" / "weights", mode="fast")
    assert result.displacement.GetSize() == image.GetSize()


def test_training_in_chunks_resumes_from_its_checkpoint(tmp_path, capsys):
    """A run (hybrid loss, cosine schedule) trained in two chunks (--stop-at) gives the same weights and
    learning rates as one uninterrupted run, and its metadata lists both invocations."""
    run = tiny_run(
        ["chessboard"],
        steps=5,
        batch_size=2,
        seed=0,
        checkpoint_every=2,
        loss="hybrid",
        schedule={"kind": "cosine", "warmup_steps": 1},
        validation={"pairs": 0},
        tensorboard=False,
    )
    (tmp_path / "run.json").write_text(json.dumps(run))
    train = ["train", "--config", str(tmp_path / "run.json"), "--no-progress", "--output-dir"]
    assert main(train + [str(tmp_path / "a")]) == 0
    assert main(train + [str(tmp_path / "b"), "--stop-at", "3"]) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert not (tmp_path / "b" / "weights").exists()
    assert main(train + [str(tmp_path / "b"), "--stop-at", "2"]) != 0  # already past step 2
    assert "already at step 3" in capsys.readouterr().err
    assert main(train + [str(tmp_path / "b")]) == 0
    a = load_weight_set(tmp_path / "a" / "weights").weights
    b_set = load_weight_set(tmp_path / "b" / "weights")
    for name in a:
        np.testing.assert_allclose(a[name], b_set.weights[name], rtol=1e-4, atol=1e-6)
    rates = [row.split(",")[-2] for row in (tmp_path / "b" / "losses.csv").read_text().splitlines()[1:]]
    assert rates == [row.split(",")[-2] for row in (tmp_path / "a" / "losses.csv").read_text().splitlines()[1:]]
    assert len(set(rates)) == 5  # warm-up then cosine decay over all 5 steps, continued across the stop
    segments = b_set.metadata["training"]["segments"]
    assert [(s["from_step"], s["to_step"], s["steps"]) for s in segments] == [(0, 3, 5), (3, 5, 5)]
    assert segments[0]["command"].endswith("--stop-at 3")


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss", ["ncc", "mse", "hybrid", {"preset": "supervised", "unit_epe": 1.0, "relative_epe": True, "overshoot": 0.5}]
)
def test_unsupervised_hybrid_and_deeply_supervised_losses_fall_on_held_out_pairs(tmp_path, loss):
    run = tiny_run(
        ["chessboard", "shapes"],
        steps=20,
        batch_size=4,
        seed=3,
        checkpoint_every=100,
        loss=loss,
        validation={"pairs": 0},
        tensorboard=False,
    )
    weights = train(run, tmp_path / "run", progress=False)
    config, loss_config = NetworkConfig.from_dict(TINY_NETWORK), LossConfig.from_value(loss)
    held_out = [tf.constant(a) for a in PairSampler([32, 32], 3.0, ["chessboard", "shapes"], seed=1234).batch(8)]

    def held_out_loss(values):
        network = DIRVNet(config)
        network.set_weights(values)
        return float(registration_loss(network(*held_out[:2]), *held_out, config, loss_config)[0])

    before = held_out_loss(DIRVNet(config, seed=3).get_weights())
    after = held_out_loss(load_weight_set(weights).weights)
    assert after < 0.95 * before, (loss, before, after)
    header = (tmp_path / "run" / "losses.csv").read_text().splitlines()[0]
    if loss_config.unsupervised:
        assert f"{loss_config.similarity}_level1" in header and "folding_level0" in header
    else:
        assert header.startswith("step,loss,epe_level0,epe_level1,") and ",overshoot," in header


def _event_tags(folder):
    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            tags.update(value.tag for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value)
    return tags


def test_tensorboard_events_have_scalars_per_level_images_and_activation_plots(tmp_path):
    run = tiny_run(
        ["shapes"], steps=2, batch_size=2, seed=0, checkpoint_every=2, loss="hybrid", validation={"pairs": 2}
    )
    train(run, tmp_path / "run", progress=False)
    tags = _event_tags(tmp_path / "run" / "tensorboard")
    expected = {
        "train/loss",
        "train/learning_rate",
        "validation/loss",
        "validation/epe_voxels",
        "validation/folding_percent",
        "validation/lncc_after",
        "images/pair",
        "images/displacement",
        "activations",
    }
    for level in (0, 1):
        expected |= {
            f"train/epe_level{level}",
            f"train/ncc_level{level}",
            f"train/smoothness_level{level}",
            f"train/folding_level{level}",
            f"validation/epe_level{level}",
            f"units/level{level}",
        }
    assert expected <= tags, sorted(expected - tags)
