"""Render the extension's result figure (Resources/Screenshots/DIRVNet-result-figure.png).

    python tools/render_result_figure.py [--weights mr3d] [--output Resources/Screenshots/DIRVNet-result-figure.png]

Loads the sample pair (Testing/Data: the T1 head as moving volume, its deformed copy `sample_fixed.nii.gz`
as fixed volume) into a bare MRML scene with MRML's storage nodes, registers it with
`DIRVNetLib.mrml.register` (warped and Jacobian volumes, intermediate fields kept) and draws the axial
slice through the region the registration moved most, as Slicer's axial view shows it (anterior up, the
patient's right on the left), with matplotlib. Not a capture of the Slicer window: the slicer-core wheel
has MRML but no views.
"""

import argparse
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402

from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.cli.figures import draw_view  # noqa: E402
from DIRVNetLib.io.atomic import atomic_path  # noqa: E402
from DIRVNetLib.io.orientation import anatomical_slices  # noqa: E402
from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.metrics import displacement_transform, largest_displacement_point  # noqa: E402
from DIRVNetLib.mrml.convert import volume_to_image  # noqa: E402

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
    job = mrml.prepare(
        fixed, moving, weights=args.weights, outputVolumeNode=warped, jacobianVolumeNode=jacobian, keepIntermediate=True
    )
    result = job.run()
    job.apply(result)
    report = result.report

    point = largest_displacement_point(result.displacement)
    images = [
        ("fixed", job.fixed),
        ("moving", result.moving_resampled),
        ("moving under the DIRVNet transform", volume_to_image(warped)[0]),
    ]
    steps = [result.intermediate[i] for i in (0, len(result.intermediate) // 2, -1)]
    for *position, field in steps:
        image = sitk.Resample(job.moving, job.fixed, displacement_transform(field), sitk.sitkLinear, 0.0)
        images.append(("after " + " ".join(f"{n} {v}" for n, v in zip(("round", "level", "unit"), position)), image))
    axial = {title: anatomical_slices(image, point)[0] for title, image in images}
    fixed_view, moving_view, warped_view = (axial[title] for title, _ in images[:3])
    jacobian_view = anatomical_slices(volume_to_image(jacobian)[0], point)[0]

    gray = dict(cmap="gray", limits=(0.0, float(np.nanpercentile(fixed_view.array, 99.5))))
    difference = np.abs(fixed_view.array - moving_view.array)
    difference_style = dict(cmap="magma", limits=(0.0, float(np.nanpercentile(difference, 99.5))))
    panels = [(title, axial[title], gray) for title, _ in images[:3]]
    panels += [
        ("|fixed - moving|", replace(fixed_view, array=difference), difference_style),
        (
            "|fixed - aligned moving|",
            replace(fixed_view, array=np.abs(fixed_view.array - warped_view.array)),
            difference_style,
        ),
    ]
    panels += [(title, axial[title], gray) for title, _ in images[3:]]
    panels.append(("Jacobian determinant", jacobian_view, dict(cmap="bwr", limits=(0.5, 1.5))))

    plt.style.use("dark_background")
    figure, axes = plt.subplots(2, 5, figsize=(14, 6.4))
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (title, view, style) in zip(list(axes[0]) + list(axes[1]), panels):
        shown = draw_view(axis, view, **style)
        axis.set_title(title, fontsize=10)
    bar = figure.colorbar(shown, ax=axes[1][3], fraction=0.046, pad=0.04)  # the last panel: the Jacobian
    bar.set_label("det J (1 = volume kept)")
    figure.suptitle(
        f"DIRVNet: {moving.GetName()} to {fixed.GetName()} ({len(result.intermediate)} units), "
        f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}. Axial slice {fixed_view.label}, radiological "
        f"(R on the left). "
        f"Weights: {weight_set.name} (sha256 {weight_set.metadata['weights_sha256'][:12]}...).\n"
        "Rendered with matplotlib from the output nodes of DIRVNetLib.mrml on a bare MRML scene (not a Slicer "
        "screen capture).",
        fontsize=9,
    )
    with atomic_path(args.output) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
