"""The training loop: Adam with a learning-rate schedule, per-level losses (supervised, unsupervised or
hybrid), validation on held-out pairs, CSV logs, TensorBoard, resumable checkpoints, tf.distribute
strategies, fine-tuning from a weight set, and weight-set export.

Run configuration (JSON, see ``model_weights/*/train.json``; every key but network and data optional)::

    {"network": {...NetworkConfig...}, "description": "...",
     "data": {"patch_shape": [64, 64, 64], "max_magnitude": 8.0,
              "sources": ["chessboard", "shapes", "volumes"], "volumes": ["nilearn:mni152_t1", "x.nii.gz", "FOLDER"],
              "volume_spacing": 2.0, "affine_scale": 0.1,
              "augmentation": {"noise": 0.02, "gamma": 0.3, "bias": 0.0}},
     "steps": 1000, "batch_size": 1, "learning_rate": 0.001, "seed": 0, "checkpoint_every": 100,
     "loss": "supervised",              # or "ncc", "mse", "hybrid", or {...LossConfig fields..., "preset": ...}
     "schedule": {"kind": "constant"},  # see DIRVNetLib.training.schedule
     "validation": {"pairs": 8, "every": null, "seed": 1, "folder": null},
     "tensorboard": {"enabled": true, "scalars_every": 1, "images_every": null},
     "strategy": "default",             # or "mirrored", "multiworker"
     "init": null}                      # a weight set (folder or bundled name) to start from

Instead of synthetic deformations, ``data`` may name a folder of image pairs, ``{"pairs": FOLDER,
"patch_shape": [...], "volume_spacing": null}`` (unsupervised: the loss must not need a true field).
With ``init`` the ``network`` section may be left out (it is the weight set's). Data depend on
``(seed, step)`` only, so a resumed run sees exactly what an uninterrupted one would; a run may be
trained in chunks (``stop_at``), and ``segments.csv`` records every invocation (command, steps trained,
the run's step count then), which the exported metadata repeats.
"""

import copy
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from DIRVNetLib.data.folders import PairFolderSampler, expand_volume_sources, find_pairs
from DIRVNetLib.data.pairs import PairSampler, step_dataset
from DIRVNetLib.io.images import load_training_volume, read_image
from DIRVNetLib.io.weights import load_weight_set, resolve, save_weight_set
from DIRVNetLib.model import DIRVNet, NetworkConfig
from DIRVNetLib.ops import warp
from DIRVNetLib.training.losses import LossConfig, jacobian_determinant, local_ncc, registration_loss
from DIRVNetLib.training.schedule import learning_rate, schedule_config
from DIRVNetLib.training.strategy import STRATEGIES, check_batch, distribute, is_chief, make_strategy
from DIRVNetLib.training.tensorboard import SummaryLogger, log_activation_plots, log_registration_images

DEFAULTS = {"steps": 1000, "batch_size": 1, "learning_rate": 1e-3, "seed": 0, "checkpoint_every": 100,
            "loss": "supervised", "schedule": None, "validation": None, "tensorboard": None,
            "strategy": "default", "init": None, "description": ""}
RUN_KEYS = set(DEFAULTS) | {"network", "data"}
DATA_KEYS = {"patch_shape", "max_magnitude", "sources", "volumes", "volume_spacing", "affine_scale",
             "augmentation", "pairs", "shape_blur", "control_points", "slice_thickness"}
AUGMENTATION_KEYS = {"noise", "gamma", "bias", "saturation"}
VALIDATION_DEFAULTS = {"pairs": 8, "every": None, "seed": 1, "folder": None}
TENSORBOARD_DEFAULTS = {"enabled": True, "scalars_every": 1, "images_every": None}
FINETUNE_DEFAULTS = {"steps": 500, "learning_rate": 1e-4}
DEFAULT_PATCH = {2: [128, 128], 3: [64, 64, 64]}


def _check_keys(values, known, where):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be an object, got {values!r}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown keys in {where}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _section(value, defaults, where):
    """A sub-section with defaults; ``true``/``false`` stand for ``{"enabled": ...}`` where allowed."""
    if value is None:
        value = {}
    if isinstance(value, bool) and "enabled" in defaults:
        value = {"enabled": value}
    _check_keys(value, defaults, where)
    return {**defaults, **value}


