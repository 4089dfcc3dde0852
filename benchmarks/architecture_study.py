"""Architecture study: train variants of one run configuration on the same data and budget, compare.

    python benchmarks/architecture_study.py --base model_weights/mr2d/train.json --steps 400 \
        --output-dir runs/study2d [--variants NAME ...]

Every variant overrides some network fields of the base configuration; all train with the same seed,
data stream, steps, batch size and learning rate (resumable: re-run to continue). The table gives the
held-out validation end-point error (voxels, finest level) at the end, the folding percentage there,
and the median network time for one 256x256 (2D) or 96^3 (3D) registration on this machine.
"""

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "base": {},
    "rbf": {"activation": "rbf"},
    "units3": {"units": 3},
    "units8": {"units": 8},
    "spacing2": {"control_spacing": 2},
    "spacing8": {"control_spacing": 8},
    "filters8": {"data_filters": 8, "reg_filters": 8},
    "filters16": {"data_filters": 16, "reg_filters": 16},
    "kernels5-3": {"data_kernel": 5, "reg_kernel": 3},
    "levels4": {"levels": 4},
    "filters8-kernel5": {"data_filters": 8, "reg_filters": 8, "data_kernel": 5},
    "filters8-units3": {"data_filters": 8, "reg_filters": 8, "units": 3},
    "filters8-kernel5-units3": {"data_filters": 8, "reg_filters": 8, "data_kernel": 5, "units": 3},
}


def variant_run(base, name, steps):
    """The run configuration of one variant; ValueError naming the variant if it cannot train (e.g. a
    control spacing whose size rule the base's patch shape breaks)."""
    from DIRVNetLib.training.config import load_run
    from DIRVNetLib.training.trainer import network_config, patch_shape

    run = json.loads(json.dumps(base))
    run["network"].update(VARIANTS[name])
    run["steps"] = steps
    run["description"] = f"architecture study variant {name}"
    run.setdefault("validation", {"pairs": 16})
    run["tensorboard"] = {"enabled": False}
    try:
        typed = load_run(run)
        config, _ = network_config(typed)
        patch_shape(typed.data, config)
    except ValueError as error:
        raise ValueError(f"variant {name}: {error}") from None
    return run


def train_variant(run, name, output_dir):
    folder = output_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "DIRVNetLib.cli.main",
            "train",
            "--config",
            str(folder / "run.json"),
            "--output-dir",
            str(folder),
            "--no-progress",
        ],
        check=True,
    )
    with open(folder / "validation.csv") as handle:
        last = list(csv.DictReader(handle))[-1]
    return folder / "weights", last


def network_seconds(weights, ndim, repeats=3):
    import numpy as np

    from DIRVNetLib.io.weights import load_weight_set
    from DIRVNetLib.model import DIRVNet

    weight_set = load_weight_set(weights)
    network = DIRVNet(weight_set.config)
    network.set_weights(weight_set.weights)
    shape = [256, 256] if ndim == 2 else [96, 96, 96]
    image = np.random.default_rng(0).uniform(size=[1, *shape, 1]).astype(np.float32)
    network(image, image[:, ::-1])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        network(image, image[:, ::-1]).flow.numpy()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    base = json.loads(Path(args.base).read_text())
    output_dir = Path(args.output_dir)
    try:
        runs = {name: variant_run(base, name, args.steps) for name in args.variants}  # all checked before any trains
    except ValueError as error:
        parser.error(str(error))
    rows = []
    for name in args.variants:
        weights, last = train_variant(runs[name], name, output_dir)
        rows.append((name, last, network_seconds(weights, base["network"]["ndim"])))
        print(f"done {name}", file=sys.stderr, flush=True)
    print(
        f"| variant | overrides | val EPE (vox) | val EPE before | folding % | network s |  ({args.steps} steps each)"
    )
    print("|---|---|---|---|---|---|")
    for name, last, seconds in rows:
        print(
            f"| {name} | {json.dumps(VARIANTS[name])} | {float(last['epe_voxels']):.3f} | "
            f"{float(last['epe_before_voxels']):.3f} | {float(last.get('folding_percent', 'nan')):.3f} | "
            f"{seconds:.3f} |"
        )


if __name__ == "__main__":
    main()
