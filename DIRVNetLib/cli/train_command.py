"""``dirvnet train --config RUN.json --output-dir RUN``."""

import shlex


def add_parser(commands):
    parser = commands.add_parser("train", help="train a network (supervised, synthetic deformations)")
    parser.add_argument("--config", required=True, help="run configuration JSON (network, data, steps, ...)")
    parser.add_argument("--output-dir", required=True, help="run folder: checkpoints, losses.csv, weights/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    from DIRVNetLib.training.trainer import load_run_config, train

    command = "dirvnet " + " ".join(shlex.quote(a) for a in args.argv)
    weights = train(load_run_config(args.config), args.output_dir, command=command, progress=not args.no_progress)
    print(f"weight set written to {weights}")
