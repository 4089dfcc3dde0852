"""``dirvnet``: register, evaluate, benchmark, train, inspect (one module per subcommand)."""

import argparse
import logging
import os
import sys

from DIRVNetLib.errors import DIRVNetError


def _quiet_tensorflow_logging():
    """Quiet TensorFlow's C++ logging before it is imported (the CLI's own messages matter)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    from DIRVNetLib.cli import benchmark_command, evaluate_command, inspect_command, register_command, train_command

    parser = argparse.ArgumentParser(prog="dirvnet", description="DIRV-Net deformable image registration")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (register_command, evaluate_command, benchmark_command, train_command, inspect_command):
        module.add_parser(commands)
    return parser


def main(argv=None):
    _quiet_tensorflow_logging()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args) or 0
    except (DIRVNetError, ValueError, OSError) as e:
        print(f"dirvnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dirvnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
