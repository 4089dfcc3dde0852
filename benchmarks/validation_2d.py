"""2D weight sets and settings compared on real MR slices that neither 2D training nor the 2D benchmark uses.

    python benchmarks/validation_2d.py WEIGHTS [WEIGHTS ...] [--coarse-pass 1.5 ...]

Images: four axial slices of the ITK T1 head (Testing/Data, 128x128 at 2x2 mm; EPE inside its brain
mask) and the proton-density slice (181x217 at 1 mm; EPE where intensity > 10), each deformed by a smooth
random field (``deform_image``) with a largest vector of 4 and of 8 mm, once clean and once with
independent Gaussian noise of 3% of the 99th-percentile range in fixed and moving: 20 pairs, registered
on a 1 mm working grid (the 2D networks were trained on 1 mm slices). For the 2D benchmark's choices
(weights, coarse pass) without looking at its cases. Prints a markdown row per weight set and setting:
mean EPE (mm) over all pairs, clean and noisy, 4 and 8 mm.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

import DIRVNetLib  # noqa: E402
from DIRVNetLib.data.deformations import deform_image  # noqa: E402
from DIRVNetLib.metrics import endpoint_error  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "Testing" / "Data"
SLICES = (22, 28, 34, 40)
FIELDS = ((4.0, 31), (8.0, 32))  # (largest displacement mm, seed)
NOISE = 0.03


def images():
    """``[(name, image, mask)]``: the T1 head's axial slices and the proton-density slice."""
    head = sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"), sitk.sitkFloat32)
    brain = sitk.ReadImage(str(DATA / "KmeansTest_T1RawSkullStrip.nii.gz")) > 0
    found = [(f"t1-z{z}", head[:, :, z], brain[:, :, z]) for z in SLICES]
    pd = sitk.ReadImage(str(DATA / "BrainProtonDensitySlice.png"), sitk.sitkFloat32)
    return found + [("pd", pd, pd > 10.0)]


def with_noise(image, seed):
    """``image`` plus Gaussian noise of :data:`NOISE` times its 1-99th percentile range."""
    array = sitk.GetArrayFromImage(image)
    low, high = np.percentile(array, [1, 99])
    array = array + np.random.default_rng(seed).normal(0.0, NOISE * (high - low), array.shape).astype(np.float32)
    noisy = sitk.GetImageFromArray(array)
    noisy.CopyInformation(image)
    return noisy


def pairs():
    """``[(noisy, max_mm, fixed, moving, true field, mask)]``, clean and noisy twins of every field."""
    found = []
    for _, image, mask in images():
        for max_mm, seed in FIELDS:
            fixed, true = deform_image(image, max_mm, seed)
            found.append((False, max_mm, fixed, image, true, mask))
            found.append((True, max_mm, with_noise(fixed, seed + 100), with_noise(image, seed + 200), true, mask))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", help="bundled names or 2D weight-set folders")
    parser.add_argument(
        "--coarse-pass",
        type=float,
        nargs="*",
        default=[],
        metavar="F",
        help="also register with a first pass F times coarser (one row per factor)",
    )
    args = parser.parse_args()
    cases = pairs()
    print(f"{len(cases)} pairs\n")
    print("| weights | coarse pass | mean EPE (mm) | clean | noisy | 4 mm | 8 mm |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for weights in args.weights:
        for factor in [None, *args.coarse_pass]:
            errors = np.array(
                [
                    endpoint_error(
                        DIRVNetLib.register(
                            fixed, moving, weights, working_spacing=1.0, coarse_pass=factor
                        ).displacement,
                        true,
                        mask,
                    )["epe_mean_mm"]
                    for _, _, fixed, moving, true, mask in cases
                ]
            )
            noisy = np.array([c[0] for c in cases])
            large = np.array([c[1] == FIELDS[1][0] for c in cases])
            print(
                f"| {weights} | {factor or 'off'} | {errors.mean():.3f} | {errors[~noisy].mean():.3f} | "
                f"{errors[noisy].mean():.3f} | {errors[~large].mean():.3f} | {errors[large].mean():.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