def load_run_config(path, need_network=True, need_data=True):
    """Read a run configuration and fill defaults (see :func:`complete_run`); raises ValueError naming
    the file on problems. ``need_network``/``need_data``: whether those sections must be present (not
    when ``--init`` and ``--pairs`` provide them)."""
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"training configuration {path} is unreadable: {e}") from e
    if not isinstance(run, dict):
        raise ValueError(f"training configuration {path} is not a JSON object")
    need_network = need_network and not run.get("init")
    for key, needed in (("network", need_network), ("data", need_data)):
        if needed and key not in run:
            raise ValueError(f"training configuration {path} has no '{key}' section")
    try:
        _check_keys(run, RUN_KEYS, "the run configuration")
        if "data" in run:
            _check_keys(run["data"], DATA_KEYS, "'data'")
    except ValueError as e:
        raise ValueError(f"training configuration {path}: {e}") from e
    return {**DEFAULTS, **run}


def finetune_run(run, init=None, pairs=None, patch_shape=None, **overrides):
    """``run`` (a loaded configuration, or None) completed for ``dirvnet train --init W --pairs F``.

    init: weight set to start from; pairs: folder of image pairs (unsupervised; the loss defaults to
    "ncc"); patch_shape: patch shape (default: 128^2 in 2D, 64^3 in 3D, fitted to the network);
    overrides: run keys given on the command line (None values are ignored).
    """
    given = run is not None
    run = dict(run) if given else {**DEFAULTS, **FINETUNE_DEFAULTS}
    if init is not None:
        run["init"] = str(init)
    if pairs is not None:
        data = dict(run.get("data") or {})
        data.pop("sources", None)
        data.pop("volumes", None)
        data["pairs"] = str(pairs)
        run["data"] = data
        if overrides.get("loss") is None and LossConfig.from_value(run.get("loss")).supervised:
            run["loss"] = "ncc"  # pairs carry no true field
    if patch_shape is not None:
        run.setdefault("data", {})["patch_shape"] = [int(n) for n in patch_shape]
    run.update({k: v for k, v in overrides.items() if v is not None})
    if "data" not in run:
        run["data"] = {"sources": ["chessboard", "shapes"]}  # synthetic fine-tuning
    return run


def network_config(run):
    """The run's :class:`NetworkConfig` (from ``network``, or the ``init`` weight set's) and the init
    weight set (or None). Raises ValueError when both are given and differ, or dimensions clash."""
    init_set = None
    if run.get("init"):
        init_set = load_weight_set(resolve(run["init"], None))
        wanted = NetworkConfig.from_dict(run["network"]) if run.get("network") is not None else init_set.config
        if wanted.ndim != init_set.config.ndim:
            raise ValueError(
                f"weight set {init_set.path} is for {init_set.config.ndim}D images but the run's network is {wanted.ndim}D"
            )
        # Only switches that keep every weight's meaning and shape may change when fine-tuning.
        switchable = {"centred_activations", "image_gradient"}
        differing = {k for k, v in wanted.to_dict().items() if init_set.config.to_dict()[k] != v}
        if differing - switchable:
            raise ValueError(
                f"the run's network section differs from the --init weight set {init_set.path}'s config in "
                f"{', '.join(sorted(differing - switchable))}; only {', '.join(sorted(switchable))} may change: "
                "leave the network section out to fine-tune"
            )
        config = wanted
    elif run.get("network") is not None:
        config = NetworkConfig.from_dict(run["network"])
    else:
        raise ValueError("the run has no network section and no --init weight set")
    shape = run.get("data", {}).get("patch_shape")
    if shape is not None and len(shape) != config.ndim:
        origin = f"weight set {init_set.path} is for {config.ndim}D images" if init_set else f"network is {config.ndim}D"
        raise ValueError(f"the {origin} but patch_shape {list(shape)} has {len(shape)} axes")
    return config, init_set


