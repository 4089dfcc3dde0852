"""The training loop: Adam with a learning-rate schedule, per-level losses (supervised, unsupervised or
hybrid), validation on held-out pairs, CSV logs, TensorBoard, resumable checkpoints, tf.distribute
strategies, fine-tuning from a weight set, and weight-set export.

The run is a :class:`~DIRVNetLib.training.config.RunConfig`. Data depend on ``(seed, step)`` only, so a
resumed run sees exactly what an uninterrupted one would; a run folder is resumed only by the same run
(:mod:`DIRVNetLib.training.runs`); a run may be trained in chunks (``stop_at``); SIGINT or SIGTERM ends
the step under way and saves a checkpoint; ``segments.csv`` records every invocation, which the
exported metadata repeats.
"""

import copy
import os
import signal
import sys
import tempfile
import threading
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
from DIRVNetLib.model import DIRVNet
from DIRVNetLib.ops import warp
from DIRVNetLib.training import runs
from DIRVNetLib.training.config import RunConfig, load_run
from DIRVNetLib.training.losses import jacobian_determinant, local_ncc, registration_loss
from DIRVNetLib.training.schedule import WarmupSchedule
from DIRVNetLib.training.strategy import check_batch, distribute, is_chief, make_strategy
from DIRVNetLib.training.tensorboard import SummaryLogger, log_activation_plots, log_registration_images

DEFAULT_PATCH = {2: [128, 128], 3: [64, 64, 64]}


