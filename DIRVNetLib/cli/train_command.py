"""``dirvnet train --config RUN.json --output-dir RUN`` and fine-tuning,
``dirvnet train --init WEIGHTS --pairs FOLDER --output-dir RUN``."""

import shlex


def add_parser(commands):
    parser = commands.add_parser(
        "train",
        help="train a network (synthetic deformations, or image pairs) or fine-tune a weight set",
        description="Train DIRV-Net as a run configuration says, or fine-tune a weight set (--init) on a folder "
        "of image pairs (--pairs; NAME_fixed.*/NAME_moving.* or fixed/ and moving/ subfolders) without a "
        "configuration. Re-running the same command resumes from the run folder's checkpoint; Ctrl-C (or SIGTERM) "
        "saves a checkpoint at the step reached. A run folder holding a different run is refused (see --fresh).",
    )
    parser.add_argument(
        "--config", help="run configuration JSON (network, data, steps, loss, ...); optional with --init"
    )
    parser.add_argument(
        "--output-dir", required=True, help="run folder: checkpoints, losses.csv, tensorboard/, weights/"
    )
    parser.add_argument("--init", help="start from this weight set (folder or bundled name, e.g. mr3d)")
    parser.add_argument("--pairs", help="train unsupervised on the image pairs in this folder")
    parser.add_argument("--steps", type=int, help="training steps (overrides the configuration)")
    parser.add_argument("--batch-size", type=int, help="global batch size (overrides the configuration)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (overrides the configuration)")
    parser.add_argument("--loss", help="loss preset: supervised, ncc, mse or hybrid (overrides the configuration)")
    parser.add_argument("--strategy", help="tf.distribute strategy: default, mirrored or multiworker")
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop after this step (checkpoint kept, no weight set; the learning-rate schedule "
        "still spans all steps): train in chunks, re-run without it to go on",
    )
    parser.add_argument("--patch-shape", type=int, nargs="+", metavar="N", help="training patch shape (array order)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start the run afresh: a previous run in the folder is moved into OUTPUT_DIR/previous-TIME/",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    from DIRVNetLib.training.config import finetune_run, read_run
    from DIRVNetLib.training.trainer import train

    if not args.config and not args.init:
        raise ValueError("give --config RUN.json, or --init WEIGHTS to fine-tune a weight set")
    config = read_run(args.config, need_network=not args.init, need_data=not args.pairs) if args.config else None
    overrides = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "loss": args.loss,
        "strategy": args.strategy,
    }
    if config is None or args.init or args.pairs or args.patch_shape or any(v is not None for v in overrides.values()):
        config = finetune_run(config, init=args.init, pairs=args.pairs, patch_shape=args.patch_shape, **overrides)
    command = "dirvnet " + " ".join(shlex.quote(a) for a in args.argv)
    weights = train(
        config, args.output_dir, command=command, progress=not args.no_progress, stop_at=args.stop_at, fresh=args.fresh
    )
    if weights is not None:
        print(f"weight set written to {weights}")
    elif args.stop_at is not None:
        print(f"stopped at step {args.stop_at}; the checkpoint in {args.output_dir} resumes the run")
