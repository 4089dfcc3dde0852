"""``dirvnet benchmark --cases FILE --output-dir OUT``: DIRV-Net and the classical tools on the same
cases in one run. Writes OUT/results.md (tables), OUT/results.json (every figure, the machine, the
command), OUT/accuracy_vs_time.png, the prepared cases (OUT/cases/NAME) and each method's log
(OUT/logs/METHOD.log); prints the accuracy table."""

import json
import math
import os
import platform
import shlex
import time
from pathlib import Path

from tqdm import tqdm

# the CPU's vector extensions that set TensorFlow's CPU speed (oneDNN, XLA): times differ by several x between CPUs
VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
PACKAGES = ("DIRVNet", "tensorflow", "SimpleITK", "picsl_greedy", "itk-elastix", "antspyx", "torch", "voxelmorph")


def add_parser(commands):
    from DIRVNetLib.comparison.baselines import METHODS

    parser = commands.add_parser("benchmark", help="compare DIRV-Net with classical tools on a list of cases")
    parser.add_argument("--cases", required=True, help="case list (JSON or YAML), e.g. benchmarks/cases/default.json")
    parser.add_argument(
        "--output-dir", required=True, help="folder for results.md, results.json, the plot, cases, logs"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="CASE",
        help="run only the cases of the list with these names (default: all)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        metavar="METHOD",
        help=f"methods to run (default: all of {', '.join(METHODS)})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method and case (median; default 3)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=60.0,
        help="stop repeating once a method has spent this many seconds on a case (default 60)",
    )
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        help="DIRV-Net weight set (folder or bundled name) for its dimension; repeat for 2D and 3D "
        "(default: the bundled mr2d / mr3d)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="DIRV-Net device")
    parser.add_argument(
        "--refinement-rounds",
        type=int,
        default=0,
        help="DIRV-Net recurrent refinement rounds, as in dirvnet register (default 0)",
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        metavar="N",
        help="DIRV-Net (accurate mode) most test-time refinement steps, as in dirvnet register",
    )
    parser.add_argument(
        "--coarse-pass",
        type=float,
        default=None,
        metavar="FACTOR",
        help="DIRV-Net first pass on a grid FACTOR (> 1) times coarser, as in dirvnet register",
    )
    parser.add_argument(
        "--working-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="DIRV-Net isotropic working grid spacing in mm, as in dirvnet register "
        "(default: the finest fixed spacing)",
    )
    parser.add_argument(
        "--voxelmorph-dir",
        help="folder holding vxm2d.pt / vxm3d.pt (default: $DIRVNET_VOXELMORPH_DIR, else ./benchmarks/voxelmorph)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def machine_info():
    """The machine and software versions, for the report."""
    from importlib import metadata

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
        flags = next((line for line in cpuinfo if line.startswith("flags")), ":").split(":", 1)[1].split()
        present = [f for f in VECTOR_EXTENSIONS if f in flags]
        info["cpu vector extensions"] = ", ".join(present) or "none of " + ", ".join(VECTOR_EXTENSIONS)
        total = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        info["memory GiB"] = round(int(total.split()[1]) / 1024**2, 1)
    except (OSError, StopIteration):
        pass
    info["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    info["packages"] = ", ".join(versions)
    return info


def _weights_by_dimension(names):
    from DIRVNetLib.io.weights import load_weight_set, resolve

    weights = {}
    for name in names:
        weight_set = None
        for dimension in (2, 3):
            try:
                weight_set = load_weight_set(resolve(name, dimension))
                break
            except Exception:  # noqa: BLE001 - reported below with the name
                continue
        if weight_set is None:
            raise ValueError(f"--weights {name}: not a usable weight set (folder or bundled name)")
        weights[weight_set.dimension] = str(weight_set.path)
    return weights


def run(args):
    from DIRVNetLib.comparison import report
    from DIRVNetLib.comparison.baselines import VOXELMORPH_ENV
    from DIRVNetLib.comparison.cases import prepare, read_case_list, select
    from DIRVNetLib.comparison.evaluation import evaluate_displacement, json_safe, zero_field
    from DIRVNetLib.comparison.runner import run_method
    from DIRVNetLib.io.atomic import atomic_path

    started = time.perf_counter()
    command = "dirvnet " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    machine = machine_info()
    description, specs = read_case_list(args.cases)
    specs = select(specs, args.only)
    if args.refinement_rounds < 0:
        raise ValueError(f"--refinement-rounds must be >= 0, got {args.refinement_rounds}")
    if args.refine_steps is not None and args.refine_steps < 0:
        raise ValueError(f"--refine-steps must be >= 0, got {args.refine_steps}")
    if args.coarse_pass is not None and args.coarse_pass < 1:
        raise ValueError(f"--coarse-pass must be a factor >= 1 (1: none), got {args.coarse_pass}")
    if args.working_spacing is not None and not 0 < args.working_spacing < math.inf:
        raise ValueError(f"--working-spacing must be a spacing > 0 mm, got {args.working_spacing}")
    options = {
        "weights": _weights_by_dimension(args.weights),
        "device": args.device,
        "refinement_rounds": args.refinement_rounds,
        "coarse_pass": args.coarse_pass,
        "working_spacing": args.working_spacing,
        "refine_steps": args.refine_steps,
    }
    voxelmorph_dir = args.voxelmorph_dir or os.environ.get(VOXELMORPH_ENV) or Path("benchmarks") / "voxelmorph"
    options["voxelmorph_dir"] = str(Path(voxelmorph_dir).resolve())
    output = Path(args.output_dir)
    (output / "logs").mkdir(parents=True, exist_ok=True)

    cases, folders = {}, []
    for spec in tqdm(specs, desc="preparing cases", unit="case", disable=args.no_progress):
        case = prepare(spec)
        folder = output / "cases" / case.name
        case.save(folder)
        folders.append(folder)
        identity = evaluate_displacement(
            case.fixed,
            case.moving,
            zero_field(case.fixed),
            true_field=case.true_field,
            mask=case.mask,
            fixed_labels=case.fixed_labels,
            moving_labels=case.moving_labels,
            fixed_points=case.fixed_points,
            moving_points=case.moving_points,
        )
        cases[case.name] = {
            "describe": case.describe(),
            "seen_in_training": case.seen_in_training,
            "note": case.note,
            "details": case.details,
            "identity": identity,
        }

    rows = []
    with tqdm(total=len(args.methods) * len(folders), desc="benchmark", unit="run", disable=args.no_progress) as bar:
        for method in args.methods:
            bar.set_postfix_str(method)

            def on_row(row):
                bar.set_postfix_str(f"{row['method']} {row['case']}: {row.get('status')}")
                bar.update(1)

            rows += run_method(
                method, folders, output / "logs" / f"{method}.log", args.repeats, args.time_budget, options, on_row
            )
    order = {name: i for i, name in enumerate(cases)}
    methods = {name: i for i, name in enumerate(args.methods)}
    rows.sort(key=lambda r: (order.get(r["case"], len(order)), methods.get(r["method"], len(methods))))
    machine["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine["benchmark wall time s"] = round(time.perf_counter() - started, 1)

    results = {
        "command": command,
        "description": description,
        "machine": machine,
        "repeats": args.repeats,
        "time_budget_s": args.time_budget,
        "cases": cases,
        "rows": rows,
    }
    with atomic_path(output / "results.json") as tmp:
        tmp.write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n")
    text = report.markdown(rows, cases, machine, command)
    with atomic_path(output / "results.md") as tmp:
        tmp.write_text(text)
    with atomic_path(output / "accuracy_vs_time.png") as tmp:
        report.plot(rows, tmp)
    print(report.accuracy_table(rows, cases))
    print(f"\nresults in {output}: results.md, results.json, accuracy_vs_time.png")
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed; see {output / 'logs'}")
