"""Render the extension's result figure (Resources/Screenshots/DIRVNet-result-figure.png).

    python tools/render_result_figure.py [--weights mr3d] [--output Resources/Screenshots/DIRVNet-result-figure.png]

Loads the sample pair (Testing/Data: the T1 head as moving volume, its deformed copy `sample_fixed.nii.gz`
as fixed volume) into a bare MRML scene with MRML's storage nodes, registers it with
`DIRVNetLib.mrml.register` (default mode, warped and Jacobian volumes) and draws, from the output nodes,
the QA figure of `dirvnet register` (:func:`DIRVNetLib.cli.figures.write_qa_figure`: axial, coronal and
sagittal slices as Slicer's views show them, through the region the registration moved most, with
orientation letters, slice positions and colour bars). Not a capture of the Slicer window: the
slicer-core wheel has MRML but no views.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import slicer  # noqa: E402

from DIRVNetLib import mrml  # noqa: E402
from DIRVNetLib.cli.figures import write_qa_figure  # noqa: E402
from DIRVNetLib.io.weights import load_weight_set, resolve  # noqa: E402
from DIRVNetLib.mrml.convert import grid_transform_to_displacement, volume_to_image  # noqa: E402

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
    job = mrml.prepare(fixed, moving, weights=args.weights, outputVolumeNode=warped, jacobianVolumeNode=jacobian)
    result = job.run()
    transform = job.apply(result)
    report = result.report
    title = (
        f"DIRVNet ({report['mode']} mode, weights {weight_set.name}, sha256 "
        f"{weight_set.metadata['weights_sha256'][:12]}...): {moving.GetName()} to {fixed.GetName()}, NCC "
        f"{report['ncc_before']:.3f} -> {report['ncc_after']:.3f}; drawn from the output nodes of DIRVNetLib.mrml "
        "on a bare MRML scene (not a Slicer screen capture)"
    )
    write_qa_figure(
        args.output,
        job.fixed,
        result.moving_resampled,
        volume_to_image(warped)[0],
        grid_transform_to_displacement(transform)[0],
        title=title,
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
