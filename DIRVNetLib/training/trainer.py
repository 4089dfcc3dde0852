"""Supervised training loop: Adam, per-level EPE, CSV log, resumable checkpoints, weight-set export.

Run configuration (JSON, see ``model_weights/*/train.json``)::

    {"network": {...NetworkConfig...}, "description": "...",
     "data": {"patch_shape": [64, 64, 64], "max_magnitude": 8.0,
              "sources": ["chessboard", "shapes", "volumes"], "volumes": ["nilearn:mni152_t1", "x.nii.gz"],
              "volume_spacing": 2.0},
     "steps": 1000, "batch_size": 1, "learning_rate": 0.001, "seed": 0, "checkpoint_every": 100}
"""

import csv
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from DIRVNetLib.data.pairs import PairSampler
from DIRVNetLib.io.images import load_training_volume
from DIRVNetLib.io.weights import save_weight_set
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.training.losses import supervised_epe

DEFAULTS = {"steps": 1000, "batch_size": 1, "learning_rate": 1e-3, "seed": 0, "checkpoint_every": 100}


def load_run_config(path):
    """Read a run configuration, filling defaults; raises ValueError naming the file on problems."""
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"training configuration {path} is unreadable: {e}") from e
    for key in ("network", "data"):
        if key not in run:
            raise ValueError(f"training configuration {path} has no '{key}' section")
    return {**DEFAULTS, **run}


def train(run, output_dir, command=None, progress=True):
    """Train a network as ``run`` (a configuration dict) says; resumes from ``output_dir`` if it holds
    a checkpoint. Writes ``losses.csv``, ``checkpoints/`` and the weight set ``weights/``. Returns the
    weight-set folder."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = NetworkConfig.from_dict(run["network"])
    data = run["data"]
    shape = list(data["patch_shape"])
    if len(shape) != config.ndim or config.padded_shape(shape) != shape:
        raise ValueError(
            f"patch_shape {shape} must have {config.ndim} axes, each a multiple of {config.size_multiple} "
            f"and at least {config.min_size}"
        )
    tf.random.set_seed(run["seed"])
    volumes = [load_training_volume(v, data.get("volume_spacing")) for v in data.get("volumes", [])]
    sampler = PairSampler(
        shape, data["max_magnitude"], data.get("sources", ["chessboard", "shapes"]), volumes, seed=run["seed"]
    )
    network = DIRVNet(config, seed=run["seed"])
    optimizer = keras.optimizers.Adam(run["learning_rate"])
    step = tf.Variable(0, dtype=tf.int64, name="step")
    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, output_dir / "checkpoints", max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)

    variables = list(network.variables_by_name.values())

    @tf.function
    def train_step(fixed, moving, field):
        with tf.GradientTape() as tape:
            output = network(fixed, moving)
            loss, per_level = supervised_epe(output, field, config.control_spacing)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss, per_level

    log_path = output_dir / "losses.csv"
    new_log = not log_path.exists()
    started = time.time()
    with open(log_path, "a", newline="") as log:
        writer = csv.writer(log)
        if new_log:
            writer.writerow(["step", "loss"] + [f"epe_level{l}" for l in range(config.levels)] + ["seconds"])
        bar = tqdm(total=run["steps"], initial=int(step.numpy()), desc="training", disable=not progress)
        while int(step.numpy()) < run["steps"]:
            # Data depend on (seed, step) only, so a resumed run sees what an uninterrupted one would.
            sampler.rng = np.random.default_rng([run["seed"], int(step.numpy())])
            fixed, moving, field = sampler.batch(run["batch_size"])
            loss, per_level = train_step(fixed, moving, field)
            step.assign_add(1)
            writer.writerow(
                [int(step.numpy()), f"{float(loss):.5f}"] + [f"{float(e):.5f}" for e in per_level]
                + [f"{time.time() - started:.1f}"]
            )
            bar.set_postfix(loss=f"{float(loss):.3f}")
            bar.update(1)
            if int(step.numpy()) % run["checkpoint_every"] == 0:
                log.flush()
                manager.save()
        bar.close()
    manager.save()
    training = {
        "run": run,
        "command": command or " ".join(sys.argv),
        "steps": int(step.numpy()),
        "final_loss_voxels": _recent_mean(log_path),
        "host": {"cpu_count": os.cpu_count()},
    }
    weights_dir = output_dir / "weights"
    save_weight_set(weights_dir, config, network.get_weights(), run.get("description", ""), training)
    return weights_dir


def _recent_mean(log_path, last=50):
    """Mean loss of the last ``last`` logged steps (finest-level voxels)."""
    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows[-last:]]
    return float(np.mean(losses)) if losses else None
