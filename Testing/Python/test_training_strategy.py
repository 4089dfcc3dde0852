"""tf.distribute strategies: the default strategy on CPU, and MirroredStrategy over two logical CPU
devices (in a subprocess, since devices are fixed when TensorFlow starts) giving the same weights as
one device: the loss scaling and the split of the global batch are right."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from DIRVNetLib.training.strategy import check_batch, make_strategy

ROOT = Path(__file__).resolve().parents[2]


def test_strategies_by_name():
    strategy = make_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    check_batch(strategy, 3)
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


@pytest.mark.slow
def test_mirrored_over_two_replicas_matches_one_device(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import DIRVNetLib.training.trainer as trainer
        from DIRVNetLib.io.weights import load_weight_set
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        trainer.make_strategy = lambda name: mirrored if name == "mirrored" else tf.distribute.get_strategy()
        tiny = {{"ndim": 2, "levels": 2, "units": 2, "control_spacing": 4, "data_filters": 4, "data_kernel": 5,
                "reg_filters": 4, "reg_kernel": 3}}
        weights = {{}}
        for name in ("default", "mirrored"):
            data = {{"patch_shape": [32, 32], "max_magnitude": 3.0, "sources": ["chessboard"]}}
            run = {{"network": tiny, "data": data,
                   "steps": 2, "batch_size": 4, "learning_rate": 0.01, "seed": 0, "loss": "hybrid",
                   "validation": {{"pairs": 2}}, "tensorboard": False, "strategy": name}}
            weights[name] = load_weight_set(trainer.train(run, r"{tmp_path}/" + name, progress=False))
        a, b = weights["default"].weights, weights["mirrored"].weights
        print(json.dumps({{"replicas": weights["mirrored"].metadata["training"]["strategy"]["replicas"],
                          "max_difference": max(float(np.abs(a[k] - b[k]).max()) for k in a)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_difference"] < 1e-5, result