def network_config(run):
    """The run's :class:`NetworkConfig` (its ``network``, or the ``init`` weight set's) and the init
    weight set (or None). Raises ValueError when both are given and differ, or dimensions clash."""
    init_set = None
    if run.init:
        init_set = load_weight_set(resolve(run.init, None))
        wanted = run.network if run.network is not None else init_set.config
        if wanted.ndim != init_set.config.ndim:
            raise ValueError(
                f"weight set {init_set.path} is for {init_set.config.ndim}D images "
                f"but the run's network is {wanted.ndim}D"
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
    elif run.network is not None:
        config = run.network
    else:
        raise ValueError("the run has no network section and no --init weight set")
    shape = run.data.patch_shape if run.data is not None else None
    if shape is not None and len(shape) != config.ndim:
        origin = (
            f"weight set {init_set.path} is for {config.ndim}D images" if init_set else f"network is {config.ndim}D"
        )
        raise ValueError(f"the {origin} but patch_shape {list(shape)} has {len(shape)} axes")
    return config, init_set


def patch_shape(data, config):
    """The training patch shape of a ``data`` section (default: the dimension's default padded to the
    size rule); ValueError unless it has the network's axes and obeys its size rule."""
    shape = data.patch_shape
    shape = config.padded_shape(DEFAULT_PATCH[config.ndim]) if shape is None else [int(n) for n in shape]
    if len(shape) != config.ndim or config.padded_shape(shape) != shape:
        raise ValueError(
            f"patch_shape {shape} must have {config.ndim} axes, each a multiple of {config.size_multiple} "
            f"and at least {config.min_size}"
        )
    return shape


def data_sources(data):
    """The files and folders the ``data`` section reads (pair files, or expanded training volumes)."""
    if data.pairs:
        return [path for _, fixed, moving in find_pairs(data.pairs) for path in (fixed, moving)]
    return expand_volume_sources(data.volumes or ())


def build_sampler(run, config, init_set=None):
    """The training sampler of the run's ``data`` section: a :class:`PairSampler` (synthetic
    deformations, supervised) or a :class:`PairFolderSampler` (image pairs, unsupervised)."""
    data = run.data
    if data is None:
        raise ValueError("the run has no data section (synthetic sources or a pairs folder)")
    shape = patch_shape(data, config)
    augmentation = data.augmentation.given()
    if data.pairs:
        _check_pair_dimension(data.pairs, config, init_set)
        return PairFolderSampler(data.pairs, shape, data.volume_spacing, run.seed, **augmentation)
    if data.max_magnitude is None and init_set is None:
        raise ValueError("data needs 'max_magnitude' (largest synthetic displacement, voxels)")
    volumes = [load_training_volume(v, data.volume_spacing) for v in expand_volume_sources(data.volumes or ())]
    max_magnitude = data.max_magnitude if data.max_magnitude is not None else 2.0 * config.control_spacing
    return PairSampler(
        shape,
        max_magnitude,
        data.sources or ("chessboard", "shapes"),
        volumes,
        seed=run.seed,
        affine_scale=data.affine_scale,
        shape_blur=data.shape_blur,
        control_points=data.control_points,
        slice_thickness=1.0 if data.slice_thickness is None else data.slice_thickness,
        deformation=data.deformation,
        **augmentation,
    )


def _check_pair_dimension(folder, config, init_set):
    """Refuse pairs of lower dimension than the network before loading them all."""
    _, fixed_path, _ = find_pairs(folder)[0]
    dimension = read_image(fixed_path, "fixed").GetDimension()
    if dimension < config.ndim:
        origin = (
            f"weight set {init_set.path} is for {config.ndim}D images" if init_set else f"network is {config.ndim}D"
        )
        raise ValueError(f"the {origin} but pairs folder {folder} holds {dimension}D images")


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


class _Signals:
    """While active (main thread only), SIGINT and SIGTERM set :attr:`received` instead of stopping the
    process, so the training step under way ends and a checkpoint is written; a second signal acts at
    once."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        self._restore()
        print(f"\n{self.received}: ending the step under way and saving a checkpoint", file=sys.stderr)

    def _restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def __exit__(self, *exc):
        self._restore()


class Trainer:
    """One training run in ``output_dir`` (see :func:`train`)."""

    def __init__(self, run, output_dir, command=None, progress=True, stop_at=None, fresh=False):
        self.run = run if isinstance(run, RunConfig) else load_run(run)
        self.output_dir = Path(output_dir)
        self.command = command or " ".join(sys.argv)
        self.progress = progress
        if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
            raise ValueError(f"stop_at must be a step number >= 1, got {stop_at!r}")
        self.stop_at = stop_at
        run = self.run
        if run.data is None:
            raise ValueError("the run has no data section (synthetic sources or a pairs folder)")
        self.config, self.init_set = network_config(run)
        self.loss = run.loss
        self.strategy = make_strategy(run.strategy)
        check_batch(self.strategy, run.batch_size)
        self.chief = is_chief(self.strategy)

        tf.random.set_seed(run.seed)
        self.sampler = build_sampler(run, self.config, self.init_set)
        if self.loss.supervised and not self.sampler.supervised:
            raise ValueError(
                "the loss needs true fields (epe > 0) but image pairs from a folder have none: use loss "
                "'ncc' or 'mse' with --pairs"
            )
        self.validation_sampler = self.sampler
        if run.validation.folder:
            self.validation_sampler = PairFolderSampler(run.validation.folder, self.sampler.shape, seed=0)
            if self.loss.supervised:
                raise ValueError("validation.folder holds image pairs without true fields; the loss needs them")
        self.validation_set = validation_batches(
            self.validation_sampler, run.validation.pairs, run.validation.seed, run.batch_size
        )
        self.preview = validation_batches(self.validation_sampler, 1, run.validation.seed, 1)[0]
        self.schedule = WarmupSchedule(run.learning_rate, run.steps, run.schedule)
        # Every check passed: the folder now holds this run (refused if it holds another).
        self.data_files = runs.data_files(data_sources(run.data))
        record = runs.identity(run, self.config, self.init_set, self.data_files)
        self.resumed = runs.prepare(self.output_dir, record, fresh) if self.chief else False

        with self.strategy.scope():
            self.network = DIRVNet(self.config, seed=run.seed)
            if self.init_set is not None:
                self.network.set_weights(self.init_set.weights)
            self.variables = list(self.network.variables_by_name.values())
            self.optimizer = keras.optimizers.Adam(run.learning_rate)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.checkpoint = tf.train.Checkpoint(network=self.network, optimizer=self.optimizer, step=self.step)
        checkpoint_dir = (
            self.output_dir / "checkpoints" if self.chief else Path(tempfile.mkdtemp(prefix="dirvnet-worker-"))
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
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
            return strategy.reduce(mean, total, axis=None), {
                k: strategy.reduce(mean, v, axis=None) for k, v in terms.items()
            }

        return train_step

    def _evaluate_batch(self, fixed, moving, field):
        """Loss terms and registration figures of one batch (no gradient)."""
        output = self.network(fixed, moving)
        total, terms = registration_loss(output, fixed, moving, field, self.config, self.loss)
        warped = warp(moving, output.flow)
        metrics = {
            "loss": total,
            **terms,
            "lncc_before": local_ncc(fixed, moving),
            "lncc_after": local_ncc(fixed, warped),
            "mse_before": tf.reduce_mean(tf.square(fixed - moving)),
            "mse_after": tf.reduce_mean(tf.square(fixed - warped)),
            "folding_percent": 100.0 * tf.reduce_mean(tf.cast(jacobian_determinant(output.flow) <= 0, tf.float32)),
        }
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
        (another worker, or stopped at ``stop_at`` before the end: the checkpoint holds the run).
        Raises KeyboardInterrupt after saving a checkpoint when SIGINT or SIGTERM arrived."""
        run = self.run
        start = int(self.step.numpy())
        end = run.steps if self.stop_at is None else min(self.stop_at, run.steps)
        if start > end:
            raise ValueError(f"stop at step {end}: the run in {self.output_dir} is already at step {start}")
        if self.chief and (self.resumed or start):
            print(f"resuming the run in {self.output_dir} from step {start} of {run.steps}")
        started = time.time()
        segments = runs.CsvLog(self.output_dir / "segments.csv", list(runs.SEGMENT_COLUMNS), self.chief)
        ended = "failed"
        try:
            with _Signals() as signals:
                validation = self._train(start, end, started, signals)
            reached = int(self.step.numpy())
            ended = (
                "interrupted" if signals.received and reached < end else "completed" if end == run.steps else "stopped"
            )
        finally:
            if ended != "failed":  # after an error the step under way may be half applied
                self.manager.save(checkpoint_number=int(self.step.numpy()))
            segments.write(
                {
                    "command": self.command,
                    "from_step": start,
                    "to_step": int(self.step.numpy()),
                    "steps": run.steps,
                    "seconds": f"{time.time() - started:.1f}",
                    "ended": ended,
                }
            )
            segments.close()
        if ended == "interrupted":
            print(
                f"checkpoint saved at step {int(self.step.numpy())}; run the same command again to resume",
                file=sys.stderr,
            )
            raise KeyboardInterrupt(signals.received)
        if start >= run.steps and self.validation_set:
            validation = self.evaluate()
        if not self.chief or end < run.steps:
            return None
        return self._export(validation)

    def _train(self, start, end, started, signals):
        """Steps ``start .. end - 1`` (until a signal arrives); returns the last validation figures."""
        run = self.run
        dataset = distribute(self.strategy, step_dataset(self.sampler, run.batch_size, run.seed, start, end))
        logger = SummaryLogger(self.output_dir / "tensorboard" if self.chief and run.tensorboard.enabled else None)
        columns = ["step", "loss"] + self.loss.terms(self.config.levels) + ["learning_rate", "seconds"]
        train_log = runs.CsvLog(self.output_dir / "losses.csv", columns, self.chief, from_step=start)
        val_log = runs.CsvLog(self.output_dir / "validation.csv", None, self.chief, from_step=start)
        validation = {}
        bar = tqdm(total=run.steps, initial=start, desc="training", disable=not (self.progress and self.chief))
        try:
            for fixed, moving, field in dataset:
                current = int(self.step.numpy())
                rate = self.schedule(current)
                self.optimizer.learning_rate = rate
                total, terms = self._train_step(fixed, moving, field)
                self.step.assign_add(1)
                done = current + 1
                values = {"loss": float(total), **{k: float(v) for k, v in terms.items()}}
                train_log.write(
                    {
                        "step": done,
                        **{k: f"{v:.5f}" for k, v in values.items()},
                        "learning_rate": f"{rate:.3g}",
                        "seconds": f"{time.time() - started:.1f}",
                    }
                )
                if done % run.tensorboard.scalars_every == 0:
                    logger.scalars({**values, "learning_rate": rate}, done, "train/")
                if done % run.validation_every == 0 or done == run.steps:
                    validation = self._validate(done, logger, val_log)
                elif done % run.images_every == 0:
                    self._log_images(done, logger)
                bar.set_postfix(loss=f"{values['loss']:.3f}")
                bar.update(1)
                if done % run.checkpoint_every == 0:
                    train_log.flush()
                    val_log.flush()
                    self.manager.save(checkpoint_number=done)
                if signals.received:
                    break
        finally:
            bar.close()
            train_log.close()
            val_log.close()
            logger.close()
        return validation

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
        steps = int(self.step.numpy())
        init = None
        if self.init_set is not None:
            init = {
                "path": str(Path(self.init_set.path).resolve()),
                "name": self.init_set.name,
                "sha256": runs.init_set_digest(self.init_set.path),
                "weights_sha256": self.init_set.metadata.get("weights_sha256"),
            }
        training = {
            "run": self.run.to_dict(),
            "command": self.command,
            "steps": steps,
            "final_loss": runs.recent_mean(log_path),
            "final_loss_voxels": runs.recent_mean(log_path)
            if self.loss.supervised and not self.loss.unsupervised
            else None,
            "loss": self.loss.to_dict(),
            "schedule": self.run.schedule.to_dict(),
            "data": self.sampler.summary(),
            "data_files": self.data_files,
            "validation": {
                "pairs": sum(b[0].shape[0] for b in self.validation_set),
                "source": self.run.validation.folder or "held-out draws of the training data",
                **validation,
            },
            "strategy": {"name": self.run.strategy, "replicas": self.strategy.num_replicas_in_sync},
            "init": init,
            "host": {"cpu_count": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU"))},
            "segments": runs.read_segments(self.output_dir / "segments.csv"),
        }
        weights_dir = self.output_dir / "weights"
        save_weight_set(weights_dir, self.config, self.network.get_weights(), self._description(steps), training)
        return weights_dir

    def _description(self, steps):
        """The run's description; a fine-tuned set without one says what it was tuned from and on."""
        if self.run.description or self.init_set is None:
            return self.run.description
        data = self.run.data
        if data.pairs:
            what = f"the image pairs in {Path(data.pairs).resolve()}"
        else:
            what = "synthetic deformations of " + ", ".join(data.sources or ("chessboard", "shapes"))
        return (
            f"{self.init_set.name} fine-tuned for {steps} steps on {what} (from {Path(self.init_set.path).resolve()})"
        )


def train(run, output_dir, command=None, progress=True, stop_at=None, fresh=False):
    """Train a network as ``run`` (a :class:`RunConfig`, or its JSON object) says; resumes from
    ``output_dir`` if it holds a checkpoint of the same run (another run there is refused unless
    ``fresh``, which moves it aside). Writes ``losses.csv``, ``validation.csv``, ``segments.csv``,
    ``tensorboard/``, ``checkpoints/`` and the weight set ``weights/``; returns the weight-set folder.
    stop_at: stop after this step (checkpoint saved, no weight set; the schedule still runs over
    ``steps``), to train in chunks.
    """
    return Trainer(run, output_dir, command, progress, stop_at, fresh).fit()
