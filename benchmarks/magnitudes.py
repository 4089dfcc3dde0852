"""End-point error of a weight set on real MR it never saw, against the size of the deformation.

    python benchmarks/magnitudes.py [--weights mr3d] [--refinement-rounds 0] [--coarse-pass F]
                                    [--image-gradient central]

3D weights: the ITK T1 head (Testing/Data, 128x128x62 at 2x2x3 mm), EPE inside its brain mask; 2D
weights: the BrainWeb T1 slice (181x217 at 1 mm), EPE inside the head (intensity > 10). Each is
deformed by smooth random fields (``deform_image``) of several largest magnitudes and seeds and
registered back with ``DIRVNetLib.register`` (default settings, or the rounds and coarse pass given).
Prints a markdown table: mean EPE
before and after (mm), their ratio, the folding of the final field and of the network's own field.
``--image-gradient`` runs the weights with the other finite-difference scheme in the data term (a
temporary copy of the weight set with that switch; the weights themselves unchanged).
"""

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import SimpleITK as sitk  # noqa: E402

import DIRVNetLib  # noqa: E402
from DIRVNetLib.data.deformations import deform_image  # noqa: E402
from DIRVNetLib.io.weights import load_weight_set, resolve, save_weight_set  # noqa: E402
from DIRVNetLib.metrics import endpoint_error  # noqa: E402
from DIRVNetLib.ops import GRADIENT_SCHEMES  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "Testing" / "Data"
CASES = [(2, 11), (4, 11), (6, 7), (8, 11), (8, 5), (8, 2024)]  # (largest displacement mm, seed)


def image_and_mask(dimension):
    if dimension == 3:
        image = sitk.ReadImage(str(DATA / "KmeansTest_T1UCharRaw.nii.gz"), sitk.sitkFloat32)
        return image, sitk.ReadImage(str(DATA / "KmeansTest_T1RawSkullStrip.nii.gz")) > 0
    image = sitk.ReadImage(str(DATA / "BrainT1Slice.png"), sitk.sitkFloat32)
    return image, image > 10.0


def with_gradient(weight_set, scheme, folder):
    """A copy of ``weight_set`` in ``folder`` whose network uses the finite-difference ``scheme``."""
    config = dataclasses.replace(weight_set.config, image_gradient=scheme)
    description = f"{weight_set.description} (run with {scheme} differences)"
    save_weight_set(folder, config, weight_set.weights, description, weight_set.metadata["training"])
    return load_weight_set(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mr3d", help="bundled name or weight-set folder")
    parser.add_argument("--refinement-rounds", type=int, default=0)
    parser.add_argument("--coarse-pass", type=float, default=None, metavar="F", help="as in dirvnet register")
    parser.add_argument("--image-gradient", choices=GRADIENT_SCHEMES, help="override the weight set's scheme")
    args = parser.parse_args()
    weight_set = load_weight_set(resolve(args.weights, None))
    scratch = tempfile.TemporaryDirectory(prefix="dirvnet-weights-")  # removed at exit
    if args.image_gradient is not None and args.image_gradient != weight_set.config.image_gradient:
        weight_set = with_gradient(weight_set, args.image_gradient, Path(scratch.name) / weight_set.path.name)
    moving, mask = image_and_mask(weight_set.dimension)
    zero = sitk.Image(moving.GetSize(), sitk.sitkVectorFloat64, weight_set.dimension)
    zero.CopyInformation(moving)

    print(
        f"weights {weight_set.path} (sha256 {weight_set.metadata['weights_sha256'][:16]}...), "
        f"{weight_set.config.image_gradient} differences, refinement rounds {args.refinement_rounds}, "
        f"coarse pass {args.coarse_pass}\n"
    )
    print("| largest displacement, seed | EPE before (mm) | EPE after (mm) | ratio | % J <= 0 | network's % J <= 0 |")
    print("|---|---:|---:|---:|---:|---:|")
    for max_mm, seed in CASES:
        fixed, true = deform_image(moving, max_mm, seed)
        result = DIRVNetLib.register(
            fixed, moving, weight_set.path, refinement_rounds=args.refinement_rounds, coarse_pass=args.coarse_pass
        )
        before = endpoint_error(zero, true, mask)["epe_mean_mm"]
        after = endpoint_error(result.displacement, true, mask)["epe_mean_mm"]
        report = result.report
        print(
            f"| {max_mm} mm, {seed} | {before:.3f} | {after:.3f} | {before / after:.2f} | "
            f"{report['jacobian_nonpositive_percent']:.4f} | {report['network_jacobian_nonpositive_percent']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
