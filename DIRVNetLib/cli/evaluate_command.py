"""``dirvnet evaluate``: register (or apply a given transform) and measure accuracy and smoothness."""

import json
import time
from pathlib import Path

KEYS_MM = ("epe_mean_mm", "epe_median_mm", "epe_p95_mm", "dice_mean", "hd95_mean_mm", "tre_before_mean_mm",
           "tre_mean_mm", "jacobian_min", "jacobian_nonpositive_percent", "std_log_jacobian",
           "std_log_jacobian_l2r", "ncc_before", "ncc_after", "mse_before", "mse_after", "mi_before",
           "mi_after", "seconds")


def add_parser(commands):
    parser = commands.add_parser("evaluate", help="measure a registration against known fields, labels or landmarks")
    parser.add_argument("--fixed", required=True)
    parser.add_argument("--moving", required=True)
    parser.add_argument("--transform", help="evaluate this transform (.h5/.tfm) or displacement image instead of registering")
    parser.add_argument("--true-field", help="known displacement (vector image or transform), pull convention, LPS mm")
    parser.add_argument("--fixed-labels")
    parser.add_argument("--moving-labels")
    parser.add_argument("--fixed-landmarks", help=".mrk.json, .fcsv or CSV (x,y,z LPS)")
    parser.add_argument("--moving-landmarks")
    parser.add_argument("--mask", help="evaluate end-point error only where this label image is nonzero")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--output-json", required=True)
    parser.set_defaults(run=run)


def evaluate(args):
    """The evaluation dict (keys of :data:`KEYS_MM` that apply, plus per-label details)."""
    import SimpleITK as sitk

    from DIRVNetLib.io.images import read_image
    from DIRVNetLib.io.resample import resample_like
    from DIRVNetLib.io.transforms import read_displacement
    from DIRVNetLib.metrics import (
        dice,
        displacement_transform,
        endpoint_error,
        hausdorff95,
        jacobian_statistics,
        read_landmarks,
        similarity_report,
        target_registration_error,
        warp_labels,
    )
    from DIRVNetLib.registration.api import register
    from DIRVNetLib.registration.geometry import resample_displacement

    for first, second in (("fixed_labels", "moving_labels"), ("fixed_landmarks", "moving_landmarks")):
        if bool(getattr(args, first)) != bool(getattr(args, second)):
            raise ValueError(f"--{first.replace('_', '-')} and --{second.replace('_', '-')} go together")
    fixed = read_image(args.fixed, "fixed")
    moving = read_image(args.moving, "moving")
    result = {}
    if args.transform:
        started = time.perf_counter()
        displacement = resample_displacement(read_displacement(args.transform), fixed)
        result["seconds"] = time.perf_counter() - started
        warped = sitk.Resample(moving, fixed, displacement_transform(displacement), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        result.update(similarity_report(fixed, resample_like(moving, fixed), warped))
        result.update(jacobian_statistics(displacement))
    else:
        registration = register(fixed, moving, weights=args.weights, device=args.device)
        displacement = registration.displacement
        result["seconds"] = registration.report["seconds"]["total"]
        result.update({k: v for k, v in registration.report.items() if k in KEYS_MM and k != "seconds"})
    if args.true_field:
        true = resample_displacement(read_displacement(args.true_field), fixed)
        mask = sitk.ReadImage(args.mask) if args.mask else None
        zero = sitk.Image(true.GetSize(), sitk.sitkVectorFloat64, true.GetDimension())
        zero.CopyInformation(true)
        result.update(endpoint_error(displacement, true, mask=mask))
        result["epe_before_mean_mm"] = endpoint_error(zero, true, mask=mask)["epe_mean_mm"]
    if args.fixed_labels:
        fixed_labels = sitk.ReadImage(args.fixed_labels)
        warped_labels = warp_labels(sitk.ReadImage(args.moving_labels), displacement)
        overlap, distance = dice(fixed_labels, warped_labels), hausdorff95(fixed_labels, warped_labels)
        result.update(dice_mean=overlap["dice_mean"], hd95_mean_mm=distance["hd95_mean_mm"],
                      dice_per_label=overlap["per_label"], hd95_per_label_mm=distance["per_label"])
    if args.fixed_landmarks:
        dimension = fixed.GetDimension()
        tre = target_registration_error(read_landmarks(args.fixed_landmarks, dimension),
                                        read_landmarks(args.moving_landmarks, dimension), displacement)
        result.update({k: v for k, v in tre.items() if k != "tre_per_point_mm"})
    return result


def run(args):
    from DIRVNetLib.io.atomic import atomic_path

    result = evaluate(args)
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = [(k, result[k]) for k in (*KEYS_MM, "epe_before_mean_mm") if k in result]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v:.4g}" for k, v in rows))
    print(f"written to {args.output_json}")
