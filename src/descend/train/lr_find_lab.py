"""Two checks on the range test: how much its suggestions spread over seeds, and where they
fall on a quadratic whose stable range is known.

On f(w) = ½wᵀAw, gradient descent converges iff α·λ_max < 2, so α < 2/λ_max is the stable
range; below 1/λ_max every direction decreases monotonically, between 1/λ_max and 2/λ_max the
steepest one oscillates while shrinking, and α* = 2/(λ_min + λ_max) is the fastest rate. Heavy
ball (v = βv + g, w −= αv) converges iff α·λ_max < 2 + 2β (Goh 2017). For other optimizers no
closed-form range is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from descend.train.lr_find import RULES, LRFindResult, lr_find


@dataclass
class LRSpread:
    """Range tests repeated over seeds: one result per seed and the spread of each rule."""

    seeds: list[int]
    results: list[LRFindResult]

    def table(self):
        """Suggestions as a DataFrame: one row per seed, one column per rule."""
        import pandas as pd

        rows = [{"seed": s, **r.suggestions} for s, r in zip(self.seeds, self.results)]
        return pd.DataFrame(rows).set_index("seed")

    def spread(self) -> dict[str, dict[str, float]]:
        """Per rule: min, geometric mean, max and max/min of the suggestions over seeds."""
        out = {}
        for rule in RULES:
            values = np.array(
                [r.suggestions[rule] for r in self.results if r.suggestions[rule] is not None]
            )
            if len(values) == 0:
                out[rule] = {"n": 0}
                continue
            out[rule] = {
                "n": len(values),
                "min": float(values.min()),
                "geomean": float(np.exp(np.log(values).mean())),
                "max": float(values.max()),
                "max/min": float(values.max() / values.min()),
            }
        return out


def lr_find_seeds(
    build: Callable[[int], tuple[nn.Module, Callable, Any, torch.optim.Optimizer]],
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    *,
    workers: int | None = None,
    address: str | None = None,
    store: str | Path | None = None,
    threads: int | None = None,
    key: Any = None,
    **options: Any,
) -> LRSpread:
    """Repeat :func:`lr_find` once per seed.

    ``build(seed)`` returns ``(model, loss_fn, loader, optimizer)`` for that seed (a fresh
    initialisation and data order); ``options`` go to :func:`lr_find` (its ``seed`` is set).
    ``workers``/``address`` run the seeds through Dask distributed and ``store`` keeps each
    finished seed in a JSON-lines file to resume from (see :mod:`descend.executor`);
    ``key`` describes ``build`` for that store (default: its qualified name), ``threads`` sets
    torch's threads inside each trial. A seed whose sweep raises is reported by a
    ``RuntimeError`` naming it, after the others have finished and been stored.
    """
    from descend.executor import run_trials, trial_key

    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    described = key if key is not None else getattr(build, "__qualname__", repr(build))
    trials = [(trial_key("lr_find", described, options, threads, s), s) for s in seeds]
    outcomes = run_trials(
        _seed_trial,
        (build, options),
        trials,
        workers=workers,
        address=address,
        threads=threads,
        store=store,
        encode=_encode,
        decode=_decode,
    )
    failed = [(s, o.error) for s, o in zip(seeds, outcomes) if not o.ok]
    if failed:
        text = "; ".join(f"seed {s}: {e}" for s, e in failed)
        raise RuntimeError(f"{len(failed)} of {len(seeds)} range tests failed ({text})")
    return LRSpread(seeds, [o.result for o in outcomes])


def _seed_trial(common: tuple[Callable, dict[str, Any]], seed: int) -> LRFindResult:
    build, options = common
    model, loss_fn, loader, optimizer = build(seed)
    return lr_find(model, loss_fn, loader, optimizer, seed=seed, **options)


def _encode(result: LRFindResult) -> dict[str, Any]:
    from descend.train.compare import _plain

    return _plain(
        {
            "lrs": result.lrs.tolist(),
            "losses": result.losses.tolist(),
            "smoothed": result.smoothed.tolist(),
            "suggestions": result.suggestions,
            "stop_reason": result.stop_reason,
            "config": result.config,
        }
    )


def _decode(data: dict[str, Any]) -> LRFindResult:
    return LRFindResult(
        np.asarray(data["lrs"], dtype=float),
        np.asarray(data["losses"], dtype=float),
        np.asarray(data["smoothed"], dtype=float),
        data["suggestions"],
        data["stop_reason"],
        data["config"],
    )


class _Point(nn.Module):
    """A point on a landscape as a model: forward(ξ) = f(w) + w·ξ (ξ: mini-batch noise)."""

    def __init__(self, landscape: Any, start: tuple[float, ...]) -> None:
        super().__init__()
        self.landscape = landscape
        self.w = nn.Parameter(torch.tensor([list(start)], dtype=torch.float64))

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        return self.landscape.f(self.w).sum() + (self.w * xi).sum()


class _Noise:
    """Batches of DeepOBS-style gradient noise ξ̄ ~ N(0, σ²I/B), or zeros when σ = 0."""

    def __init__(self, dim: int, sigma: float, batch_size: int, seed: int) -> None:
        self.dim, self.scale = dim, sigma / math.sqrt(batch_size)
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            xi = torch.randn(1, self.dim, generator=self.gen, dtype=torch.float64) * self.scale
            yield xi, torch.zeros(1)

    def __len__(self) -> int:
        return 1_000_000


@dataclass
class LandscapeLRFind:
    """A range test on a landscape and where each suggestion falls in the stable range."""

    result: LRFindResult
    landscape: str
    optimizer: str
    eigenvalues: tuple[float, ...]
    stable_limit: float | None
    optimal_lr: float | None
    placement: dict[str, dict[str, Any]]

    def summary(self) -> str:
        lines = [
            f"{self.landscape} with {self.optimizer}: Hessian eigenvalues "
            + ", ".join(f"{v:.4g}" for v in self.eigenvalues)
        ]
        if self.stable_limit is not None:
            fastest = "" if self.optimal_lr is None else f"; fastest lr {self.optimal_lr:.4g}"
            lines.append(f"stable for lr < {self.stable_limit:.4g}{fastest}")
        else:
            lines.append("no closed-form stable range for this optimizer")
        for rule, info in self.placement.items():
            if info["lr"] is None:
                lines.append(f"  {rule:<11} n/a")
            elif self.stable_limit is None:
                lines.append(f"  {rule:<11} {info['lr']:.4g}")
            else:
                lines.append(
                    f"  {rule:<11} {info['lr']:.4g} = {info['fraction_of_limit']:.2f} × limit: "
                    f"{info['verdict']}"
                )
        return "\n".join(lines)


def _stable_limit(spec_name: str, kwargs: dict[str, Any], lam_max: float) -> float | None:
    """α-limit for GD (2/λ_max) and heavy ball in torch's form ((2 + 2β)/λ_max), else None."""
    heavy_ball = (
        spec_name in ("sgd", "momentum")
        and not kwargs.get("nesterov")
        and kwargs.get("momentum_form", "modern") == "modern"
        and not kwargs.get("dampening")
    )
    if not heavy_ball:
        return None
    beta = float(kwargs.get("momentum") or 0.0)
    return (2.0 + 2.0 * beta) / lam_max


