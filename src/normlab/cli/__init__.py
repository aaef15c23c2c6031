"""The ``normlab`` command: thin argument parsing over the library.

Each command group lives in its own module and adds itself with
``register(subparsers)``; a command's handler returns an exit code.
Bad input (a ValueError or a missing file raised by the library) is printed
as one clear line and exits with status 2, like a bad flag.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command groups, each a module of this package with a ``register(subparsers)``.
GROUPS = ("resnet", "ner", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normlab",
        description=(
            "Reproduce two classic studies: normalization layers in CIFAR ResNets "
            "(normlab resnet, normlab study resnet) and BiLSTM-CRF named-entity "
            "tagging on GMB (normlab ner, normlab study ner). Every run writes a "
            "directory with config.json, metrics.jsonl, checkpoints, summary.json and plots."
        ),
    )
    from normlab import __version__

    parser.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        module = importlib.import_module(f"normlab.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        print(f"normlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("normlab: interrupted; rerun with --resume to continue from last.pt", file=sys.stderr)
        return 130