def patch_shape(data, config):
    """The training patch shape of a ``data`` section (default: the dimension's default padded to the
    size rule); ValueError unless it has the network's axes and obeys its size rule."""
    shape = data.get("patch_shape")
    if shape is None:
        shape = config.padded_shape(DEFAULT_PATCH[config.ndim])
    shape = [int(n) for n in shape]
    if len(shape) != config.ndim or config.padded_shape(shape) != shape:
        raise ValueError(
            f"patch_shape {shape} must have {config.ndim} axes, each a multiple of {config.size_multiple} "
            f"and at least {config.min_size}"
        )
    return shape


def build_sampler(run, config, init_set=None):
    """The training sampler of the run's ``data`` section: a :class:`PairSampler` (synthetic
    deformations, supervised) or a :class:`PairFolderSampler` (image pairs, unsupervised)."""
    data = run["data"]
    _check_keys(data, DATA_KEYS, "'data'")
    shape = patch_shape(data, config)
    augmentation = data.get("augmentation") or {}
    _check_keys(augmentation, AUGMENTATION_KEYS, "'data.augmentation'")
    if data.get("pairs"):
        if "sources" in data or "volumes" in data:
            raise ValueError("data: give either 'pairs' (a folder of image pairs) or 'sources'/'volumes', not both")
        if "slice_thickness" in data:
            raise ValueError("data: 'slice_thickness' applies to synthetic deformations, not to a 'pairs' folder")
        _check_pair_dimension(data["pairs"], config, init_set)
        return PairFolderSampler(data["pairs"], shape, data.get("volume_spacing"), run["seed"], **augmentation)
    if "max_magnitude" not in data and init_set is None:
        raise ValueError("data needs 'max_magnitude' (largest synthetic displacement, voxels)")
    volumes = [load_training_volume(v, data.get("volume_spacing")) for v in expand_volume_sources(data.get("volumes", []))]
    max_magnitude = data.get("max_magnitude", 2.0 * config.control_spacing)
    return PairSampler(shape, max_magnitude, data.get("sources", ["chessboard", "shapes"]), volumes,
                       seed=run["seed"], affine_scale=data.get("affine_scale", 0.1),
                       shape_blur=data.get("shape_blur", (0.7, 0.7)), control_points=data.get("control_points", (5, 5)),
                       slice_thickness=data.get("slice_thickness", 1.0), **augmentation)


def _check_pair_dimension(folder, config, init_set):
    """Refuse pairs of lower dimension than the network before loading them all."""
    _, fixed_path, _ = find_pairs(folder)[0]
    dimension = read_image(fixed_path, "fixed").GetDimension()
    if dimension < config.ndim:
        origin = f"weight set {init_set.path} is for {config.ndim}D images" if init_set else f"network is {config.ndim}D"
        raise ValueError(f"the {origin} but pairs folder {folder} holds {dimension}D images")


def complete_run(run):
    """``run`` with every default filled and every section checked (ValueError names the problem)."""
    _check_keys(run, RUN_KEYS, "the run configuration")
    run = {**DEFAULTS, **run}
    if "data" not in run:
        raise ValueError("the run has no data section (synthetic sources or a pairs folder)")
    LossConfig.from_value(run["loss"])
    schedule_config(run["schedule"])
    _section(run["validation"], VALIDATION_DEFAULTS, "'validation'")
    _section(run["tensorboard"], TENSORBOARD_DEFAULTS, "'tensorboard'")
    if run["strategy"] not in STRATEGIES:
        raise ValueError(f"unknown strategy '{run['strategy']}'; choose from {', '.join(STRATEGIES)}")
    for key in ("steps", "batch_size", "checkpoint_every"):
        if not isinstance(run[key], int) or run[key] < (0 if key == "steps" else 1):
            raise ValueError(f"{key} must be a positive integer, got {run[key]!r}")
    return run