def lr_find_landscape(
    landscape: str | Any = "ravine",
    optimizer: str = "sgd",
    *,
    start: tuple[float, ...] | None = None,
    noise: float = 0.0,
    batch_size: int = 1,
    seed: int = 0,
    start_lr: float = 1e-4,
    end_lr: float = 10.0,
    num_steps: int = 100,
    **options: Any,
) -> LandscapeLRFind:
    """Range test on a landscape from the landscape lab (default: the ravine ½(x² + 10y²)).

    ``landscape`` is a name for ``descend.landscapes.get`` or a Landscape; ``optimizer`` a
    descend spec (its lr is swept). ``noise`` = σ adds DeepOBS mini-batch noise of standard
    deviation σ/√``batch_size`` to the gradient. The Hessian eigenvalues are taken at the start
    point (exact everywhere for a quadratic). For ``sgd`` and heavy-ball ``momentum`` each
    suggestion is placed in the stable range: its fraction of the limit and a verdict.
    """
    from descend import landscapes, optim

    ls = landscapes.get(landscape) if isinstance(landscape, str) else landscape
    if start is None:
        if not ls.starts:
            raise ValueError(f"landscape {ls.name!r} has no start point; pass start=(…)")
        start = ls.starts[0]
    if len(start) != ls.dim:
        raise ValueError(f"start must have {ls.dim} coordinates, got {len(start)}")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    name, kwargs = optim.parse_spec(optimizer)
    kwargs = optim.spec.resolve_kwargs(name, kwargs)
    point = _Point(ls, tuple(float(v) for v in start))
    opt = optim.from_spec(optimizer, point.parameters())
    loader = _Noise(ls.dim, noise, batch_size, seed)
    result = lr_find(
        point,
        lambda out, _y: out,
        loader,
        opt,
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        seed=seed,
        **options,
    )
    hessian = ls.hessian(torch.tensor([list(start)], dtype=torch.float64))[0]
    eigenvalues = tuple(float(v) for v in torch.linalg.eigvalsh(hessian))
    lam_min, lam_max = eigenvalues[0], eigenvalues[-1]
    limit = _stable_limit(name, kwargs, lam_max) if lam_max > 0 else None
    plain_gd = limit is not None and not kwargs.get("momentum")
    optimal = 2.0 / (lam_min + lam_max) if plain_gd else None
    placement: dict[str, dict[str, Any]] = {}
    for rule, lr in result.suggestions.items():
        info: dict[str, Any] = {"lr": lr}
        if lr is not None and limit is not None:
            info["fraction_of_limit"] = lr / limit
            if lr >= limit:
                info["verdict"] = "unstable (diverges)"
            elif optimal is not None and lr >= 1.0 / lam_max:
                info["verdict"] = "stable, steepest direction oscillates"
            else:
                info["verdict"] = "stable"
        placement[rule] = info
    return LandscapeLRFind(result, ls.name, optimizer, eigenvalues, limit, optimal, placement)
