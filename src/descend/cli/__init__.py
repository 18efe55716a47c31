"""The ``descend`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds an ``argparse`` sub-parser and sets ``func`` to a callable taking the parsed args.
Heavy imports happen inside those callables so ``descend --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order in `descend --help`.
SUBCOMMANDS = [
    "demo",
    "optimizers",
    "landscape",
    "basins",
    "sweep",
    "ewa",
    "schedule",
    "explain",
    "lr_find",
    "compare",
    "diagnose",
    "serve",
]


class CommandError(Exception):
    """A user error on the command line: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="descend",
        description="Gradient-descent optimizers built from parts, and a lab to see them work.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"descend.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == f"descend.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"descend {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