def validation_batches(sampler, count, seed, batch_size):
    """``count`` held-out pairs in batches of at most ``batch_size``: drawn from streams training never
    uses (``default_rng([seed, i, 0xDA7A])``), from a copy of ``sampler``."""
    sampler = copy.copy(sampler)
    pairs = []
    for i in range(count):
        sampler.rng = np.random.default_rng([int(seed), i, 0xDA7A])
        pairs.append(sampler.batch(1))
    batches = []
    for start in range(0, count, batch_size):
        chunk = pairs[start : start + batch_size]
        batches.append(tuple(np.concatenate(parts) for parts in zip(*chunk)))
    return batches


class Trainer:
    """One training run in ``output_dir`` (see :func:`train`)."""

    def __init__(self, run, output_dir, command=None, progress=True, stop_at=None):
        self.run = complete_run(run)
        self.output_dir = Path(output_dir)
        self.command = command or " ".join(sys.argv)
        self.progress = progress
        if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
            raise ValueError(f"stop_at must be a step number >= 1, got {stop_at!r}")
        self.stop_at = stop_at
        run = self.run
        self.config, self.init_set = network_config(run)
        self.loss = LossConfig.from_value(run["loss"])
        self.schedule = schedule_config(run["schedule"])
        self.validation = _section(run["validation"], VALIDATION_DEFAULTS, "'validation'")
        self.validation["every"] = self.validation["every"] or run["checkpoint_every"]
        self.tensorboard = _section(run["tensorboard"], TENSORBOARD_DEFAULTS, "'tensorboard'")
        self.tensorboard["images_every"] = self.tensorboard["images_every"] or self.validation["every"]
        self.strategy = make_strategy(run["strategy"])
        check_batch(self.strategy, run["batch_size"])
        self.chief = is_chief(self.strategy)

        tf.random.set_seed(run["seed"])
        self.sampler = build_sampler(run, self.config, self.init_set)
        if self.loss.supervised and not self.sampler.supervised:
            raise ValueError(
                "the loss needs true fields (epe > 0) but image pairs from a folder have none: use loss "
                "'ncc' or 'mse' with --pairs"
            )
        self.validation_sampler = self.sampler
        if self.validation["folder"]:
            self.validation_sampler = PairFolderSampler(self.validation["folder"], self.sampler.shape, seed=0)
            if self.loss.supervised:
                raise ValueError("validation.folder holds image pairs without true fields; the loss needs them")
        count = max(int(self.validation["pairs"]), 0)
        self.validation_set = validation_batches(self.validation_sampler, count, self.validation["seed"], run["batch_size"])
        self.preview = validation_batches(self.validation_sampler, 1, self.validation["seed"], 1)[0]

        with self.strategy.scope():
            self.network = DIRVNet(self.config, seed=run["seed"])
            if self.init_set is not None:
                self.network.set_weights(self.init_set.weights)
            self.variables = list(self.network.variables_by_name.values())
            self.optimizer = keras.optimizers.Adam(run["learning_rate"])
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.checkpoint = tf.train.Checkpoint(network=self.network, optimizer=self.optimizer, step=self.step)
        checkpoint_dir = self.output_dir / "checkpoints" if self.chief else Path(tempfile.mkdtemp(prefix="dirvnet-worker-"))
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint)
        self._train_step = self._make_train_step()
        self._eval_step = tf.function(self._evaluate_batch, autograph=False)

    # -- steps --------------------------------------------------------------------------------------
    def _make_train_step(self):
        strategy, network, config, loss = self.strategy, self.network, self.config, self.loss
        variables, optimizer = self.variables, self.optimizer
        replicas = float(strategy.num_replicas_in_sync)

        def replica_step(fixed, moving, field):
            with tf.GradientTape() as tape:
                output = network(fixed, moving)
                total, terms = registration_loss(output, fixed, moving, field, config, loss)
                scaled = total / replicas if replicas > 1 else total
            gradients = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            return total, terms

        @tf.function(autograph=False)  # plain Python loops over levels and units: nothing to convert
        def train_step(fixed, moving, field):
            total, terms = strategy.run(replica_step, args=(fixed, moving, field))
            mean = tf.distribute.ReduceOp.MEAN
            return strategy.reduce(mean, total, axis=None), {k: strategy.reduce(mean, v, axis=None) for k, v in terms.items()}

        return train_step

    def _evaluate_batch(self, fixed, moving, field):
        """Loss terms and registration figures of one batch (no gradient)."""
        output = self.network(fixed, moving)
        total, terms = registration_loss(output, fixed, moving, field, self.config, self.loss)
        warped = warp(moving, output.flow)
        metrics = {"loss": total, **terms,
                   "lncc_before": local_ncc(fixed, moving), "lncc_after": local_ncc(fixed, warped),
                   "mse_before": tf.reduce_mean(tf.square(fixed - moving)),
                   "mse_after": tf.reduce_mean(tf.square(fixed - warped)),
                   "folding_percent": 100.0 * tf.reduce_mean(tf.cast(jacobian_determinant(output.flow) <= 0, tf.float32))}
        if self.validation_sampler.supervised:
            metrics["epe_voxels"] = tf.reduce_mean(tf.norm(output.flow - field, axis=-1))
            metrics["epe_before_voxels"] = tf.reduce_mean(tf.norm(field, axis=-1))
        return metrics

    def evaluate(self):
        """Mean validation figures over the held-out pairs (``{}`` without validation pairs)."""
        if not self.validation_set:
            return {}
        sums, count = {}, 0
        for fixed, moving, field in self.validation_set:
            metrics = self._eval_step(tf.constant(fixed), tf.constant(moving), tf.constant(field))
            n = fixed.shape[0]
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            count += n
        return {k: v / count for k, v in sums.items()}

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self):
        """Train to ``steps`` (resuming), validate, log; returns the weight-set folder (chief), or None
        (another worker, or stopped at ``stop_at`` before the end: the checkpoint holds the run)."""
        run = self.run
        start = int(self.step.numpy())
        end = run["steps"] if self.stop_at is None else min(self.stop_at, run["steps"])
        if start > end:
            raise ValueError(f"stop at step {end}: the run in {self.output_dir} is already at step {start}")
        dataset = distribute(self.strategy, step_dataset(self.sampler, run["batch_size"], run["seed"], start, end))
        logger = SummaryLogger(self.output_dir / "tensorboard" if self.chief and self.tensorboard["enabled"] else None)
        columns = ["step", "loss"] + self.loss.terms(self.config.levels) + ["learning_rate", "seconds"]
        train_log = _CsvLog(self.output_dir / "losses.csv", columns, self.chief)
        val_log = _CsvLog(self.output_dir / "validation.csv", None, self.chief)
        started = time.time()
        validation = {}
        bar = tqdm(total=run["steps"], initial=start, desc="training", disable=not (self.progress and self.chief))
        try:
            for fixed, moving, field in dataset:
                current = int(self.step.numpy())
                rate = learning_rate(current, run["learning_rate"], run["steps"], self.schedule)
                self.optimizer.learning_rate = rate
                total, terms = self._train_step(fixed, moving, field)
                self.step.assign_add(1)
                done = current + 1
                values = {"loss": float(total), **{k: float(v) for k, v in terms.items()}}
                train_log.write({"step": done, **{k: f"{v:.5f}" for k, v in values.items()},
                                 "learning_rate": f"{rate:.3g}", "seconds": f"{time.time() - started:.1f}"})
                if done % self.tensorboard["scalars_every"] == 0:
                    logger.scalars({**values, "learning_rate": rate}, done, "train/")
                if done % self.validation["every"] == 0 or done == run["steps"]:
                    validation = self._validate(done, logger, val_log)
                elif done % self.tensorboard["images_every"] == 0:
                    self._log_images(done, logger)
                bar.set_postfix(loss=f"{values['loss']:.3f}")
                bar.update(1)
                if done % run["checkpoint_every"] == 0:
                    train_log.flush()
                    val_log.flush()
                    self.manager.save()
        finally:
            bar.close()
            train_log.close()
            val_log.close()
            logger.close()
        if start >= run["steps"] and self.validation_set:
            validation = self.evaluate()
        self.manager.save()
        segments = _CsvLog(self.output_dir / "segments.csv", list(SEGMENT_COLUMNS), self.chief)
        segments.write({"command": self.command, "from_step": start, "to_step": int(self.step.numpy()),
                        "steps": run["steps"], "seconds": f"{time.time() - started:.1f}"})
        segments.close()
        if not self.chief or end < run["steps"]:
            return None
        return self._export(validation)

    def _validate(self, step, logger, val_log):
        validation = self.evaluate()
        if validation:
            val_log.write({"step": step, **{k: f"{v:.5f}" for k, v in validation.items()}})
            logger.scalars(validation, step, "validation/")
        self._log_images(step, logger)
        return validation

    def _log_images(self, step, logger):
        if logger.writer is None:
            return
        fixed, moving, _ = self.preview
        log_registration_images(logger, self.network, tf.constant(fixed), tf.constant(moving), step)
        log_activation_plots(logger, self.network, step)
        logger.flush()

    def _export(self, validation):
        log_path = self.output_dir / "losses.csv"
        training = {
            "run": self.run,
            "command": self.command,
            "steps": int(self.step.numpy()),
            "final_loss": _recent_mean(log_path),
            "final_loss_voxels": _recent_mean(log_path) if self.loss.supervised and not self.loss.unsupervised else None,
            "loss": self.loss.to_dict(),
            "schedule": self.schedule,
            "data": self.sampler.summary(),
            "validation": {"pairs": sum(b[0].shape[0] for b in self.validation_set),
                           "source": self.validation["folder"] or "held-out draws of the training data",
                           **validation},
            "strategy": {"name": self.run["strategy"], "replicas": self.strategy.num_replicas_in_sync},
            "init": None if self.init_set is None else {
                "path": str(self.init_set.path), "weights_sha256": self.init_set.metadata.get("weights_sha256")},
            "host": {"cpu_count": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU"))},
            "segments": _read_segments(self.output_dir / "segments.csv"),
        }
        weights_dir = self.output_dir / "weights"
        description = self.run.get("description") or (self.init_set.description if self.init_set else "")
        save_weight_set(weights_dir, self.config, self.network.get_weights(), description, training)
        return weights_dir


class _CsvLog:
    """Appends rows to a CSV file; an existing file keeps its own columns (older runs resume cleanly).
    ``columns`` None: taken from the first row written."""

    def __init__(self, path, columns, enabled=True):
        self.path, self.columns, self.enabled = Path(path), columns, enabled
        self.handle = self.writer = None
        if enabled and self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as handle:
                self.columns = next(csv.reader(handle))

    def write(self, row):
        if not self.enabled:
            return
        if self.writer is None:
            self.columns = self.columns or list(row)
            new = not (self.path.exists() and self.path.stat().st_size)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.handle, self.columns, extrasaction="ignore")
            if new:
                self.writer.writeheader()
        self.writer.writerow(row)

    def flush(self):
        if self.handle:
            self.handle.flush()

    def close(self):
        if self.handle:
            self.handle.close()
            self.handle = self.writer = None


