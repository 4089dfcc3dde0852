"""Network time of architecture variants, untrained, measured side by side in one process.

    python benchmarks/network_time.py [--weights mr2d] [--shape 256 256] [--blocks 8] [--variants NAME ...]

Each variant of the weight set's configuration (names and overrides as in ``architecture_study.py``)
gets a network with initial weights (the time does not depend on the weights' values); after a
warm-up call per variant, blocks of five ``DIRVNet.final_flow`` calls (the whole pass as one graph,
as ``register(..., whole_graph=True)``) alternate between the variants, so the machine's drift hits
all of them alike. The images are the ICBM 2009a template's middle axial slice (2D, cropped or padded
to the shape) or the template resampled to the shape (3D), and a smoothly deformed copy. Prints a
markdown table: median milliseconds per call and the ratio to the first variant.
"""

import argparse
import dataclasses
import statistics
import time

from architecture_study import VARIANTS


def _pair(shape):
    import numpy as np
    import SimpleITK as sitk

    from DIRVNetLib.data.deformations import deform_image
    from DIRVNetLib.data.images import normalise_intensity
    from DIRVNetLib.io.images import load_training_volume

    volume = load_training_volume("nilearn:mni152_t1")
    if len(shape) == 2:
        middle = volume[volume.shape[0] // 2]
        image = np.zeros(shape, np.float32)
        rows, cols = min(shape[0], middle.shape[0]), min(shape[1], middle.shape[1])
        image[:rows, :cols] = middle[:rows, :cols]
        image = sitk.GetImageFromArray(image)
    else:
        source = sitk.GetImageFromArray(volume)
        reference = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkFloat32)
        reference.SetSpacing([s * n / m for s, n, m in zip(source.GetSpacing(), source.GetSize(), reversed(shape))])
        image = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear)
    fixed, _ = deform_image(image, 6.0, seed=1)
    return [normalise_intensity(sitk.GetArrayViewFromImage(i))[None, ..., None] for i in (fixed, image)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mr2d", help="weight set whose configuration the variants modify")
    parser.add_argument("--shape", type=int, nargs="+", default=[256, 256], help="image shape, numpy order")
    parser.add_argument("--blocks", type=int, default=8, help="alternating blocks of five calls per variant")
    parser.add_argument("--variants", nargs="+", default=["base", "filters8", "kernels5-3", "units3",
                                                           "filters8-kernel5", "filters8-units3",
                                                           "filters8-kernel5-units3"], choices=list(VARIANTS))
    args = parser.parse_args()

    import tensorflow as tf

    from DIRVNetLib.io.weights import load_weight_set, resolve
    from DIRVNetLib.model import DIRVNet

    base = load_weight_set(resolve(args.weights, len(args.shape))).config
    if base.ndim != len(args.shape):
        parser.error(f"--shape has {len(args.shape)} axes but weight set {args.weights} is {base.ndim}D")
    fixed, moving = (tf.constant(a) for a in _pair(args.shape))
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
    print(f"| variant | overrides | network ms | ratio |  ({'x'.join(map(str, args.shape))}, {args.weights} "
          f"configuration, median of {5 * args.blocks})")
    print("|---|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {VARIANTS[name] or '-'} | {1e3 * seconds:.1f} | {seconds / first:.2f} |")


if __name__ == "__main__":
    main()
