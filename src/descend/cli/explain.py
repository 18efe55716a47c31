"""``descend explain``: a step-by-step table of what an optimizer computes.

    descend explain adam --grads 0.02,0.01,-0.03 --lr 0.001
    descend explain momentum-ema --function quadratic --steps 10
    descend explain "rmsprop:alpha=0.9" --grads "0.002;0.0" --grads "0.0018;0" --format csv

Gradients are a comma-separated list (one scalar parameter per step), or several tokens; a
vector parameter takes one ``;``-separated vector per step (``--grads "0.01;5.0,0.01;-4.8"``).
Lists that start with a minus sign are accepted as they are (``--grads -0.03,0.01``), as is
the ``--grads=-0.03,0.01`` spelling. Every optimizer keyword is an option (``--lr``,
``--momentum``, ``--beta1``, ``--weight-decay`` …) and wins over the same key in the spec.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from descend.cli import CommandError, checks

# The keywords of the notes' optimizers, as listed options (written out, so `descend --help`
# need not import torch to build the parser; tests check each against the registry). Any other
# keyword of an optimizer (``--rho 0.95`` for Adadelta …) is accepted as ``--key value`` or
# ``--key=value`` too, and checked against that optimizer's keywords. Flags take an optional
# true/false.
HYPERPARAMETERS = (
    "lr",
    "momentum",
    "dampening",
    "nesterov",
    "momentum_form",
    "debias",
    "beta1",
    "beta2",
    "eps",
    "eps_placement",
    "alpha",
    "centered",
    "bias_correction",
    "amsgrad",
    "amsgrad_of",
    "momentum_decay",
    "schedule",
    "lr_decay",
    "initial_accumulator_value",
    "weight_decay",
    "weight_decay_mode",
    "decoupled_weight_decay",
    "maximize",
    "max_grad_norm",
    "clip_value",
    "cautious",
    "convention",
    "nonfinite",
)
FLAGS = {
    "nesterov",
    "debias",
    "centered",
    "bias_correction",
    "amsgrad",
    "decoupled_weight_decay",
    "maximize",
    "cautious",
}
# Shown in the table's title when the optimizer has them.
TITLE_KEYS = ("lr", "momentum", "momentum_form", "nesterov", "betas", "alpha", "rho", "eps")
TITLE_KEYS += ("lr_decay",)

_UNSIGNED = r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
# argparse takes a token that starts with "-" for an option unless it looks like one negative
# number; a list of numbers ("-0.03,0.01" or "-1;2") is a value here too.
_NUMBER_LIST = re.compile(rf"^-{_UNSIGNED}([,;\s]+[-+]?{_UNSIGNED})*[,;]?$")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="step-by-step table of an optimizer's internals (moments, denominators, updates)",
        description=(
            "Step an optimizer through given gradients, or along a function's own gradients, "
            "and print every quantity it computes per step: gradient, moments, bias-corrected "
            "moments, denominator, effective learning rate, update and new parameter value."
        ),
    )
    p._negative_number_matcher = _NUMBER_LIST  # see _NUMBER_LIST
    p.add_argument("optimizer", help="optimizer spec, e.g. adam or 'momentum:lr=0.1'")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--grads",
        nargs="+",
        metavar="G",
        help="gradients, one per step: comma-separated (or several tokens); a vector "
        "parameter takes ';'-separated components, e.g. '0.01;5,0.01;-4.8'",
    )
    source.add_argument(
        "--function",
        metavar="NAME",
        help="landscape name (quadratic, double-well, quartic, …) or expr:<formula>",
    )
    p.add_argument(
        "--steps",
        type=int,
        help=f"number of steps, 1 … {checks.MAX_EXPLAIN_STEPS:,} (default: all the gradients)",
    )
    p.add_argument(
        "--start",
        help="parameter value before the first step (number, or ';'-separated vector); "
        "default 0, or the landscape's first suggested start",
    )
    p.add_argument(
        "--format",
        choices=("rich", "markdown", "csv"),
        default="rich",
        help="rich (default: fits the terminal, splitting the columns into several tables "
        "when needed), markdown or csv (every column in one table)",
    )
    p.add_argument(
        "--digits", type=int, default=6, help="significant digits, 1 … 17 (rich, markdown)"
    )
    hyper = p.add_argument_group("optimizer hyperparameters (override the spec's)")
    for key in HYPERPARAMETERS:
        option = "--" + key.replace("_", "-")
        if key in FLAGS:
            hyper.add_argument(option, dest=key, nargs="?", const="true", metavar="BOOL")
        else:
            hyper.add_argument(option, dest=key, metavar="VALUE")
    p.set_defaults(func=run, more_options=True)


def _numbers(text: str, what: str) -> list[float]:
    values = []
    for item in text.split(";"):
        try:
            values.append(float(item))
        except ValueError:
            raise CommandError(f"{what}: {item.strip()!r} is not a number") from None
    return values


def parse_gradients(tokens: list[str]) -> list[float] | list[list[float]]:
    """``["0.02,0.01", "-0.03"]`` → ``[0.02, 0.01, -0.03]``;
    ``["1;2,3;4"]`` → ``[[1, 2], [3, 4]]`` (one vector per step)."""
    steps = [item for token in tokens for item in token.split(",") if item.strip()]
    if not steps:
        raise CommandError("--grads: give at least one gradient")
    vectors = [_numbers(item, "--grads") for item in steps]
    if any(";" in item for item in steps):
        sizes = {len(v) for v in vectors}
        if len(sizes) != 1:
            raise CommandError(
                f"--grads: every step needs the same number of components, got {sorted(sizes)}"
            )
        return vectors
    return [v[0] for v in vectors]


def _value(text: str) -> Any:
    """A command-line value as the optimizer wants it: bool, None, int, float or text."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters given as options (they win over the spec's)."""
    given = {k: _value(getattr(args, k)) for k in HYPERPARAMETERS if getattr(args, k) is not None}
    return {**given, **more_options(getattr(args, "extra", []))}


