"""Render the extension's result figure (Resources/Screenshots/DIRVNet-result-figure.png).

    python tools/render_result_figure.py [--weights mr3d] [--output Resources/Screenshots/DIRVNet-result-figure.png]

Loads the sample pair (Testing/Data: the T1 head as moving volume, its deformed copy `sample_fixed.nii.gz`
as fixed volume) into a bare MRML scene with MRML's storage nodes, registers it with
`DIRVNetLib.mrml.register` (warped and Jacobian volumes, intermediate fields kept) and draws the axial
slice through the ventricles of the output nodes with matplotlib. Not a capture of the Slicer window: the slicer-core
wheel has MRML but no views.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402

from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.io.atomic import atomic_path  # noqa: E402
from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.metrics import displacement_transform  # noqa: E402
from DIRVNetLib.mrml.convert import volume_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "Testing" / "Data"


def load_volume(scene, path):
    """A scalar volume node read by MRML's archetype storage node, as Slicer reads a file."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise SystemExit(f"MRML could not read {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mr3d", help="bundled name or weight-set folder")
    parser.add_argument("--output", type=Path, default=ROOT / "Resources" / "Screenshots" / "DIRVNet-result-figure.png")
    args = parser.parse_args()
    weight_set = load_weight_set(resolve(args.weights, 3))

    scene = slicer.vtkMRMLScene()
    moving = load_volume(scene, DATA / "KmeansTest_T1UCharRaw.nii.gz")
    fixed = load_volume(scene, DATA / "sample_fixed.nii.gz")
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "warped")
    jacobian = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
    job = mrml.prepare(fixed, moving, weights=args.weights, outputVolumeNode=warped, jacobianVolumeNode=jacobian,
                       keepIntermediate=True)
    result = job.run()
    job.apply(result)
    report = result.report

    fixed_array = volume_array(fixed)
    k = int(0.3 * fixed_array.shape[0])  # an axial slice through the lateral ventricles
    fixed_slice, moving_slice, warped_slice = (a[k].astype(np.float32) for a in (fixed_array, volume_array(moving),
                                                                                 volume_array(warped)))
    steps = [result.intermediate[i] for i in (0, len(result.intermediate) // 2, -1)]
    step_slices = []
    for *position, field in steps:
        image = sitk.Resample(job.moving, job.fixed, displacement_transform(field), sitk.sitkLinear, 0.0)
        step_slices.append((position, sitk.GetArrayFromImage(image)[k]))

    gray = dict(cmap="gray", vmin=0.0, vmax=float(np.percentile(fixed_slice, 99.5)))
    difference = dict(cmap="magma", vmin=0.0, vmax=float(np.percentile(np.abs(fixed_slice - moving_slice), 99.5)))
    panels = [
        ("fixed", fixed_slice, gray), ("moving", moving_slice, gray),
        ("moving under the DIRVNet transform", warped_slice, gray),
        ("|fixed - moving|", np.abs(fixed_slice - moving_slice), difference),
        ("|fixed - aligned moving|", np.abs(fixed_slice - warped_slice), difference),
    ]
    panels += [("after " + " ".join(f"{n} {v}" for n, v in zip(("round", "level", "unit"), position)), array, gray)
               for position, array in step_slices]
    panels.append(("Jacobian determinant", volume_array(jacobian)[k], dict(cmap="bwr", vmin=0.5, vmax=1.5)))

    plt.style.use("dark_background")
    figure, axes = plt.subplots(2, 5, figsize=(14, 6.4))
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (title, array, style) in zip(list(axes[0]) + list(axes[1]), panels):
        shown = axis.imshow(array, **style)
        axis.set_title(title, fontsize=10)
    figure.colorbar(shown, ax=axes[1][3], fraction=0.046, pad=0.04)  # the last panel: the Jacobian
    figure.suptitle(
        f"DIRVNet: {moving.GetName()} to {fixed.GetName()} ({len(result.intermediate)} units), "
        f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}. "
        f"Weights: {weight_set.name} (sha256 {weight_set.metadata['weights_sha256'][:12]}...).\n"
        "Rendered with matplotlib from the output nodes of DIRVNetLib.mrml on a bare MRML scene (not a Slicer "
        "screen capture).", fontsize=9)
    with atomic_path(args.output) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
