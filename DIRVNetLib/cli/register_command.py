"""``dirvnet register --fixed F --moving M --output-dir OUT``: writes transform.h5, displacement.nrrd,
warped.nrrd, report.json and qa.png in OUT, committed together (:mod:`DIRVNetLib.io.outputset`)."""

import argparse
import contextlib
import json
import math
import signal
import threading
import time

from tqdm import tqdm

from DIRVNetLib.registration.devices import DEVICES

OUTPUT_NAMES = ("transform.h5", "displacement.nrrd", "warped.nrrd", "report.json", "qa.png")


def _positive_mm(text):
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite spacing > 0 mm, got {text!r}")
    return value


def _factor(text):
    value = _number(text)
    if not 1 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite factor >= 1, got {text!r}")
    return value


def _rounds(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_parser(commands):
    parser = commands.add_parser("register", help="register a moving image to a fixed image")
    parser.add_argument("--fixed", required=True, help="fixed image (file or DICOM folder)")
    parser.add_argument("--moving", required=True, help="moving image (file or DICOM folder)")
    parser.add_argument(
        "--output-dir",
        required=True,
        help="folder for the outputs (new, empty, or of an earlier run: replaced as a whole)",
    )
    parser.add_argument(
        "--weights", default=None, help="bundled weight-set name or folder (default: for the dimension)"
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument(
        "--mode",
        default="accurate",
        choices=["fast", "accurate"],
        help="accurate (default): the network, then test-time refinement; fast: the network alone",
    )
    parser.add_argument(
        "--refine-steps",
        type=_rounds,
        default=None,
        metavar="N",
        help="most test-time refinement steps (default: the mode's; 0: none)",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="return the result even when it is less similar to the fixed image than the input",
    )
    parser.add_argument("--refinement-rounds", type=_rounds, default=0, help="recurrent refinement rounds (default 0)")
    parser.add_argument(
        "--working-spacing",
        type=_positive_mm,
        default=None,
        help="isotropic grid of the network in mm (default: the image's, or the weights' where they do not handle it)",
    )
    parser.add_argument(
        "--refinement-spacing",
        type=_positive_mm,
        default=None,
        metavar="MM",
        help="isotropic grid of the refinement in mm (default: the network's)",
    )
    parser.add_argument(
        "--coarse-pass",
        type=_factor,
        default=None,
        metavar="FACTOR",
        help="first register on a grid FACTOR times coarser, then refine on the working grid (1: no such pass; "
        "default: the mode's, 2 for accurate in 3D)",
    )
    parser.add_argument(
        "--moving-labels",
        action="store_true",
        help="the moving image is a label map: warp it with nearest neighbour (detected for integer "
        "images of few values)",
    )
    parser.add_argument("--no-isotropic", action="store_true", help="register anisotropic images on their own grid")
    parser.add_argument("--no-unfold", action="store_true", help="keep the network's field even where it folds")
    parser.add_argument(
        "--fixed-points",
        default=None,
        metavar="FILE",
        help="points on the fixed image (.mrk.json, .fcsv or .csv) that the result must carry to the "
        "--moving-points, in the same order: the field is corrected locally around them",
    )
    parser.add_argument("--moving-points", default=None, metavar="FILE", help="the corresponding moving-image points")
    parser.add_argument(
        "--points-radius",
        type=float,
        default=None,
        metavar="MM",
        help="radius of the correction around each point (default: from the largest error)",
    )
    parser.add_argument("--no-figure", action="store_true", help="skip the QA figure")
    parser.add_argument(
        "--qa-point",
        type=_point,
        default=None,
        metavar="X,Y,Z",
        help="QA slices through this LPS point in mm, e.g. --qa-point=-30,12.5,40 (default: where "
        "the field moves most)",
    )
    parser.add_argument(
        "--qa-convention",
        choices=["radiological", "neurological"],
        default="radiological",
        help="QA left-right convention (default radiological: the patient's right on the left)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _point(text):
    """``X,Y[,Z]`` in LPS mm."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in LPS mm, got {text!r}")
    return values


def run(args):
    from DIRVNetLib.io.outputset import OutputSet

    inputs = [("fixed", args.fixed), ("moving", args.moving)]
    with _signals_interrupt() as interrupted, OutputSet(args.output_dir, OUTPUT_NAMES, inputs) as outputs:
        from DIRVNetLib.cli.tfstart import start_tensorflow

        start_tensorflow(args.device)
        interrupted.check()
        from DIRVNetLib.cli.figures import write_qa_figure
        from DIRVNetLib.io.transforms import write_image, write_transform
        from DIRVNetLib.registration.api import register

        if outputs.recovered:
            print(f"{outputs.folder}: {outputs.recovered}")
        with tqdm(total=None, desc="registering", unit="unit", disable=args.no_progress) as bar:

            def progress(info):
                interrupted.check()
                bar.total = info.total
                bar.set_postfix_str(info.stage)
                bar.update(info.done - bar.n)

            result = register(
                args.fixed,
                args.moving,
                weights=args.weights,
                device=args.device,
                progress=progress,
                refinement_rounds=args.refinement_rounds,
                working_spacing=args.working_spacing,
                refinement_spacing=args.refinement_spacing,
                isotropic=not args.no_isotropic,
                unfold=not args.no_unfold,
                coarse_pass=args.coarse_pass,
                moving_labels=True if args.moving_labels else None,
                mode=args.mode,
                refine_steps=args.refine_steps,
                fallback=not args.no_fallback,
                fixed_points=args.fixed_points,
                moving_points=args.moving_points,
                points_radius=args.points_radius,
            )
        if args.qa_point is not None and len(args.qa_point) != result.fixed.GetDimension():
            raise ValueError(
                f"--qa-point {args.qa_point} has {len(args.qa_point)} coordinates but the images are "
                f"{result.fixed.GetDimension()}D; nothing was written"
            )
        started = time.perf_counter()
        write_transform(result.transform, outputs.path("transform.h5"))
        write_image(result.displacement, outputs.path("displacement.nrrd"))
        write_image(result.warped, outputs.path("warped.nrrd"))
        if not args.no_figure:
            write_qa_figure(
                outputs.path("qa.png"),
                result.fixed,
                result.moving_resampled,
                result.warped,
                result.displacement,
                args.qa_point,
                args.qa_convention,
            )
        report = dict(result.report)
        report["seconds"] = {**report["seconds"], "write": time.perf_counter() - started}
        report["inputs"] = {"fixed": str(args.fixed), "moving": str(args.moving)}
        if args.fixed_points is not None:
            report["inputs"].update(fixed_points=str(args.fixed_points), moving_points=str(args.moving_points))
        outputs.path("report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        outputs.commit()
    print(_summary(report, outputs.folder, args.no_figure))


class _Interrupted:
    """The signals received; :meth:`check` raises KeyboardInterrupt again when one was (an interrupt that
    arrives inside a library can be swallowed by its error handling, or turned into another error: e.g.
    TensorFlow's tracing raises TypeError for any exception)."""

    def __init__(self):
        self.received = []

    def check(self):
        if self.received:
            raise KeyboardInterrupt(signal.Signals(self.received[0]).name)


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT, SIGTERM (and SIGHUP) raise KeyboardInterrupt, so staged outputs are removed; yields an
    :class:`_Interrupted` to check between stages. Any error leaving the block after a signal is reported
    as the interrupt it came from."""
    interrupted = _Interrupted()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def interrupt(number, frame):
        interrupted.received.append(number)
        raise KeyboardInterrupt(signal.Signals(number).name)

    kept = {
        number: signal.signal(number, interrupt)
        for number in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
        if number is not None
    }
    try:
        yield interrupted
    except Exception:
        interrupted.check()
        raise
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)


def _summary(report, output, no_figure):
    s = report["seconds"]
    refined = f", {s['refinement']:.2f} s refinement" if "refinement" in s else ""
    warnings = "".join(f"\nWARNING: {w}" for w in report.get("warnings", []))
    return (
        f"outputs in {output}: transform.h5, displacement.nrrd, warped.nrrd, report.json"
        f"{'' if no_figure else ', qa.png'}\n"
        f"NCC {report['ncc_before']:.3f} -> {report['ncc_after']:.3f}, "
        f"MSE {report['mse_before']:.4g} -> {report['mse_after']:.4g}; "
        f"Jacobian min {report['jacobian_min']:.3f}, non-positive {report['jacobian_nonpositive_percent']:.3f}%; "
        f"{s['total']:.2f} s registration ({s['network']:.2f} s network{refined}), mode {report['mode']}"
        + _points_summary(report.get("point_correction"))
        + warnings
    )


def _points_summary(correction):
    if not correction:
        return ""
    before, after = correction["error_before_mm"], correction["error_after_mm"]
    return (
        f"\n{correction['points']} point pairs: error at the points {max(before):.2f} -> {max(after):.2f} mm "
        f"(largest), corrected within {correction['radius_mm']:.0f} mm of them"
    )