def more_options(tokens: list[str]) -> dict[str, Any]:
    """Options outside the listed ones: ``--key value``, ``--key=value`` or a bare ``--flag``
    (true); the optimizer checks the keys (``explain`` names the valid ones)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise CommandError(f"unexpected argument {token!r}: options are --key value")
        key, eq, value = token[2:].partition("=")
        if not eq:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is None or (nxt.startswith("--") and not _NUMBER_LIST.match(nxt)):
                value = "true"
            else:
                value, i = nxt, i + 1
        out[key.replace("-", "_")] = _value(value)
        i += 1
    return out


def _title(frame: Any) -> str:
    settings = dict(frame.attrs.get("hyperparameters", {}))
    if settings.get("momentum") == 0:  # no momentum: its form and Nesterov switch mean nothing
        for key in ("momentum", "momentum_form", "nesterov"):
            settings.pop(key, None)
    shown = ", ".join(f"{k}={settings[k]}" for k in TITLE_KEYS if k in settings)
    return f"{frame.attrs.get('optimizer', '')} ({shown})" if shown else frame.attrs["optimizer"]


def _chunks(frame: Any, digits: int, width: int) -> list[list[str]]:
    """The columns after ``step`` in groups whose rich table fits ``width`` characters (each
    group is printed with the step column again)."""
    from descend.explain import _format

    def need(column: str) -> int:
        cells = [_format(v, digits) for v in frame[column]]
        return max([len(column)] + [len(c) for c in cells]) + 3

    first, rest = frame.columns[0], list(frame.columns[1:])
    base = need(first) + 1
    groups: list[list[str]] = [[]]
    used = base
    for column in rest:
        w = need(column)
        if groups[-1] and used + w > width:
            groups.append([])
            used = base
        groups[-1].append(column)
        used += w
    return [[first, *g] for g in groups]


def run(args: argparse.Namespace) -> int:
    checks.integer(args.steps, "--steps", 1, checks.MAX_EXPLAIN_STEPS)
    checks.integer(args.digits, "--digits", 1, 17)
    if args.grads is not None:
        count = sum(1 for token in args.grads for item in token.split(",") if item.strip())
        checks.size(count, checks.MAX_EXPLAIN_STEPS, "gradients given", "give fewer steps")
    from descend.explain import explain, render

    overrides = _overrides(args)
    start = None
    if args.start is not None:
        values = _numbers(args.start, "--start")
        start = values[0] if len(values) == 1 else values
    if args.grads is not None:
        grads = parse_gradients(args.grads)
        frame = explain(args.optimizer, gradients=grads, steps=args.steps, start=start, **overrides)
    else:
        if args.steps is None:
            raise CommandError("--steps is required with --function")
        frame = explain(
            args.optimizer, function=args.function, steps=args.steps, start=start, **overrides
        )
    title = None if args.format == "csv" else _title(frame)
    if args.format != "rich":
        print(render(frame, args.format, digits=args.digits, title=title), end="")
        return 0
    from rich.console import Console

    groups = _chunks(frame, args.digits, Console().width)
    if len(groups) == 1:
        print(render(frame, "rich", digits=args.digits, title=title), end="")
        return 0
    Console().print(
        f"{title} (the columns in {len(groups)} tables to fit the terminal)", highlight=False
    )
    for columns in groups:
        part = frame[columns]
        part.attrs = frame.attrs
        print(render(part, "rich", digits=args.digits), end="")
    return 0
