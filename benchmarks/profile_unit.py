"""Where the time of one variational unit goes: each operator timed alone on the finest level.

    python benchmarks/profile_unit.py [--weights mr3d] [--shape 192 224 192] [--repeats 5]

Prints a markdown table of median seconds per operator (compiled with tf.function, after warm-up) for
the weight set's architecture on a padded working grid of ``--shape`` (array order).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.model import DIRVNet  # noqa: E402
from DIRVNetLib.model.foe import componentwise_field_of_experts, field_of_experts, zero_mean  # noqa: E402
from DIRVNetLib.model.unit import variational_unit  # noqa: E402
from DIRVNetLib.ops import bspline_adjoint, bspline_interpolate, control_grid_shape, image_gradient, warp  # noqa: E402


def median_seconds(fn, repeats):
    fn()  # trace and warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mr3d")
    parser.add_argument("--shape", type=int, nargs="+", default=[192, 224, 192])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    weight_set = load_weight_set(resolve(args.weights, len(args.shape)))
    c = weight_set.config
    network = DIRVNet(c)
    network.set_weights(weight_set.weights)
    p = network.parameters(0, 0)
    rng = np.random.default_rng(0)
    shape = list(args.shape)
    n = len(shape)
    fixed = tf.constant(rng.uniform(size=[1, *shape, 1]), tf.float32)
    moving = tf.constant(rng.uniform(size=[1, *shape, 1]), tf.float32)
    control = tf.constant(rng.normal(size=[1, *control_grid_shape(shape, c.control_spacing), n]), tf.float32)
    flow = bspline_interpolate(control, c.control_spacing, shape)
    force = tf.concat([fixed] * n, axis=-1)
    s = c.control_spacing
    ops = {
        "B (control -> flow)": tf.function(lambda: bspline_interpolate(control, s, shape)),
        "warp": tf.function(lambda: warp(moving, flow)),
        "image gradient": tf.function(lambda: image_gradient(moving)),
        "FoE data term": tf.function(lambda: field_of_experts(moving - fixed, p.data_kernels, p.data_values, c.data_range, c.activation, c.centred_activations)),
        "B^T (adjoint)": tf.function(lambda: bspline_adjoint(force, s, control.shape[1:-1])),
        "FoE regulariser": tf.function(lambda: componentwise_field_of_experts(control, zero_mean(p.reg_kernels), p.reg_values, c.reg_range, c.activation, c.centred_activations)),
        "whole unit": tf.function(lambda: variational_unit(control, fixed, moving, p, s, c.activation, c.data_range, c.reg_range, c.centred_activations)),
    }
    print(f"| operator | median s ({'x'.join(map(str, shape))}, {weight_set.name}, {os.cpu_count()} CPUs) |")
    print("|---|---|")
    for name, fn in ops.items():
        print(f"| {name} | {median_seconds(fn, args.repeats):.4f} |")


if __name__ == "__main__":
    main()
