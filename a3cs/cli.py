"""The ``a3cs`` command line.

Each subcommand lives in its own module under :mod:`a3cs.commands` and provides
``register(subparsers)`` and ``run(args) -> int``.  Heavy imports (torch, nni) happen inside
``run``, so ``a3cs --help`` and ``a3cs simulate`` start fast.

Every user error (bad flag, bad file, bad field) ends with a one-line message on stderr and
exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from a3cs_common.cli import OneLineParser
from a3cs_common.errors import ConfigError

# Subcommand modules, in the order `a3cs --help` lists them.
COMMANDS = ("search", "sweep", "plot", "simulate", "estimate", "accel-search", "train", "evaluate",
            "calibrate-cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="a3cs",
        description="Co-search deep-RL agents and their accelerators; simulate and estimate "
        "hardware; train and distill agents.",
    )
    from a3cs import __version__

    parser.add_argument("--version", action="version", version=f"a3cs {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"a3cs.commands.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``a3cs`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (status 2)
        return int(exc.code or 0)
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"a3cs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not the input's: disk full, permissions, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"a3cs {args.command}: error: {where}{exc.strerror or exc} (files written before "
              "are intact: outputs are replaced atomically; a run continues with --resume)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"a3cs {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
