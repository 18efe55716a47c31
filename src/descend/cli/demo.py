"""`descend demo`: every optimizer on the ill-conditioned quadratic ½(x² + 100y²)."""

from __future__ import annotations

# Hyperparameters per spec for f = ½(x² + 100y²) (λ = 1, 100). GD and heavy ball use the
# closed-form optima (Goh 2017): α = 2/(λ₁+λ₂); α = (2/(√λ₁+√λ₂))², β = ((√κ−1)/(√κ+1))².
QUADRATIC_SPECS = [
    "sgd:lr=0.0198",
    "momentum:lr=0.0331,momentum=0.669",
    "momentum-ema:lr=0.1,momentum=0.669",
    "nesterov:lr=0.01,momentum=0.9",
    "adagrad:lr=0.5",
    "rmsprop:lr=0.01",
    "rmsprop-centered:lr=0.01",
    "adam:lr=0.1",
    "adamw:lr=0.1,weight_decay=0",
    "amsgrad:lr=0.1",
    "nadam:lr=0.1",
    "newton:lr=1",
]


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the guided tour on embedded data",
        description="Run every optimizer on the ill-conditioned quadratic ½(x² + 100y²) from "
        "the same start and print steps to f < 1e-6 and the final loss.",
    )
    p.add_argument("--steps", type=int, default=2000, help="step budget per optimizer")
    p.add_argument("--start", default="-1.5,1.0", help="start point x,y")
    p.set_defaults(func=run)


def quadratic_race(specs: list[str], start: tuple[float, float], steps: int, tol: float = 1e-6):
    """Run each spec on ½(x² + 100y²) and return rows of (spec, hyperparameters,
    steps to f < tol or None, final loss)."""
    import torch

    from descend.optim import Newton, from_spec

    scale = torch.tensor([1.0, 100.0], dtype=torch.float64)

    def f(w):
        return 0.5 * (scale * w * w).sum()

    rows = []
    for spec in specs:
        w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = from_spec(spec, [w])
        reached = None
        loss = f(w).item()
        for t in range(1, steps + 1):
            if isinstance(opt, Newton):
                opt.step(lambda: f(w))
            else:
                opt.zero_grad()
                f(w).backward()
                opt.step()
            loss = f(w).item()
            if reached is None and loss < tol:
                reached = t
            if not torch.isfinite(w).all():
                break
        group = opt.param_groups[0]
        shown = {k: group[k] for k in ("lr", "momentum", "betas", "alpha", "eps") if k in group}
        rows.append((spec, shown, reached, loss))
    return rows


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from descend.cli import CommandError

    try:
        start = tuple(float(x) for x in args.start.split(","))
    except ValueError:
        raise CommandError(f"--start must be two numbers x,y, got {args.start!r}") from None
    if len(start) != 2:
        raise CommandError(f"--start must be two numbers x,y, got {args.start!r}")
    if args.steps < 1:
        raise CommandError(f"--steps must be ≥ 1, got {args.steps}")
    rows = quadratic_race(QUADRATIC_SPECS, start, args.steps)
    table = Table(title=f"½(x² + 100y²) from {start}, κ = 100, budget {args.steps} steps")
    for col in ("optimizer", "hyperparameters", "steps to f < 1e-6", "final loss"):
        table.add_column(col)
    for spec, shown, reached, loss in rows:
        hps = ", ".join(f"{k}={v}" for k, v in shown.items())
        table.add_row(
            spec.split(":")[0], hps,
            str(reached) if reached else f"did not converge in {args.steps}", f"{loss:.3e}",
        )
    Console().print(table)
    return 0
