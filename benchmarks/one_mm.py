"""DIRV-Net's working-grid strategies on 3D images at 1 mm, side by side with greedy, in one run.

    python benchmarks/one_mm.py --output-dir OUT [--only CASE ...] [--strategies NAME ...] [--repeats 1]

Cases: ``benchmarks/cases/one_mm.json`` (prepared once into ``OUT/cases``, reused by later runs). Each
strategy runs in its own worker process (:mod:`DIRVNetLib.comparison.runner`: a warm-up call, then the
timed calls; peak memory is the worker's peak resident set during them). Prints the CPU, then one markdown row per
case and strategy: median seconds, peak memory (GiB; in brackets the increase during the call over the
worker's resident size before it), EPE mean / 95th percentile (mm) in the case's
mask, the grids used; writes the rows to ``OUT/one_mm.json``.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from DIRVNetLib.cli.benchmark_command import machine_info  # noqa: E402
from DIRVNetLib.comparison.cases import load_prepared, prepare, read_case_list, select  # noqa: E402
from DIRVNetLib.comparison.runner import run_method  # noqa: E402

CASES = Path(__file__).resolve().parent / "cases" / "one_mm.json"
STRATEGIES = {  # name -> (method, options)
    "default": ("dirvnet", {}),
    "fast": ("dirvnet-fast", {}),
    "default, refinement at 1 mm": ("dirvnet", {"refinement_spacing": 1.0}),
    "1 mm grid (default before the policy)": ("dirvnet", {"working_spacing": 1.0}),
    "fast, 1 mm grid": ("dirvnet-fast", {"working_spacing": 1.0}),
    "greedy": ("greedy", {}),
}


def prepared_cases(output, names):
    """The prepared case folders, preparing those not yet in ``output/cases``."""
    _, specs = read_case_list(CASES)
    folders = []
    for spec in select(specs, names):
        folder = output / "cases" / spec["name"]
        if not (folder / "case.json").is_file():
            prepare(spec).save(folder)
        load_prepared(folder)  # fails early on a half-written folder
        folders.append(folder)
    return folders


def _grid(row, key):
    grid = row.get(key)
    return f"{grid['spacing_mm'][0]:g} mm" if grid else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=[], help="case names of benchmarks/cases/one_mm.json")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    folders = prepared_cases(args.output_dir, args.only)
    machine = machine_info()
    print(f"cpu: {machine.get('cpu')} ({machine.get('cpu vector extensions')}), {machine['cpu cores']} cores")
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    print("| case | strategy | seconds | peak GiB | EPE mean / p95 (mm) | network grid | refinement grid |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for strategy in args.strategies:
        method, options = STRATEGIES[strategy]
        log = args.output_dir / f"{strategy.replace(' ', '_').replace(',', '')}.log"
        for row in run_method(method, folders, log, repeats=args.repeats, time_budget=1.0, options=options):
            row["strategy"] = strategy
            rows.append(row)
            if row.get("status") != "ok":
                print(f"| {row['case']} | {strategy} | {row['status']}: {row.get('reason', '')} |", flush=True)
                continue
            peak = "-"
            if row.get("peak_rss_mib") is not None:
                peak = f"{row['peak_rss_mib'] / 1024:.2f} (+{row['rss_increase_mib'] / 1024:.2f})"
            print(
                f"| {row['case']} | {strategy} | {row['seconds']:.2f} | {peak} "
                f"| {row['epe_mean_mm']:.2f} / {row['epe_p95_mm']:.2f} | {_grid(row, 'working_grid')} "
                f"| {_grid(row, 'refinement_grid')} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    (args.output_dir / "one_mm.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
