"""`descend optimizers`: list the optimizer specs with their defaults."""

from __future__ import annotations

from descend.cli.tables import add_format, emit

CONVENTIONS = ("torch", "keras", "optax")
# How each momentum form updates (the form a convention gives SGD's momentum).
MOMENTUM_FORMS = {
    "modern": "modern form v = βv + g, θ ← θ − γv",
    "ema": "EMA form v = βv + (1−β)g, θ ← θ − γv",
    "lr_inside": "lr-inside form v = βv − γg, θ ← θ + v",
}


def register(sub) -> None:
    p = sub.add_parser(
        "optimizers",
        help="list optimizer spec names, their defaults and conventions",
        description="List every optimizer spec name (NAME[:key=value,…]) with its defaults "
        "under a convention. Tuples are written betas=(0.9,0.999) or betas=0.9,0.999.",
    )
    p.add_argument(
        "--convention",
        default="torch",
        choices=CONVENTIONS,
        help="torch | keras | optax (default torch)",
    )
    add_format(p)
    p.set_defaults(func=run)


def describe(name: str, text: str, defaults: dict, convention: str) -> str:
    """The registry's one-line description, with the momentum form the convention gives."""
    form = defaults.get("momentum_form")
    if name in ("momentum", "nesterov") and form in MOMENTUM_FORMS:
        kind = "heavy ball" if name == "momentum" else "Nesterov accelerated gradient"
        return f"{kind}, {MOMENTUM_FORMS[form]} ({convention})"
    return text


def run(args) -> int:
    import torch

    from descend.optim.registry import REGISTRY
    from descend.optim.spec import resolve_kwargs

    dummy = [torch.zeros(1, requires_grad=True)]
    rows = []
    for name, (cls, _preset, text, _lab) in REGISTRY.items():
        kwargs = resolve_kwargs(name, {})
        rows_of = getattr(cls, "conventions", {})
        if args.convention in rows_of:
            kwargs["convention"] = args.convention
        elif rows_of:  # a framework without this optimizer: say so rather than show torch's
            rows.append([name, cls.__name__, f"{text} (not in {args.convention})", ""])
            continue
        defaults = cls(dummy, **kwargs).defaults
        shown = ", ".join(
            f"{k}={v}".replace(" ", "")
            for k, v in defaults.items()
            if k not in ("maximize", "max_grad_norm", "clip_value", "convention") and v is not None
        )
        rows.append([name, cls.__name__, describe(name, text, defaults, args.convention), shown])
    emit(
        rows,
        ["spec name", "class", "what it is", "defaults"],
        f"descend optimizers ({args.convention} convention)",
        args.format,
        left=("spec name", "class", "what it is", "defaults"),
        optional=("class",),
    )
    return 0
