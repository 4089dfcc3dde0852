"""``dirvnet register --fixed F --moving M --output-dir OUT``: writes transform.h5, displacement.nrrd,
warped.nrrd, report.json and qa.png in OUT (each file whole)."""

import json
import time
from pathlib import Path

from tqdm import tqdm


def add_parser(commands):
    parser = commands.add_parser("register", help="register a moving image to a fixed image")
    parser.add_argument("--fixed", required=True, help="fixed image (file or DICOM folder)")
    parser.add_argument("--moving", required=True, help="moving image (file or DICOM folder)")
    parser.add_argument("--output-dir", required=True, help="folder for the outputs (created)")
    parser.add_argument("--weights", default=None, help="bundled weight-set name or folder (default: for the dimension)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--mode", default="accurate", choices=["fast", "accurate"],
                        help="accurate (default): the network, then test-time refinement; fast: the network alone")
    parser.add_argument("--refine-steps", type=int, default=None, metavar="N",
                        help="most test-time refinement steps (default: the mode's; 0: none)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="return the result even when it is less similar to the fixed image than the input")
    parser.add_argument("--refinement-rounds", type=int, default=0, help="recurrent refinement rounds (default 0)")
    parser.add_argument("--working-spacing", type=float, default=None, help="isotropic working spacing in mm")
    parser.add_argument("--coarse-pass", type=float, default=None, metavar="FACTOR",
                        help="first register on a grid FACTOR (> 1) times coarser, then refine on the working grid")
    parser.add_argument("--no-isotropic", action="store_true", help="register anisotropic images on their own grid")
    parser.add_argument("--no-unfold", action="store_true", help="keep the network's field even where it folds")
    parser.add_argument("--no-figure", action="store_true", help="skip the QA figure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    from DIRVNetLib.cli.figures import write_qa_figure
    from DIRVNetLib.io.atomic import atomic_path
    from DIRVNetLib.io.transforms import write_image, write_transform
    from DIRVNetLib.registration.api import register

    output = Path(args.output_dir)
    with tqdm(total=None, desc="registering", unit="unit", disable=args.no_progress) as bar:

        def progress(info):
            bar.total = info.total
            bar.set_postfix_str(info.stage)
            bar.update(info.done - bar.n)

        result = register(
            args.fixed, args.moving, weights=args.weights, device=args.device, progress=progress,
            refinement_rounds=args.refinement_rounds, working_spacing=args.working_spacing,
            isotropic=not args.no_isotropic, unfold=not args.no_unfold, coarse_pass=args.coarse_pass,
            mode=args.mode, refine_steps=args.refine_steps, fallback=not args.no_fallback,
        )
    started = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    write_transform(result.transform, output / "transform.h5")
    write_image(result.displacement, output / "displacement.nrrd")
    write_image(result.warped, output / "warped.nrrd")
    if not args.no_figure:
        write_qa_figure(output / "qa.png", result.fixed, result.moving_resampled, result.warped, result.displacement)
    report = dict(result.report)
    report["seconds"] = {**report["seconds"], "write": time.perf_counter() - started}
    report["inputs"] = {"fixed": str(args.fixed), "moving": str(args.moving)}
    with atomic_path(output / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(_summary(report, output))


def _summary(report, output):
    s = report["seconds"]
    refined = f", {s['refinement']:.2f} s refinement" if "refinement" in s else ""
    warnings = "".join(f"\nWARNING: {w}" for w in report.get("warnings", []))
    return (
        f"outputs in {output}: transform.h5, displacement.nrrd, warped.nrrd, report.json"
        f"{', qa.png' if (output / 'qa.png').exists() else ''}\n"
        f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}, "
        f"MSE {report['mse_before']:.4g} -> {report['mse_after']:.4g}; "
        f"Jacobian min {report['jacobian_min']:.3f}, non-positive {report['jacobian_nonpositive_percent']:.3f}%; "
        f"{s['total']:.2f} s registration ({s['network']:.2f} s network{refined}), mode {report['mode']}"
        f"{warnings}"
    )
