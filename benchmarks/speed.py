"""Speed and peak memory of `DIRVNetLib.register` (issue 2 goals), one fresh process per case.

    python benchmarks/speed.py [--repeats 5] [--cases 3d-2mm 3d-1mm 2d-256] [--whole-graph]

Cases: the ICBM 2009a T1 template (shipped in nilearn) resampled to 2 mm (~91x109x91) and used at 1 mm
(197x233x189) registered to a smoothly deformed copy with the bundled `mr3d` weights, and a 2D 256x256
crop of a 1 mm axial slice with `mr2d`. Prints a markdown table: median wall time of `register` after
one warm-up call, the network's share, and the process's peak resident memory. ``--whole-graph``
passes ``whole_graph=True`` to `register` (each network pass as one graph).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "3d-2mm": "3D brain MR, 2 mm",
    "3d-1mm": "3D brain MR, 1 mm",
    "2d-256": "2D slice 256x256, 1 mm",
}


def _image(case):
    import numpy as np
    import SimpleITK as sitk

    from DIRVNetLib.data.deformations import deform_image
    from DIRVNetLib.io.images import load_training_volume
    from DIRVNetLib.io.resample import resample_isotropic

    volume = sitk.GetImageFromArray(load_training_volume("nilearn:mni152_t1"))
    if case == "3d-2mm":
        volume = resample_isotropic(volume, 2.0)
    if case == "2d-256":
        array = sitk.GetArrayFromImage(volume)[volume.GetSize()[2] // 2]
        padded = np.zeros((256, 256), array.dtype)
        padded[: array.shape[0], : array.shape[1]] = array[:256, :256]
        volume = sitk.GetImageFromArray(padded)
    fixed, _ = deform_image(volume, 6.0, seed=1)
    return fixed, volume


def measure(case, repeats, whole_graph):
    """Run inside a fresh process: warm up once, then time ``repeats`` calls."""
    import DIRVNetLib

    fixed, moving = _image(case)
    DIRVNetLib.register(fixed, moving, whole_graph=whole_graph)  # warm-up: builds the network, traces graphs
    totals, networks = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        result = DIRVNetLib.register(fixed, moving, whole_graph=whole_graph)
        totals.append(time.perf_counter() - started)
        networks.append(result.report["seconds"]["network"])
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux
    return {
        "case": case,
        "size": list(fixed.GetSize()),
        "median_s": statistics.median(totals),
        "network_median_s": statistics.median(networks),
        "peak_memory_gib": peak_gib,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--whole-graph", action="store_true", help="register(..., whole_graph=True)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeats, args.whole_graph)))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for case in args.cases:
        command = [sys.executable, __file__, "--child", case, "--repeats", str(args.repeats)]
        if args.whole_graph:
            command.append("--whole-graph")
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mode = ", whole-graph passes" if args.whole_graph else ""
    print(
        f"| case | size | median register (s) | network (s) | peak memory (GiB) |  (median of {args.repeats}, "
        f"after warm-up, {os.cpu_count()} CPUs{mode})"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {CASES[r['case']]} | {'x'.join(map(str, r['size']))} | {r['median_s']:.3f} | "
            f"{r['network_median_s']:.3f} | {r['peak_memory_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()
