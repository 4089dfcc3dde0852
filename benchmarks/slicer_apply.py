"""Click-to-transform-node time of the Slicer module's Apply (worker process) against DIRVNetLib.register alone.

    python benchmarks/slicer_apply.py [--applies 3] [--working-spacing MM]

The demo pair (Testing/Data: sample_fixed.nii.gz, KmeansTest_T1UCharRaw.nii.gz) is read into a bare MRML
scene (slicer-core) with MRML's storage nodes. One Apply does what the panel does: prepare (check the
nodes, read the volumes), send the job to the worker process, poll it every 100 ms (the panel's QTimer),
read the outputs back and write the grid transform node into the scene. The first Apply starts the worker
(TensorFlow import, tracing); later ones find it warm. Then, in a fresh process, ``DIRVNetLib.register``
alone on the same images: its first call (tracing included, TensorFlow already imported) and its second.
Prints a markdown table (seconds).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "Testing" / "Data"
PAIR = (DATA / "sample_fixed.nii.gz", DATA / "KmeansTest_T1UCharRaw.nii.gz")


def _load(scene, path):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", path.stem)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(volume):
        sys.exit(f"MRML could not read {path}")
    return volume


def _options(working_spacing):
    return {"working_spacing": working_spacing} if working_spacing else {}


def applies(count, working_spacing):
    """Seconds from Apply to the transform node in the scene, per Apply, through one worker."""
    import slicer

    from DIRVNetLib import mrml
    from DIRVNetLib.mrml.background import RegistrationWorker

    scene = slicer.vtkMRMLScene()
    fixed, moving = (_load(scene, path) for path in PAIR)
    worker = RegistrationWorker()
    seconds = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            job = mrml.prepare(fixed, moving, placeMovingUnderTransform=True, **_options(working_spacing))
            worker.submit(job)
            node = job.apply(worker.wait(interval_s=0.1))
            seconds.append(time.perf_counter() - started)
            assert moving.GetParentTransformNode() is node
    finally:
        worker.close()
    return seconds


def register_alone(working_spacing):
    """[first, second] seconds of DIRVNetLib.register in this process (TensorFlow imported before timing)."""
    import SimpleITK as sitk
    import tensorflow  # noqa: F401  (imported before the clock starts)

    import DIRVNetLib

    fixed, moving = (sitk.ReadImage(str(path)) for path in PAIR)
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        DIRVNetLib.register(fixed, moving, **_options(working_spacing))
        seconds.append(time.perf_counter() - started)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--applies", type=int, default=3, help="Applies through one worker (default 3)")
    parser.add_argument("--working-spacing", type=float, default=None, help="mm (default: the panel's automatic)")
    parser.add_argument("--alone", action="store_true", help=argparse.SUPPRESS)  # the fresh process's part
    args = parser.parse_args()
    if args.alone:
        print(json.dumps(register_alone(args.working_spacing)))
        return
    apply_seconds = applies(args.applies, args.working_spacing)
    command = [sys.executable, __file__, "--alone"]
    if args.working_spacing:
        command += ["--working-spacing", str(args.working_spacing)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    alone = json.loads(done.stdout.splitlines()[-1])
    spacing = f"{args.working_spacing} mm" if args.working_spacing else "automatic"
    print(f"Demo pair, working spacing {spacing}, {os.cpu_count()} CPUs\n")
    print("| | seconds | / register alone (2nd call) |\n|---|---|---|")
    for n, value in enumerate(apply_seconds, start=1):
        label = "Apply 1 (worker starts: TensorFlow import, tracing)" if n == 1 else f"Apply {n} (warm worker)"
        print(f"| {label} | {value:.2f} | {value / alone[1]:.2f}x |")
    print(f"| DIRVNetLib.register alone, 1st call (tracing) | {alone[0]:.2f} | {alone[0] / alone[1]:.2f}x |")
    print(f"| DIRVNetLib.register alone, 2nd call | {alone[1]:.2f} | 1.00x |")


if __name__ == "__main__":
    main()