def train(run, output_dir, command=None, progress=True, stop_at=None):
    """Train a network as ``run`` (a configuration dict) says; resumes from ``output_dir`` if it holds
    a checkpoint. Writes ``losses.csv``, ``validation.csv``, ``segments.csv``, ``tensorboard/``,
    ``checkpoints/`` and the weight set ``weights/``. Returns the weight-set folder. stop_at: stop after
    this step (checkpoint saved, no weight set; the schedule still runs over ``steps``), to train in chunks.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(run, output_dir, command, progress, stop_at).fit()


SEGMENT_COLUMNS = ("command", "from_step", "to_step", "steps", "seconds")
"""``segments.csv``: one row per invocation: its command, the steps it trained (from, to), the run's
step count at the time (the schedule's length) and its wall time in seconds."""


def _read_segments(path):
    """The rows of ``segments.csv`` (:data:`SEGMENT_COLUMNS`) with numbers as numbers; [] without it."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return [{k: (v if k == "command" else float(v) if k == "seconds" else int(v)) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def _recent_mean(log_path, last=50):
    """Mean loss of the last ``last`` logged steps."""
    if not Path(log_path).exists():
        return None
    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["loss"]) for r in rows[-last:] if r.get("loss")]
    return float(np.mean(losses)) if losses else None
