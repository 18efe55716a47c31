"""The ``descend`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds an ``argparse`` sub-parser and sets ``func`` to a callable taking the parsed args.
Heavy imports happen inside those callables so ``descend --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

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


GLOSSARY = """\
terms in the tables:
  final_loss     f(θ) after the last step
  steps_to_tol   first step with f(θ) − f* < tol (– when never)
  distance       |θ_final − θ*|, distance to the nearest known minimum
  basin          index of that minimum; `descend basins` colours each start by it, counting
                 a run only within the radius (2% of the domain's width by default)
  overshoots     how many times the path reversed along a coordinate (the step θₜ₊₁ − θₜ
                 changed sign): oscillation, as with too large an lr or momentum
  effective_lr   (explain) the per-element factor turning the moment into the update: γ for
                 SGD and momentum, γ/denominator for RMSprop and AdaGrad,
                 γ/((1 − β₁ᵗ)(√v̂ + ε)) for Adam (update = effective_lr · m)
  status         ok, diverged (|θ| left the bound or became NaN), invalid or stopped

run `descend COMMAND --help` for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    from descend import __version__

    parser = argparse.ArgumentParser(
        prog="descend",
        description="Gradient-descent optimizers built from parts, and a lab to see them work.",
        epilog=GLOSSARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"descend {__version__}")
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
    from descend.cli import outputs

    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # only a command that reads more options (explain's optimizer keywords) takes them
        if not getattr(args, "more_options", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
    outputs.reset()
    interrupted: list[int] = []
    previous = _catch_ctrl_c(interrupted)
    try:
        status = int(args.func(args) or 0)
        if interrupted:  # raised where Python swallows it (a __del__ or a weakref callback)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        removed = outputs.rollback()
        note = f" (removed partial outputs: {', '.join(map(str, removed))})" if removed else ""
        print(f"\ndescend {args.command}: interrupted{note}", file=sys.stderr)
        return 130
    except (CommandError, ValueError, KeyError, OSError) as exc:
        outputs.rollback()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"descend {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BaseException:
        outputs.rollback()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    outputs.reset()
    return status


def _catch_ctrl_c(interrupted: list[int]):
    """Route Ctrl-C through a handler that remembers it as well as raising
    ``KeyboardInterrupt``: a KeyboardInterrupt raised inside a ``__del__`` or a weakref
    callback (garbage collection) is printed and dropped by Python, and the command would run
    on to exit 0. Returns the handler to restore, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, handler)


def entry() -> None:
    """The ``descend`` program: :func:`main`, then exit with its status. After Ctrl-C (status
    130, outputs already rolled back) it leaves without the interpreter's teardown, where a
    late KeyboardInterrupt or the default SIGINT handler restored there could turn the status
    into a death by SIGINT."""
    status = main()
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
