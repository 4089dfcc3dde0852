"""tf.distribute strategies for training, selected by name.

"default": one device (TensorFlow's default strategy: the GPU if there is one, else the CPU);
"mirrored": synchronous data parallelism over all local GPUs (MirroredStrategy);
"multiworker": synchronous data parallelism over machines (MultiWorkerMirroredStrategy; the cluster is
described by the ``TF_CONFIG`` environment variable, every worker runs the same command).
The global batch (``batch_size``) is split over the replicas, so it must be a multiple of their number.
"""

import json
import os

import tensorflow as tf

from DIRVNetLib.training.config import STRATEGIES


def make_strategy(name="default"):
    """The strategy called ``name`` (see :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy '{name}'; choose from {', '.join(STRATEGIES)}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """True on the worker that writes logs, checkpoints and the weight set (always, except on the
    non-chief workers of a multi-worker cluster)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    task_type, index = task.get("type"), task.get("index", 0)
    return task_type in (None, "chief") or (task_type == "worker" and index == 0 and not _has_chief())


def _has_chief():
    return "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})


def check_batch(strategy, batch_size):
    """Raise ValueError unless the global ``batch_size`` splits evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {replicas} replicas of the strategy")


def distribute(strategy, dataset):
    """``dataset`` (global batches) as the strategy's distributed dataset; every worker builds the same
    deterministic batches and keeps its share (auto-shard by data)."""
    if strategy.num_replicas_in_sync == 1 and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
