"""Weight sets compared on a training run's held-out synthetic pairs, small and large deformations apart.

    python benchmarks/held_out.py --config model_weights/mr3d/train.json WEIGHTS [WEIGHTS ...] [--pairs 16]
        [--coarse-pass F]

The pairs are the run configuration's validation pairs (the draws `dirvnet train` validates on, from
random streams training never uses; `--pairs` more of them). For every weight set it prints a markdown
row: mean end-point error (voxels) and mean relative EPE (each pair's EPE over its true field's mean
length, at least 0.25 voxel; 1 = no better than doing nothing), over all pairs and over the half with
the smaller and the larger true fields, and the worst pair's error reduction (true length / EPE).
The network runs on the pairs as drawn; with ``--coarse-pass F`` every pair goes through
``DIRVNetLib.register`` instead (unit spacing, its intensity normalisation, a first pass F times coarser,
no folding removal).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from DIRVNetLib import register  # noqa: E402
from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.model import DIRVNet  # noqa: E402
from DIRVNetLib.registration.geometry import WorkingGrid  # noqa: E402
from DIRVNetLib.training.config import ValidationConfig, read_run  # noqa: E402
from DIRVNetLib.training.losses import RELATIVE_FLOOR  # noqa: E402
from DIRVNetLib.training.trainer import build_sampler, network_config, validation_batches  # noqa: E402


def pair_errors(weight_set, batches, coarse_pass=None):
    """``[(mean true length, mean EPE)]`` per pair, voxels: the network's flow, or with ``coarse_pass``
    the flow of a ``register`` call with that first pass."""
    network = DIRVNet(weight_set.config)
    network.set_weights(weight_set.weights)
    rows = []
    for fixed, moving, field in batches:
        if coarse_pass is None:
            flows = network(fixed, moving).flow.numpy()
        else:
            flows = [registered_flow(weight_set, f[..., 0], m[..., 0], coarse_pass) for f, m in zip(fixed, moving)]
        for predicted, truth in zip(flows, field):
            rows.append((np.linalg.norm(truth, axis=-1).mean(), np.linalg.norm(predicted - truth, axis=-1).mean()))
    return np.array(rows)


def registered_flow(weight_set, fixed, moving, coarse_pass):
    """The flow (voxels, array axis order) of ``register`` on two arrays taken as unit-spacing images."""
    fixed_image, moving_image = sitk.GetImageFromArray(np.asarray(fixed)), sitk.GetImageFromArray(np.asarray(moving))
    result = register(fixed_image, moving_image, weight_set.path, coarse_pass=coarse_pass, unfold=False)
    return WorkingGrid.for_fixed(fixed_image).displacement_to_flow(result.displacement)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training run configuration whose validation pairs to use")
    parser.add_argument("--pairs", type=int, default=ValidationConfig.pairs)
    parser.add_argument(
        "--coarse-pass",
        type=float,
        default=None,
        metavar="F",
        help="register every pair with a first pass F times coarser (as in dirvnet register)",
    )
    parser.add_argument("weights", nargs="+", help="bundled names or weight-set folders")
    args = parser.parse_args()
    run = read_run(args.config)
    config, init_set = network_config(run)
    batches = validation_batches(build_sampler(run, config, init_set), args.pairs, ValidationConfig.seed, 2)

    how = f", registered with a coarse pass {args.coarse_pass:g}" if args.coarse_pass else ""
    print(f"{args.pairs} held-out pairs of {args.config}{how}\n")
    print(
        "| weights | EPE (vox) | relative EPE | small half: EPE / relative | large half: EPE / relative "
        "| worst reduction |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.weights:
        weight_set = load_weight_set(resolve(name, config.ndim))
        rows = pair_errors(weight_set, batches, args.coarse_pass)
        relative = rows[:, 1] / np.maximum(rows[:, 0], RELATIVE_FLOOR)
        order = np.argsort(rows[:, 0])
        small, large = order[: len(order) // 2], order[len(order) // 2 :]
        print(
            f"| {name} (sha256 {weight_set.metadata['weights_sha256'][:12]}...) | {rows[:, 1].mean():.3f} | "
            f"{relative.mean():.3f} | {rows[small, 1].mean():.3f} / {relative[small].mean():.3f} | "
            f"{rows[large, 1].mean():.3f} / {relative[large].mean():.3f} | {1 / relative.max():.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
