"""Where the time of one variational unit goes: each operator timed alone on the finest level.

    python benchmarks/profile_unit.py [--weights mr3d] [--shape 192 224 192] [--repeats 5]

Prints a markdown table of median seconds per part of the unit as the network runs it (XLA-compiled
pointwise parts, convolutions outside XLA, after warm-up) for the weight set's architecture on a padded
working grid of ``--shape`` (array order; every axis even).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # oneDNN's CPU kernels, as importing DIRVNetLib turns on

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.model import DIRVNet  # noqa: E402
from DIRVNetLib.model.foe import (  # noqa: E402
    _activate,
    adjoint_convolution,
    channel_values,
    componentwise_field_of_experts,
    convolve_filters,
    zero_mean,
)
from DIRVNetLib.model.unit import _data_gradient, _warp_residual, variational_unit  # noqa: E402
from DIRVNetLib.ops import control_grid_shape  # noqa: E402
from DIRVNetLib.ops.polyphase import polyphase_applicable  # noqa: E402


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
    s = c.control_spacing
    residual, gradient = _warp_residual(control, fixed, moving, s, c.image_gradient)
    polyphase = polyphase_applicable(shape, c.data_kernel)
    responses = convolve_filters(residual, p.data_kernels, polyphase)
    values = channel_values(p.data_values, n, polyphase)
    activated = _activate(responses, values, c.data_range, c.activation, c.centred_activations)
    data_foe = adjoint_convolution(activated, p.data_kernels, polyphase)
    form = " (polyphase)" if polyphase else ""
    ops = {
        "B, warp, residual, image gradient (XLA)": lambda: _warp_residual(control, fixed, moving, s, c.image_gradient),
        f"FoE data: convolution{form}": tf.function(lambda: convolve_filters(residual, p.data_kernels, polyphase)),
        "FoE data: activations (XLA)": lambda: _activate(
            responses, values, c.data_range, c.activation, c.centred_activations
        ),
        f"FoE data: adjoint convolution{form}": tf.function(
            lambda: adjoint_convolution(activated, p.data_kernels, polyphase)
        ),
        "B^T of the force (XLA)": lambda: _data_gradient(gradient, data_foe, control, s),
        "FoE regulariser": tf.function(
            lambda: componentwise_field_of_experts(
                control, zero_mean(p.reg_kernels), p.reg_values, c.reg_range, c.activation, c.centred_activations
            )
        ),
        "whole unit": tf.function(
            lambda: variational_unit(
                control,
                fixed,
                moving,
                p,
                s,
                c.activation,
                c.data_range,
                c.reg_range,
                c.centred_activations,
                c.image_gradient,
            )
        ),
    }
    print(f"| operator | median s ({'x'.join(map(str, shape))}, {weight_set.name}, {os.cpu_count()} CPUs) |")
    print("|---|---|")
    for name, fn in ops.items():
        print(f"| {name} | {median_seconds(fn, args.repeats):.4f} |")


if __name__ == "__main__":
    main()
