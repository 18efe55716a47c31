"""`descend optimizers`: list the optimizer specs with their defaults."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "optimizers",
        help="list optimizer spec names, their defaults and conventions",
        description="List every optimizer spec name (NAME[:key=value,…]) with its defaults.",
    )
    p.add_argument("--convention", default="torch", help="torch | keras | optax (default torch)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from descend.optim.spec import REGISTRY, resolve_kwargs

    table = Table(title=f"descend optimizers ({args.convention} convention)")
    for col in ("spec name", "class", "what it is", "defaults"):
        table.add_column(col, overflow="fold")
    dummy = [torch.zeros(1, requires_grad=True)]
    for name, (cls, _preset, text) in REGISTRY.items():
        kwargs = resolve_kwargs(name, {})
        if name != "newton":
            kwargs["convention"] = args.convention
        defaults = cls(dummy, **kwargs).defaults
        shown = ", ".join(
            f"{k}={v}"
            for k, v in defaults.items()
            if k not in ("maximize", "max_grad_norm", "clip_value", "convention") and v is not None
        )
        table.add_row(name, cls.__name__, text, shown)
    Console().print(table)
    return 0
