"""Network time of architecture variants, untrained, measured side by side in one process.

    python benchmarks/network_time.py [--case 2d-256] [--blocks 8] [--variants NAME ...]

Each variant of the bundled weight set's configuration for the case's dimension (names and overrides
as in ``architecture_study.py``) gets a network with initial weights (the time does not depend on the
weights' values); after a warm-up call per variant, blocks of five ``DIRVNet.final_flow`` calls (the
whole pass as one graph, as ``register(..., whole_graph=True)``) alternate between the variants, so the
machine's drift hits all of them alike. The image pairs are ``speed.py``'s cases. Prints a markdown
table: median milliseconds per call and the ratio to the first variant.
"""

import argparse
import dataclasses
import statistics
import time

from architecture_study import VARIANTS
from speed import CASES, _image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="2d-256", choices=list(CASES), help="image pair, as in speed.py")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks of five calls per variant")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[
            "base",
            "filters8",
            "kernels5-3",
            "units3",
            "filters8-kernel5",
            "filters8-units3",
            "filters8-kernel5-units3",
        ],
        choices=list(VARIANTS),
    )
    args = parser.parse_args()

    import SimpleITK as sitk
    import tensorflow as tf

    from DIRVNetLib.io.weights import load_weight_set, resolve
    from DIRVNetLib.model import DIRVNet
    from DIRVNetLib.preprocessing import normalise_intensity

    fixed, moving = (
        tf.constant(normalise_intensity(sitk.GetArrayViewFromImage(image))[None, ..., None])
        for image in _image(args.case)
    )
    base = load_weight_set(resolve(None, fixed.shape.rank - 2)).config
    networks = {name: DIRVNet(dataclasses.replace(base, **VARIANTS[name])) for name in args.variants}
    for network in networks.values():
        network.final_flow(fixed, moving)  # traces the graph
    times = {name: [] for name in networks}
    for _ in range(args.blocks):
        for name, network in networks.items():
            for _ in range(5):
                started = time.perf_counter()
                network.final_flow(fixed, moving).numpy()
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    first = medians[args.variants[0]]
    print(
        f"| variant | overrides | network ms | ratio |  ({CASES[args.case]}, bundled configuration, "
        f"median of {5 * args.blocks})"
    )
    print("|---|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {VARIANTS[name] or '-'} | {1e3 * seconds:.1f} | {seconds / first:.2f} |")


if __name__ == "__main__":
    main()
