"""``dirvnet evaluate``: register (or apply a given transform) and measure accuracy and smoothness.

Writes a JSON file with the keys of :data:`KEYS` that apply (physical units: mm, seconds) plus
per-label details, and prints them as a table. ``*_before`` keys are the same measure for the
identity transform.
"""

import json
from pathlib import Path

from DIRVNetLib.registration.devices import DEVICES

KEYS = (
    "epe_mean_mm",
    "epe_median_mm",
    "epe_p95_mm",
    "epe_max_mm",
    "epe_before_mean_mm",
    "dice_mean",
    "dice_before_mean",
    "hd95_mean_mm",
    "hd95_before_mean_mm",
    "tre_mean_mm",
    "tre_median_mm",
    "tre_max_mm",
    "tre_before_mean_mm",
    "jacobian_min",
    "jacobian_nonpositive_percent",
    "std_log_jacobian",
    "std_log_jacobian_l2r",
    "ncc_before",
    "ncc_after",
    "mse_before",
    "mse_after",
    "mi_before",
    "mi_after",
    "seconds",
)


def add_parser(commands):
    parser = commands.add_parser("evaluate", help="measure a registration against known fields, labels or landmarks")
    parser.add_argument("--fixed", required=True)
    parser.add_argument("--moving", required=True)
    parser.add_argument(
        "--transform",
        help="evaluate this transform (.h5/.tfm: any ITK transform, fixed -> moving "
        "points) or displacement image (LPS mm, pull) instead of registering",
    )
    parser.add_argument("--true-field", help="known displacement (vector image or transform), pull convention, LPS mm")
    parser.add_argument("--fixed-labels", help="label map of the fixed image (0 = background)")
    parser.add_argument("--moving-labels", help="label map of the moving image (warped with nearest neighbour)")
    parser.add_argument("--fixed-landmarks", help=".mrk.json, .fcsv or CSV (x,y[,z] LPS mm)")
    parser.add_argument("--moving-landmarks", help="the corresponding moving points, same order")
    parser.add_argument("--mask", help="measure end-point error only where this label image is nonzero")
    parser.add_argument(
        "--weights", default=None, help="weight set when registering (default: bundled for the dimension)"
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--output-json", required=True)
    parser.set_defaults(run=run)


def evaluate(args):
    """The evaluation dict for parsed ``args`` (keys of :data:`KEYS` that apply, plus per-label details)."""
    from DIRVNetLib.comparison.evaluation import evaluate_displacement, read_field, read_label_image
    from DIRVNetLib.io.images import read_image
    from DIRVNetLib.registration.api import register

    for first, second in (("fixed_labels", "moving_labels"), ("fixed_landmarks", "moving_landmarks")):
        if bool(getattr(args, first)) != bool(getattr(args, second)):
            raise ValueError(f"--{first.replace('_', '-')} and --{second.replace('_', '-')} go together")
    fixed = read_image(args.fixed, "fixed")
    moving = read_image(args.moving, "moving")
    extra = {}
    if args.transform:
        displacement = read_field(args.transform, fixed)
    else:
        registration = register(fixed, moving, weights=args.weights, device=args.device)
        displacement = registration.displacement
        extra["seconds"] = registration.report["seconds"]["total"]
        extra["seconds_per_stage"] = registration.report["seconds"]
        extra["weights"] = registration.report["weights"]
    result = evaluate_displacement(
        fixed,
        moving,
        displacement,
        true_field=read_field(args.true_field, fixed) if args.true_field else None,
        mask=read_label_image(args.mask, "mask") if args.mask else None,
        fixed_labels=read_label_image(args.fixed_labels, "fixed labels") if args.fixed_labels else None,
        moving_labels=read_label_image(args.moving_labels, "moving labels") if args.moving_labels else None,
        fixed_points=args.fixed_landmarks,
        moving_points=args.moving_landmarks,
    )
    result.update(extra)
    return result


def table(result):
    """The scalar keys of :data:`KEYS` present in ``result``, one per line."""
    rows = [(k, result[k]) for k in KEYS if k in result]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v:.4g}" for k, v in rows)


def run(args):
    from DIRVNetLib.comparison.evaluation import json_safe
    from DIRVNetLib.io.atomic import atomic_path

    result = evaluate(args)
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output_json) as tmp:
        tmp.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
    print(table(result))
    print(f"written to {args.output_json}")
